#!/usr/bin/env python3
"""Python port of the seed's C# Consumer (mill5james/IoTEdgeMethodVsMessage; its contract is in
docs/protocol.md#the-seeds-wire-contract).

Two loops run concurrently for --duration seconds, back to back like the seed:
- method loop: ``invoke_method`` ``GetTimeMethod`` on --target, payload None,
  responseTimeoutInSeconds 30, connectTimeoutInSeconds 0; reply payload ``{"UtcTime": ...}``
- message loop: empty-body message on output ``GetTimeMessage`` with correlation id = send
  time (round-trip format); wait for the reply on input ``GetTimeMessage`` (one outstanding).

Per exchange: C->P = UtcTime - send time, P->C = receive time - UtcTime (wall clock, same
host), Total from the monotonic clock (docs/protocol.md#the-seeds-measurement-and-table).
Unlike the seed, a reply missing for --timeout seconds is counted as a timeout instead of
stalling the loop; a reply that arrives later is counted as ``late`` and ignored.

stdout (JSON lines):
  {"event":"ready","module":M,"target":T,"device":D,"method":bool,"message":bool}
  {"event":"exchange","kind":"method"|"message","c2p_ms":..,"p2c_ms":..,"total_ms":..}  (--print-exchanges)
  {"event":"exchange_error","kind":..,"outcome":"timeout"|"error","error":"..."}  (first 10 per kind)
  {"event":"summary","duration_s":..,"method":{STATS},"message":{STATS}}
     STATS = {"enabled":bool,"count","timeouts","errors","late","min_total_ms","avg_total_ms",
              "max_total_ms", same for c2p/p2c, "p50_total_ms","p99_total_ms"}
  {"event":"fatal","error":"...","exit_code":N}
Exit 0 iff at least one exchange of every enabled kind succeeded; 1 otherwise; 2 on setup errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import threading
import time

import edge_env
from stats import KindStats, legs_ms
from timefmt import format_roundtrip, now_ns, parse_roundtrip

METHOD_NAME = "GetTimeMethod"
INPUT_NAME = OUTPUT_NAME = "GetTimeMessage"
MAX_REPORTED_PROBLEMS = 10
ERROR_BACKOFF_S = 0.1  # the seed retries at once; a short pause keeps a dead peer from spinning a core

log = logging.getLogger("seed_consumer")


class Consumer:
    def __init__(self, client, device_id: str, target: str, timeout: float,
                 print_exchanges: bool, stop: threading.Event) -> None:
        self.client = client
        self.device_id = device_id
        self.target = target
        self.timeout = timeout
        self.print_exchanges = print_exchanges
        self.stop = stop  # set by SIGINT/SIGTERM: abandon the exchange in flight
        self.stats = {"method": KindStats(), "message": KindStats()}
        self._problems = {"method": 0, "message": 0}
        self._replies: "queue.Queue[tuple]" = queue.Queue()

    # ------------------------------------------------------------------ recording

    def _ok(self, kind: str, begin_ns: int, produced_ns: int, end_ns: int, total_ns: int) -> None:
        legs = legs_ms(begin_ns, produced_ns, end_ns)
        legs["total_ms"] = total_ns / 1e6  # monotonic, immune to wall-clock steps
        self.stats[kind].ok(legs["c2p_ms"], legs["p2c_ms"], legs["total_ms"])
        if self.print_exchanges:
            edge_env.emit("exchange", kind=kind, **{k: round(v, 4) for k, v in legs.items()})

    def _failed(self, kind: str, e: BaseException) -> None:
        outcome = "timeout" if edge_env.is_timeout(e) else "error"
        (self.stats[kind].timeout if outcome == "timeout" else self.stats[kind].error)()
        text = edge_env.describe(e)
        log.warning("%s exchange %s: %s", kind, outcome, text)
        self._problems[kind] += 1
        if self._problems[kind] <= MAX_REPORTED_PROBLEMS:
            edge_env.emit("exchange_error", kind=kind, outcome=outcome, error=text)
        if outcome == "error":
            self.stop.wait(ERROR_BACKOFF_S)

    # ------------------------------------------------------------------ method

    def method_once(self) -> None:
        params = {"methodName": METHOD_NAME, "payload": None,
                  "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 0}

        def call():
            begin_ns, begin_mono = now_ns(), time.perf_counter_ns()
            result = self.client.invoke_method(params, self.device_id, self.target)
            return begin_ns, begin_mono, result, time.perf_counter_ns(), now_ns()

        try:
            begin_ns, begin_mono, result, end_mono, end_ns = edge_env.bounded(
                call, self.timeout, "invoke {} on {}".format(METHOD_NAME, self.target))
            if not isinstance(result, dict) or result.get("status") != 200:
                raise ValueError("unexpected method result {!r}".format(result))
            produced_ns = parse_roundtrip((result.get("payload") or {})["UtcTime"])
        except Exception as e:
            self._failed("method", e)
            return
        self._ok("method", begin_ns, produced_ns, end_ns, end_mono - begin_mono)

    # ------------------------------------------------------------------ message

    def on_message(self, message) -> None:
        """Input handler (SDK handler thread): timestamp first, then hand over."""
        end_ns, end_mono = now_ns(), time.perf_counter_ns()
        if message.input_name != INPUT_NAME:
            log.warning("ignoring message on input %r", message.input_name)
            return
        self._replies.put((message, end_ns, end_mono))

    def message_once(self) -> None:
        from azure.iot.device import Message

        deadline = time.monotonic() + self.timeout
        msg = Message(b"")  # the seed sends an empty body
        msg.correlation_id = format_roundtrip(now_ns())
        begin_mono = time.perf_counter_ns()
        try:
            edge_env.bounded(self.client.send_message_to_output, self.timeout,
                             "send " + OUTPUT_NAME, msg, OUTPUT_NAME)
            while True:
                remaining = deadline - time.monotonic()
                if self.stop.is_set():
                    return  # shutting down: neither success nor timeout
                if remaining <= 0:
                    raise edge_env.OperationTimedOut(
                        "no reply with correlation id {} within {:g} s".format(msg.correlation_id, self.timeout))
                try:
                    reply, end_ns, end_mono = self._replies.get(timeout=min(remaining, 0.5))
                except queue.Empty:
                    continue
                if reply.correlation_id == msg.correlation_id:
                    break
                log.info("late or foreign reply (correlation id %r) ignored", reply.correlation_id)
                self.stats["message"].late_reply()
            # Like the seed: begin from the echoed correlation id, produced from the body.
            begin_ns = parse_roundtrip(reply.correlation_id)
            produced_ns = parse_roundtrip(json.loads(edge_env.optional_str(reply.data))["UtcTime"])
        except Exception as e:
            self._failed("message", e)
            return
        self._ok("message", begin_ns, produced_ns, end_ns, end_mono - begin_mono)

    # ------------------------------------------------------------------ loops

    def run_loop(self, kind: str, until: float) -> None:
        once = self.method_once if kind == "method" else self.message_once
        while not self.stop.is_set() and time.monotonic() < until:
            try:
                once()
            except Exception as e:  # never let a loop die silently
                self._failed(kind, e)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    edge_env.add_common_args(parser)
    parser.add_argument("--module-id", default="consumer", help="module identity to connect as (default consumer)")
    parser.add_argument("--target", default="producer", help="module whose GetTimeMethod is invoked (default producer)")
    parser.add_argument("--duration", type=float, required=True, metavar="SECONDS",
                        help="how long to run both loops; no new exchange starts after it")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="deadline of one exchange (default 10; the SDK's own HTTP timeout for "
                             "invoke_method is a fixed 10 s)")
    parser.add_argument("--enable-method", action=argparse.BooleanOptionalAction, default=True,
                        help="run the method loop (default on)")
    parser.add_argument("--enable-message", action=argparse.BooleanOptionalAction, default=True,
                        help="run the message loop (default on)")
    parser.add_argument("--print-exchanges", action="store_true",
                        help="print one 'exchange' JSON line per successful exchange")
    args = parser.parse_args(argv)
    edge_env.apply_process_options(args)
    if not (args.enable_method or args.enable_message):
        return edge_env.fatal("both --no-enable-method and --no-enable-message: nothing to measure")
    if args.duration <= 0 or args.timeout <= 0:
        return edge_env.fatal("--duration and --timeout must be positive")
    edge_env.hard_deadline(args.connect_timeout + args.duration + 2 * args.timeout + 30, "seed_consumer")

    stop = threading.Event()
    edge_env.stop_on_signals(stop)
    client = None
    consumer = None
    code = edge_env.EXIT_OK
    started = None  # when the loops started
    summary = None
    try:
        ids = edge_env.load_identities(args.state_dir)
        client = edge_env.create_module_client(ids, args.module_id)
        consumer = Consumer(client, ids.device_id, args.target, args.timeout, args.print_exchanges, stop)
        if args.enable_message:
            try:  # subscribes to inputs (and connects) before the first request goes out
                edge_env.set_handler(client, "on_message_received", consumer.on_message,
                                     args.connect_timeout, args.module_id)
            except Exception as e:
                raise edge_env.SetupError("setting on_message_received failed: " + edge_env.describe(e))
        edge_env.emit("ready", module=args.module_id, target=args.target, device=ids.device_id,
                      method=args.enable_method, message=args.enable_message)

        started = time.monotonic()
        until = started + args.duration
        kinds = [k for k, on in (("method", args.enable_method), ("message", args.enable_message)) if on]
        threads = [threading.Thread(target=consumer.run_loop, args=(k, until), name=k + "-loop", daemon=True)
                   for k in kinds]
        for t in threads:
            t.start()
        while not stop.is_set() and time.monotonic() < until:
            stop.wait(min(1.0, max(0.0, until - time.monotonic())))
        for t in threads:  # an exchange in flight finishes within its own deadline
            t.join(args.timeout + 5)
            if t.is_alive():
                log.warning("%s did not finish within its timeout", t.name)

        summary = {kind: dict(enabled=enabled, **consumer.stats[kind].summary())
                   for kind, enabled in (("method", args.enable_method), ("message", args.enable_message))}
        missing = [k for k in kinds if summary[k]["count"] == 0]
        if missing:
            log.error("no successful %s exchange", " or ".join(missing))
            code = edge_env.EXIT_FAILED
    except edge_env.SetupError as e:
        code = edge_env.fatal(str(e))
    except Exception as e:
        code = edge_env.fatal("unexpected error: " + edge_env.describe(e))
    finally:
        edge_env.shutdown_client(client, args.module_id)
    if summary is None:  # setup failed: still one summary line, with what was measured (maybe nothing)
        stats = consumer.stats if consumer is not None else {"method": KindStats(), "message": KindStats()}
        summary = {k: dict(enabled=getattr(args, "enable_" + k), **stats[k].summary())
                   for k in ("method", "message")}
    duration = 0.0 if started is None else time.monotonic() - started
    edge_env.emit("summary", duration_s=round(duration, 3), **summary)
    return code


if __name__ == "__main__":
    edge_env.exit_now(main())
