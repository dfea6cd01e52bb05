"""What goes on beside a running `pipeline reprocess`. Pruning the run it replays was allowed,
and its comparison then read the old run's sent messages from streams gone meanwhile (`r13
sent 0`, though it sent 1); a second reprocess recorded a run (`r15 ... failed`) before the
supervisor lock refused it; and a reprocess stopped (`pipeline stop`, Ctrl-C) before it
finished printed the full old -> new comparison of a replay that processed only part of its
messages. Real `pipeline` commands, a unit held in its `on_start` (`held_units`), the embedded
store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from held_units import held_env, held_units
from runs_helpers import one_sentence, store_contents

from helpers import PIPELINE, run_pipeline, wait_for

pytestmark = pytest.mark.slow

FILE = "hr.pipeline.yaml"
TEXT = """\
pipeline: hr
units:
  numbers: {unit: hr.numbers, outputs: {numbers: nums}}
  sink:    {unit: hr.starter, inputs: {files: nums}}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return held_units(tmp_path_factory.mktemp("held"), "hr")


@pytest.fixture
def work(tmp_path: Path, site: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """r1 run to its end (nothing held), the sink held again for what comes next."""
    env = held_env(tmp_path, site, "hr")
    (tmp_path / FILE).write_text(TEXT)
    (tmp_path / "hr.release").write_text("go")
    done = run_pipeline("run", FILE, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (tmp_path / "hr.release").unlink()
    (tmp_path / "hr.mark").unlink()
    yield tmp_path, env
    (tmp_path / "hr.release").write_text("go")


@contextmanager
def reprocessing(folder: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`pipeline reprocess FILE --from r1` in the background, its sink held in `on_start`."""
    replay = subprocess.Popen(
        [PIPELINE, "reprocess", FILE, "--from", "r1"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: (folder / "hr.mark").exists(), 120, "the replay's sink held")
        yield replay
    finally:
        (folder / "hr.release").write_text("go")
        if replay.poll() is None:
            run_pipeline("stop", FILE, cwd=folder, env=env, timeout=180)
        try:
            replay.wait(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(replay.pid, signal.SIGKILL)
            replay.wait()


def runs_of(folder: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    listed = run_pipeline("runs", FILE, "--json", cwd=folder, env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    return list(json.loads(listed.stdout)["runs"])


def run_ids(folder: Path, env: dict[str, str]) -> list[str]:
    return [r["id"] for r in runs_of(folder, env)]


def test_the_run_a_reprocess_replays_is_not_pruned_under_it(work):
    folder, env = work
    store = folder / ".pipeline-data"
    with reprocessing(folder, env) as replay:
        before = store_contents(store)
        refused = run_pipeline("prune", FILE, "--run", "r1", cwd=folder, env=env)
        assert refused.returncode != 0, refused.stdout
        line = one_sentence(refused.stderr)
        assert "run r1 of pipeline hr is replayed by run r2" in line, line
        assert "which is running" in line, line
        assert f"`pipeline stop {folder / FILE}`" in line, line
        # nor by age, nor by name: the comparison at the end reads what r1 sent
        aged = run_pipeline("prune", FILE, "--older-than", "0s", cwd=folder, env=env)
        assert aged.returncode == 0, aged.stderr
        assert "hr.r1." not in aged.stdout.splitlines()[0], aged.stdout
        by_name = run_pipeline(
            "prune", FILE, "--source", "hr.r1.nums", "--drop-stream", "default", cwd=folder, env=env
        )
        assert by_name.returncode != 0, by_name.stdout
        assert "run r2 of pipeline hr" in one_sentence(by_name.stderr)
        assert {k: v for k, v in store_contents(store).items() if k[0].startswith("hr.r1.")} == {
            k: v for k, v in before.items() if k[0].startswith("hr.r1.")
        }
        (folder / "hr.release").write_text("go")
        out, err = replay.communicate(timeout=300)
        assert replay.returncode == 0, out + err
    # once the replay ended, r1 goes as before
    pruned = run_pipeline("prune", FILE, "--run", "r1", cwd=folder, env=env)
    assert pruned.returncode == 0, pruned.stderr
    assert run_ids(folder, env) == ["r2"]


def test_a_second_reprocess_is_refused_before_anything_is_recorded(work):
    folder, env = work
    with reprocessing(folder, env):
        assert run_ids(folder, env) == ["r1", "r2"]
        second = run_pipeline("reprocess", FILE, "--from", "r1", cwd=folder, env=env)
        assert second.returncode != 0, second.stdout
        assert second.stdout == "", second.stdout  # not "run r3 replays 3 source messages"
        line = one_sentence(second.stderr)
        assert "is already running locally (run r2" in line, line
        assert f"`pipeline stop {folder / FILE} --data-dir {folder / '.pipeline-data'}`" in line
        assert run_ids(folder, env) == ["r1", "r2"]
        # from another data directory too: the run directory's lock is not that one's
        elsewhere = run_pipeline(
            "reprocess", FILE, "--from", "r1", "--data-dir", "other", cwd=folder, env=env
        )
        assert elsewhere.returncode != 0, elsewhere.stdout
        assert elsewhere.stdout == "", elsewhere.stdout
        line = one_sentence(elsewhere.stderr)
        assert "is already running locally (run r2" in line, line
        assert "--data-dir" in line, line
        assert run_ids(folder, env) == ["r1", "r2"]
        # nor does `pipeline run` start beside it there (it would resume r1 into the same sinks)
        beside = run_pipeline("run", FILE, "--data-dir", "other", cwd=folder, env=env)
        assert beside.returncode != 0, beside.stdout
        line = one_sentence(beside.stderr)
        assert "is already running locally (run r2" in line, line
        assert [r["state"] for r in runs_of(folder, env)] == ["complete", "running"]


@pytest.mark.parametrize("how", ["stop", "interrupt"])
def test_a_stopped_reprocess_gives_no_comparison(work, how):
    folder, env = work
    with reprocessing(folder, env) as replay:
        if how == "stop":
            stopped = run_pipeline("stop", FILE, cwd=folder, env=env, timeout=180)
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        else:
            os.killpg(replay.pid, signal.SIGINT)
        out, err = replay.communicate(timeout=300)
    assert replay.returncode != 0, out + err
    assert "run r2 replays 3 source messages of run r1" in out, out
    assert "old (r1) -> new (r2)" not in out, out
    assert "configuration (" not in out, out
    said = [line for line in (out + err).splitlines() if "before it finished" in line]
    assert said, out + err
    assert "reprocess r2 of run r1 was stopped before it finished" in said[0], said
    assert "no comparison" in said[0], said
    states = {r["id"]: r["state"] for r in runs_of(folder, env)}
    assert states == {"r1": "complete", "r2": "stopped"}, states
