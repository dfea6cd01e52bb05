"""`pipeline suggestions` lists the inbox of a store archived read-only after the beamtime, as
`runs`, `streams`, `tail` and `status` show the store itself (tests/faults/test_read_only_store.py):
the listing opened the inbox for writing and failed on the read-only file system. A listing
that would bring queue states up to date says it cannot, in one line, and lists what the inbox
holds. Needs the right to bind-mount (root, as in CI)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from asapo_pipelines_bluesky.inbox import Inbox

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "p65-xas-bluesky.pipeline.yaml"
PIPELINE = [str(Path(sys.executable).parent / "pipeline")]
READ_ONLY = "readonly database"

pytest.importorskip("asapo_pipelines_xas", reason="the P65 units (plugins/xas) are not installed")


def pipeline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PIPELINE, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


@contextlib.contextmanager
def read_only_bind(path: Path) -> Iterator[None]:
    """`path` bind-mounted onto itself read-only, always unmounted again (`chmod` would not
    stop root); as tests/faults/test_read_only_store.py does it."""
    if shutil.which("mount") is None:
        pytest.skip("remounting a folder read-only needs `mount`")
    done = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"this user may not bind-mount ({done.stderr.decode().strip()}); CI is root")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield
    finally:
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def _files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_the_inbox_of_a_read_only_store_is_listed(run_unit, make_suggestion, tmp_path) -> None:
    p65 = tmp_path / EXAMPLE.name
    # a server nobody answers at: the listing must not need one
    p65.write_text(EXAMPLE.read_text().replace("tcp://localhost:60615", "tcp://127.0.0.1:9"))
    store = tmp_path / ".pipeline-data"
    inbox_path = store / "suggestions.sqlite"
    run_unit(
        "bluesky.queue",
        [make_suggestion(target="GOE"), make_suggestion(target="CU")],
        params={
            "control_address": "tcp://127.0.0.1:9",
            "mode": "approve",
            "inbox": str(inbox_path),
        },
    )
    before = _files_in(store)
    listings = {
        args: pipeline("suggestions", p65.name, *args, cwd=tmp_path) for args in [(), ("--json",)]
    }
    for args, done in listings.items():
        assert done.returncode == 0, (args, done.stdout + done.stderr)
    for target in ("GOE", "CU"):
        assert target in listings[()].stdout, listings[()].stdout
    assert _files_in(store) == before  # looking left nothing behind

    with read_only_bind(store):
        for args, seen in listings.items():
            done = pipeline("suggestions", p65.name, *args, cwd=tmp_path)
            said = done.stdout + done.stderr
            assert done.returncode == 0, (args, said)
            assert "Traceback" not in said, (args, said)
            assert done.stdout == seen.stdout, args
            assert done.stderr == seen.stderr, args
        # an approve writes: it keeps its one sentence
        uid = Inbox(inbox_path, read_only=True).entries()[0].uid
        approved = pipeline("suggestions", p65.name, "approve", uid[:8], cwd=tmp_path)
        assert approved.returncode != 0, approved.stdout + approved.stderr
        assert "Traceback" not in approved.stderr, approved.stderr

    # a suggestion the queue server holds: the listing would ask it, and write what it says
    with contextlib.closing(Inbox(inbox_path)) as inbox:
        inbox.set_state(uid, "submitted", "queued as item 1")
    with read_only_bind(store):
        done = pipeline("suggestions", p65.name, cwd=tmp_path)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, said
    assert "Traceback" not in said, said
    for shown in ("submitted", "GOE", "CU"):
        assert shown in done.stdout, done.stdout
    assert "not asked of the queue server" in said, said
