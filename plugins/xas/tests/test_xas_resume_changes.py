"""`pipeline run` again on the same store after something changed: the merge parameters
(`--resume --set merge...`) or a scan file (rewritten while the pipeline was stopped). What the
run's summary says is what its streams hold, and a new version of a file is told apart from
the old one with a true reason."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from xas_procs import last_status, pipeline_command, read, scan_chain, wait_until, write_pipeline
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import MergeParams, NormalizeParams, ScanFilesParams
from asapo_pipelines_xas.scanfiles import read_for_params

#: fluorescence, the second P65 repeat's sample edge moved by `MOVED` eV (`move_edge`): the
#: repeats' edges differ by more than the default max_e0_shift (1 eV) and less than 5 eV
NORMALIZE = {**REFERENCE_SETTINGS, "mode": "fluorescence"}
MOVED = 3.0


def units() -> dict[str, Any]:
    return scan_chain("data", NORMALIZE, {})


def run(pipeline: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return pipeline_command(pipeline, "run", "--json", *args)


def summary(result: subprocess.CompletedProcess[str], task: str) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(result.stdout)
    return next(u["summary"] for u in status["units"] if u["task"] == task)


def expected_merge(directory: Path, **merge: Any) -> dict[str, Any]:
    """The merge of the files in `directory` under `merge`, by the plugin's xraylarch core."""
    files = ScanFilesParams(directory=str(directory), pattern="*.xdi")
    normalize = NormalizeParams.model_validate(NORMALIZE)
    merger = Merger(MergeParams.model_validate(merge))
    merged: dict[str, Any] = {}
    for name in P65_SCANS:
        merged = merger.add(
            normalize_scan(read_for_params(directory / name, files), normalize)
        ).to_json()
    return merged


def move_edge(path: Path, by: float) -> None:
    """The scan with its sample's fluorescence mu(E) = If/I0 moved up in energy by `by` eV
    (VFC04 = VFC01 x mu(E - by); the foil's channels as measured): the sample changed."""
    import numpy as np

    lines = path.read_text().splitlines(keepends=True)
    names = [n.lower() for n in next(x for x in reversed(lines) if x.startswith("#"))[1:].split()]
    header = [x for x in lines if x.startswith("#") or not x.strip()]
    data = np.array([[float(v) for v in x.split()] for x in lines if x not in header])
    energy, i0, fluo = (data[:, names.index(n)] for n in ("enc_energy", "vfc01", "vfc04"))
    order = np.argsort(energy, kind="stable")
    data[:, names.index("vfc04")] = i0 * np.interp(energy - by, energy[order], (fluo / i0)[order])
    body = [" ".join(repr(float(v)) for v in row) + "\n" for row in data]
    path.write_text("".join(header) + "".join(body))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, tmp_path / "data" / name)
    move_edge(tmp_path / "data" / P65_SCANS[1], MOVED)
    return tmp_path


def test_resume_with_changed_merge_params_sends_the_merge_the_summary_shows(workdir):
    pipeline = write_pipeline(workdir, "resume-merge", units())
    first = summary(run(pipeline), "merge")
    before = expected_merge(workdir / "data")
    # the two repeats disagree on E0 and neither has a majority: nothing merged
    assert before["n_merged"] == 0
    assert [m["merged"] for m in first["merges"].values()] == [0]

    again = summary(run(pipeline, "--resume", "--set", "merge.max_e0_shift=5"), "merge")
    after = expected_merge(workdir / "data", max_e0_shift=5)
    assert after["n_merged"] == 2
    sent = read(workdir / "store", "merged")
    last_meta, last = sent[-1]
    # the stream holds the merge the parameters now in force give, as a new result of this run
    assert last["n_merged"] == after["n_merged"]
    assert last["values"]["epsilon_k"] == pytest.approx(after["values"]["epsilon_k"], rel=1e-9)
    assert last_meta["provenance"]["fingerprint"] != sent[0][0]["provenance"]["fingerprint"]
    # and the summary says what the stream holds
    (group,) = again["merges"].values()
    assert group["merged"] == last["n_merged"]
    assert group["rejected"] == len(last["rejected"])
    assert group["noise"] == pytest.approx(last["values"]["epsilon_k"], rel=1e-3)

    # resumed again under the same parameters: nothing new to send, nothing sent twice
    summary(run(pipeline, "--resume", "--set", "merge.max_e0_shift=5"), "merge")
    assert len(read(workdir / "store", "merged")) == len(sent)


def test_resume_under_unchanged_params_sends_no_merge_again(workdir):
    pipeline = write_pipeline(workdir, "resume-same", units())
    summary(run(pipeline), "merge")
    count = len(read(workdir / "store", "merged"))
    again = summary(run(pipeline), "merge")
    assert len(read(workdir / "store", "merged")) == count
    (group,) = again["merges"].values()
    assert group["merged"] == read(workdir / "store", "merged")[-1][1]["n_merged"]


