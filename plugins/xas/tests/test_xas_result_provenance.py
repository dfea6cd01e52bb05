"""A NeXus entry says which session of which pipeline's run made its result: the pipeline file
and hash, the `--set` overrides and the params of that session, also when the writer stores
it in a later session under an edited file, or reads it from another pipeline's stream; and
`pipeline runs --json` lists every session, so an entry's fingerprint and session resolve."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import pytest
from xas_procs import pipeline_command, wait_until, write_pipeline
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

# the results are read from the NeXus writer's file: the XAS plugin's own session (xas with
# the core only) has no writer, the session of all plugins runs these
pytest.importorskip("asapo_pipelines_nexus", reason="needs the NeXus writer plugin")


def cli(pipeline: Path, command: str, *args: str) -> dict[str, Any]:
    done = call(pipeline, command, "--json", *args)
    return dict(json.loads(done.stdout))


def call(
    pipeline: Path, command: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = pipeline_command(pipeline, command, *args)
    assert done.returncode == 0 or not check, done.stdout + done.stderr
    return done


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_text(encoding="utf-8").encode()).hexdigest()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def chain(writer: dict[str, Any] | None = None) -> dict[str, Any]:
    units: dict[str, Any] = {
        "scans": {
            "unit": "xas.scan-files",
            "params": {"directory": "data", "pattern": "*.xdi"},
            "outputs": {"scans": "raw-scans"},
        },
        "normalize": {
            "unit": "xas.normalize",
            "params": REFERENCE_SETTINGS,
            "inputs": {"scans": "raw-scans"},
            "outputs": {"spectra": "spectra"},
        },
    }
    if writer is not None:
        units["writer"] = writer
    return units


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def spectra_entries(path: Path) -> list[dict[str, Any]]:
    """What each spectrum entry's provenance says, as a reader sees it."""
    out = []
    with h5py.File(path, "r", locking=False) as f:
        for entry in f.values():
            if entry.attrs.get("asapo_content_type") != "xas/spectrum":
                continue
            prov = entry["provenance"]
            fields = {k: _text(v[()]) for k, v in prov.items() if isinstance(v, h5py.Dataset)}
            for note in ("parameters", "overrides"):
                if note in prov:
                    fields[note] = json.loads(prov[f"{note}/data"][()])
            out.append(fields)
    return out


def test_a_result_stored_in_a_later_session_carries_the_session_that_made_it(tmp_path):
    shutil.copytree(DATA, tmp_path / "data", ignore=lambda d, names: set(names) - set(P65_SCANS))
    # session 1: the spectra are made under file A with an override, no writer yet
    pipeline = write_pipeline(tmp_path, "p65", chain())
    first_sha = sha256(pipeline)
    cli(pipeline, "run", "--set", "normalize.autobk.rbkg=1.1")
    # session 2: the file gains a writer, the override is dropped; the writer stores the
    # spectra session 1 made
    writer = {
        "unit": "nexus.writer",
        "params": {"file": "results/p65.nxs"},
        "inputs": {"spectra": "spectra"},
    }
    write_pipeline(tmp_path, "p65", chain(writer))
    assert sha256(pipeline) != first_sha
    cli(pipeline, "run", "--resume")

    entries = spectra_entries(tmp_path / "results" / "p65.nxs")
    assert len(entries) == len(P65_SCANS)
    for entry in entries:
        assert entry["pipeline_sha256"] == first_sha
        assert entry["parameters"]["autobk"]["rbkg"] == 1.1
        assert entry.get("overrides") == {"normalize.autobk.rbkg": 1.1}
    # `pipeline runs --json` lists both sessions: each entry's session and fingerprint
    # resolve there to the file and params it was made with
    (run,) = cli(pipeline, "runs")["runs"]
    first, second = run["session_list"]
    assert (first["file_sha256"], second["file_sha256"]) == (first_sha, sha256(pipeline))
    assert second["file"] == str(pipeline.resolve())
    assert (first["overrides"], second["overrides"]) == ({"normalize.autobk.rbkg": 1.1}, {})
    for entry in entries:
        assert entry["session_started"] == iso(first["began"])
        made = {c["fingerprint"]: c for c in first["configurations"].values()}
        assert made[entry["fingerprint"]]["params"]["autobk"]["rbkg"] == 1.1


def written(pipeline: Path) -> Any:
    done = call(pipeline, "status", "--json", check=False)
    if done.returncode != 0:
        return None  # the detached run's workers are still starting
    units = json.loads(done.stdout)["units"]
    summary = next((u.get("summary") for u in units if u["task"] == "writer"), None)
    return (summary or {}).get("entries_written")  # none before the writer's first status


def test_a_writer_of_another_pipelines_stream_records_that_pipelines_run(tmp_path):
    shutil.copytree(DATA, tmp_path / "data", ignore=lambda d, names: set(names) - set(P65_SCANS))
    producer = write_pipeline(tmp_path, "p65", chain())
    cli(producer, "run")
    (made,) = cli(producer, "runs")["runs"]
    archive = write_pipeline(
        tmp_path,
        "p65-archive",
        {
            "writer": {
                "unit": "nexus.writer",
                "params": {"file": "results/archive.nxs"},
                "inputs": {"spectra": "p65.r1.spectra"},
            }
        },
        streams={"p65.r1.spectra": {"external": True, "content_type": "xas/spectrum"}},
    )
    # an external stream has no end in the archive's run: it runs until stopped
    call(archive, "run", "--detach")
    try:
        assert wait_until(lambda: written(archive) == len(P65_SCANS))
    finally:
        call(archive, "stop")

    entries = spectra_entries(tmp_path / "results" / "archive.nxs")
    assert len(entries) == len(P65_SCANS)
    for entry in entries:
        assert (entry["pipeline"], entry["run"]) == ("p65", "r1")
        assert entry["pipeline_sha256"] == sha256(producer)
        assert entry["pipeline_file"] == str(producer.resolve())
        assert entry["run_started"] == iso(made["started"])
        assert entry["unit"] == "xas.normalize"
        assert entry["parameters"]["autobk"]["rbkg"] == REFERENCE_SETTINGS["autobk"]["rbkg"]
        assert (entry["writer_pipeline"], entry["writer_run"]) == ("p65-archive", "r1")
