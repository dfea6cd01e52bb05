"""Units of the foreground `pipeline run` tests, installed as a real plugin distribution: a
source of numbers, a sink that notes in a file when it is closed (what a unit with state to
close, the NeXus writer, does at a graceful stop and never after SIGKILL), and a sink that
logs warnings through its logger."""

from __future__ import annotations

import os
from typing import Any

from asapo_pipelines.sdk import Message, Params, Sink, Source, describe, hookimpl, inp, out


class TicksParams(Params):
    #: how many numbers; 0: until the worker is stopped
    count: int = 0
    #: seconds between two numbers
    interval: float = 0.0


class CloserParams(Params):
    #: where "opened <pid>" and "closed <pid>" are noted, one line each
    marker: str = "marker.txt"


class WarnerParams(Params):
    #: logged once as a warning when the unit starts ("": nothing)
    startup_warning: str = ""
    #: a warning for every message (and an INFO line, which is not relayed)
    warn_each: bool = False


TICKS = describe(
    "fg.ticks",
    kind="connector",
    summary="Emits the numbers 1 to count, or until stopped.",
    runtime=f"{__name__}:Ticks",
    outputs=[out("numbers", "test/number")],
    params=TicksParams,
)
CLOSER = describe(
    "fg.closer",
    kind="connector",
    summary="Takes numbers; notes when it is opened and closed.",
    runtime=f"{__name__}:Closer",
    inputs=[inp("numbers", "test/number")],
    params=CloserParams,
)
WARNER = describe(
    "fg.warner",
    kind="connector",
    summary="Takes numbers; logs warnings.",
    runtime=f"{__name__}:Warner",
    inputs=[inp("numbers", "test/number")],
    params=WarnerParams,
)


def note(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{text} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


class Ticks(Source):
    def run(self) -> None:
        n = 0
        while not self.stopping and (self.params.count == 0 or n < self.params.count):
            n += 1
            self.emit("numbers", {"n": n}, key=str(n))
            if self.params.interval:
                self.wait(self.params.interval)


class Closer(Sink):
    def on_start(self) -> None:
        note(self.params.marker, "opened")

    def process(self, message: Message) -> None:
        pass

    def on_shutdown(self) -> None:
        note(self.params.marker, "closed")


class Warner(Sink):
    def on_start(self) -> None:
        if self.params.startup_warning:
            self.log.warning(self.params.startup_warning)

    def process(self, message: Message) -> None:
        if self.params.warn_each:
            n = message.value["n"]
            self.log.info("took value %d", n)
            self.log.warning("value %d looks odd", n)


@hookimpl
def register_units(register: Any) -> None:
    register(TICKS)
    register(CLOSER)
    register(WARNER)
