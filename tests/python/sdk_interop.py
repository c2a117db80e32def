#!/usr/bin/env python3
"""Real-SDK interop check for the local hub (azure-iot-device; see docs/protocol.md, "Topics"
and "Invoking a direct method over HTTPS").

Two module clients in one process, both built with create_from_edge_environment:
  responder (--responder, default sdkresponder): method handler and input handler
  caller    (--caller,    default sdkcaller):    invokes methods, sends on output out1

Checks (the deployment must route  sdkcaller/outputs/out1 -> sdkresponder/inputs/in1  and
sdkresponder/outputs/back1 -> sdkcaller/inputs/back1, see deployment_sdk.json):
  method_echo    invoke "Echo" with {"hello":"world","n":1}; the result must be exactly
                 {"status":200,"payload":{"hello":"world","n":1}}
  message_route  body "ping", properties color=blue and "k&=/ é"="v=&/ é", correlation id
                 corr-123, message id mid-1 on out1; the responder must get it on input in1
                 with the same body, ids and properties, plus $.cdid = device id and
                 $.cmid = caller id among custom_properties (no other extra properties,
                 except traceparent/tracestate a tracing hub may add)
Latency (closed loop, one outstanding, --n samples after --warmup):
  method   invoke "Echo" {"seq": i} -> echoed payload
  message  out1 (property reply=1) -> responder -> back1 -> caller

stdout (JSON lines):
  {"event":"ready","caller":C,"responder":R,"device":D}
  {"event":"check","name":"method_echo"|"message_route","ok":bool,"diffs":[{"field":..,"expected":..,"actual":..}]}
  {"event":"latency","tcp_nodelay":bool,"kind":"method"|"message","n":N,"errors":E,"timeouts":T,
   "p50_ms":..,"p99_ms":..,"max_ms":..,"min_ms":..,"mean_ms":..}
  {"event":"ok"}  or  {"event":"failed","failures":["..."]}
  {"event":"fatal","error":"...","exit_code":N}
Exit 0 all passed, 1 something differed, 2 setup error, 3 hard deadline.
"""

from __future__ import annotations

import argparse
import logging
import queue
import time
import uuid
from typing import Any, Dict, List, Optional

import edge_env
from stats import percentile

ECHO_METHOD = "Echo"
ECHO_PAYLOAD = {"hello": "world", "n": 1}
OUT_OUTPUT, IN_INPUT = "out1", "in1"
BACK_OUTPUT, BACK_INPUT = "back1", "back1"
CHECK_BODY = "ping"
CHECK_PROPERTIES = {"color": "blue", "k&=/ é": "v=&/ é"}
CHECK_CORRELATION_ID = "corr-123"
CHECK_MESSAGE_ID = "mid-1"
TOLERATED_EXTRA_PROPERTIES = {"traceparent", "tracestate"}
MAX_CONSECUTIVE_FAILURES = 3  # abort a latency phase early rather than wait out N timeouts

log = logging.getLogger("sdk_interop")


class Responder:
    """Echoes methods; replies to ``reply=1`` inputs on back1, queues everything else."""

    def __init__(self, client, send_timeout: float) -> None:
        self.client = client
        self.send_timeout = send_timeout
        self.received: "queue.Queue[Any]" = queue.Queue()

    def on_method(self, request) -> None:
        from azure.iot.device import MethodResponse

        if request.name == ECHO_METHOD:
            status, payload = 200, request.payload
        else:
            status, payload = 501, {"message": "method {} not implemented".format(request.name)}
        try:
            self.client.send_method_response(MethodResponse.create_from_method_request(request, status, payload))
        except Exception as e:
            log.error("responder: method response failed: %s", edge_env.describe(e))

    def on_message(self, message) -> None:
        from azure.iot.device import Message

        if message.input_name == IN_INPUT and message.custom_properties.get("reply") == "1":
            reply = Message(message.data)
            reply.correlation_id = message.correlation_id
            try:
                edge_env.bounded(self.client.send_message_to_output, self.send_timeout,
                                 "responder send " + BACK_OUTPUT, reply, BACK_OUTPUT)
            except Exception as e:
                log.error("responder: reply on %s failed: %s", BACK_OUTPUT, edge_env.describe(e))
        else:
            self.received.put(message)


