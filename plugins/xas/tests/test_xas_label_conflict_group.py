"""The Cu foil saved under the goethite series' name (`20K_GOE_Fe_K_240.00002.xdi`), after the
`label_conflict` warning of scan-files and normalize (test_xas_label_conflict.py), as an outside
scientist's review found it: the merge's output did not carry the conflict, the agent asked the
queue for "2 more scans" of a Cu group nobody planned, and the Cu scan took its temperature
(20 K) from the file name known not to describe it. Now the merge result and its summary carry
it, the agent's decision on that group says it exists only because of the conflict and asks for
no scans (a stop without a plan: a queue-server bridge notes it, queues nothing), and nothing
is taken from such a file's name (its metadata says what and why).

The example P65 pipeline on the real files, through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from xas_procs import pipeline_command
from xas_testdata import DATA, P65_SCANS

# the P65 example writes its NeXus file: with the NeXus plugin only (nox's "all" session)
pytest.importorskip("asapo_pipelines_nexus")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"
MISNAMED = "20K_GOE_Fe_K_240.00002.xdi"
SERIES = "20K_GOE_Fe_K_240/Fe/K/transmission"
CONFLICT = {"header": "Cu K", "file_name": "Fe K", "file": MISNAMED}


def _values(pipeline: Path, stream: str) -> list[dict]:
    done = pipeline_command(pipeline, "tail", stream, "--all", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line)["value"] for line in done.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    folder = tmp_path_factory.mktemp("conflict")
    data = folder / "data"
    data.mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, data / name)
    shutil.copy(DATA / "cu_metal_rt.xdi", data / MISNAMED)
    pipeline = folder / EXAMPLE.name
    shutil.copy(EXAMPLE, pipeline)
    done = pipeline_command(pipeline, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    status = pipeline_command(pipeline, "status", "--json")
    units = {u["task"]: u.get("summary") or {} for u in json.loads(status.stdout)["units"]}
    return pipeline, units


def _cu_group(units: dict[str, dict]) -> str:
    (label,) = [g for g in units["merge"]["merges"] if g != SERIES]
    assert label.split("/")[1:3] == ["Cu", "K"], label
    return label


def test_the_merge_result_carries_the_label_conflict(run) -> None:
    pipeline, units = run
    label = _cu_group(units)
    said = units["merge"]["merges"][label]["label_conflict"]
    assert said.startswith(f"{MISNAMED}: header Cu K, file name Fe K"), said
    assert "exists only because of this conflict" in said
    assert "label_conflict" not in units["merge"]["merges"][SERIES]

    merges = _values(pipeline, "merged")
    cu = [m for m in merges if m["group"]["element"] == "Cu"]
    assert cu
    for merged in cu:
        assert [s.get("label_conflict") for s in merged["scans"]] == [CONFLICT]
    for merged in (m for m in merges if m["group"]["element"] == "Fe"):
        assert not any("label_conflict" in s for s in merged["scans"])


def test_the_agent_asks_for_no_scans_of_a_group_made_by_the_conflict(run) -> None:
    pipeline, units = run
    label = _cu_group(units)
    decision = units["advisor"]["decisions"][label]
    assert decision["action"] == "stop", decision
    assert "scans" not in decision
    reason = decision["reason"]
    assert "exists only because of a header/file-name conflict" in reason
    assert f"{MISNAMED} is labelled Cu K by its header but Fe K by its file name" in reason
    assert "no scans of it are asked for" in reason
    assert "more" not in reason

    plans = [p for p in _values(pipeline, "plans") if p["target"] == label]
    assert plans
    for plan in plans:
        assert plan["plan"] is None
        assert plan["arguments"]["label_conflict"] == [CONFLICT]
    # the series the file's name claims is decided as without it
    assert units["advisor"]["decisions"][SERIES]["action"] == "more_scans"

    # what a queue-server bridge makes of it, with a plan template: nothing to queue
    bridge = pytest.importorskip("asapo_pipelines_bluesky.bridge")
    from asapo_pipelines_bluesky.params import QueueParams

    template = QueueParams(plan={"name": "xas_scan", "kwargs": {"repeats": "{scans}"}})
    entry = bridge.entry_from_body(plans[-1], instance="queue", params=template)
    assert (entry.state, entry.scans, entry.item) == ("noted", 0, None)


def test_nothing_is_taken_from_a_file_name_the_header_contradicts(run) -> None:
    pipeline, _ = run
    scans = {s["metadata"]["file"]: s["metadata"] for s in _values(pipeline, "raw-scans")}
    cu = scans[MISNAMED]
    assert "temperature" not in cu, cu  # the foil was at room temperature, not the series' 20 K
    assert cu["file_name_not_used"] == {
        "temperature": "20 K",
        "reason": "the header says Cu K, the file name Fe K: the name is not this scan's, so "
        "nothing is taken from it",
    }
    assert cu["sample"] == "Cu"  # the header's Sample.name
    for name in P65_SCANS:  # their names are theirs: the series' temperature stays
        assert scans[name]["temperature"] == "20 K"
        assert "file_name_not_used" not in scans[name]
