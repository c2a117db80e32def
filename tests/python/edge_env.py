"""Shared plumbing for the Python SDK test scripts.

One place for: reading the hub's state directory (``identities.json`` + ``ca.pem``),
building a module's connection string, creating an ``IoTHubModuleClient`` through the
IoT Edge *local-development* environment (``EdgeHubConnectionString`` +
``EdgeModuleCACertificateFile``; docs/protocol.md#local-development), JSON-lines output, logging,
signals, and time-bounded calls so no script can hang.

Why the edge environment and not ``create_from_connection_string``: the Python SDK only
allows ``invoke_method`` on clients built by ``create_from_edge_environment``, and it only
takes the local-dev fallback when the ``IOTEDGE_*`` set is incomplete, so we remove all of it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, TypeVar

T = TypeVar("T")

log = logging.getLogger("edge_env")

# Exit codes shared by the scripts.
EXIT_OK = 0
EXIT_FAILED = 1  # the check ran and something differed / no exchange succeeded
EXIT_SETUP = 2  # bad state dir, unknown module, could not connect (argparse also uses 2)
EXIT_DEADLINE = 3  # the hard deadline fired: something hung

_ENV_LOCK = threading.Lock()
_OUT_LOCK = threading.Lock()


class SetupError(Exception):
    """The environment is not usable (missing files, unknown module, connect failure)."""


class OperationTimedOut(Exception):
    """A bounded call did not finish in time."""


# --------------------------------------------------------------------------- identities


@dataclass(frozen=True)
class Identities:
    """The hub's ``identities.json``."""

    iothub_hostname: str
    gateway_hostname: str
    device_id: str
    modules: Dict[str, Dict[str, str]]
    ca_file: Path

    def connection_string(self, module_id: str) -> str:
        """``HostName=…;DeviceId=…;ModuleId=…;SharedAccessKey=…;GatewayHostName=…`` (a secret)."""
        keys = self.modules.get(module_id)
        if not keys or not keys.get("primaryKey"):
            raise SetupError(
                "module {!r} has no identity in identities.json (known: {})".format(
                    module_id, ", ".join(sorted(self.modules)) or "none"
                )
            )
        return "HostName={};DeviceId={};ModuleId={};SharedAccessKey={};GatewayHostName={}".format(
            self.iothub_hostname, self.device_id, module_id, keys["primaryKey"], self.gateway_hostname
        )


