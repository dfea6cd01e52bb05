"""Units of the slow-unit test on Redis, installed as a real plugin distribution: a source of
numbers and a processor that takes its time and notes each call it gets in a file, the side
effect a user would see twice if a message were processed twice."""

from __future__ import annotations

import os
from typing import Any

from asapo_pipelines.sdk import Message, Params, Processor, Source, describe, hookimpl, inp, out


class CountParams(Params):
    count: int = 2


class WorkParams(Params):
    #: seconds each message takes
    delay: float = 0.0
    #: where each call is noted as "<number> <pid>", one line per call
    calls: str = "calls.txt"


COUNT = describe(
    "slowredis.count",
    kind="connector",
    summary="Emits the numbers 1 to count.",
    runtime=f"{__name__}:Count",
    outputs=[out("numbers", "test/number")],
    params=CountParams,
)
WORK = describe(
    "slowredis.work",
    kind="processor",
    summary="Takes `delay` seconds per number, noting each call.",
    runtime=f"{__name__}:Work",
    inputs=[inp("numbers", "test/number")],
    outputs=[out("done", "test/number")],
    params=WorkParams,
)


class Count(Source):
    def run(self) -> None:
        for n in range(1, self.params.count + 1):
            self.emit("numbers", {"n": n}, key=str(n))


class Work(Processor):
    def process(self, message: Message) -> Any:
        n = message.value["n"]
        # one short O_APPEND write per call: whole lines even with several replicas
        fd = os.open(self.params.calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{n} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
        self.wait(self.params.delay)
        return {"n": n}


@hookimpl
def register_units(register: Any) -> None:
    register(COUNT)
    register(WORK)
