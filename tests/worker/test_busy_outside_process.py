"""A unit stuck outside `process()` read as idle or as loading. The status records said
`busy 25s (files/default#3)` of a long `process()` or stream hook only: a source whose `run()`
blocked in its own code (a device that does not answer, a slow read) stayed `running`, and a
unit whose `restore()` hung at start-up stayed `loading`, for as long as it lasted. Now a
source's code that has gone `BUSY_AFTER` seconds without emitting or waiting shows as
`busy 12s (run() without emit or wait)` (a source waiting in `wait()` for new files is idle,
not busy), and a restore call as `busy 12s (restoring state from numbers/default#2)`. A unit
whose runtime's import or `on_start` hung stayed `loading` too: it shows as
`busy 12s (importing the unit's runtime)` or `busy 12s (starting: on_start)`. Real plugin
distribution, real `pipeline run`, `status`, `logs` and `stop` subprocesses."""

from __future__ import annotations

import json
import re
import subprocess
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from held_units import held_env, held_units, running

from helpers import run_pipeline, wait_for


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return held_units(tmp_path_factory.mktemp("stuck"), "stuck")


def _env(folder: Path, site: Path) -> dict[str, str]:
    return held_env(folder, site, "stuck")


def _running(folder: Path, env: dict[str, str]) -> AbstractContextManager[subprocess.Popen[str]]:
    return running(folder, "stuck", env)


