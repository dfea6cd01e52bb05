"""A unit of the stop-while-restoring tests, installed as a real plugin distribution: a running
sum that keeps its state in memory, whose `restore()` takes its time (as a merge refitting
hundreds of scans does) and notes each call in a file, so a test counts how far a restore got
by what the unit saw."""

from __future__ import annotations

import os
import time
from typing import Any

from asapo_pipelines.sdk import Message, Params, Processor, describe, hookimpl, inp, out


class SumParams(Params):
    #: seconds each restored message takes
    restore_delay: float = 0.0
    #: where each call is noted as "<hook> <number> <pid>", one line per call
    calls: str = "calls.txt"
    #: a file `on_start` waits for, as long as it is absent (as an import of seconds would)
    hold: str = ""


SUM = describe(
    "restoring.sum",
    kind="processor",
    summary="The running sum of the numbers, restored slowly.",
    runtime=f"{__name__}:Sum",
    inputs=[inp("numbers", "test/number")],
    outputs=[out("sums", "test/number")],
    params=SumParams,
)


class Sum(Processor):
    restores_state = True

    def on_start(self) -> None:
        self.total = 0
        self.restored = 0
        if self.params.hold:
            self._note("start", 0)
            while not os.path.exists(self.params.hold):
                time.sleep(0.01)  # deaf to the stop event, as an import is

    def _note(self, hook: str, n: int) -> None:
        fd = os.open(self.params.calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{hook} {n} {os.getpid()}\n".encode())
        finally:
            os.close(fd)

    def restore(self, message: Message) -> None:
        n = message.value["n"]
        self._note("restore", n)
        time.sleep(self.params.restore_delay)  # CPU-bound work, deaf to the stop event
        self.total += n
        self.restored += 1

    def process(self, message: Message) -> Any:
        n = message.value["n"]
        self._note("process", n)
        self.total += n
        return {"n": n, "total": self.total}

    def summary(self) -> dict[str, Any]:
        return {"total": self.total, "restored": self.restored}


@hookimpl
def register_units(register: Any) -> None:
    register(SUM)
