"""`pipeline reprocess` compares what each unit sent, not only its summary. An agent's summary
keeps its last decision per group: a reprocess whose earlier decisions changed and whose last
did not printed the decisions as unchanged. The comparison now pairs each unit's output
messages of both runs in order and says how many differ, the first shown; a suggestion's uid
and time (new on every send) are not a difference. Real `pipeline` commands, core.files and a
test agent installed as a plugin distribution, the embedded store."""

from __future__ import annotations

from pathlib import Path

import pytest
from runs_helpers import read_messages

from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

HERE = Path(__file__).parent
FILE = "c.pipeline.yaml"
PIPELINE = """\
pipeline: c
units:
  files:   {unit: core.files, params: {directory: in/}, outputs: {files: raw}}
  advisor: {unit: cmp.clip-agent, inputs: {files: raw}, outputs: {plans: plans}}
"""
#: each file's noise level: the last is below every ceiling tried, the first two are not
LEVELS = {"a1.txt": "30", "a2.txt": "20", "a3.txt": "1"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The test agent installed as a real plugin distribution (entry point and all)."""
    root = tmp_path_factory.mktemp("plugin")
    project = PluginProject(
        "asapo-cmp-test-units",
        modules={"units.py": (HERE / "reprocess_units.py").read_text()},
        entry_points={"cmp-tests": "asapo_cmp_test_units.units"},
    ).write(root)
    install([project], root / "site")
    return {"PYTHONPATH": str(root / "site"), "ASAPO_PIPELINES_CACHE_DIR": str(root / "cache")}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    work = tmp_path_factory.mktemp("reprocess-sent")
    (work / "in").mkdir()
    for name, level in LEVELS.items():
        (work / "in" / name).write_text(level + "\n")
    (work / FILE).write_text(PIPELINE)
    done = run_pipeline("run", FILE, cwd=work, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return work


def _plans(work: Path, run: str) -> list[dict]:
    return [v for _, v in read_messages(work / ".pipeline-data", f"c.{run}.plans")]


def _advisor_lines(out: str) -> list[str]:
    """The comparison's lines of the advisor."""
    lines = out.split("old (r1) -> new (", 1)[1].splitlines()
    start = lines.index("advisor:") + 1
    return [line.strip() for line in lines[start:] if line.startswith("  ")]


def test_earlier_decisions_that_changed_are_said_when_the_last_did_not(work, env):
    done = run_pipeline(
        "reprocess", FILE, "--from", "r1", "--set", "advisor.ceiling=15",
        cwd=work, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    old, new = _plans(work, "r1"), _plans(work, "r2")
    # the situation: the two loud files decided otherwise, the last one alike ...
    assert [p["arguments"]["noise"] for p in old] == [30.0, 20.0, 1.0]
    assert [p["arguments"]["noise"] for p in new] == [15.0, 15.0, 1.0]
    lines = _advisor_lines(done.stdout)
    # ... so the summary, which keeps the last decision, compares equal
    assert "decisions.sample.noise: 1 -> 1" in lines
    assert not [line for line in lines if line.startswith("decisions.") and "(changed)" in line]
    # and what the agent sent says otherwise, with the first difference
    assert lines[0] == (
        "sent on plans: 2 of 3 messages differ (the first: #1 arguments.noise: 30 -> 15, "
        "reason: noise 30 -> noise 15)   (changed)"
    ), lines


def test_a_reprocess_that_changed_nothing_sends_the_same_messages(work, env):
    done = run_pipeline("reprocess", FILE, "--from", "r1", cwd=work, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    run = done.stdout.split("old (r1) -> new (", 1)[1].split(")", 1)[0]
    old, new = _plans(work, "r1"), _plans(work, run)
    # every suggestion has its own uid and time, which are no difference in what was decided
    assert all(a["uid"] != b["uid"] for a, b in zip(old, new, strict=True))
    assert _advisor_lines(done.stdout)[0] == "sent on plans: the same 3 messages"


def test_status_and_tail_name_the_run_they_show(tmp_path, env):
    """After a reprocess, `status` shows the replay's job (a short batch) and `tail` its
    messages: both say which run that is. A pipeline's only run is not named."""
    (tmp_path / "in").mkdir()
    for name, level in LEVELS.items():
        (tmp_path / "in" / name).write_text(level + "\n")
    (tmp_path / FILE).write_text(PIPELINE)
    ran = run_pipeline("run", FILE, cwd=tmp_path, env=env, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    def status_and_tail() -> tuple[str, str, str]:
        shown = run_pipeline("status", FILE, cwd=tmp_path, env=env)
        tailed = run_pipeline("tail", FILE, "plans", "-n", "1", cwd=tmp_path, env=env)
        assert shown.returncode == tailed.returncode == 0, shown.stderr + tailed.stderr
        assert len(tailed.stdout.splitlines()) == 1  # stdout stays the messages
        return shown.stdout.splitlines()[0].strip(), tailed.stderr, tailed.stdout

    title, said, _ = status_and_tail()
    assert title.startswith("job c (batch): complete, "), title
    assert "run" not in title, title
    assert said == ""
    done = run_pipeline(
        "reprocess", FILE, "--from", "r1", "--set", "advisor.ceiling=0.5",
        cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    title, said, message = status_and_tail()
    assert title.endswith("s — run r2, a reprocess of r1"), title
    assert '"noise": 0.5' in message  # r2's
    assert said == (
        "run r2, a reprocess of r1 (the run last started or resumed); --run r1 shows r1's\n"
    )
    # asked for by name, the run needs no naming
    asked = run_pipeline("tail", FILE, "plans", "-n", "1", "--run", "r1", cwd=tmp_path, env=env)
    assert asked.returncode == 0, asked.stderr
    assert asked.stderr == ""
    assert '"noise": 1.0' in asked.stdout