class Caller:
    """Collects back1 replies with their arrival time (monotonic ns)."""

    def __init__(self, client) -> None:
        self.client = client
        self.replies: "queue.Queue[tuple]" = queue.Queue()

    def on_message(self, message) -> None:
        arrived = time.perf_counter_ns()
        if message.input_name == BACK_INPUT:
            self.replies.put((message, arrived))
        else:
            log.warning("caller: unexpected message on input %r", message.input_name)


def wait_for(q: "queue.Queue", timeout: float, match) -> Optional[Any]:
    """First queue item satisfying ``match`` within ``timeout`` s; others are logged and dropped."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            item = q.get(timeout=remaining)
        except queue.Empty:
            return None
        if match(item):
            return item
        log.info("ignoring unrelated message %r", item)


def diff(field: str, expected: Any, actual: Any, out: List[Dict[str, Any]]) -> None:
    if expected != actual:
        out.append({"field": field, "expected": expected, "actual": actual})


# --------------------------------------------------------------------------- checks


def check_method_echo(caller: Caller, device_id: str, responder_id: str, timeout: float) -> List[Dict[str, Any]]:
    diffs: List[Dict[str, Any]] = []
    params = {"methodName": ECHO_METHOD, "payload": ECHO_PAYLOAD,
              "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 0}
    try:
        result = edge_env.bounded(caller.client.invoke_method, timeout, "invoke " + ECHO_METHOD,
                                  params, device_id, responder_id)
    except Exception as e:
        diffs.append({"field": "invoke_method", "expected": "a result", "actual": edge_env.describe(e)})
        return diffs
    diff("result", {"status": 200, "payload": ECHO_PAYLOAD}, result, diffs)
    return diffs


def check_message_route(caller: Caller, responder: Responder, ids: edge_env.Identities,
                        caller_id: str, timeout: float) -> List[Dict[str, Any]]:
    from azure.iot.device import Message

    diffs: List[Dict[str, Any]] = []
    msg = Message(CHECK_BODY)
    msg.custom_properties.update(CHECK_PROPERTIES)
    msg.correlation_id = CHECK_CORRELATION_ID
    msg.message_id = CHECK_MESSAGE_ID
    try:
        edge_env.bounded(caller.client.send_message_to_output, timeout, "send " + OUT_OUTPUT, msg, OUT_OUTPUT)
    except Exception as e:
        diffs.append({"field": "send_message_to_output", "expected": "PUBACK", "actual": edge_env.describe(e)})
        return diffs
    got = wait_for(responder.received, timeout, lambda m: m.correlation_id == CHECK_CORRELATION_ID)
    if got is None:
        diffs.append({"field": "delivery", "expected": "message on {} within {:g} s".format(IN_INPUT, timeout),
                      "actual": None})
        return diffs
    diff("input_name", IN_INPUT, got.input_name, diffs)
    diff("data", CHECK_BODY, edge_env.optional_str(got.data), diffs)
    diff("correlation_id", CHECK_CORRELATION_ID, got.correlation_id, diffs)
    diff("message_id", CHECK_MESSAGE_ID, got.message_id, diffs)
    props = dict(got.custom_properties)
    for key, value in CHECK_PROPERTIES.items():
        diff("custom_properties[{!r}]".format(key), value, props.get(key), diffs)
    diff("custom_properties['$.cdid']", ids.device_id, props.get("$.cdid"), diffs)
    diff("custom_properties['$.cmid']", caller_id, props.get("$.cmid"), diffs)
    extra = set(props) - set(CHECK_PROPERTIES) - {"$.cdid", "$.cmid"} - TOLERATED_EXTRA_PROPERTIES
    if extra:
        diffs.append({"field": "custom_properties (extra keys)", "expected": [],
                      "actual": {k: props[k] for k in sorted(extra)}})
    return diffs


# --------------------------------------------------------------------------- latency


def _latency_event(kind: str, samples_ms: List[float], errors: int, timeouts: int) -> Dict[str, Any]:
    def r(x):
        return None if x is None else round(x, 4)

    return dict(kind=kind, n=len(samples_ms), errors=errors, timeouts=timeouts,
                p50_ms=r(percentile(samples_ms, 50)), p99_ms=r(percentile(samples_ms, 99)),
                max_ms=r(max(samples_ms) if samples_ms else None),
                min_ms=r(min(samples_ms) if samples_ms else None),
                mean_ms=r(sum(samples_ms) / len(samples_ms) if samples_ms else None))


def measure_methods(caller: Caller, device_id: str, responder_id: str, n: int, warmup: int,
                    timeout: float) -> Dict[str, Any]:
    samples: List[float] = []
    errors = timeouts = consecutive = 0
    for i in range(warmup + n):
        params = {"methodName": ECHO_METHOD, "payload": {"seq": i},
                  "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 0}

        def call(params=params):  # timestamps inside the worker: the bounding thread is not measured
            t0 = time.perf_counter_ns()
            result = caller.client.invoke_method(params, device_id, responder_id)
            return result, time.perf_counter_ns() - t0

        try:
            result, elapsed = edge_env.bounded(call, timeout, "invoke " + ECHO_METHOD)
            if result != {"status": 200, "payload": {"seq": i}}:
                raise ValueError("unexpected result {!r}".format(result))
        except Exception as e:
            timed_out = edge_env.is_timeout(e)
            timeouts += timed_out
            errors += not timed_out
            consecutive += 1
            log.warning("method latency sample %d failed: %s", i, edge_env.describe(e))
            if consecutive >= MAX_CONSECUTIVE_FAILURES:
                log.error("method latency: %d failures in a row, giving up", consecutive)
                break
            continue
        consecutive = 0
        if i >= warmup:
            samples.append(elapsed / 1e6)
    return _latency_event("method", samples, errors, timeouts)


def measure_messages(caller: Caller, n: int, warmup: int, timeout: float) -> Dict[str, Any]:
    from azure.iot.device import Message

    token = uuid.uuid4().hex[:8]  # keeps replies from an earlier run from matching
    samples: List[float] = []
    errors = timeouts = consecutive = 0
    for i in range(warmup + n):
        cid = "lat-{}-{}".format(token, i)
        msg = Message("seq {}".format(i))
        msg.correlation_id = cid
        msg.custom_properties["reply"] = "1"

        def send(msg=msg):
            t0 = time.perf_counter_ns()
            caller.client.send_message_to_output(msg, OUT_OUTPUT)
            return t0

        try:
            t0 = edge_env.bounded(send, timeout, "send " + OUT_OUTPUT)
            got = wait_for(caller.replies, timeout, lambda item, cid=cid: item[0].correlation_id == cid)
            if got is None:
                raise edge_env.OperationTimedOut("no reply {} on {} within {:g} s".format(cid, BACK_INPUT, timeout))
        except Exception as e:
            timed_out = edge_env.is_timeout(e)
            timeouts += timed_out
            errors += not timed_out
            consecutive += 1
            log.warning("message latency sample %d failed: %s", i, edge_env.describe(e))
            if consecutive >= MAX_CONSECUTIVE_FAILURES:
                log.error("message latency: %d failures in a row, giving up", consecutive)
                break
            continue
        consecutive = 0
        if i >= warmup:
            samples.append((got[1] - t0) / 1e6)
    return _latency_event("message", samples, errors, timeouts)


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    edge_env.add_common_args(parser)
    parser.add_argument("--responder", default="sdkresponder", help="responder module id (default sdkresponder)")
    parser.add_argument("--caller", default="sdkcaller", help="caller module id (default sdkcaller)")
    parser.add_argument("--n", type=int, default=200, help="latency samples per kind (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured exchanges per kind first (default 5)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="deadline of one call/exchange (default 10)")
    parser.add_argument("--deadline", type=float, default=600.0, metavar="SECONDS",
                        help="hard limit for the whole run; exit 3 when exceeded (default 600)")
    args = parser.parse_args(argv)
    edge_env.apply_process_options(args)
    if args.n < 1 or args.warmup < 0 or args.timeout <= 0:
        return edge_env.fatal("--n must be >= 1, --warmup >= 0, --timeout > 0")
    edge_env.hard_deadline(args.deadline, "sdk_interop")
    edge_env.interrupt_on_signals()

    responder_client = caller_client = None
    failures: List[str] = []
    code = edge_env.EXIT_OK
    try:
        ids = edge_env.load_identities(args.state_dir)
        responder_client = edge_env.create_module_client(ids, args.responder)
        caller_client = edge_env.create_module_client(ids, args.caller)
        responder = Responder(responder_client, args.timeout)
        caller = Caller(caller_client)
        # Responder first: methods to an unsubscribed module get 404 at once (connectTimeout 0).
        for client, name, attr, handler in (
                (responder_client, args.responder, "on_method_request_received", responder.on_method),
                (responder_client, args.responder, "on_message_received", responder.on_message),
                (caller_client, args.caller, "on_message_received", caller.on_message)):
            try:
                edge_env.set_handler(client, attr, handler, args.connect_timeout, name)
            except Exception as e:
                raise edge_env.SetupError("{}: setting {} failed: {}".format(name, attr, edge_env.describe(e)))
        edge_env.emit("ready", caller=args.caller, responder=args.responder, device=ids.device_id)

        for name, run in (
                ("method_echo", lambda: check_method_echo(caller, ids.device_id, args.responder, args.timeout)),
                ("message_route", lambda: check_message_route(caller, responder, ids, args.caller, args.timeout))):
            diffs = run()
            edge_env.emit("check", name=name, ok=not diffs, diffs=diffs)
            if diffs:
                failures.append("{}: {}".format(name, "; ".join(
                    "{} expected {!r} got {!r}".format(d["field"], d["expected"], d["actual"]) for d in diffs)))

        for event in (measure_methods(caller, ids.device_id, args.responder, args.n, args.warmup, args.timeout),
                      measure_messages(caller, args.n, args.warmup, args.timeout)):
            edge_env.emit("latency", tcp_nodelay=args.tcp_nodelay, **event)
            if event["n"] < args.n or event["errors"] or event["timeouts"]:
                failures.append("{} latency: {} of {} samples, {} errors, {} timeouts".format(
                    event["kind"], event["n"], args.n, event["errors"], event["timeouts"]))
    except edge_env.SetupError as e:
        code = edge_env.fatal(str(e))
    except KeyboardInterrupt as e:
        code = edge_env.fatal("interrupted ({})".format(e or "SIGINT"), edge_env.EXIT_FAILED)
    except Exception as e:
        code = edge_env.fatal("unexpected error: " + edge_env.describe(e))
    finally:
        edge_env.shutdown_client(caller_client, args.caller)
        edge_env.shutdown_client(responder_client, args.responder)

    if code != edge_env.EXIT_OK:
        return code
    if failures:
        for f in failures:
            log.error("FAILED %s", f)
        edge_env.emit("failed", failures=failures)
        return edge_env.EXIT_FAILED
    edge_env.emit("ok")
    return edge_env.EXIT_OK


if __name__ == "__main__":
    edge_env.exit_now(main())