def load_identities(state_dir: str) -> Identities:
    """Read ``identities.json`` and locate ``ca.pem`` in the hub's state directory."""
    root = Path(state_dir)
    ident_path = root / "identities.json"
    ca_path = (root / "ca.pem").resolve()
    try:
        raw = json.loads(ident_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SetupError("{} not found (is the hub running with this state dir?)".format(ident_path))
    except (OSError, ValueError) as e:
        raise SetupError("cannot read {}: {}".format(ident_path, e))
    if not ca_path.is_file():
        raise SetupError("{} not found (the hub writes its CA there)".format(ca_path))
    try:
        return Identities(
            iothub_hostname=raw["iothubHostname"],
            gateway_hostname=raw["gatewayHostname"],
            device_id=raw["deviceId"],
            modules=dict(raw["modules"]),
            ca_file=ca_path,
        )
    except (KeyError, TypeError) as e:
        raise SetupError("{} lacks field {}".format(ident_path, e))


def create_module_client(ids: Identities, module_id: str, **kwargs: Any):
    """Create a (sync) ``IoTHubModuleClient`` for ``module_id`` via the edge environment.

    The variables are set only for the duration of the call (the SDK reads them once) and
    removed afterwards so the key does not leak into child processes.
    """
    from azure.iot.device import IoTHubModuleClient  # imported late: timefmt/stats stay SDK-free

    conn = ids.connection_string(module_id)
    with _ENV_LOCK:
        for name in [n for n in os.environ if n.startswith("IOTEDGE_")]:
            del os.environ[name]  # any IOTEDGE_* could push the SDK towards the workload API
        os.environ["EdgeHubConnectionString"] = conn
        os.environ["EdgeModuleCACertificateFile"] = str(ids.ca_file)
        try:
            client = IoTHubModuleClient.create_from_edge_environment(**kwargs)
        except (OSError, ValueError) as e:
            raise SetupError("create_from_edge_environment failed for {}: {}".format(module_id, e))
        finally:
            os.environ.pop("EdgeHubConnectionString", None)
            os.environ.pop("EdgeModuleCACertificateFile", None)
    log.info("created module client %s/%s via %s", ids.device_id, module_id, ids.gateway_hostname)
    return client


# --------------------------------------------------------------------------- bounded calls


def bounded(fn: Callable[..., T], timeout: float, what: str, *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` in a daemon thread; raise ``OperationTimedOut`` after ``timeout`` seconds.

    The SDK's sync calls block without a deadline (connect has a 60 s watchdog, a QoS 1
    publish waits for its PUBACK across reconnects); this keeps every wait bounded. A call
    that times out keeps running in its daemon thread until the client is shut down.
    """
    box: Dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # handed to the caller below
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, name="bounded:" + what, daemon=True).start()
    if not done.wait(timeout):
        raise OperationTimedOut("{} did not finish within {:g} s".format(what, timeout))
    if "error" in box:
        raise box["error"]
    return box["value"]


def shutdown_client(client: Any, name: str, timeout: float = 5.0) -> None:
    """Shut a client down, bounded; failures are logged, never raised."""
    if client is None:
        return
    try:
        bounded(client.shutdown, timeout, "shutdown " + name)
        log.info("client %s shut down", name)
    except Exception as e:
        log.warning("client %s did not shut down cleanly: %s", name, describe(e))


def set_handler(client: Any, attr: str, handler: Callable, timeout: float, name: str) -> None:
    """Set an SDK receive handler; this connects and SUBSCRIBEs, so bound it."""
    bounded(setattr, timeout, "{} {}".format(name, attr), client, attr, handler)


# --------------------------------------------------------------------------- errors


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def describe(e: BaseException) -> str:
    """``Type: msg <- CauseType: msg`` over the cause chain (the SDK wraps HTTP errors)."""
    return " <- ".join(type(x).__name__ + (": {}".format(x) if str(x) else "") for x in _chain(e))


def is_timeout(e: BaseException) -> bool:
    """True for our own deadlines, SDK/requests timeouts and HTTP 504 from the hub."""
    for x in _chain(e):
        name = type(x).__name__
        if isinstance(x, (OperationTimedOut, TimeoutError)) or name in ("Timeout", "ReadTimeout",
                                                                       "ConnectTimeout", "OperationTimeout"):
            return True
        if name == "ServiceError" and " 504 " in " {} ".format(x):
            return True
    return False


# --------------------------------------------------------------------------- output / process


def emit(event: str, **fields: Any) -> None:
    """Print one JSON object per line on stdout (ASCII-only, flushed)."""
    line = json.dumps(dict(event=event, **fields), sort_keys=False)
    with _OUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def fatal(message: str, code: int = EXIT_SETUP) -> int:
    """Report a fatal error on both streams; returns the exit code to use."""
    log.error("%s", message)
    emit("fatal", error=message, exit_code=code)
    return code


def exit_now(code: int) -> None:
    """Flush and leave without joining threads.

    Clients have been shut down (bounded) by then; what may remain are SDK pipeline threads
    stuck in a connect/TLS handshake against an unresponsive hub, which the interpreter
    would otherwise join at exit (up to paho's 60 s+ socket timeouts).
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", required=True, metavar="DIR",
                        help="hub state directory holding identities.json and ca.pem")
    parser.add_argument("--connect-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="bound for connecting/subscribing each client (default 30)")
    parser.add_argument("--tcp-nodelay", action="store_true",
                        help="turn Nagle off on the SDK's MQTT socket (paho leaves it on, which adds "
                             "~40 ms delayed-ACK stalls to request/reply over MQTT; HTTPS already has it off)")
    parser.add_argument("--log-level", default="INFO", help="log level of these scripts (stderr)")
    parser.add_argument("--sdk-log-level", default="WARNING", help="log level of azure.iot.device (stderr)")


def setup_logging(args: argparse.Namespace) -> None:
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("azure", "paho", "urllib3"):
        logging.getLogger(noisy).setLevel(args.sdk_log_level.upper())


def apply_process_options(args: argparse.Namespace) -> None:
    """Logging plus the process-wide SDK tweaks chosen on the command line."""
    setup_logging(args)
    if args.tcp_nodelay:
        enable_mqtt_tcp_nodelay()


def enable_mqtt_tcp_nodelay() -> None:
    """Set TCP_NODELAY on every socket paho (the SDK's MQTT client) opens.

    Opt-in because it changes the SDK's stock behaviour; urllib3 (invoke_method) sets it already.
    """
    import socket

    from paho.mqtt import client as paho

    original = paho.Client._create_socket_connection
    if getattr(original, "_nodelay", False):
        return

    def create(self):
        sock = original(self)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError) as e:  # e.g. a proxy socket without setsockopt
            log.warning("could not set TCP_NODELAY on the MQTT socket: %s", e)
        return sock

    create._nodelay = True  # type: ignore[attr-defined]
    paho.Client._create_socket_connection = create
    log.info("TCP_NODELAY enabled on the SDK's MQTT sockets")


def stop_on_signals(stop: threading.Event) -> None:
    """SIGINT/SIGTERM set ``stop`` (IoT Edge stops modules with SIGTERM)."""

    def handler(signum, _frame):
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def interrupt_on_signals() -> None:
    """SIGINT/SIGTERM raise KeyboardInterrupt in the main thread (for one-shot scripts)."""

    def handler(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def hard_deadline(seconds: float, what: str) -> threading.Timer:
    """Last-resort guard: if the script is still running after ``seconds``, exit 3."""

    def fire() -> None:
        fatal("{} still running after its {:g} s hard deadline; aborting".format(what, seconds), EXIT_DEADLINE)
        logging.shutdown()
        os._exit(EXIT_DEADLINE)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


def optional_str(value: Optional[bytes]) -> str:
    """Message bodies arrive as bytes; decode for comparisons and reports."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)
