#!/usr/bin/env python3
"""Python port of the seed's C# Producer (mill5james/IoTEdgeMethodVsMessage; its contract is in
docs/protocol.md#the-seeds-wire-contract).

- direct method ``GetTimeMethod``  -> status 200, payload ``{"UtcTime": "<round-trip UTC>"}``
  (500 on an internal error; other method names get 501, as the C# SDK does without a handler)
- input ``GetTimeMessage``          -> message on output ``GetTimeMessage``, body
  ``{"UtcTime":"..."}``, correlation id = the incoming one; W3C ``traceparent``/``tracestate``
  application properties are copied when present (docs/protocol.md#the-seeds-wire-contract)

Difference that cannot be ported: the C# SDK PUBACKs an input only after the handler has sent
its reply; the Python SDK (paho) acknowledges on receipt.

stdout (JSON lines): {"event":"ready","module":M,"device":D}
                     {"event":"summary","methods":N,"messages":N}   (always, also after errors)
                     {"event":"fatal","error":"...","exit_code":N}   (on failure)
Exit 0 after --duration or on SIGTERM/SIGINT; 2 on setup errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time

import edge_env
from timefmt import format_roundtrip, now_ns

METHOD_NAME = "GetTimeMethod"
INPUT_NAME = OUTPUT_NAME = "GetTimeMessage"
TRACE_PROPERTIES = ("traceparent", "tracestate")

log = logging.getLogger("seed_producer")


class Producer:
    def __init__(self, client, send_timeout: float) -> None:
        self.client = client
        self.send_timeout = send_timeout
        self._lock = threading.Lock()
        self.methods = 0
        self.messages = 0
        self._interval_methods = 0  # reset by the periodic report, like the seed's Interlocked.Exchange
        self._interval_messages = 0

    @staticmethod
    def utc_time_payload() -> dict:
        return {"UtcTime": format_roundtrip(now_ns())}

    def on_method(self, request) -> None:
        from azure.iot.device import MethodResponse

        if request.name != METHOD_NAME:
            log.warning("unhandled method %r", request.name)
            status, payload = 501, {"message": "method {} not implemented".format(request.name)}
        else:
            try:
                status, payload = 200, self.utc_time_payload()
                with self._lock:
                    self.methods += 1
                    self._interval_methods += 1
            except Exception as e:  # seed: MethodResponse(500)
                log.error("GetTimeMethod failed: %s", edge_env.describe(e))
                status, payload = 500, None
        try:
            self.client.send_method_response(MethodResponse.create_from_method_request(request, status, payload))
        except Exception as e:
            log.error("sending the method response failed: %s", edge_env.describe(e))

    def on_message(self, message) -> None:
        from azure.iot.device import Message

        if message.input_name != INPUT_NAME:
            log.warning("ignoring message on input %r", message.input_name)
            return
        try:
            # Same bytes as JsonConvert.SerializeObject(new { UtcTime = DateTime.UtcNow }).
            body = json.dumps(self.utc_time_payload(), separators=(",", ":"))
            reply = Message(body)
            reply.correlation_id = message.correlation_id
            for key in TRACE_PROPERTIES:
                if key in message.custom_properties:
                    reply.custom_properties[key] = message.custom_properties[key]
            edge_env.bounded(self.client.send_message_to_output, self.send_timeout,
                             "send " + OUTPUT_NAME, reply, OUTPUT_NAME)
            with self._lock:
                self.messages += 1
                self._interval_messages += 1
        except Exception as e:  # seed: MessageResponse.Abandoned (nothing to do over paho)
            log.error("GetTimeMessage reply failed: %s", edge_env.describe(e))

    def report_interval(self) -> None:
        """The seed's minute line: "{0:O} - {1} Method calls, {2} Message calls " (to stderr)."""
        with self._lock:
            m, g = self._interval_methods, self._interval_messages
            self._interval_methods = self._interval_messages = 0
        log.info("%s - %d Method calls, %d Message calls", format_roundtrip(now_ns()), m, g)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    edge_env.add_common_args(parser)
    parser.add_argument("--module-id", default="producer", help="module identity to connect as (default producer)")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="run this long, then exit 0 (default: until SIGTERM/SIGINT)")
    parser.add_argument("--report-interval", type=float, default=60.0, metavar="SECONDS",
                        help="period of the seed's 'N Method calls, N Message calls' log line (default 60)")
    parser.add_argument("--send-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="bound for sending one reply message (default 10)")
    args = parser.parse_args(argv)
    edge_env.apply_process_options(args)

    stop = threading.Event()
    edge_env.stop_on_signals(stop)
    client = None
    producer = None
    code = edge_env.EXIT_OK
    try:
        ids = edge_env.load_identities(args.state_dir)
        client = edge_env.create_module_client(ids, args.module_id)
        producer = Producer(client, args.send_timeout)
        for attr, handler in (("on_method_request_received", producer.on_method),
                              ("on_message_received", producer.on_message)):
            try:
                edge_env.set_handler(client, attr, handler, args.connect_timeout, args.module_id)
            except Exception as e:
                raise edge_env.SetupError("setting {} failed: {}".format(attr, edge_env.describe(e)))
        edge_env.emit("ready", module=args.module_id, device=ids.device_id)

        deadline = None if args.duration is None else time.monotonic() + args.duration
        next_report = time.monotonic() + args.report_interval
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now >= next_report:
                producer.report_interval()
                next_report += args.report_interval
            wait = next_report - now if deadline is None else min(next_report, deadline) - now
            stop.wait(max(0.0, min(wait, 1.0)))
    except edge_env.SetupError as e:
        code = edge_env.fatal(str(e))
    except Exception as e:
        code = edge_env.fatal("unexpected error: " + edge_env.describe(e))
    finally:
        edge_env.shutdown_client(client, args.module_id)
        edge_env.emit("summary", methods=producer.methods if producer else 0,
                      messages=producer.messages if producer else 0)
    return code


if __name__ == "__main__":
    edge_env.exit_now(main())
