"""A source for the `core.jsonl-sink` and keyed-output tests, installed as a real plugin
distribution: like a SAXS beamline's integrator it sends, for each `*.txt` file of a folder, a
profile of numbers on a `json_arrays` port (binary on the wire), keyed by the file's name as
docs/unit-authors.md advised before it said to key by the content's version."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import Params, Source, describe, hookimpl, out


class ProfileParams(Params):
    directory: str = "data"
    #: what the key holds: the file's name alone, or its name and content (its version)
    key: str = "name"
    #: after every file, send the first again doubled and the second again as it was, under
    #: the keys they were sent with (a source that reads a file again within one session)
    again: bool = False


PROFILES = describe(
    "prof.profiles",
    kind="connector",
    summary="Sends each text file's numbers as a profile, keyed by the file.",
    runtime=f"{__name__}:Profiles",
    outputs=[out("profiles", "saxs/profile", format="json_arrays")],
    params=ProfileParams,
)


class Profiles(Source):
    def run(self) -> None:
        for path in sorted(Path(self.params.directory).glob("*.txt")):
            text = path.read_text()
            values = [float(v) for v in text.split()]
            version = hashlib.sha256(text.encode()).hexdigest()[:16]
            key = path.name if self.params.key == "name" else f"{path.name}@{version}"
            self.emit("profiles", {"file": path.name, "intensity": values}, key=key)
        if self.params.again:
            first, second = sorted(Path(self.params.directory).glob("*.txt"))[:2]
            doubled = [2 * float(v) for v in first.read_text().split()]
            self.emit("profiles", {"file": first.name, "intensity": doubled}, key=first.name)
            same = [float(v) for v in second.read_text().split()]
            self.emit("profiles", {"file": second.name, "intensity": same}, key=second.name)


@hookimpl
def register_units(register: Any) -> None:
    register(PROFILES)
