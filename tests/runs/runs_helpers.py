"""Helpers of the run tests: a copy of the P65 example, and what a store holds."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "p65-xas.pipeline.yaml"
P65_SCANS = ("20K_GOE_Fe_K_240.00000.xdi", "20K_GOE_Fe_K_240.00001.xdi")


def p65_copy(directory: Path) -> Path:
    """The P65 example and its two bundled scans, in `directory`."""
    (directory / "data").mkdir(parents=True)
    for name in P65_SCANS:
        shutil.copy(ROOT / "examples" / "data" / name, directory / "data" / name)
    path = directory / "p65-xas.pipeline.yaml"
    shutil.copy(EXAMPLE, path)
    return path


def store_contents(store: Path) -> dict[tuple[str, str], int]:
    """(data source, stream) -> last id: every message the store holds, by address."""
    from asapo_pipelines.transport import open_transport

    out: dict[tuple[str, str], int] = {}
    with open_transport({"embedded": {"path": str(store), "create": False}}) as t:
        for source in t.data_sources():
            with t.consumer(source, "test-snapshot") as c:
                for info in c.streams():
                    out[(source, info.name)] = info.last_id
    return out


def file_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def read_messages(store: Path, source: str, stream: str = "default") -> list[Any]:
    """(metadata, decoded value) of every message of one stream."""
    from asapo_pipelines.transport import open_transport
    from asapo_pipelines.transport.formats import decode

    with (
        open_transport({"embedded": {"path": str(store), "create": False}}) as t,
        t.consumer(source, "test-reader") as c,
    ):
        last = c.stream_info(stream).last_id
        return [
            (m.metadata, decode(m.payload, m.metadata))
            for m in (c.get_by_id(stream, i) for i in range(1, last + 1))
        ]


def one_sentence(stderr: str) -> str:
    """The error line of a failed command, checked to be the only thing printed."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("error: ")
    return lines[0]
