"""Units used by the worker tests: one plugin module with descriptors and runtimes.

In-process tests build a catalog from this module; the subprocess tests install the same source
as a real plugin distribution, so the runtime strings are derived from the module's own name.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.sdk import (
    SUGGESTION_CONTENT_TYPE,
    Agent,
    BadMessage,
    Message,
    Params,
    Processor,
    Sink,
    Source,
    Stream,
    describe,
    hookimpl,
    inp,
    out,
)


class NumbersParams(Params):
    count: int = 10
    start: int = 1
    delay: float = 0.0
    #: move to a new stream (scan) every this many numbers; 0: all in `default`
    scan_size: int = 0
    #: raise after sending this many numbers (0: never)
    fail_after: int = 0


class TagParams(Params):
    fail_every: int = 0
    #: how many attempts of a failing message fail (0: all)
    fail_attempts: int = 0
    #: a failing message is the message's fault (the SDK's BadMessage), not a ValueError
    bad_message: bool = False
    sleep: float = 0.0
    #: SIGKILL the worker's own process once (the first time, remembered in `kill_marker`):
    #: while processing number `kill_at` ("process"), or in the flush of the batch holding it
    #: ("flush": its outputs written, its inputs not yet acknowledged)
    kill_at: int = 0
    kill_in: str = "process"
    kill_marker: str = "killed.marker"


class TotalParams(Params):
    fail_at_end: bool = False


class StartParams(Params):
    calibration: str


NUMBERS = describe(
    "test.numbers",
    kind="connector",
    summary="Emits numbered JSON messages.",
    runtime=f"{__name__}:Numbers",
    outputs=[out("numbers", "test/number")],
    params=NumbersParams,
)
TAG = describe(
    "test.tag",
    kind="processor",
    summary="Tags each number; fails on some if asked.",
    runtime=f"{__name__}:Tag",
    inputs=[inp("numbers", "test/number")],
    outputs=[out("tagged", "test/number")],
    params=TagParams,
)
SPLIT = describe(
    "test.split",
    kind="processor",
    summary="Sends odd and even numbers to two ports.",
    runtime=f"{__name__}:Split",
    inputs=[inp("numbers", "test/number")],
    outputs=[out("odd", "test/number"), out("even", "test/number")],
)
TOTAL = describe(
    "test.total",
    kind="processor",
    summary="Sums each scan and emits the total at its end.",
    runtime=f"{__name__}:Total",
    inputs=[inp("numbers", "test/number")],
    outputs=[out("totals", "test/total")],
    params=TotalParams,
)
NEEDS_FILE = describe(
    "test.needs-file",
    kind="processor",
    summary="Needs a calibration file to start.",
    runtime=f"{__name__}:NeedsFile",
    inputs=[inp("numbers", "test/number")],
    outputs=[out("tagged", "test/number")],
    params=StartParams,
)
BROKEN = describe(
    "test.broken",
    kind="processor",
    summary="Its runtime module does not exist.",
    runtime="no_such_module_anywhere.runtime:Missing",
    inputs=[inp("numbers")],
    outputs=[out("tagged")],
)
DOUBLE = describe(
    "test.double",
    kind="processor",
    summary="Doubles each array.",
    runtime=f"{__name__}:Double",
    inputs=[inp("frames", "image/frame", format="seedee")],
    outputs=[out("doubled", "image/frame", format="seedee")],
)
FULL_DISK = describe(
    "test.full-disk",
    kind="connector",
    summary="A sink whose disk is full.",
    runtime=f"{__name__}:FullDisk",
    inputs=[inp("numbers", "test/number")],
)
NOTED = describe(
    "test.noted",
    kind="processor",
    summary="Passes numbers on with metadata JSON cannot always hold.",
    runtime=f"{__name__}:Noted",
    inputs=[inp("numbers", "test/number")],
    outputs=[out("noted", "test/number")],
)
ADVISOR = describe(
    "test.advisor",
    kind="agent",
    summary="Asks for more scans until the total is large.",
    runtime=f"{__name__}:Advisor",
    inputs=[inp("totals", "test/total")],
    outputs=[out("plans", SUGGESTION_CONTENT_TYPE)],
)


class Numbers(Source):
    def run(self) -> None:
        p = self.params
        for i in range(p.start, p.start + p.count):
            if self.stopping:
                return
            if p.scan_size and i > p.start and (i - p.start) % p.scan_size == 0:
                self.next_stream("numbers", f"scan-{(i - p.start) // p.scan_size + 1}")
            if p.fail_after and i - p.start == p.fail_after:
                raise OSError("detector connection lost")
            self.emit("numbers", {"n": i}, metadata={"n": i}, key=str(i))
            if p.delay:
                self.wait(p.delay)


class Tag(Processor):
    def on_start(self) -> None:
        self.tries: dict[int, int] = {}

    def process(self, message: Message) -> Any:
        n = message.value["n"]
        p = self.params
        if p.sleep:
            time.sleep(p.sleep)
        if n == p.kill_at:
            self.kill_pending = True
            if p.kill_in == "process":
                self._kill_once()
        if p.fail_every and n % p.fail_every == 0:
            self.tries[n] = self.tries.get(n, 0) + 1
            if p.fail_attempts == 0 or self.tries[n] <= p.fail_attempts:
                if p.bad_message:
                    raise BadMessage(f"cannot tag {n}")
                raise ValueError(f"cannot tag {n}")
        return {"n": n, "tagged": True}

    def flush(self) -> None:
        if getattr(self, "kill_pending", False) and self.params.kill_in == "flush":
            self._kill_once()

    def _kill_once(self) -> None:
        marker = Path(self.params.kill_marker)
        if not marker.exists():
            marker.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)


class Split(Processor):
    def process(self, message: Message) -> None:
        n = message.value["n"]
        self.emit("even" if n % 2 == 0 else "odd", {"n": n})


class Total(Processor):
    def on_start(self) -> None:
        self.sums: dict[str, int] = {}

    def on_stream_start(self, stream: Stream) -> None:
        self.sums[stream.name] = 0

    def process(self, message: Message) -> None:
        self.sums[message.stream] = self.sums.get(message.stream, 0) + message.value["n"]

    def on_stream_end(self, stream: Stream) -> None:
        if self.params.fail_at_end:
            raise RuntimeError(f"cannot total {stream.name}")
        self.emit("totals", {"scan": stream.name, "total": self.sums.pop(stream.name, 0)})


class NeedsFile(Processor):
    def on_start(self) -> None:
        import os

        if not os.path.exists(self.params.calibration):
            raise PipelinesError(f"calibration file {self.params.calibration} is missing")

    def process(self, message: Message) -> Any:
        return message.value


class Double(Processor):
    def process(self, message: Message) -> Any:
        return message.value * 2


#: what `Gated.on_start` waits for: a unit still getting ready (a long runtime import)
GATE = threading.Event()


class Gated(Processor):
    def on_start(self) -> None:
        GATE.wait(30)

    def process(self, message: Message) -> Any:
        return message.value


class FullDisk(Sink):
    def process(self, message: Message) -> None:
        pass

    def flush(self) -> None:
        raise OSError(28, "No space left on device")


class Noted(Processor):
    """What unit authors write: a failed fit's NaN, a numpy index (not a Python int)."""

    def process(self, message: Message) -> None:
        import numpy

        n = message.value["n"]
        noted: dict[str, Any] = [
            {"noise": float("nan")},
            {"index": numpy.int64(n)},
            {"noise": 0.5, "index": n},
        ][n % 3]
        self.emit(None, {"n": n}, metadata=noted)


class Advisor(Agent):
    def process(self, message: Message) -> None:
        total = message.value["total"]
        if total < 100:
            self.suggest(
                {
                    "action": "more_scans",
                    "target": message.value["scan"],
                    "arguments": {"scans": 2},
                    "reason": f"total {total} is below 100",
                    "confidence": 0.8,
                    "plan": {"name": "count", "args": [["det"]], "kwargs": {"num": 2}},
                }
            )
        else:
            self.suggest(
                {
                    "action": "stop",
                    "target": message.value["scan"],
                    "reason": "enough counts",
                    "confidence": 0.95,
                }
            )


@hookimpl
def register_units(register: Any) -> None:
    for descriptor in (
        NUMBERS,
        TAG,
        SPLIT,
        TOTAL,
        NEEDS_FILE,
        BROKEN,
        DOUBLE,
        FULL_DISK,
        NOTED,
        ADVISOR,
    ):
        register(descriptor)