def rewrite_counts(path: Path) -> None:
    """The same scan with other counts in its fluorescence channel (VFC04): another measurement."""
    lines = path.read_text().splitlines(keepends=True)
    names = next(line for line in reversed(lines) if line.startswith("#")).lstrip("#").split()
    column = [n.lower() for n in names].index("vfc04")
    out = []
    for line in lines:
        if line.startswith("#") or not line.strip():
            out.append(line)
            continue
        parts = line.split()
        parts[column] = repr(float(parts[column]) * 1.01)
        out.append(" ".join(parts) + "\n")
    path.write_text("".join(out))


def test_file_rewritten_while_stopped_is_sent_as_the_next_version(workdir):
    pipeline = write_pipeline(workdir, "rewritten", units())
    summary(run(pipeline), "merge")
    rewrite_counts(workdir / "data" / P65_SCANS[1])
    result = run(pipeline)
    scans = summary(result, "scans")
    assert [(s["file"], s["version"]) for s in scans["sent_again"]] == [(P65_SCANS[1], 2)]
    # the run's messages (two files, then a new version), not the files this session read
    assert scans["scans_sent"] == len(read(workdir / "store", "raw-scans")) == 3
    # the summary's single-scan noise is the merged scans', not the superseded version's too
    (merge,) = summary(result, "merge")["merges"].values()
    assert len(merge["single_scan_noise"]) == merge["merged"] < merge["scans"], merge
    sent = read(workdir / "store", "raw-scans")
    meta, body = sent[-1]
    assert meta["file"] == P65_SCANS[1]
    assert meta["file_version"] == 2
    assert body["metadata"]["replaces"] == P65_SCANS[1]
    # the merge leaves the old version out, for what happened (no early read took place)
    old = next(
        r for r in read(workdir / "store", "merged")[-1][1]["rejected"] if r.get("superseded")
    )
    assert old["reasons"] == [
        "replaced by version 2 of the same file, which changed after this version was read"
    ]
    # a third version is 3, not 2 again; the summary still lists version 2, as it counts on
    rewrite_counts(workdir / "data" / P65_SCANS[1])
    third = summary(run(pipeline), "scans")
    assert [(s["file"], s["version"]) for s in third["sent_again"]] == [
        (P65_SCANS[1], 2),
        (P65_SCANS[1], 3),
    ]
    assert third["scans_sent"] == len(read(workdir / "store", "raw-scans")) == 4
    assert read(workdir / "store", "raw-scans")[-1][0]["file_version"] == 3


