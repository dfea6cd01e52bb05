"""Local runs of pipelines on a Redis transport: two files of one folder with the same
`pipeline:` name and their own key prefixes are two pipelines, run side by side (with an
embedded copy too), each reached by its own `status` and `stop`; and `status` of a run whose
Redis is down says the counters could not be read. A real redis-server on loopback, started
by pid and stopped by that pid; skipped without the redis plugin or the server."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import alive, run_pipeline, wait_for

pytest.importorskip("asapo_pipelines_redis")
if shutil.which("redis-server") is None:
    pytest.skip("redis-server is not installed", allow_module_level=True)

from asapo_pipelines_redis.testing import RedisServer
from test_which_run import NO_NOMAD, detach, runs_of, task_pids, write_pipeline


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis-server") as server:
        yield server


def on_redis(server: RedisServer, prefix: str) -> dict[str, dict[str, str]]:
    return {"redis": {"url": server.url, "key_prefix": prefix}}


def test_same_named_pipelines_of_one_folder_each_have_their_own_run(
    tmp_path: Path, redis: RedisServer
) -> None:
    a = write_pipeline(tmp_path / "r-a.pipeline.yaml", "same", transport=on_redis(redis, "proj-a"))
    b = write_pipeline(tmp_path / "r-b.pipeline.yaml", "same", transport=on_redis(redis, "proj-b"))
    embedded = write_pipeline(tmp_path / "same.pipeline.yaml", "same")
    started: list[Path] = []
    try:
        state_a = detach(a)
        started.append(a)
        pids_a = wait_for(lambda: task_pids(Path(state_a["run_dir"])), 60, "r-a's tasks")
        # b has no run yet: its status shows none of a's, and its stop stops nothing of a's
        shown = run_pipeline("status", str(b), env=NO_NOMAD)
        assert not {str(p) for p in pids_a.values()} & set(shown.stdout.split()), shown.stdout
        run_pipeline("stop", str(b), env=NO_NOMAD)
        assert alive(state_a["pid"]), "`pipeline stop r-b` stopped r-a's pipeline"
        assert runs_of(a)["r1"]["state"] == "running"
        # all three run at once, each in a run directory of its own
        states = {a: state_a}
        for file in (b, embedded):
            states[file] = detach(file)
            started.append(file)
        assert len({s["run_dir"] for s in states.values()}) == 3
        for file, state in states.items():
            pids = wait_for(lambda s=state: task_pids(Path(s["run_dir"])), 60, f"{file}'s tasks")
            shown = run_pipeline("status", str(file), "--json", env=NO_NOMAD)
            assert shown.returncode == 0, shown.stderr
            status = json.loads(shown.stdout)
            assert status["pipeline_file"] == str(file)
            assert {u["group"]: u["pid"] for u in status["units"]} == pids
        stopped = run_pipeline("stop", str(b), env=NO_NOMAD)
        assert stopped.returncode == 0, stopped.stderr
        assert not alive(states[b]["pid"])
        assert alive(states[a]["pid"])
        assert alive(states[embedded]["pid"])
    finally:
        for file in started:
            run_pipeline("stop", str(file), env=NO_NOMAD, timeout=120)


def test_status_says_when_the_counters_cannot_be_read(tmp_path: Path, redis: RedisServer) -> None:
    file = write_pipeline(tmp_path / "r.pipeline.yaml", "r", transport=on_redis(redis, "down"))
    state = detach(file)
    try:
        wait_for(lambda: task_pids(Path(state["run_dir"])), 60, "the tasks")
        redis.stop()
        for extra in ((), ("--json",)):
            done = run_pipeline("status", str(file), *extra, env=NO_NOMAD)
            assert done.returncode == 1, done.stdout + done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1, done.stderr
            assert lines[0].startswith("error: the workers' counters could not be read: "), lines
            assert f"127.0.0.1:{redis.port}" in lines[0]
            assert "job r (service): running" in done.stdout or extra, done.stdout
    finally:
        redis.start()
        run_pipeline("stop", str(file), env=NO_NOMAD, timeout=120)
