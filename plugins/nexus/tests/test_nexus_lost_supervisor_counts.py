"""After the supervisor of a P65 batch is killed outright (`kill -9` of the foreground `pipeline
run`), the next `pipeline run` stops the workers it left running and ends their session from
their final status records: the run's counts and the writer's whole-run summary say what the
NeXus file holds.

Before, that start ended the lost session from the workers' last records while they still
ran, and its supervisor then killed them outright: what they processed after that record was
in no count (QA s46 P6: `entries_written 73` beside `entries_in_file 78`)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import pytest
from nexus_cli import PIPELINE_BIN, pipeline_env, pipeline_ok
from nexus_testdata import DATA, P65_SCANS

from asapo_pipelines_nexus.writer import KEY_ATTR, is_decision

pytest.importorskip("asapo_pipelines_xas")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"
#: repeats of the first scan, each with its own noise: a batch long enough that the workers are
#: busy when the supervisor is killed and when the next start stops them
REPEATS = 24
#: the P65 data files' transmission counts column (SOURCES.md: `it`)
IT_COLUMN = 11


def _write_repeats(data: Path) -> None:
    """Copies of the first P65 scan whose transmission counts carry 2e-4 relative noise each:
    distinct scans of one sample, as a beamline records repeats."""
    rng = random.Random(1)
    lines = (DATA / P65_SCANS[0]).read_text().split("\n")
    for k in range(2, 2 + REPEATS):
        out = []
        for line in lines:
            if line and not line.startswith("#"):
                fields = line.split()
                fields[IT_COLUMN] = repr(float(fields[IT_COLUMN]) * (1 + 2e-4 * rng.gauss(0, 1)))
                line = " ".join(fields)
            out.append(line)
        (data / f"20K_GOE_Fe_K_240.{k:05d}.xdi").write_text("\n".join(out))


def _decisions(path: Path) -> int:
    """The complete entries of the file that hold an agent's decision."""
    with h5py.File(path, "r", swmr=True, locking=False) as f:
        complete = [g for g in f.values() if g is not None and KEY_ATTR in g.attrs]
        return sum(1 for g in complete if is_decision(g))


def _entries(path: Path) -> int:
    """The complete entries of the NeXus file (their key is set last); 0 while it cannot be
    read yet."""
    try:
        with h5py.File(path, "r", swmr=True, locking=False) as f:
            return sum(1 for g in f.values() if g is not None and KEY_ATTR in g.attrs)
    except (OSError, KeyError):
        return 0


def _summary(stdout: str, unit: str) -> dict[str, str]:
    line = next(x for x in stdout.splitlines() if x.startswith(f"{unit}: "))
    return dict(re.findall(r"(\w+) ([^,]+)", line.removeprefix(f"{unit}: ")))


def _orphans(run_dir: Path) -> list[int]:
    state = json.loads((run_dir / "state.json").read_text())
    return [int(u["pid"]) for u in state["units"] if u.get("pid")]


def test_a_run_after_a_killed_supervisor_counts_what_its_workers_wrote(tmp_path: Path) -> None:
    work = tmp_path / "p65"
    (work / "data").mkdir(parents=True)
    for name in P65_SCANS:
        shutil.copy(DATA / name, work / "data" / name)
    _write_repeats(work / "data")
    shutil.copy(EXAMPLE, work / "p.pipeline.yaml")
    nexus = work / "results" / "p65.nxs"
    run_dir = work / ".pipeline-data" / "runs" / "p65-xas"

    first = subprocess.Popen(
        [PIPELINE_BIN, "run", "p.pipeline.yaml"],
        cwd=work,
        env=pipeline_env(work),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    orphans: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while _entries(nexus) < 3:  # the writer is under way, most of the batch still to do
            assert first.poll() is None, "the first run ended before it was killed"
            assert time.monotonic() < deadline, "the writer wrote nothing within 300 s"
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)  # the supervisor: the workers go on without it
        first.wait()
        orphans = _orphans(run_dir)
        assert len(orphans) >= 4, orphans

        done = pipeline_ok(work, "run", "p.pipeline.yaml")
    finally:
        for pid in orphans:  # a failed assertion above leaves none of them running
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    # the source may finish its files and exit between the kill and the next start: the start
    # stops those still running (the writer, with most of the batch to write, is one of them)
    said = re.search(
        r"stopped (\d+) tasks? left running by the lost run of job p65-xas", done.stdout
    )
    assert said is not None, done.stdout
    assert 1 <= int(said.group(1)) <= len(orphans), (said.group(0), orphans)

    in_file = _entries(nexus)
    # each scan, its spectrum and its merge, and every decision the agent sent: none lost
    plans = pipeline_ok(work, "tail", "p.pipeline.yaml", "plans", "--all", "--json").stdout
    decisions = _decisions(nexus)
    assert decisions == len(plans.splitlines()) >= 1
    assert in_file - decisions == 3 * (2 + REPEATS)
    writer = _summary(done.stdout, "writer")
    assert int(writer["entries_in_file"]) == in_file
    assert int(writer["entries_written"]) == in_file, writer

    listed = json.loads(pipeline_ok(work, "runs", "p.pipeline.yaml", "--json").stdout)
    (run,) = listed["runs"]
    assert run["counts"]["writer"]["processed"] == in_file, run["counts"]
    for unit in ("normalize", "merge", "advisor"):
        assert run["counts"][unit]["processed"] == 2 + REPEATS, (unit, run["counts"])
    lost = run["session_list"][0]
    assert lost["state"] == "lost"
    assert "the counts are their final status records" in lost["message"]
