"""A unit of the replayed-run test, installed as a real plugin distribution: a sink that writes
what its context says of the run it works in (`self.context.replays`) into `<folder>/<run>.json`
when it starts, and takes every message it gets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import Message, Params, ReplayedRun, Sink, describe, hookimpl, inp


class SeenParams(Params):
    #: where each run's record of what the unit was told goes
    folder: str = "seen"


SEEN = describe(
    "rp.seen",
    kind="connector",
    summary="Records which run a reprocess replays, as its context says.",
    runtime=f"{__name__}:Seen",
    inputs=[inp("files", "*/*", format="bytes")],
    params=SeenParams,
)


class Seen(Sink):
    def on_start(self) -> None:
        replays = self.context.replays
        assert replays is None or isinstance(replays, ReplayedRun)
        folder = Path(self.params.folder)
        folder.mkdir(parents=True, exist_ok=True)
        told = None if replays is None else dataclasses.asdict(replays)
        (folder / f"{self.context.run['run']}.json").write_text(json.dumps({"replays": told}))

    def process(self, message: Message) -> None:
        pass


@hookimpl
def register_units(register: Any) -> None:
    register(SEEN)