def command(pipeline: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`pipeline <name> FILE ARGS` in the pipeline's folder; it must succeed."""
    done = pipeline_command(pipeline, name, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def merge_running(store: Path, session: int) -> dict[str, Any] | None:
    """The merge worker's status record once it runs in session `session` of the run (its
    restored state is then sent), else None."""
    try:
        record = last_status(store, "resume-watch", "merge")
    except Exception:
        return None  # no record yet
    running = record.get("state") == "running" and record.get("session_number") == session
    return record if running else None


def test_watched_run_resumed_with_changed_merge_params_sends_the_new_merge_at_once(workdir):
    """No scan follows the resume (the agent said stop): the re-screened merge is sent at the
    start of the resumed session, so the stream agrees with the status at once."""
    watched = units()
    watched["scans"]["params"]["watch"] = True
    pipeline = write_pipeline(workdir, "resume-watch", watched)
    store = workdir / "store"
    command(pipeline, "run", "--detach")
    try:
        assert wait_until(lambda: merge_running(store, 1) is not None)
        assert wait_until(lambda: len(read(store, "merged")) == len(P65_SCANS))
    finally:
        command(pipeline, "stop")
    # the two repeats disagree on E0 and neither has a majority: nothing merged
    assert read(store, "merged")[-1][1]["n_merged"] == 0

    command(pipeline, "run", "--detach", "--resume", "--set", "merge.max_e0_shift=5")
    try:
        assert wait_until(lambda: merge_running(store, 2) is not None)
        # sent before the merge takes any scan, without one: the status agrees with the stream
        status = merge_running(store, 2)
        assert status is not None
        assert status["received"] == 0
        (group,) = status["summary"]["merges"].values()
        last = read(store, "merged")[-1][1]
        assert (last["n_merged"], len(last["rejected"])) == (group["merged"], group["rejected"])
        after = expected_merge(workdir / "data", max_e0_shift=5)
        assert last["n_merged"] == after["n_merged"] == 2
        assert last["values"]["epsilon_k"] == pytest.approx(after["values"]["epsilon_k"], rel=1e-9)
    finally:
        command(pipeline, "stop")
    count = len(read(store, "merged"))
    assert count == len(P65_SCANS) + 1

    # resumed again under the same parameters: the restored merge is the one sent, not again
    command(pipeline, "run", "--detach", "--resume", "--set", "merge.max_e0_shift=5")
    try:
        assert wait_until(lambda: merge_running(store, 3) is not None)
        assert len(read(store, "merged")) == count
    finally:
        command(pipeline, "stop")


#: an agent whose target no merge reaches: it decides on every merge it gets
ADVISOR = {
    "unit": "xas.convergence-agent",
    "params": {"target_noise": 1.0e-5, "max_scans": 20},
    "inputs": {"merged": "merged"},
    "outputs": {"plans": "plans"},
}


def test_resume_back_to_earlier_params_sends_their_merge_again_and_the_agent_decides(workdir):
    """Resumed with max_e0_shift 5 (both repeats merged), then 1 again (none merged: the
    repeats' edges differ by 3 eV), then 5 again: the third merge has the content
    of the first, and was taken for it: not sent, so the stream, the NeXus file and the agent
    kept the second session's 'nothing merged' and its change_parameters under a limit no
    longer in force. It is sent again, numbered as the group's next merge, and decided on;
    a resume under unchanged settings still sends nothing twice."""
    chain = {**units(), "advisor": ADVISOR}
    pipeline = write_pipeline(workdir, "resume-back", chain)
    summary(run(pipeline, "--set", "merge.max_e0_shift=5"), "merge")
    summary(run(pipeline, "--resume", "--set", "merge.max_e0_shift=1"), "merge")
    plans = read(workdir / "store", "plans")
    assert plans[-1][1]["action"] == "change_parameters"  # the repeats disagree at 1 eV
    merged_then = read(workdir / "store", "merged")
    assert merged_then[-1][1]["n_merged"] == 0

    back = summary(run(pipeline, "--resume", "--set", "merge.max_e0_shift=5"), "merge")
    merged = read(workdir / "store", "merged")
    assert len(merged) == len(merged_then) + 1, [m[1]["n_merged"] for m in merged]
    last = merged[-1][1]
    expected = expected_merge(workdir / "data", max_e0_shift=5)
    assert last["n_merged"] == expected["n_merged"] == 2
    assert last["values"]["epsilon_k"] == pytest.approx(expected["values"]["epsilon_k"], rel=1e-9)
    # the group's third merge in the run, though its content is the first's
    assert [m[1]["number"] for m in merged[-3:]] == [m[1]["number"] for m in merged[-3:-1]] + [
        merged[-2][1]["number"] + 1
    ]
    (group,) = back["merges"].values()
    assert group["merged"] == 2
    # the agent decided on it: its last plan is no longer the 1 eV session's
    plans_then = plans
    plans = read(workdir / "store", "plans")
    assert len(plans) == len(plans_then) + 1
    assert plans[-1][1]["action"] != "change_parameters", plans[-1][1]
    assert plans[-1][1]["arguments"]["metrics"]["n_merged"] == 2

    # unchanged (the same --set again): nothing sent again
    summary(run(pipeline, "--resume", "--set", "merge.max_e0_shift=5"), "merge")
    assert len(read(workdir / "store", "merged")) == len(merged)
    assert len(read(workdir / "store", "plans")) == len(plans)


def test_resume_with_a_changed_setting_that_changes_no_merge_sends_none_again(workdir):
    """`--resume --set merge.beam_dump_max_points=3` leaves this merge as it was (neither P65
    repeat has a beam loss): the stream, the NeXus file and the agent got it already. It was
    sent again, with a new agent suggestion, because the merge was marked with when its
    settings changed. A change that does change it is sent, numbered as the group's next
    merge."""
    chain = {**units(), "advisor": ADVISOR}
    pipeline = write_pipeline(workdir, "resume-unchanged-result", chain)
    summary(run(pipeline), "merge")
    store = workdir / "store"
    merged, plans = read(store, "merged"), read(store, "plans")
    unchanged = expected_merge(workdir / "data", beam_dump_max_points=3)
    assert unchanged == expected_merge(workdir / "data")

    again = summary(run(pipeline, "--resume", "--set", "merge.beam_dump_max_points=3"), "merge")
    assert len(read(store, "merged")) == len(merged)
    assert len(read(store, "plans")) == len(plans)
    (group,) = again["merges"].values()
    assert group["merged"] == 0

    summary(run(pipeline, "--resume", "--set", "merge.max_e0_shift=5"), "merge")
    now = read(store, "merged")
    assert len(now) == len(merged) + 1
    assert now[-1][1]["n_merged"] == expected_merge(workdir / "data", max_e0_shift=5)["n_merged"]
    assert now[-1][1]["number"] == merged[-1][1]["number"] + 1
    assert len(read(store, "plans")) == len(plans) + 1
