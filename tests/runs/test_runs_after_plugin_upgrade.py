"""A plugin upgrade that makes a pipeline file invalid (the unit's new version renames a
required param: P203) must not hide what ran: `pipeline runs` and `pipeline tail` need only
the file's name, transport and streams, so they still show the runs and their results, with
the warning `status` says, instead of refusing until the file is edited. A file that is no
pipeline at all is still refused as before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

NAME = "upgraded"
COUNT = 4

#: the unit in two versions: 2.0.0 renames its required param `count` to `total`
UNITS = """
from typing import Any

from asapo_pipelines.sdk import Params, Source, describe, hookimpl, out


class CounterParams(Params):
    {param}: int


COUNTER = describe(
    "upg.counter",
    kind="connector",
    summary="Emits the numbers 1 to {param}.",
    runtime=f"{{__name__}}:Counter",
    outputs=[out("numbers")],
    params=CounterParams,
)


class Counter(Source):
    def run(self) -> None:
        for n in range(1, self.params.{param} + 1):
            self.emit("numbers", {{"n": n}}, key=str(n))


@hookimpl
def register_units(register: Any) -> None:
    register(COUNTER)
"""


def _project(root: Path, version: str, param: str) -> Path:
    return PluginProject(
        "asapo-upg-history-units",
        version,
        {"units.py": UNITS.format(param=param)},
        {"upg-history": "asapo_upg_history_units.units"},
    ).write(root / f"src-{version}")


def _ok(*args: str, env: dict[str, str], cwd: Path) -> Any:
    done = run_pipeline(*args, env=env, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run with the plugin at 1.0.0, what `runs` and `tail` showed then, and the plugin
    upgraded to 2.0.0 under the unchanged file."""
    work = tmp_path_factory.mktemp("upgrade")
    site = work / "site"
    install([_project(work, "1.0.0", "count")], site)
    env = {"PYTHONPATH": str(site), "ASAPO_PIPELINES_CACHE_DIR": str(work / "cache")}
    doc = {
        "pipeline": NAME,
        "transport": {"embedded": {"path": "store"}},
        "units": {
            "counter": {
                "unit": "upg.counter",
                "params": {"count": COUNT},
                "outputs": {"numbers": "numbers"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": str(work / "out.jsonl")},
                "inputs": {"messages": "numbers"},
            },
        },
    }
    file = work / f"{NAME}.pipeline.yaml"
    file.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    _ok("run", file.name, env=env, cwd=work)
    before = {
        "runs": json.loads(_ok("runs", file.name, "--json", env=env, cwd=work).stdout),
        "tail": _ok("tail", file.name, "numbers", "--all", "--json", env=env, cwd=work).stdout,
    }
    install([_project(work, "2.0.0", "total")], site)
    invalid = run_pipeline("validate", file.name, env=env, cwd=work)
    assert invalid.returncode != 0, invalid
    assert "P203" in invalid.stdout + invalid.stderr, invalid
    return {"work": work, "env": env, "file": file.name, "before": before}


def _warned(stderr: str, file: str) -> None:
    assert f"{file} does not validate now" in stderr, stderr
    assert "P203" in stderr, stderr


def test_runs_still_lists_what_ran_after_the_upgrade(upgraded: dict[str, Any]) -> None:
    work, env, file = upgraded["work"], upgraded["env"], upgraded["file"]
    before = upgraded["before"]["runs"]
    assert [r["id"] for r in before["runs"]] == ["r1"], before
    done = run_pipeline("runs", file, "--json", env=env, cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    after = json.loads(done.stdout)
    assert after == before  # the same history, as recorded
    assert after["runs"][0]["configurations"]["counter"]["version"] == "1.0.0"  # what ran
    _warned(done.stderr, file)
    table = run_pipeline("runs", file, env=env, cwd=work)
    assert table.returncode == 0, table.stdout + table.stderr
    assert "r1" in table.stdout, table.stdout
    assert before["runs"][0]["state"] in table.stdout, table.stdout
    _warned(table.stderr, file)


def test_tail_still_reads_the_stored_results_after_the_upgrade(upgraded: dict[str, Any]) -> None:
    work, env, file = upgraded["work"], upgraded["env"], upgraded["file"]
    before = upgraded["before"]["tail"]
    assert sorted(json.loads(line)["value"]["n"] for line in before.splitlines()) == list(
        range(1, COUNT + 1)
    ), before
    done = run_pipeline("tail", file, "numbers", "--all", "--json", env=env, cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == before
    _warned(done.stderr, file)


def test_a_file_that_is_no_pipeline_is_still_refused(upgraded: dict[str, Any]) -> None:
    work, env = upgraded["work"], upgraded["env"]
    (work / "list.pipeline.yaml").write_text("- just\n- a list\n")
    for args in (("runs", "list.pipeline.yaml"), ("tail", "list.pipeline.yaml", "numbers")):
        done = run_pipeline(*args, env=env, cwd=work)
        assert done.returncode != 0
        # the file's report, as `pipeline validate` says it, and nothing else
        assert done.stderr.startswith("error: list.pipeline.yaml is not a valid pipeline file"), (
            done.stderr
        )
        assert "P108" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert "does not validate now" not in done.stderr
