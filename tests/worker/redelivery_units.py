"""A unit for the redelivery count tests, installed as a real plugin distribution: a sink
with no outputs whose commit (`flush`) of the batch holding number `hold_at` never returns
in the first process that gets there (noted in `marker`), so that the test can kill the worker
with a batch processed and not acknowledged, at a moment its last status record describes."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import Message, Params, Sink, describe, hookimpl, inp


class HoldParams(Params):
    #: the number whose batch's commit hangs
    hold_at: int = 0
    #: written when the commit hangs: a later process of the unit does not hang again
    marker: str = "held.marker"


HOLD = describe(
    "redo.hold",
    kind="connector",
    summary="Takes numbers, writes nothing; hangs once in the commit of one batch.",
    runtime=f"{__name__}:Hold",
    inputs=[inp("numbers", "test/number")],
    params=HoldParams,
)


class Hold(Sink):
    def on_start(self) -> None:
        self.holding = False

    def process(self, message: Message) -> None:
        if message.value["n"] == self.params.hold_at:
            self.holding = True

    def flush(self) -> None:
        marker = Path(self.params.marker)
        if self.holding and not marker.exists():
            marker.write_text(f"held {os.getpid()}")
            threading.Event().wait()  # until the test kills the process


@hookimpl
def register_units(register: Any) -> None:
    register(HOLD)
