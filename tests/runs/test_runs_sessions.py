"""Which run a start works in, and what its results record, when more than one run directory,
an aside run-record store or an edited file is involved. Real `pipeline` commands, real
workers, the embedded store.

- A supervisor's lock is per run directory (`--data-dir`): a second user starting the same
  pipeline from another data directory resumed the live run beside it, and its failure ended
  the live run `failed`. The run's record names its session's run directory, and a start
  while that supervisor is alive is refused before anything is recorded.
- Moving a damaged `<pipeline>.runs` aside, as its error message advises, made the next run
  `r1` again: it found the old `r1`'s streams read to the end and computed nothing.
- A session resumed under an edited file gave its results the hash of the file the run
  started with.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from runs_helpers import P65_SCANS, ROOT, one_sentence, p65_copy

from asapo_pipelines.local.control import supervisor_alive

from helpers import read_state, run_pipeline, wait_for

FILE = "ds.pipeline.yaml"
PIPELINE = """\
pipeline: ds
units:
  files: {{unit: core.files, params: {{directory: in/, pattern: "*.txt", watch: {watch}, settle_seconds: 0.2}}, outputs: {{files: raw}}}}
  sink:  {{unit: core.jsonl-sink, params: {{path: results/out.jsonl, payload: text}}, inputs: {{messages: raw}}}}
