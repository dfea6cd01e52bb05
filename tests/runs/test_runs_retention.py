"""Run identity across retention: `pipeline prune --older-than` keeps the run records, so the
next run gets the next id and its results reach the NeXus file; a deleted store starts again at
r1, and the writer still tells the new r1 from the old one. And `pipeline runs` counts the
errors the error stream holds, not the re-reports of a resumed session."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from runs_helpers import P65_SCANS, p65_copy

from helpers import run_pipeline

FILE = "p65-xas.pipeline.yaml"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def spectrum_e0(nxs: Path) -> list[tuple[str, str, float]]:
    """(run, scan file, e0) of every spectrum entry, in entry order."""
    h5py = pytest.importorskip("h5py")
    out = []
    with h5py.File(nxs, "r") as f:
        names = sorted(f, key=lambda n: int(n.removeprefix("entry")))
        for entry in (f[n] for n in names):
            if _text(entry.attrs["asapo_content_type"]) == "xas/spectrum":
                title = _text(entry["title"][()]).partition("normalised ")[2]
                e0 = float(entry["process/results/e0"][()])
                out.append((_text(entry.attrs["asapo_run"]), title, round(e0, 2)))
    return out


def kinds_written(nxs: Path, before: int) -> dict[str, int]:
    """How many entries of each kind follow the first `before` ones: the content type, or
    `decision` for an agent's decision (an entry that holds no data)."""
    h5py = pytest.importorskip("h5py")
    from asapo_pipelines_nexus.writer import is_decision

    out: dict[str, int] = {}
    with h5py.File(nxs, "r") as f:
        names = sorted(f, key=lambda n: int(n.removeprefix("entry")))[before:]
        for entry in (f[n] for n in names):
            kind = "decision" if is_decision(entry) else _text(entry.attrs["asapo_content_type"])
            out[kind] = out.get(kind, 0) + 1
    return out


def entry_count(nxs: Path) -> int:
    h5py = pytest.importorskip("h5py")
    with h5py.File(nxs, "r") as f:
        return len(f)


def written_of(stdout: str) -> int:
    """The writer's `entries_written` in a run's summary."""
    return int(re.search(r"^writer: .*\bentries_written (\d+), ", stdout, re.M).group(1))


def suggestions_of(stdout: str) -> int:
    return int(re.search(r"^advisor: suggestions (\d+)", stdout, re.M).group(1))


