"""A source that emitted a value its port's format cannot hold (a set on a json port), or that
emitted on a port it does not have, crash-looped: each of five restarts ran `run()` into the
same error and sent one more identical record, the status table said `errors 0` for it and
`pipeline runs` counted the records. docs/unit-authors.md promises that such a mistake goes to
the error stream at once. Now a refused value is one record and `run()` goes on; an unknown
port, which ends `run()`, is one record and exit 78 (no restarts). Real `pipeline run`s of a
plugin unit installed as a distribution; every count a user reads agrees on one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from procs import worker_env, write_pipeline

from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

HERE = Path(__file__).parent
COUNT = 6
BAD_AT = 3


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("plugin")
    project = PluginProject(
        "asapo-refuse-test-units",
        modules={"units.py": (HERE / "refusing_units.py").read_text()},
        entry_points={"refuse-tests": "asapo_refuse_test_units.units"},
    ).write(root)
    target = root / "site"
    install([project], target)
    return worker_env(target)


def run(tmp_path: Path, env: dict[str, str], params: dict[str, Any]) -> Any:
    units = {
        "s": {
            "unit": "refuse.numbers",
            "params": {"count": COUNT, **params},
            "outputs": {"numbers": "numbers"},
        },
        "c": {
            "unit": "refuse.collect",
            "params": {"path": "collected.txt"},
            "inputs": {"numbers": "numbers"},
        },
    }
    file = write_pipeline(tmp_path, units)
    return file, run_pipeline("run", str(file), env=env, cwd=tmp_path, timeout=600)


def table_cell(output: str, task: str, column: str) -> str:
    """The cell of `column` in the row of `task` of the status table `pipeline run` printed."""
    rows = [
        [cell.strip() for cell in line.strip("│┃ \n").replace("┃", "│").split("│")]
        for line in output.splitlines()
        if line.lstrip().startswith(("│", "┃"))
    ]
    header = next(row for row in rows if column in row)
    row = next(row for row in rows if row and row[0] == task)
    return row[header.index(column)]


def error_records(file: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    tail = run_pipeline("tail", str(file), "errors", "--all", "--json", env=env)
    assert tail.returncode == 0, tail.stderr
    return [json.loads(line) for line in tail.stdout.splitlines() if line.strip()]


def assert_told_once(file: Path, env: dict[str, str], output: str, exception: str) -> None:
    """One error record, and the status table, the end-of-run line and `pipeline runs` each
    count one error of the source."""
    records = error_records(file, env)
    assert [r["metadata"]["exception"] for r in records] == [exception], records
    assert table_cell(output, "s[0]", "errors") == "1", output
    assert "1 message went to the error stream (s 1)" in output, output
    runs = run_pipeline("runs", str(file), "--json", env=env)
    assert runs.returncode == 0, runs.stderr
    (record,) = json.loads(runs.stdout)["runs"]
    assert record["counts"]["s"]["errors"] == 1, record["counts"]


def test_a_value_its_port_cannot_hold_is_one_error_record_and_the_source_goes_on(
    tmp_path: Path, env: dict[str, str]
) -> None:
    file, done = run(tmp_path, env, {"set_at": BAD_AT})
    assert "restarting" not in done.stdout, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    sent = (tmp_path / "collected.txt").read_text().split()
    assert sent == [str(n) for n in range(1, COUNT + 1) if n != BAD_AT]
    assert_told_once(file, env, done.stdout, "asapo_pipelines.sdk.runner.OutputEncodingError")


def test_an_unknown_port_is_one_error_record_and_exit_78_without_restarts(
    tmp_path: Path, env: dict[str, str]
) -> None:
    file, done = run(tmp_path, env, {"unknown_port_at": BAD_AT})
    assert "restarting" not in done.stdout, done.stdout
    assert done.returncode != 0
    assert table_cell(done.stdout, "s[0]", "exit") == "78", done.stdout
    assert "has no output port 'no-such-port'" in done.stderr, done.stderr
    assert_told_once(file, env, done.stdout, "asapo_pipelines.sdk.units.UnitUsageError")


def test_a_resumed_source_reporting_an_item_again_does_not_count_it_again(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A resumed session's source reads its items again (a watched folder's files) and reports
    the malformed one again: the error stream keeps one record, so the session counts no new
    error and the run, summed over its sessions, one."""
    file, first = run(tmp_path, env, {"report_at": BAD_AT})
    assert first.returncode == 0, first.stdout + first.stderr
    assert table_cell(first.stdout, "s[0]", "errors") == "1", first.stdout
    again = run_pipeline("run", str(file), env=env, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming run r1" in again.stdout + again.stderr
    assert table_cell(again.stdout, "s[0]", "errors") == "0", again.stdout
    assert len(error_records(file, env)) == 1
    runs = run_pipeline("runs", str(file), "--json", env=env)
    assert runs.returncode == 0, runs.stderr
    (record,) = json.loads(runs.stdout)["runs"]
    assert record["counts"]["s"]["errors"] == 1, record["counts"]
