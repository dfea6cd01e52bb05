"""A unit knows which run a `pipeline reprocess` replays: `self.context.replays`, a read-only
`ReplayedRun` (the run's id and its start), None in a run of its own. Before, nothing told a
unit, and a sink citing where its inputs come from (the NeXus writer's `raw_scans`) cited every
earlier run of the same inputs. Real `pipeline` commands, core.files and a test sink installed
as a plugin distribution, the embedded store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

HERE = Path(__file__).parent
FILE = "r.pipeline.yaml"
PIPELINE = """\
pipeline: r
units:
  files: {unit: core.files, params: {directory: in/}, outputs: {files: raw}}
  seen:  {unit: rp.seen, inputs: {files: raw}}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The test sink installed as a real plugin distribution (entry point and all)."""
    root = tmp_path_factory.mktemp("plugin")
    project = PluginProject(
        "asapo-rp-test-units",
        modules={"units.py": (HERE / "replay_units.py").read_text()},
        entry_points={"rp-tests": "asapo_rp_test_units.units"},
    ).write(root)
    install([project], root / "site")
    return {"PYTHONPATH": str(root / "site"), "ASAPO_PIPELINES_CACHE_DIR": str(root / "cache")}


def _ok(*args: str, cwd: Path, env: dict[str, str]) -> str:
    done = run_pipeline(*args, cwd=cwd, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_unit_is_told_the_run_a_reprocess_replays(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a\n")
    (tmp_path / FILE).write_text(PIPELINE)
    _ok("run", FILE, cwd=tmp_path, env=env)
    _ok("run", "--fresh", FILE, cwd=tmp_path, env=env)
    _ok("reprocess", FILE, "--from", "r1", cwd=tmp_path, env=env)
    runs = {
        r["id"]: r for r in json.loads(_ok("runs", FILE, "--json", cwd=tmp_path, env=env))["runs"]
    }

    def told(run: str) -> object:
        return json.loads((tmp_path / "seen" / f"{run}.json").read_text())["replays"]

    # runs of their own replay nothing; the reprocess is told r1, with r1's start, not r2
    assert told("r1") is None
    assert told("r2") is None
    assert told("r3") == {"run": "r1", "started": runs["r1"]["started"]}
    assert runs["r3"]["from_run"] == "r1"


def test_a_reprocess_keeps_the_replayed_runs_start_after_it_is_pruned(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # Before, the worker looked the replayed run's start up in the store whenever it started:
    # once `pipeline prune --run r1` removed r1's record, a worker of the reprocess started
    # again (an executor restarting its task) was told `started: None`, a run no result names
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a\n")
    (tmp_path / FILE).write_text(PIPELINE)
    _ok("run", FILE, cwd=tmp_path, env=env)
    _ok("reprocess", FILE, "--from", "r1", cwd=tmp_path, env=env)
    runs = {
        r["id"]: r for r in json.loads(_ok("runs", FILE, "--json", cwd=tmp_path, env=env))["runs"]
    }
    started = runs["r1"]["started"]
    assert isinstance(started, float)
    seen = tmp_path / "seen" / "r2.json"
    assert json.loads(seen.read_text())["replays"] == {"run": "r1", "started": started}
    _ok("prune", FILE, "--run", "r1", cwd=tmp_path, env=env)
    left = json.loads(_ok("runs", FILE, "--json", cwd=tmp_path, env=env))["runs"]
    assert [r["id"] for r in left] == ["r2"]
    seen.unlink()
    # the sink's worker of the reprocess, started again as its executor starts it
    _ok("worker", FILE, "seen", cwd=tmp_path, env={**env, "ASAPO_PIPELINES_RUN": "r2"})
    assert json.loads(seen.read_text())["replays"] == {"run": "r1", "started": started}
