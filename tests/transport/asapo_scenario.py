"""Runs every transport call against a loopback ASAP::O that is not there (run as a script).

    python asapo_scenario.py refused|silent REQUEST_TIMEOUT

"refused": nothing listens on the port. "silent": a socket accepts connections and never answers.
Prints one JSON object: for each call its outcome (exception class or "ok") and seconds taken,
and for the producer which ids were sent, reported failed or left unconfirmed.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

from asapo_pipelines.transport import TransportError, open_transport


def main(mode: str, request_timeout: float) -> None:
    if mode == "refused":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
    else:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        port = server.getsockname()[1]
        held = []

        def accept_and_stay_silent() -> None:
            while True:
                conn, _ = server.accept()
                held.append(conn)

        threading.Thread(target=accept_and_stay_silent, daemon=True).start()

    transport = open_transport(
        {
            "asapo": {
                "endpoint": f"127.0.0.1:{port}",
                "beamtime": "asapo_test",
                "token_env": "SCENARIO_TOKEN",
                "request_timeout": request_timeout,
            }
        }
    )
    calls: dict[str, dict] = {}

    def timed(name: str, fn, wait: float = 0.0) -> object:
        start = time.monotonic()
        try:
            value = fn()
            outcome = "ok"
        except TransportError as exc:
            value, outcome = None, type(exc).__name__
            if "SCENARIO-SECRET" in str(exc):
                outcome = "token leaked in the error message"
        calls[name] = {"outcome": outcome, "seconds": time.monotonic() - start, "wait": wait}
        return value

    consumer = transport.consumer("src", "grp", lease_seconds=5)
    timed("get_next", lambda: consumer.get_next("s", timeout=0.5), 0.5)
    timed("get_by_id", lambda: consumer.get_by_id("s", 1))
    timed("get_last", lambda: consumer.get_last("s"))
    timed("acknowledge", lambda: consumer.acknowledge("s", 1))
    timed("nack", lambda: consumer.nack("s", 1, delay=1.0))
    timed("streams", consumer.streams)
    timed("stream_info", lambda: consumer.stream_info("s"))
    timed("get_stream_metadata", lambda: consumer.get_stream_metadata("s"))
    consumer.close()

    producer = transport.producer("src")
    sent = []
    for i in range(1, 21):
        mid = timed(f"send{i}", lambda i=i: producer.send("s", b"x" * i, {"i": i}, id=i))
        if mid is not None:
            sent.append(mid)
    timed("flush", lambda: producer.flush(request_timeout * 2), request_timeout * 2)
    timed("finish_stream", lambda: producer.finish_stream("s", last_id=20))
    timed("set_stream_metadata", lambda: producer.set_stream_metadata("s", {"a": 1}))
    timed("close", producer.close)
    report = {
        "calls": calls,
        "sent": sent,
        "failed": [f[1] for f in producer.failed if f[0] == "s"],
        "unconfirmed": [u[1] for u in producer.unconfirmed if u[0] == "s"],
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
