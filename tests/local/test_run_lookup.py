"""Which local run `pipeline stop`, `status`, `logs` and `run` find for a file, when the run
they must find is not the plain one of the file's name and data directory: the file's
`pipeline:` renamed while its run goes on, a run started with --data-dir after one without,
and a reprocess, whose session runs no source. Real `pipeline` commands, a real embedded
store, real workers."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import alive, files_to_sink, read_state, run_pipeline

#: Nomad is asked nowhere here: a closed port makes any question to it fail loudly
NO_NOMAD = {"NOMAD_ADDR": "http://127.0.0.1:9"}


def watching(directory: Path, name: str) -> Path:
    """`files_to_sink`'s pipeline, its source watching its folder: a run that goes on."""
    file = files_to_sink(directory, name)
    doc = json.loads(file.read_text())
    doc["units"]["files"]["params"]["watch"] = True
    file.write_text(json.dumps(doc, indent=1))
    return file


def test_a_run_goes_on_being_found_after_its_pipeline_was_renamed(tmp_path: Path) -> None:
    """`pipeline:` renamed while the run goes on: `stop` said no local run was recorded (and
    asked Nomad), `status` the same, and a second `run` started reading the same folder again.
    They find the run of this file under its old name: `run` refuses, naming the stop command,
    `status` shows it, and `stop` stops it."""
    file = watching(tmp_path, "p65-xas")
    started = run_pipeline("run", str(file), "--detach", "--json", env=NO_NOMAD)
    assert started.returncode == 0, started.stdout + started.stderr
    state = json.loads(started.stdout)
    try:
        file.write_text(file.read_text().replace('"p65-xas"', '"p65"'))

        again = run_pipeline("run", str(file), "--detach", env=NO_NOMAD)
        assert again.returncode != 0, again.stdout + again.stderr
        assert "already running" in again.stderr, again.stderr
        assert f"pipeline stop {file}" in again.stderr, again.stderr
        assert not (tmp_path / ".pipeline-data" / "runs" / "p65").exists()

        shown = run_pipeline("status", str(file), env=NO_NOMAD)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "no local run" not in shown.stderr
        assert "p65-xas" in shown.stdout, shown.stdout

        stopped = run_pipeline("stop", str(file), env=NO_NOMAD)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "Nomad" not in stopped.stdout + stopped.stderr
        assert not alive(state["pid"])
        # and its record says so: the supervisor ended the run under the name it was started
        # with, not the file's new one (where it found no r1 and left p65-xas's r1 running)
        file.write_text(file.read_text().replace('"p65"', '"p65-xas"'))
        listed = run_pipeline("runs", str(file), "--json", env=NO_NOMAD)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert [r["state"] for r in json.loads(listed.stdout)["runs"]] == ["stopped"]
    finally:  # no run outlives the test: a second one under the new name, the first
        run_pipeline("stop", str(file), env=NO_NOMAD)
        if alive(state["pid"]):
            file.write_text(file.read_text().replace('"p65"', '"p65-xas"'))
            run_pipeline("stop", str(file), env=NO_NOMAD)


def test_logs_show_the_latest_run_started_with_data_dir(tmp_path: Path) -> None:
    """A run in the default data directory, then one with --data-dir: `logs FILE UNIT`
    without --data-dir printed the first run's lines while `status` showed the second run."""
    file = files_to_sink(tmp_path, "fj")
    first = run_pipeline("run", str(file), env=NO_NOMAD)
    assert first.returncode == 0, first.stdout + first.stderr
    elsewhere = tmp_path / "elsewhere"
    second = run_pipeline("run", str(file), "--fresh", "--data-dir", str(elsewhere), env=NO_NOMAD)
    assert second.returncode == 0, second.stdout + second.stderr
    shown = run_pipeline("logs", str(file), "sink", "--stderr", env=NO_NOMAD)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == _stderr_log(elsewhere / "runs" / "fj", "sink")
    assert shown.stdout != _stderr_log(tmp_path / ".pipeline-data" / "runs" / "fj", "sink")


