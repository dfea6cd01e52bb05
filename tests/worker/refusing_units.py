"""A source whose emits its output port refuses, or that reports an item malformed, for
tests/worker/test_source_refused_emit.py: installed there as a real plugin distribution, so the
runtime strings derive from the module's own name."""

from __future__ import annotations

from typing import Any

from asapo_pipelines.sdk import Message, Params, Sink, Source, describe, hookimpl, inp, out


class RefuseParams(Params):
    count: int = 6
    #: the number emitted as a Python set, which a json port cannot hold (0: none)
    set_at: int = 0
    #: the number emitted on a port the unit does not have (0: none)
    unknown_port_at: int = 0
    #: the number reported as a malformed item with `report_error`, not emitted (0: none)
    report_at: int = 0


class CollectParams(Params):
    path: str = "collected.txt"


REFUSE = describe(
    "refuse.numbers",
    kind="connector",
    summary="Emits numbers; one as a set, or on a port it does not have, if asked.",
    runtime=f"{__name__}:Numbers",
    outputs=[out("numbers")],
    params=RefuseParams,
)
COLLECT = describe(
    "refuse.collect",
    kind="connector",
    summary="Writes each number it receives as a line of a text file.",
    runtime=f"{__name__}:Collect",
    inputs=[inp("numbers")],
    params=CollectParams,
)


class Numbers(Source):
    def run(self) -> None:
        p = self.params
        for i in range(1, p.count + 1):
            if i == p.set_at:
                self.emit("numbers", {i}, key=str(i))
            elif i == p.report_at:
                self.report_error(ValueError(f"item {i} is malformed"), key=str(i))
            elif i == p.unknown_port_at:
                self.emit("no-such-port", {"n": i}, key=str(i))
            else:
                self.emit("numbers", {"n": i}, key=str(i))


class Collect(Sink):
    def on_start(self) -> None:
        self.lines: list[str] = []

    def process(self, message: Message) -> None:
        self.lines.append(str(message.value["n"]))

    def flush(self) -> None:
        with open(self.params.path, "a") as f:
            f.writelines(line + "\n" for line in self.lines)
        self.lines.clear()


@hookimpl
def register_units(register: Any) -> None:
    register(REFUSE)
    register(COLLECT)
