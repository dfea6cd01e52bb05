"""A worker's first status records say `loading` while it imports its unit's runtime (every XAS
worker spends seconds importing larch), and a worker whose `restore()` hangs at start-up says
it is busy while it is still loading. The viewer ordered the replicas' states by a list that
lacked `loading`: while any unit loaded, its units section raised instead of being sent, just
when a scientist opens the page at the start of a run; and it showed busy for `running` only.
Real plugin distribution, real `pipeline run`, `status` and `view` subprocesses, the page's
event stream over loopback and the page itself in a real chromium."""

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
from test_browser import unit_row
from test_browser import wait_for as wait_on_page
from viewer_support import read_events, start_view, stop_view

from helpers import PIPELINE, installed_plugin, plugin_env, run_pipeline, wait_for

PLUGIN = """
from asapo_pipelines.sdk import describe, hookimpl, inp, out


@hookimpl
def register_units(register):
    register(describe(
        "heavy.fit", kind="connector", summary="A runtime slow to import, like larch.",
        runtime="asapo_heavy_units.heavy:Fit", inputs=[inp("files")],
    ))
    register(describe(
        "heavy.numbers", kind="connector", summary="Sends three numbers.",
        runtime="asapo_heavy_units.runtime:Numbers", outputs=[out("numbers")],
    ))
    register(describe(
        "heavy.keeper", kind="processor", summary="Keeps a sum; its restore can hang.",
        runtime="asapo_heavy_units.runtime:Keeper", inputs=[inp("numbers")],
        outputs=[out("sums")],
    ))
"""

# the blocking parts last until the test releases them, at most five minutes
HOLD = """
import os
import time
from pathlib import Path


def hold(mark):
    Path(os.environ["HEAVY_MARK"]).write_text(mark)
    release = Path(os.environ["HEAVY_RELEASE"])
    began = time.monotonic()
    while not release.exists() and time.monotonic() - began < 300:
        time.sleep(0.1)
"""

# importing it takes as long as the test wants: the worker is loading meanwhile
HEAVY = """
from asapo_pipelines.sdk import Sink

from asapo_heavy_units.hold import hold

hold("import")


class Fit(Sink):
    def process(self, message):
        return None
"""