@pytest.mark.slow
def test_new_data_after_prune_or_a_deleted_store_reaches_the_nexus_file(tmp_path):
    pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")
    pytest.importorskip("asapo_pipelines_nexus", reason="needs the NeXus plugin (plugins/nexus)")
    p65_copy(tmp_path)
    store, nxs = tmp_path / ".pipeline-data", tmp_path / "results" / "p65.nxs"
    first = run_pipeline("run", FILE, cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr
    written = spectrum_e0(nxs)
    assert [entry[:2] for entry in written] == [("r1", P65_SCANS[0]), ("r1", P65_SCANS[1])]
    # the pipeline's own results of r1 are the references: scan 1's E0 differs from scan 0's
    e0_scan0, e0_scan1 = written[0][2], written[1][2]
    assert e0_scan0 != e0_scan1

    pruned = run_pipeline("prune", str(store), "--older-than", "0s", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert "p65-xas.runs/" not in pruned.stdout
    assert "kept the run records p65-xas.runs" in pruned.stdout
    assert " r1 " in run_pipeline("runs", FILE, cwd=tmp_path).stdout

    # new data under an old name: a new run (not a resume of pruned r1), written as such
    shutil.copy(tmp_path / "data" / P65_SCANS[1], tmp_path / "data" / P65_SCANS[0])
    held = entry_count(nxs)
    second = run_pipeline("run", FILE, cwd=tmp_path, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "run r2 of pipeline p65-xas starts" in second.stdout + second.stderr
    # the two files now hold the same data: both scans and spectra are written, and one merge
    # (a copy of a scan changes nothing merged, and makes no new merge), with the agent's
    # decisions on the merges
    new = {"xas/scan": 2, "xas/spectrum": 2, "xas/merged": 1}
    new["decision"] = suggestions_of(second.stdout)
    assert kinds_written(nxs, held) == new
    assert written_of(second.stdout) == sum(new.values())
    assert spectrum_e0(nxs)[2:] == [("r2", P65_SCANS[0], e0_scan1), ("r2", P65_SCANS[1], e0_scan1)]

    # the store deleted: ids start again at r1, and this r1 is not the first one
    shutil.rmtree(store)
    held = entry_count(nxs)
    third = run_pipeline("run", FILE, cwd=tmp_path, timeout=300)
    assert third.returncode == 0, third.stderr
    assert "run r1 of pipeline p65-xas starts" in third.stdout + third.stderr
    new["decision"] = suggestions_of(third.stdout)
    assert kinds_written(nxs, held) == new
    assert written_of(third.stdout) == sum(new.values())
    assert "duplicates_skipped 0" in third.stdout
    assert [row[0] for row in spectrum_e0(nxs)] == ["r1", "r1", "r2", "r2", "r1", "r1"]


def test_prune_by_age_refuses_to_drop_run_records_by_name(tmp_path):
    p65_copy(tmp_path)
    from asapo_pipelines.transport import open_transport

    store = tmp_path / ".pipeline-data"
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("p65-xas.runs") as p:
        p.send("index", b"{}", {})
        p.flush()
    out = run_pipeline("prune", str(store), "--older-than", "0s", "--source", "p65-xas.runs")
    assert out.returncode != 0
    assert "age retention keeps" in out.stderr
    assert "--run RUN" in out.stderr


def _report(transport, run_id: str, key: str) -> None:
    """What a worker's `_send_error` writes: one record in its instance's error stream."""
    meta = {"provenance": {"unit": "p65-xas/scans", "key": key, "run": run_id}}
    with transport.producer("p65-xas.errors") as producer:
        producer.send("scans", b'{"error": "malformed"}', meta)
        producer.flush()


def test_runs_counts_the_errors_the_error_stream_holds_after_a_resume(tmp_path):
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import open_transport

    with open_transport({"embedded": {"path": str(tmp_path / "store")}}) as transport:
        store = RunStore(transport, "p65-xas")
        run = store.begin(pipeline_file=None, text="x", configurations={}, overrides={})
        for name in ("bad1.xdi", "bad2.xdi"):
            _report(transport, run.id, f"scans|error|key:{name}")
        _report(transport, "r0", "scans|error|key:other-run.xdi")  # another run's
        store.end(run, "stopped", counts={"scans": {"processed": 2, "errors": 2}})
        # the resumed session reads both malformed files again: reported, stored once
        run = store.resume(store.get(run.id))
        time.sleep(0.01)
        store.end(run, "stopped", counts={"scans": {"processed": 0, "errors": 2}})
        counts = store.get(run.id).counts["scans"]
    assert counts["errors"] == 2
    assert counts["processed"] == 2


def test_a_damaged_error_record_is_still_counted_and_ends_the_run(tmp_path):
    """Counting reads the records' metadata; a record whose payload file was cut short still
    has it, and must neither be lost from the count nor stop `end` with a traceback."""
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import open_transport
    from asapo_pipelines.transport.embedded import INLINE_MAX

    root = tmp_path / "store"
    with open_transport({"embedded": {"path": str(root)}}) as transport:
        store = RunStore(transport, "p65-xas")
        run = store.begin(pipeline_file=None, text="x", configurations={}, overrides={})
        meta = {"provenance": {"unit": "p65-xas/scans", "key": "k", "run": run.id}}
        with transport.producer("p65-xas.errors") as producer:
            producer.send("scans", b"x" * (INLINE_MAX + 1000), meta)  # in a payload file
            producer.flush()
        (segment,) = (root / "p65-xas.errors" / "payloads").rglob("*.seg")
        segment.write_bytes(segment.read_bytes()[:10])
        store.end(run, "stopped", counts={"scans": {"processed": 1, "errors": 1}})
        assert store.get(run.id).counts["scans"]["errors"] == 1
