"""A NeXus file found damaged when a run resumes: cut short (`truncate`), bytes overwritten in
the middle, or left by a writer killed with SIGKILL (its "open for write" mark set, its last
writes missing). The writer failed to start ("cannot open ... truncated file"), exit 78, the
run failed, though the docs promise a salvage. Now the complete entries are copied into a
fresh file at the path, the damaged file is kept beside it, the entries of the run the salvage
could not keep are written again from the run's stored inputs, and one log line says how many
of each."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import pytest
from nexus_cli import PIPELINE_BIN, WATCHING_WRITER, pipeline, pipeline_env
from nexus_testdata import DATA, P65_SCANS

from asapo_pipelines_nexus.writer import FILE_ID_ATTR, KEY_ATTR

from leaked_processes import stop_run

pytest.importorskip("asapo_pipelines_xas")

SCANS = (*P65_SCANS, "fe_metal_rt.xdi")


def _entries(path: Path) -> dict[str, str]:
    """Complete entry -> its scan file, read without SWMR (the file is not being written)."""
    with h5py.File(path, "r", locking=False) as f:
        return {
            name: json.loads(group["provenance/source_files/data"][()])[0]
            for name, group in f.items()
            if KEY_ATTR in group.attrs
        }


def _entries_while_written(path: Path) -> int:
    try:
        with h5py.File(path, "r", swmr=True, locking=False) as f:
            return sum(1 for g in f.values() if g is not None and KEY_ATTR in g.attrs)
    except (OSError, KeyError, RuntimeError):
        return 0


def _run_three_scans_and_stop(work: Path, sig: int) -> Path:
    """A watching run that writes the three scans, stopped by `sig` sent to the run and its
    workers (SIGKILL: nothing cleans up after it); the file."""
    (work / "data").mkdir()
    for name in SCANS:
        shutil.copy(DATA / name, work / "data" / name)
    (work / "p.pipeline.yaml").write_text(WATCHING_WRITER.format(name="nexus-damaged"))
    nxs = work / "results" / "scans.nxs"
    out = work / "run.out"
    with open(out, "w") as stdout:
        run = subprocess.Popen(
            [PIPELINE_BIN, "run", "p.pipeline.yaml"],
            cwd=work,
            env=pipeline_env(work),
            stdout=stdout,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while _entries_while_written(nxs) < len(SCANS):
            assert run.poll() is None, "the run ended early: " + out.read_text()
            assert time.monotonic() < deadline, "timed out waiting for the entries"
            time.sleep(0.2)
        if sig == signal.SIGKILL:
            # the workers run in sessions of their own: each is killed by its pid
            for pid in re.findall(r"\] started, pid (\d+)", out.read_text()):
                os.kill(int(pid), signal.SIGKILL)
        run.send_signal(sig)
        run.wait(timeout=120)
    finally:
        stop_run(run, work / "p.pipeline.yaml", env=pipeline_env(work), cwd=work)
    return nxs


def _truncate(nxs: Path) -> None:
    os.truncate(nxs, nxs.stat().st_size * 2 // 3)


def _overwrite_a_header(nxs: Path) -> None:
    """Bytes overwritten over the object header nearest the middle of the file: metadata,
    which HDF5 checksums (raw data overwritten is not detectable by anyone)."""
    data = nxs.read_bytes()
    headers = [i for i in range(len(data)) if data.startswith(b"OHDR", i)]
    middle = min(headers, key=lambda i: abs(i - len(data) // 2))
    with open(nxs, "r+b") as f:
        f.seek(middle + 8)
        f.write(bytes(range(7, 7 + 64)))


DAMAGES = {
    "truncated": (signal.SIGINT, _truncate),
    "overwritten": (signal.SIGINT, _overwrite_a_header),
    "killed": (signal.SIGKILL, _truncate),  # its last writes never reached the disk
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_file_is_salvaged_and_the_lost_entries_rebuilt(tmp_path, damage):
    sig, spoil = DAMAGES[damage]
    nxs = _run_three_scans_and_stop(tmp_path, sig)
    with h5py.File(nxs, "r", swmr=True, locking=False) as f:
        file_id = f.attrs[FILE_ID_ATTR]
    spoil(nxs)
    damaged_bytes = nxs.read_bytes()

    started = time.monotonic()
    done = pipeline(
        tmp_path, "run", "--resume", "--set", "scans.watch=false", "p.pipeline.yaml", timeout=240
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output
    assert time.monotonic() - started < 120, "the writer's start hung on the damaged file"

    # every scan of the run is in the file again, once
    assert sorted(_entries(nxs).values()) == sorted(SCANS)
    with h5py.File(nxs, "r", locking=False) as f:
        assert f.attrs[FILE_ID_ATTR] == file_id  # the salvaged file is the run's file
    kept = sorted(nxs.parent.glob("scans.nxs.damaged-*"))
    assert len(kept) == 1, kept
    assert kept[0].read_bytes() == damaged_bytes  # kept as it was found

    logs = pipeline(tmp_path, "logs", "p.pipeline.yaml", "writer")
    log = logs.stdout + logs.stderr
    said = [line for line in log.splitlines() if "salvaged into a fresh file" in line]
    assert len(said) == 1, log
    count = re.search(r"\): (\d+) entr", said[0])
    assert count is not None, said[0]
    salvaged = int(count.group(1))
    rebuilt = len(SCANS) - salvaged
    assert salvaged < len(SCANS), said[0]  # the damage cost entries, which were rebuilt
    assert (
        f"{'entry' if salvaged == 1 else 'entries'} salvaged into a fresh file at that path, "
        f"{rebuilt} {'entry' if rebuilt == 1 else 'entries'} of run r1 rebuilt from the run's "
        f"stored inputs; the damaged file is kept as results/{kept[0].name}"
    ) in said[0], said[0]


def test_a_file_damaged_beyond_reading_is_refused_with_what_to_do(tmp_path):
    nxs = _run_three_scans_and_stop(tmp_path, signal.SIGINT)
    with open(nxs, "r+b") as f:  # the root group's object header, right after the superblock
        f.seek(48 + 8)
        f.write(bytes(range(7, 7 + 64)))

    started = time.monotonic()
    done = pipeline(
        tmp_path, "run", "--resume", "--set", "scans.watch=false", "p.pipeline.yaml", timeout=240
    )
    assert time.monotonic() - started < 120, "the writer's start hung on the damaged file"
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"nexus.writer cannot write {nxs}: it is damaged (" in done.stderr
    assert "(incorrect metadata checksum after all read attempts)" in done.stderr
    assert "so badly that none of it can be read (" in done.stderr
    assert (
        "; move that file aside (rename it), then `pipeline run --resume "
        f"{tmp_path / 'p.pipeline.yaml'}` writes every entry of run r1 into a new file there "
        "from the run's stored inputs"
    ) in done.stderr, done.stderr
    assert sorted(p.name for p in nxs.parent.iterdir()) == ["scans.nxs", "scans.nxs.lock"]