RUNTIME = """
from asapo_pipelines.sdk import Processor, Source

from asapo_heavy_units.hold import hold


class Numbers(Source):
    def run(self):
        for n in (1, 2, 3):
            self.emit("numbers", {"n": n}, key=str(n))


class Keeper(Processor):
    restores_state = True

    def on_start(self):
        self.total = 0

    def restore(self, message):
        if message.id == 2:
            hold("restore")
        self.total += message.value["n"]

    def process(self, message):
        self.total += message.value["n"]
        return {"total": self.total}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed_plugin(
        tmp_path_factory.mktemp("heavy"),
        "asapo-heavy-units",
        {"plugin.py": PLUGIN, "hold.py": HOLD, "heavy.py": HEAVY, "runtime.py": RUNTIME},
        {"heavy": "asapo_heavy_units.plugin"},
    )


def _env(folder: Path, site: Path) -> dict[str, str]:
    return plugin_env(
        site, HEAVY_MARK=str(folder / "heavy.mark"), HEAVY_RELEASE=str(folder / "heavy.release")
    )


def _write(folder: Path, units: dict[str, Any]) -> Path:
    file = folder / "heavy.pipeline.yaml"
    file.write_text(json.dumps({"pipeline": "heavy", "units": units}, indent=2))  # JSON is YAML
    return file


@contextmanager
def _running(folder: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`pipeline run` in the background; released and stopped if the test fails before its
    end."""
    run = subprocess.Popen(
        [PIPELINE, "run", "heavy.pipeline.yaml"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield run
    finally:
        (folder / "heavy.release").write_text("go")
        if run.poll() is None:
            # its workers run in sessions of their own: stopped by the command, not the signal
            run_pipeline("stop", "heavy.pipeline.yaml", cwd=folder, env=env, timeout=180)
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


def _counters(folder: Path, env: dict[str, str], unit: str) -> dict[str, Any]:
    status = run_pipeline("status", "heavy.pipeline.yaml", "--json", cwd=folder, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    return next(u["counters"] for u in json.loads(status.stdout)["units"] if u["group"] == unit)


def _viewed(url: str) -> dict[str, Any]:
    """The page's event stream for a few seconds; its sections, which must include the units."""
    events = read_events(url, seconds=4.0)
    assert "units" in events, f"the viewer sent no units section, only {sorted(events)}"
    return events["units"]


def test_a_unit_loading_its_runtime_shows_as_loading(tmp_path: Path, site: Path, page: Any) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a")
    file = _write(
        tmp_path,
        {
            "files": {
                "unit": "core.files",
                "params": {"directory": "files"},
                "outputs": {"files": "raw"},
            },
            "fit": {"unit": "heavy.fit", "inputs": {"files": "raw"}},
        },
    )
    env = _env(tmp_path, site)
    with _running(tmp_path, env) as run:
        wait_for((tmp_path / "heavy.mark").exists, timeout=120, what="the runtime's import")
        seen = wait_for(
            lambda: (c := _counters(tmp_path, env, "fit")).get("state") == "loading" and c,
            timeout=60,
            what="a status record that says fit is loading",
        )
        view, url = start_view(file, env)
        try:
            viewed = _viewed(url)
            page.goto(url)
            row = wait_on_page(page, lambda: (r := unit_row(page, "fit")).get("state") and r, "fit")
            node = page.get_attribute('#graph [data-node="u:fit"]', "class")
            legend = page.locator(".legend li").all_text_contents()
            problems = list(page.problems)
        finally:
            said = stop_view(view)
        (tmp_path / "heavy.release").write_text("go")
        out, _ = run.communicate(timeout=300)
    assert seen["busy_seconds"] is None, seen  # an import is loading, not a call of the unit
    assert viewed["fit"]["state"] == "loading", viewed
    assert viewed["fit"]["busy_seconds"] is None, viewed
    # the page says it in the table and the graph, in its own colour, and explains it
    assert row["state"] == "loading", row
    assert "state-loading" in node, node
    assert "loading" in legend, legend
    assert problems == [], problems
    assert "Traceback" not in said, said
    assert run.returncode == 0, out
    after = _counters(tmp_path, env, "fit")
    assert after["state"] == "finished", after
    assert after["processed"] == 1, after


def test_a_restore_that_hangs_shows_as_busy_while_loading(tmp_path: Path, site: Path) -> None:
    """The run's second session restores the keeper's state from the three numbers it
    processed in the first; `restore()` hangs on the second: `pipeline status` says busy,
    and so does the viewer."""
    file = _write(
        tmp_path,
        {
            "numbers": {"unit": "heavy.numbers", "outputs": {"numbers": "numbers"}},
            "keeper": {
                "unit": "heavy.keeper",
                "inputs": {"numbers": "numbers"},
                "outputs": {"sums": "sums"},
            },
        },
    )
    env = _env(tmp_path, site)
    first = run_pipeline("run", "heavy.pipeline.yaml", cwd=tmp_path, env=env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert not (tmp_path / "heavy.mark").exists()  # nothing to restore in the first session
    with _running(tmp_path, env) as run:
        wait_for((tmp_path / "heavy.mark").exists, timeout=120, what="the restore to hang")
        seen = wait_for(
            lambda: (c := _counters(tmp_path, env, "keeper")).get("busy_seconds") and c,
            timeout=60,
            what="a status record that says keeper is busy",
        )
        view, url = start_view(file, env)
        try:
            viewed = _viewed(url)["keeper"]
        finally:
            said = stop_view(view)
        (tmp_path / "heavy.release").write_text("go")
        out, _ = run.communicate(timeout=300)
    assert seen["state"] == "loading", seen
    assert viewed["state"] == "loading", viewed
    # busy as `pipeline status` says it, with what it is busy with
    assert viewed["busy_with"] == seen["busy_with"] == "restoring state from numbers/default#2"
    assert viewed["busy_seconds"] >= seen["busy_seconds"], viewed
    assert "Traceback" not in said, said
    assert run.returncode == 0, out
