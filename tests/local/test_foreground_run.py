"""A foreground `pipeline run`, as a scientist watches it:

- its run directory deleted while it ran: the run failed (recorded so), but the supervisor
  SIGKILLed the workers, so a unit with state to close (the NeXus writer's file, left flagged
  open for writing) never closed it. The tasks are now stopped as Ctrl-C stops them
  (KillSignal, the grace period, then SIGKILL), and the run fails with one sentence naming the
  deleted directory, exit 1, no traceback;
- a worker's WARNING and ERROR lines went only to the task's log file: they are now shown
  below the live table, prefixed with the unit replica, each once, and a unit warning on every
  message is summarised instead of flooding the terminal.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from local_jobs import PIPELINE, alive, cli_env, read_state, wait_for

from asapo_pipelines.runs import RunStore
from asapo_pipelines.testing.distributions import PluginProject, install
from asapo_pipelines.transport import open_transport

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test units installed as a real plugin distribution (entry point and all)."""
    root = tmp_path_factory.mktemp("plugin")
    project = PluginProject(
        "asapo-fg-test-units",
        modules={"units.py": (HERE / "foreground_units.py").read_text()},
        entry_points={"fg-tests": "asapo_fg_test_units.units"},
    ).write(root)
    install([project], root / "site")
    return root / "site"


def env(site: Path, tmp_path: Path) -> dict[str, str]:
    return cli_env(PYTHONPATH=str(site), ASAPO_PIPELINES_CACHE_DIR=str(tmp_path / "cache"))


def write_pipeline(directory: Path, units: dict[str, Any]) -> Path:
    """The pipeline file, its embedded store (and so its runs) in `store/` beside it."""
    path = directory / "fg.pipeline.yaml"
    doc = {"pipeline": "fg", "transport": {"embedded": {"path": "store"}}, "units": units}
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return path


def pipeline(*args: str, site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PIPELINE, *args],
        capture_output=True,
        text=True,
        env=env(site, cwd),
        cwd=cwd,
        timeout=180,
        check=False,
    )


def test_a_deleted_run_directory_stops_the_workers_gracefully_and_fails_the_run(
    tmp_path: Path, site: Path
) -> None:
    marker = tmp_path / "closer.txt"
    file = write_pipeline(
        tmp_path,
        {
            "ticks": {
                "unit": "fg.ticks",
                "params": {"interval": 0.05},
                "outputs": {"numbers": "numbers"},
            },
            "closer": {
                "unit": "fg.closer",
                "params": {"marker": str(marker)},
                "inputs": {"numbers": "numbers"},
            },
        },
    )
    run = subprocess.Popen(
        [PIPELINE, "run", str(file)],
        cwd=tmp_path,
        env=env(site, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids: list[int] = []
    try:
        run_dir = wait_for(
            lambda: next((tmp_path / "store" / "runs").glob("fg*"), None),
            timeout=60,
            what="the run directory",
        )
        wait_for(lambda: marker.exists(), timeout=90, what="the closer to start")
        pids = [u["pid"] for u in (read_state(run_dir) or {}).get("units", []) if u["pid"]]
        # as `rm -rf` does, again while the supervisor writes its state in it meanwhile
        wait_for(lambda: _removed(run_dir), timeout=30, what="the run directory to go")
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid in pids:
            if alive(pid):
                subprocess.run(["kill", "-KILL", f"-{pid}"], check=False)
    assert run.returncode == 1, (out, err)
    assert "Traceback" not in err
    # the unit was stopped gracefully: it closed what it had open, as after Ctrl-C
    noted = [line.split()[0] for line in marker.read_text().splitlines()]
    assert noted == ["opened", "closed"], noted
    sentence = err.strip().splitlines()[-1]
    assert sentence.startswith(f"error: the run directory {run_dir} was deleted while job fg ran")
    assert sentence.endswith("its tasks were stopped"), sentence
    with open_transport({"embedded": {"path": str(tmp_path / "store")}}) as transport:
        r1 = RunStore(transport, "fg").get("r1")
    assert r1.state == "failed"
    assert r1.last_end is not None
    assert r1.last_end["message"].startswith(sentence.removeprefix("error: "))


def _removed(directory: Path) -> bool:
    shutil.rmtree(directory, ignore_errors=True)
    return not directory.exists()


SUMMARY = re.compile(
    r"^warn\[0\]: (\d+) more warning or error lines? not shown; see `pipeline logs (\S+) warn`$"
)


def test_workers_warnings_are_relayed_once_each_and_a_flood_is_summarised(
    tmp_path: Path, site: Path
) -> None:
    count = 300
    file = write_pipeline(
        tmp_path,
        {
            "ticks": {
                "unit": "fg.ticks",
                "params": {"count": count},
                "outputs": {"numbers": "numbers"},
            },
            "warn": {
                "unit": "fg.warner",
                "params": {"startup_warning": "calibration file is old", "warn_each": True},
                "inputs": {"numbers": "numbers"},
            },
        },
    )
    done = pipeline("run", str(file), site=site, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    relayed = [line for line in lines if line.startswith("warn[0] WARNING ")]
    assert relayed.count("warn[0] WARNING calibration file is old") == 1, done.stdout
    assert len(set(relayed)) == len(relayed), done.stdout  # each line once
    summaries = [m for line in lines if (m := SUMMARY.match(line))]
    assert summaries, done.stdout  # the flood is summarised ...
    assert len(relayed) < count / 10, done.stdout  # ... instead of shown
    assert {m.group(2) for m in summaries} == {str(file)}
    # INFO lines stay in the log
    assert "took value" not in done.stdout
    # every warning the worker logged is either shown or counted in a summary
    logged = pipeline("logs", str(file), "warn", "--stderr", site=site, cwd=tmp_path)
    assert logged.returncode == 0, logged.stderr
    warnings = [line for line in logged.stdout.splitlines() if " warn[0] WARNING " in line]
    assert len(warnings) >= count + 1
    assert len(relayed) + sum(int(m.group(1)) for m in summaries) == len(warnings)


def test_a_unit_that_keeps_warning_gets_a_few_lines_every_few_seconds() -> None:
    from asapo_pipelines.local.relay import LogRelay, logs_args

    relay = LogRelay("p.pipeline.yaml", lines=2, window=1.0, flood_window=10.0)
    shown = [line for t in range(100) for line in relay.offer("a[1]", f"WARNING {t}", t / 10)]
    shown += relay.rest()
    see = "see `pipeline logs p.pipeline.yaml a --replica 1`"
    assert shown == [
        "a[1] WARNING 0",
        "a[1] WARNING 1",
        f"a[1]: 8 more warning or error lines not shown; {see}",  # at 1 s
        "a[1] WARNING 10",
        "a[1] WARNING 11",
        f"a[1]: 88 more warning or error lines not shown; {see}",  # the end, within 10 s
    ]
    # a unit gone quiet for a whole window starts again with a short one
    assert relay.offer("b[0]", "ERROR x", 0.0) == ["b[0] ERROR x"]
    assert relay.due(5.0) == []
    assert relay.offer("b[0]", "ERROR y", 5.0) == ["b[0] ERROR y"]
    assert logs_args("c[0]/prestart") == "c --task prestart"
