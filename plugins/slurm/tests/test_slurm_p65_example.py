"""The P65 XAS example (5 units: scan files, xraylarch normalisation, merge, convergence agent,
NeXus writer) on a real one-node Slurm, against `pipeline run` of the same file."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from slurm_support import PIPELINE, copy_example, executor, squeue, wait_finished

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("asapo_pipelines_xas") is None
        or importlib.util.find_spec("asapo_pipelines_nexus") is None,
        reason="the P65 example needs the xas and nexus plugins (pip install -e plugins/xas "
        "-e plugins/nexus)",
    ),
    pytest.mark.slow,
]

EXAMPLE = "p65-xas.pipeline.yaml"
#: What differs between two runs of the same file by nature: when, which run, where the file
#: was, and the pipeline file's hash (a Slurm job runs on a delivered copy whose transport
#: path is made absolute, as a Nomad task does), when the producing session began, and where
#: each result was computed (the host and the executor's job, `entry_jobs`).
VARYING = (
    "date",
    "start_time",
    "message_time",
    "run",
    "run_started",
    "session_started",
    "writer_run",
)
VARYING_PATHS = (
    "provenance/pipeline_file",
    "provenance/pipeline_sha256",
    "asapo/metadata",
    "provenance/host",
    "provenance/job/data",
    "decision/time",  # when the agent decided
)
#: what an agent's decision message carries of its own moment: its time and unique id
PLAN_VARYING = ("time", "uid")


def entry_jobs(path: Path) -> set[tuple[str, str, str | None]]:
    """(producing instance, executor, job id) of every entry: where each was computed."""
    import json

    import h5py

    with h5py.File(path, "r") as f:
        found: set[tuple[str, str, str | None]] = set()
        for entry in f.values():
            job = json.loads(entry["provenance/job/data"][()])
            instance = entry["provenance/instance"][()].decode()
            found.add((instance, job["executor"], job.get("id")))
    return found


def nexus_contents(path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(content type, title, {dataset: value}) of every entry, in a stable order.

    Entries are numbered in the order the writer met them, which differs between two runs
    whose units work concurrently; a merge's provenance names its scans' entries, and a
    decision the merge it answers (`decision/based_on`), so those names are replaced by what
    the entry holds (content type and title). The content type of an agent's decision is
    `decision`, told by its `decision` group."""
    import json

    import h5py
    from asapo_pipelines_nexus.writer import is_decision

    entries = []
    with h5py.File(path, "r") as f:
        names = {
            name: f"{entry.attrs['asapo_content_type']}: {entry['title'][()].decode()}"
            for name, entry in f.items()
        }

        def by_content(value: Any) -> Any:
            if not isinstance(value, bytes):
                return value
            # a result's `raw_scans` name when each raw scan's run began, which varies
            value = re.sub(rb'"run_started": "[^"]*"', b'"run_started": null', value)
            return re.sub(
                rb'"entry": "(entry\d+)"',
                lambda m: b'"entry": "%s"' % names.get(m[1].decode(), m[1].decode()).encode(),
                value,
            )

        for entry in f.values():
            values: dict[str, Any] = {}

            def keep(name: str, obj: Any, values: dict[str, Any] = values) -> None:
                if not isinstance(obj, h5py.Dataset):
                    return
                if name.rsplit("/", 1)[-1] in VARYING or name in VARYING_PATHS:
                    return
                if "source_files" in name:  # absolute paths of the scan files
                    return
                value = obj[()]
                if name == "decision/based_on":
                    value = names.get(value.decode(), value.decode())
                elif name == "plan/data":
                    plan = json.loads(value)
                    value = json.dumps({k: v for k, v in plan.items() if k not in PLAN_VARYING})
                values[name] = by_content(value)

            entry.visititems(keep)
            kind = "decision" if is_decision(entry) else str(entry.attrs["asapo_content_type"])
            entries.append((kind, entry["title"][()].decode(), values))
    return sorted(entries, key=lambda e: (e[0], e[1]))


def test_p65_example_on_slurm_gives_the_local_executors_nexus_file(slurm, workdir):
    import numpy as np

    on_slurm = copy_example(EXAMPLE, workdir / "slurm", "data")
    local = copy_example(EXAMPLE, workdir / "local", "data")
    # the local reference runs beside the Slurm deployment: the two share the machine's cores,
    # and the test stays well within its time budget
    env = {**slurm.env, "PATH": f"{Path(PIPELINE).parent}:{slurm.env.get('PATH', '')}"}
    reference = subprocess.Popen(
        [PIPELINE, "run", str(local)],
        cwd=local.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ex = executor(on_slurm)
        jobs = ex.deploy(wait=30)["jobs"]
        assert sorted(jobs) == ["advisor-0", "merge-0", "normalize-0", "scans-0", "writer-0"]
        running = ex.status()
        assert {i.task_id for i in running.instances} == set(jobs.values())
        # the states shown are Slurm's own, and squeue agrees on them
        assert squeue(list(jobs.values()), slurm.env).keys() == set(jobs.values())
        assert {i.state for i in running.instances} <= {
            "running",
            "pending",
            "completing",
            "complete",
        }
        status = wait_finished(ex, timeout=80)
        out, _ = reference.communicate(timeout=80)
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()
    assert status.state == "complete", [(i.unit, i.state, i.detail) for i in status.instances]
    assert reference.returncode == 0, out

    slurm_entries = nexus_contents(on_slurm.parent / "results" / "p65.nxs")
    local_entries = nexus_contents(local.parent / "results" / "p65.nxs")
    assert [(k, t) for k, t, _ in slurm_entries] == [(k, t) for k, t, _ in local_entries]
    # 2 scans, 2 spectra, 2 merges, and the agent's decision on each merge
    kinds = Counter(kind for kind, _, _ in slurm_entries)
    decisions = kinds.pop("decision", 0)
    assert kinds == {"xas/scan": 2, "xas/spectrum": 2, "xas/merged": 2}
    assert decisions == kinds["xas/merged"]
    for (kind, title, got), (_, _, want) in zip(slurm_entries, local_entries, strict=True):
        assert got.keys() == want.keys(), (kind, title)
        for name in got:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{title}: {name}")

    # each entry names the Slurm job of the unit that computed it, as Slurm ran it
    assert entry_jobs(on_slurm.parent / "results" / "p65.nxs") == {
        (unit, "slurm", jobs[f"{unit}-0"]) for unit in ("scans", "normalize", "merge", "advisor")
    }
    assert {e[:2] for e in entry_jobs(local.parent / "results" / "p65.nxs")} == {
        (unit, "local") for unit in ("scans", "normalize", "merge", "advisor")
    }

    # the writer's log comes from its job's output file
    lines = list(ex.logs("writer", stderr=True))
    assert any(f"Slurm job {jobs['writer-0']}" in line for line in lines)
    assert any(f"{len(slurm_entries)} processed" in line for line in lines), lines[-5:]