def _stderr_log(run_dir: Path, unit: str) -> str:
    """The unit's stderr log of the run's latest session, as its supervisor wrote it."""
    state = read_state(run_dir)
    assert state is not None, f"no run in {run_dir}"
    record = next(u for u in state["units"] if u["group"] == unit)
    return (Path(record["logs"]) / f"{record['task']}.stderr.0").read_text()


def test_logs_of_a_source_after_a_reprocess_say_sources_do_not_run_in_it(tmp_path: Path) -> None:
    """After `pipeline reprocess FILE --from r1`, `logs FILE files` said the job had no unit
    files, though the file has it: the replay runs no source. It says so, and points to
    --previous, which shows the source's log of the session before."""
    file = files_to_sink(tmp_path, "rp")
    first = run_pipeline("run", str(file), env=NO_NOMAD)
    assert first.returncode == 0, first.stdout + first.stderr
    replayed = run_pipeline("reprocess", str(file), "--from", "r1", env=NO_NOMAD)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr

    shown = run_pipeline("logs", str(file), "files", env=NO_NOMAD)
    assert shown.returncode == 1
    assert shown.stderr.startswith("error: the latest session of job rp was a reprocess"), (
        shown.stderr
    )
    assert "sources do not run" in shown.stderr
    assert "--previous" in shown.stderr
    assert len(shown.stderr.splitlines()) == 1
    previous = run_pipeline("logs", str(file), "files", "--previous", env=NO_NOMAD)
    assert previous.returncode == 0, previous.stderr
    assert previous.stdout
    # a unit the replay ran is shown as ever
    assert run_pipeline("logs", str(file), "sink", env=NO_NOMAD).returncode == 0
    # and a unit the file does not have is still a typo
    typo = run_pipeline("logs", str(file), "nosuch", env=NO_NOMAD)
    assert "has no unit nosuch" in typo.stderr, typo.stderr


def test_a_run_started_with_data_dir_is_found_after_its_pipeline_was_renamed(
    tmp_path: Path,
) -> None:
    """`run FILE --detach --data-dir D`, then `pipeline:` renamed while the run goes on:
    `status FILE` and `stop FILE` found it only with `--data-dir D` again (without, "no local
    run of FILE is recorded"), and a second `run FILE` started a new run beside it. Without
    --data-dir they find it as they find a run of the unrenamed file started with it."""
    file = watching(tmp_path, "p65-xas")
    elsewhere = tmp_path / "elsewhere"
    started = run_pipeline(
        "run", str(file), "--detach", "--json", "--data-dir", str(elsewhere), env=NO_NOMAD
    )
    assert started.returncode == 0, started.stdout + started.stderr
    state = json.loads(started.stdout)
    try:
        file.write_text(file.read_text().replace('"p65-xas"', '"p65"'))

        shown = run_pipeline("status", str(file), env=NO_NOMAD)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "no local run" not in shown.stderr
        assert "p65-xas" in shown.stdout, shown.stdout

        again = run_pipeline("run", str(file), "--detach", env=NO_NOMAD)
        assert again.returncode != 0, again.stdout + again.stderr
        assert "already running" in again.stderr, again.stderr
        assert f"pipeline stop {file}" in again.stderr, again.stderr
        assert not (tmp_path / ".pipeline-data" / "runs" / "p65").exists()
        assert alive(state["pid"])

        stopped = run_pipeline("stop", str(file), env=NO_NOMAD)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "Nomad" not in stopped.stdout + stopped.stderr
        assert not alive(state["pid"])
    finally:  # no run outlives the test
        run_pipeline("stop", str(file), "--data-dir", str(elsewhere), env=NO_NOMAD)
        run_pipeline("stop", str(file), env=NO_NOMAD)
