"""A plugin upgrade that makes a pipeline file invalid (the unit's new version renames a
required param: P203) must not hide what ran: `pipeline runs` and `pipeline tail` need only
the file's name, transport and streams, so they still show the runs and their results, with
the warning `status` says, instead of refusing until the file is edited. A file that is no
pipeline at all is still refused as before."""

from __future__ import annotations

import json
from typing import Any

import pytest
from upgrade_support import ok, run_then_upgrade

from helpers import run_pipeline

NAME = "upgraded"
COUNT = 4


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run with the plugin at 1.0.0, what `runs` and `tail` showed then, and the plugin
    upgraded to 2.0.0 under the unchanged file."""
    work = tmp_path_factory.mktemp("upgrade")

    def before(file: str, env: dict[str, str]) -> dict[str, Any]:
        return {
            "runs": json.loads(ok("runs", file, "--json", env=env, cwd=work).stdout),
            "tail": ok("tail", file, "numbers", "--all", "--json", env=env, cwd=work).stdout,
        }

    return run_then_upgrade(work, NAME, {"embedded": {"path": "store"}}, COUNT, before)


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