def _counters(folder: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    status = run_pipeline("status", "stuck.pipeline.yaml", "--json", cwd=folder, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    return {u["group"]: u["counters"] for u in json.loads(status.stdout)["units"]}


def _row(folder: Path, env: dict[str, str], unit: str) -> str:
    """The unit's row of the `pipeline status` table."""
    table = run_pipeline("status", "stuck.pipeline.yaml", cwd=folder, env=env)
    assert table.returncode == 0, table.stdout + table.stderr
    rows = [
        x
        for x in table.stdout.splitlines()
        # the running job's table names replicas, the counters' table units
        if x.startswith((f"│ {unit}[0] ", f"│ {unit} "))
    ]
    assert rows, table.stdout
    return rows[0]


def _busy(folder: Path, env: dict[str, str], unit: str) -> dict[str, dict[str, Any]]:
    """All units' counters, once a status record says `unit` is busy."""
    return wait_for(
        lambda: (c := _counters(folder, env))[unit].get("busy_seconds") and c,
        timeout=60,
        what=f"a status record that says {unit} is busy",
    )


def _write(folder: Path, units: dict[str, Any]) -> None:
    doc = {"pipeline": "stuck", "units": units}
    (folder / "stuck.pipeline.yaml").write_text(json.dumps(doc, indent=2))  # JSON is YAML


#: what the worker's log says, once, of a call that has lasted a minute
LONG_CALL = ": the unit has been busy for over 60 s with "


def test_a_source_blocked_in_its_own_code_shows_as_busy(tmp_path: Path, site: Path) -> None:
    """The device source blocks after its first frame; `core.files` watches a folder beside it
    (waiting in `wait()` for new files): the one is busy, the other is not."""
    (tmp_path / "files").mkdir()
    _write(
        tmp_path,
        {
            "device": {"unit": "stuck.device", "outputs": {"frames": "frames"}},
            "files": {
                "unit": "core.files",
                "params": {"directory": "files", "watch": True},
                "outputs": {"files": "raw"},
            },
        },
    )
    env = _env(tmp_path, site)
    with _running(tmp_path, env) as run:
        wait_for((tmp_path / "stuck.mark").exists, timeout=120, what="the device to block")
        seen = _busy(tmp_path, env, "device")
        row = _row(tmp_path, env, "device")
        said = wait_for(
            lambda: LONG_CALL in (log := _logs(tmp_path, env, "device")) and log,
            timeout=180,
            what="the worker's log to say the source is busy",
        )
        (tmp_path / "stuck.release").write_text("go")
        # its run() returns; in a run that watches, its worker waits for the stop
        after = wait_for(
            lambda: (c := _counters(tmp_path, env)["device"])["processed"] == 2 and c,
            timeout=60,
            what="the device's second frame",
        )
        # run() has returned: the records stop saying it is busy
        idle = wait_for(
            lambda: (c := _counters(tmp_path, env)["device"])["busy_seconds"] is None and c,
            timeout=60,
            what="a status record that says the device is no longer busy",
        )
        stopped = run_pipeline("stop", "stuck.pipeline.yaml", cwd=tmp_path, env=env, timeout=180)
        out, _ = run.communicate(timeout=180)
    device, files = seen["device"], seen["files"]
    assert device["state"] == "running", device
    assert device["processed"] == 1, device
    assert device["busy_seconds"] >= 3, device
    assert device["busy_with"] == "run() without emit or wait", device
    # watching for new files is waiting, not work: that source is running, not busy
    assert files["state"] == "running", files
    assert files["busy_seconds"] is None, files
    assert re.search(r"│ busy \d+s \(run\(\) without emit or wait\) ", row), row
    assert f"{LONG_CALL}run() without emit or wait (still in its call;" in said, said
    assert said.count(LONG_CALL) == 1, said
    assert after["state"] == "running", after
    assert idle["busy_with"] is None, idle
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "Traceback" not in out, out


def _logs(folder: Path, env: dict[str, str], unit: str) -> str:
    logs = run_pipeline("logs", "stuck.pipeline.yaml", unit, cwd=folder, env=env)
    assert logs.returncode == 0, logs.stdout + logs.stderr
    return logs.stdout


def test_a_restore_that_hangs_shows_as_busy(tmp_path: Path, site: Path) -> None:
    """The run's second session restores the keeper's state from the three numbers it
    processed in the first; `restore()` hangs on the second."""
    _write(
        tmp_path,
        {
            "numbers": {"unit": "stuck.numbers", "outputs": {"numbers": "numbers"}},
            "keeper": {
                "unit": "stuck.keeper",
                "inputs": {"numbers": "numbers"},
                "outputs": {"sums": "sums"},
            },
        },
    )
    env = _env(tmp_path, site)
    first = run_pipeline("run", "stuck.pipeline.yaml", cwd=tmp_path, env=env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert not (tmp_path / "stuck.mark").exists()  # nothing to restore in the first session
    after = _busy_while_loading(tmp_path, env, "keeper", "restoring state from numbers/default#2")
    assert after["state"] == "finished", after


def _busy_while_loading(folder: Path, env: dict[str, str], unit: str, doing: str) -> Any:
    """Run the pipeline until `unit`'s start hangs, check that `pipeline status` says it is
    busy `doing` while loading, release it; its counters once the run has ended."""
    with _running(folder, env) as run:
        wait_for((folder / "stuck.mark").exists, timeout=120, what="the start to hang")
        seen = _busy(folder, env, unit)[unit]
        row = _row(folder, env, unit)
        (folder / "stuck.release").write_text("go")
        out, _ = run.communicate(timeout=300)
    assert run.returncode == 0, out
    assert "Traceback" not in out, out
    assert seen["state"] == "loading", seen
    assert seen["busy_seconds"] >= 3, seen
    assert seen["busy_with"] == doing, seen
    assert re.search(rf"│ busy \d+s \({re.escape(doing)}\) ", row), row
    after = _counters(folder, env)[unit]
    assert after["busy_seconds"] is None, after
    return after


@pytest.mark.parametrize(
    ("unit", "doing"),
    [("fit", "importing the unit's runtime"), ("starter", "starting: on_start")],
)
def test_a_start_that_hangs_shows_as_busy(
    tmp_path: Path, site: Path, unit: str, doing: str
) -> None:
    """The sink's worker hangs before it can take its first file: in the import of its
    runtime (`stuck.fit`, as an import of larch that waits on a network file system) or in its
    `on_start` (`stuck.starter`, a device that does not answer)."""
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a")
    _write(
        tmp_path,
        {
            "files": {
                "unit": "core.files",
                "params": {"directory": "files"},
                "outputs": {"files": "raw"},
            },
            "sink": {"unit": f"stuck.{unit}", "inputs": {"files": "raw"}},
        },
    )
    after = _busy_while_loading(tmp_path, _env(tmp_path, site), "sink", doing)
    assert after["state"] == "finished", after
    assert after["processed"] == 1, after