"""  # noqa: E501


def lines(directory: Path) -> int:
    path = directory / "results" / "out.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def drop_files(directory: Path, prefix: str, count: int) -> None:
    for i in range(1, count + 1):
        (directory / "in" / f"{prefix}{i}.txt").write_text(f"{prefix}{i}\n")


def write_pipeline(directory: Path, *, watch: bool) -> None:
    (directory / "in").mkdir()
    (directory / FILE).write_text(PIPELINE.format(watch=str(watch).lower()))


def runs_of(directory: Path, file: str = FILE) -> dict[str, dict]:
    listed = run_pipeline("runs", file, "--json", cwd=directory)
    assert listed.returncode == 0, listed.stderr
    return {r["id"]: r for r in json.loads(listed.stdout)["runs"]}


def stop(directory: Path, *data_dir: str) -> None:
    stopped = run_pipeline("stop", FILE, *data_dir, cwd=directory, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@contextlib.contextmanager
def stopped_at_the_end(directory: Path, *others: Path) -> Iterator[None]:
    """Every supervisor the test may have started (in the default data directory and in
    `others`) is stopped at the end, whatever the test found: by `pipeline stop`, else by
    SIGTERM to the supervisor, which stops its tasks."""
    try:
        yield
    finally:
        for data_dir in (directory / ".pipeline-data", *others):
            run_dir = data_dir / "runs" / "ds"
            if not supervisor_alive(run_dir):
                continue
            run_pipeline("stop", FILE, "--data-dir", str(data_dir), cwd=directory, timeout=120)
            state = read_state(run_dir)
            if supervisor_alive(run_dir) and state:
                os.kill(int(state["pid"]), signal.SIGTERM)
                wait_for(lambda d=run_dir: not supervisor_alive(d), 60, "the supervisor to stop")


def test_a_start_from_another_data_dir_is_refused_while_the_run_is_live(tmp_path):
    write_pipeline(tmp_path, watch=True)
    elsewhere = tmp_path / "elsewhere"
    started = run_pipeline("run", "--detach", FILE, cwd=tmp_path, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    with stopped_at_the_end(tmp_path, elsewhere):
        drop_files(tmp_path, "a", 3)
        wait_for(lambda: lines(tmp_path) == 3, 60, "the first 3 lines")
        live = (tmp_path / ".pipeline-data").resolve()
        for extra in ((), ("--fresh",)):
            refused = run_pipeline(
                "run", "--detach", "--data-dir", str(elsewhere), *extra, FILE, cwd=tmp_path
            )
            assert refused.returncode == 1, refused.stdout + refused.stderr
            line = one_sentence(refused.stderr)
            assert "job ds is already running locally (run r1, supervisor pid " in line, line
            assert f"data directory {live})" in line, line
            assert f"stop it first with `pipeline stop {tmp_path.resolve() / FILE} " in line
            assert f"--data-dir {live}`" in line, line
            assert "starts" not in refused.stdout
            assert "resuming" not in refused.stdout
        # nothing recorded, nothing started elsewhere: the live run is the one it was
        assert not elsewhere.exists()
        runs = runs_of(tmp_path)
        assert list(runs) == ["r1"]
        assert runs["r1"]["state"] == "running"
        assert runs["r1"]["sessions"] == 1
        drop_files(tmp_path, "b", 2)
        wait_for(lambda: lines(tmp_path) == 5, 60, "the 2 lines the live run goes on with")
        stop(tmp_path)
        assert runs_of(tmp_path)["r1"]["state"] == "stopped"


def kill_outright(run_dir: Path) -> None:
    """SIGKILL a detached supervisor and the tasks it started (each leads its own group)."""
    state = read_state(run_dir)
    assert state is not None
    os.kill(int(state["pid"]), signal.SIGKILL)
    for unit in state["units"]:
        if unit.get("pid"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(unit["pid"]), signal.SIGKILL)
    wait_for(lambda: not supervisor_alive(run_dir), 30, "the supervisor's lock to go")


def test_a_run_whose_supervisor_is_gone_goes_on_from_another_data_dir(tmp_path):
    """The refusal is for a live session only."""
    write_pipeline(tmp_path, watch=True)
    elsewhere = tmp_path / "elsewhere"
    started = run_pipeline("run", "--detach", FILE, cwd=tmp_path, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    with stopped_at_the_end(tmp_path, elsewhere):
        drop_files(tmp_path, "a", 2)
        wait_for(lambda: lines(tmp_path) == 2, 60, "the first 2 lines")
        kill_outright(tmp_path / ".pipeline-data" / "runs" / "ds")
        assert runs_of(tmp_path)["r1"]["state"] == "running"  # stale: nobody ended it
        again = run_pipeline(
            "run", "--detach", "--data-dir", str(elsewhere), FILE, cwd=tmp_path, timeout=120
        )
        assert again.returncode == 0, again.stdout + again.stderr
        lost = "(unchanged); its last session was lost at "  # the killed one, said so
        assert f"resuming run r1 of pipeline ds {lost}" in again.stdout, again.stdout
        drop_files(tmp_path, "b", 2)
        wait_for(lambda: lines(tmp_path) == 4, 60, "the 2 lines of the resumed session")
        stop(tmp_path, "--data-dir", str(elsewhere))
        runs = runs_of(tmp_path)
        assert runs["r1"]["state"] == "stopped"
        assert runs["r1"]["sessions"] == 2


def test_a_detached_start_with_a_data_dir_prints_commands_that_find_its_run(tmp_path):
    write_pipeline(tmp_path, watch=True)
    elsewhere = tmp_path / "elsewhere"
    with stopped_at_the_end(tmp_path, elsewhere):
        started = run_pipeline(
            "run", "--detach", "--data-dir", str(elsewhere), FILE, cwd=tmp_path, timeout=120
        )
        assert started.returncode == 0, started.stdout + started.stderr
        hints = re.findall(r"`pipeline ([^`]+)`", started.stdout)
        assert [h.split()[0] for h in hints] == ["status", "logs", "stop"], started.stdout
        for hint in hints:  # as the user copies them, in that order
            args = [a if a != "UNIT" else "sink" for a in shlex.split(hint)]
            done = run_pipeline(*args, cwd=tmp_path, timeout=120)
            assert done.returncode == 0, (hint, done.stdout + done.stderr)
        assert not supervisor_alive(elsewhere / "runs" / "ds")
        assert runs_of(tmp_path)["r1"]["state"] == "stopped"


def test_a_run_after_the_records_were_moved_aside_computes_its_results_afresh(tmp_path):
    write_pipeline(tmp_path, watch=False)
    drop_files(tmp_path, "a", 3)
    first = run_pipeline("run", FILE, cwd=tmp_path, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "run r1 of pipeline ds starts" in first.stdout
    assert lines(tmp_path) == 3
    records = tmp_path / ".pipeline-data" / "ds.runs"
    index = records / "index.db"
    with open(index, "r+b") as fh:
        fh.truncate(index.stat().st_size // 2)
    damaged = run_pipeline("runs", FILE, cwd=tmp_path)
    assert damaged.returncode != 0
    line = one_sentence(damaged.stderr)
    assert "is damaged" in line, line
    assert "move it aside" in line, line
    shutil.move(records, tmp_path / "ds.runs.aside")
    fresh = run_pipeline("run", "--fresh", FILE, cwd=tmp_path, timeout=120)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "run r2 of pipeline ds starts" in fresh.stdout, fresh.stdout
    told = [x for x in fresh.stderr.splitlines() if "without a record" in x]
    assert len(told) == 1, fresh.stderr
    assert "data of run r1 of pipeline ds" in told[0]
    assert "this run is r2" in told[0]
    # the three files again, as results of the new run
    assert lines(tmp_path) == 6
    made = [json.loads(x) for x in (tmp_path / "results" / "out.jsonl").read_text().splitlines()]
    assert sorted(m["payload"] for m in made[3:]) == ["a1\n", "a2\n", "a3\n"]
    assert list(runs_of(tmp_path)) == ["r2"]
    again = run_pipeline("run", FILE, cwd=tmp_path, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming run r2 of pipeline ds (unchanged)" in again.stdout
    assert "without a record" not in again.stderr
    assert lines(tmp_path) == 6


@pytest.mark.slow
def test_results_of_a_session_resumed_under_an_edited_file_carry_its_hash(tmp_path):
    pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")
    pytest.importorskip("asapo_pipelines_nexus", reason="needs the NeXus plugin (plugins/nexus)")
    h5py = pytest.importorskip("h5py", reason="needs h5py (with the NeXus plugin)")
    path = p65_copy(tmp_path)
    first = run_pipeline("run", path.name, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    started = hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text(path.read_text().replace("rbkg: 1,", "rbkg: 1.1,"))
    edited = hashlib.sha256(path.read_bytes()).hexdigest()
    added = "20K_GOE_Fe_K_240.00002.xdi"
    shutil.copy(ROOT / "examples" / "data" / P65_SCANS[1], tmp_path / "data" / added)
    resumed = run_pipeline("run", "--resume", path.name, cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run r1 under a changed configuration" in resumed.stdout
    assert "processed no message under" not in resumed.stdout  # the new scan was normalised
    made: dict[str, list[tuple[str, float | None]]] = {started: [], edited: []}
    from asapo_pipelines_nexus.writer import is_decision

    with h5py.File(tmp_path / "results" / "p65.nxs", "r") as f:
        for name, entry in f.items():
            prov = entry["provenance"]
            sha = prov["pipeline_sha256"][()].decode()
            # an agent's decision names no scan file: its scans are those of the merge it answers
            read = f[entry["decision/based_on"][()].decode()] if is_decision(entry) else entry
            sources = json.loads(read["provenance/source_files/data"][()])
            params = json.loads(prov["parameters"]["data"][()]) or {}
            rbkg = (params.get("autobk") or {}).get("rbkg")
            assert sha in made, (name, sha)
            made[sha].append((",".join(sources), rbkg))
    # the first session's entries carry the file it ran with; the new scan's, the edited one
    assert {rbkg for _, rbkg in made[started]} == {None, 1.0}
    assert made[edited]
    assert all(added in sources for sources, _ in made[edited])
    assert {rbkg for _, rbkg in made[edited]} == {None, 1.1}
    run = runs_of(tmp_path, path.name)["r1"]
    assert run["file_sha256"] == edited
    assert run["started_file_sha256"] == started


def test_a_resume_whose_changed_unit_processed_nothing_says_its_results_are_the_old_ones(
    tmp_path,
):
    """`--resume --set advisor.target_noise=...` with no new scan: the summary showed the
    decision made under the old target, under "resuming run r1 under a changed configuration",
    as if the new target had been applied. Now one line says the changed unit processed
    nothing under it and gives the reprocess that applies it, which does: with the session's
    `--set` (an outside tester ran the reprocess it gave without it, and got the file's
    settings back)."""
    pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")
    pytest.importorskip("asapo_pipelines_nexus", reason="needs the NeXus plugin (plugins/nexus)")
    path = p65_copy(tmp_path)
    first = run_pipeline("run", path.name, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "action more_scans" in first.stdout  # noise 1.30e-4 against the target 1.2e-4
    looser = "advisor.target_noise=1.5e-4"
    resumed = run_pipeline("run", "--resume", "--set", looser, path.name, cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "action more_scans" in resumed.stdout  # the decision under the old target, shown
    told = [line for line in resumed.stdout.splitlines() if "processed no message" in line]
    assert told == [
        "advisor processed no message under its changed configuration in this session: its "
        "results, and those made from them, are still the earlier settings'; `pipeline "
        f"reprocess {path.name} --from r1 --set advisor.target_noise=0.00015` applies the "
        "change to the run's inputs"
    ], resumed.stdout
    # the advice taken: under the looser target the same noise stops
    redone = run_pipeline(
        "reprocess", path.name, "--from", "r1", "--set", looser, cwd=tmp_path, timeout=600
    )
    assert redone.returncode == 0, redone.stdout + redone.stderr
    assert re.search(r"action: more_scans -> stop", redone.stdout), redone.stdout
    # unchanged from r1's last session; but r1's decision was made in its first, under the
    # old target: said, or the changed decision reads as made by an unchanged configuration
    assert (
        "configuration (r1's last session -> r2): unchanged; r1's results were made in 2 "
        "sessions under 2 configurations, the replay's under one\n"
    ) in redone.stdout, redone.stdout
    # a replay runs the file with its own --set, not the replayed session's: said first, or a
    # difference reads as the effect of the one change typed
    other = run_pipeline(
        "reprocess", path.name, "--from", "r1", "--set", "normalize.autobk.rbkg=1.5",
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert other.returncode == 0, other.stdout + other.stderr
    assert (
        "configuration (r1's last session -> r3): advisor (target_noise 0.00015 -> 0.00012); "
        "normalize (autobk.rbkg 1.0 -> 1.5); r1's results were made in 2 sessions under 2 "
        "configurations, the replay's under one\n"
    ) in other.stdout, other.stdout
    # what a spectrum's rbkg changed, in its values: not "payload differs" (an outside tester)
    spectra = next(x for x in other.stdout.splitlines() if "sent on spectra:" in x)
    assert re.search(r"the first: #1 values\.epsilon_k: [0-9.e-]+ -> [0-9.e-]+", spectra), spectra
    # the reprocess made (r2, under the looser target; r3 is another's): a session under the
    # same settings names it, where it asked for it again (an outside tester had just made it)
    after = run_pipeline("run", "--resume", "--set", looser, path.name, cwd=tmp_path, timeout=600)
    assert after.returncode == 0, after.stdout + after.stderr
    told = [line for line in after.stdout.splitlines() if "processed no message" in line]
    assert told == [
        "advisor processed no message since its configuration changed in an earlier session: "
        "its results in run r1, and those made from them, are still the earlier settings'; "
        "run r2 is r1's inputs reprocessed under the settings in force (`pipeline tail "
        f"{path.name} STREAM --run r2` reads its results), while `pipeline run` goes on with r1"
    ], after.stdout


def test_a_resume_back_to_the_settings_the_results_were_made_with_suggests_no_reprocess(
    tmp_path,
):
    """Back from an excursion that processed nothing (target 1.5e-4, no new scan) to the
    target the run's decision was made with: the note said the advisor's results were "still
    the earlier settings'" and advised a reprocess, while they were made under the settings
    now in force (an outside tester). Now only a unit whose results were made with other
    settings than those now in force is named."""
    pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")
    pytest.importorskip("asapo_pipelines_nexus", reason="needs the NeXus plugin (plugins/nexus)")
    path = p65_copy(tmp_path)
    first = run_pipeline("run", path.name, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr

    def resume(*overrides: str) -> str:
        done = run_pipeline("run", "--resume", *overrides, path.name, cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    told = "advisor processed no message under its changed configuration"
    assert told in resume("--set", "advisor.target_noise=1.5e-4")
    back = resume()
    assert "resuming run r1 under a changed configuration" in back, back
    assert "processed no message" not in back, back
    # and away again: the results are still the first session's, made with 1.2e-4
    assert told in resume("--set", "advisor.target_noise=1.5e-4")
    # and once more the same: "(unchanged)" against the session before, but the results are
    # still the first session's; said too (an outside tester saw them shown without a word)
    again = resume("--set", "advisor.target_noise=1.5e-4")
    assert "resuming run r1 of pipeline p65-xas (unchanged)" in again, again
    assert (
        "advisor processed no message since its configuration changed in an earlier session: "
        "its results, and those made from them, are still the earlier settings'; `pipeline "
        f"reprocess {path.name} --from r1 --set advisor.target_noise=0.00015` applies the change "
        "to the run's inputs"
    ) in again, again


def test_status_of_an_ended_local_session_says_its_changed_unit_processed_nothing(tmp_path):
    """`pipeline run --resume --detach --set advisor.target_noise=1.5e-4` with no new scan:
    once the session had ended, `pipeline status` showed the decision made under the old
    target and no word that the new one was not applied; after a foreground resume it did
    not repeat the line the run ended with either (an outside tester). Now `status` says
    the line `pipeline run` ends with, as it does for a deployment, once the session ended;
    with --json on stderr, stdout staying one document."""
    pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")
    pytest.importorskip("asapo_pipelines_nexus", reason="needs the NeXus plugin (plugins/nexus)")
    path = p65_copy(tmp_path)
    run_dir = tmp_path / ".pipeline-data" / "runs" / "p65-xas"
    first = run_pipeline("run", path.name, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    looser = ("--set", "advisor.target_noise=1.5e-4")
    detached = run_pipeline(
        "run", "--resume", "--detach", *looser, path.name, cwd=tmp_path, timeout=120
    )
    assert detached.returncode == 0, detached.stdout + detached.stderr
    try:
        wait_for(lambda: not supervisor_alive(run_dir), timeout=300, what="the session's end")
    finally:
        if supervisor_alive(run_dir):
            run_pipeline("stop", path.name, cwd=tmp_path, timeout=120)
    reprocess = (
        "its results, and those made from them, are still the earlier settings'; `pipeline "
        f"reprocess {path.name} --from r1 --set advisor.target_noise=0.00015` applies the "
        "change to the run's inputs"
    )
    now = (
        f"advisor processed no message under its changed configuration in this session: {reprocess}"
    )

    def told(*extra: str) -> tuple[list[str], subprocess.CompletedProcess[str]]:
        shown = run_pipeline("status", path.name, *extra, cwd=tmp_path, timeout=120)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        said = shown.stderr if extra else shown.stdout
        return [x for x in said.splitlines() if "processed no message" in x], shown

    lines, shown = told()
    assert "action more_scans" in shown.stdout  # the old target's decision, still shown
    assert lines == [f"warning: {now}"], shown.stdout
    lines, shown = told("--json")
    assert lines == [f"warning: {now}"], shown.stderr
    assert json.loads(shown.stdout)["status"] == "complete"
    # a foreground session left so: status repeats the line the run ended with
    again = run_pipeline("run", "--resume", *looser, path.name, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    ended = [x for x in again.stdout.splitlines() if "processed no message" in x]
    assert ended == [
        f"advisor processed no message since its configuration changed in an earlier "
        f"session: {reprocess}"
    ], again.stdout
    assert told()[0] == [f"warning: {ended[0]}"]
    # back to the settings the results were made with: nothing to reprocess, nothing said
    back = run_pipeline("run", "--resume", path.name, cwd=tmp_path, timeout=600)
    assert back.returncode == 0, back.stdout + back.stderr
    assert told()[0] == []


def test_a_resume_whose_changed_merge_came_out_the_same_suggests_no_reprocess(tmp_path):
    """`--resume --set merge.max_e0_shift=0.9` with no new scan: the merge screens and merges
    its restored spectra again under the new limit at its start, and the merge came out the
    same (the repeats' half-step energies differ by 0.01 eV), so it sent nothing; the note
    said its results were still the earlier settings' and advised a reprocess (an outside
    tester). A unit that gives its results from its restored state under the settings in
    force has applied them, whether it sent anything or not."""
    pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")
    pytest.importorskip("asapo_pipelines_nexus", reason="needs the NeXus plugin (plugins/nexus)")
    path = p65_copy(tmp_path)
    first = run_pipeline("run", path.name, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    for _ in range(2):  # the session of the change, and the next one "(unchanged)"
        done = run_pipeline(
            "run", "--resume", "--set", "merge.max_e0_shift=0.9", path.name,
            cwd=tmp_path, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "merge: groups 1" in done.stdout, done.stdout
        assert "processed no message" not in done.stdout, done.stdout


def test_status_warns_that_a_file_edited_while_its_run_goes_on_is_not_applied(tmp_path):
    """A scientist edits a parameter in the file of a detached watch-mode run: the next scans
    were processed under the old one and `pipeline status` said nothing. It now warns, and
    says how to apply the edit; the refused second start names the file to stop."""
    write_pipeline(tmp_path, watch=True)
    with stopped_at_the_end(tmp_path):
        started = run_pipeline("run", FILE, "--detach", cwd=tmp_path, timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        drop_files(tmp_path, "a", 2)
        wait_for(lambda: lines(tmp_path) == 2, 120, "the first files in the sink")
        before = run_pipeline("status", FILE, cwd=tmp_path)
        assert before.returncode == 0, before.stderr
        assert "was edited" not in before.stderr

        path = tmp_path / FILE
        # a comment added, the layout changed: nothing the units would do differently
        path.write_text("# the sink's lines go to results/\n" + path.read_text() + "\n\n")
        commented = run_pipeline("status", FILE, cwd=tmp_path)
        assert commented.returncode == 0, commented.stderr
        assert "was edited" not in commented.stderr, commented.stderr

        path.write_text(path.read_text().replace("payload: text", "payload: base64"))
        edited = run_pipeline("status", FILE, cwd=tmp_path)
        assert edited.returncode == 0, edited.stderr
        assert (
            f"warning: {FILE} was edited after run r1's session started: its units go on with "
            "the configuration they started with; "
            f"`pipeline stop {FILE}` and `pipeline run --resume {FILE}` apply the edit"
        ) in edited.stderr, edited.stderr

        again = run_pipeline("run", FILE, "--resume", cwd=tmp_path)
        assert again.returncode == 1
        assert again.stderr.strip().endswith(f"stop it first with `pipeline stop {FILE}`")
        stop(tmp_path)


def test_the_edit_advice_repeats_the_sessions_set_and_data_dir(tmp_path):
    """A batch file run watching by `--set files.watch=true` in another data directory, then
    edited: the advice said `pipeline stop FILE` and `pipeline run --resume FILE`, which
    resumed under the file's `watch: false` in the default data directory (the watcher
    silently stopped watching). The advised commands now repeat the session's `--set`
    (shell-quoted) and its `--data-dir`; done as written, the run goes on watching."""
    write_pipeline(tmp_path, watch=False)
    data_dir = tmp_path / "data dir"  # a space: the advice must quote it
    with stopped_at_the_end(tmp_path, data_dir):
        started = run_pipeline(
            "run", FILE, "--detach", "--set", "files.watch=true",
            "--data-dir", str(data_dir), cwd=tmp_path, timeout=120,
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr
        drop_files(tmp_path, "a", 1)
        wait_for(lambda: lines(tmp_path) == 1, 120, "the first file in the sink")

        path = tmp_path / FILE
        path.write_text(path.read_text().replace("payload: text", "payload: base64"))
        edited = run_pipeline("status", FILE, "--data-dir", str(data_dir), cwd=tmp_path)
        assert edited.returncode == 0, edited.stderr
        where = f"{FILE} --data-dir {shlex.quote(str(data_dir))}"
        stop_command = f"pipeline stop {where}"
        run_command = f"pipeline run --resume {where} --set files.watch=true"
        assert f"`{stop_command}` and `{run_command}` apply the edit" in edited.stderr, (
            edited.stderr
        )

        # what it advises, word for word
        for command in (stop_command, run_command + " --detach"):
            done = run_pipeline(*shlex.split(command)[1:], cwd=tmp_path, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "watch true -> false" not in done.stdout + done.stderr
        drop_files(tmp_path, "b", 1)
        wait_for(lambda: lines(tmp_path) == 2, 120, "a new file read by the resumed watcher")
        assert runs_of(tmp_path)["r1"]["state"] == "running"
        stop(tmp_path, "--data-dir", str(data_dir))
