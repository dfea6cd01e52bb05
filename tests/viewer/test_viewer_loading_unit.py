"""A worker's first status records say `loading` while it imports its unit's runtime (every XAS
worker spends seconds importing larch), and a worker whose import or `restore()` hangs at
start-up says it is busy while it is still loading (an import that hung said `loading` only,
for ever). The viewer ordered the replicas' states by a list that
lacked `loading`: while any unit loaded, its units section raised instead of being sent, just
when a scientist opens the page at the start of a run; and it showed busy for `running` only.
Real plugin distribution, real `pipeline run`, `status` and `view` subprocesses, the page's
event stream over loopback and the page itself in a real chromium."""

from __future__ import annotations

import json
import re
import subprocess
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from held_units import held_env, held_units, running
from test_browser import unit_row
from test_browser import wait_for as wait_on_page
from viewer_support import read_events, start_view, stop_view

from helpers import run_pipeline, wait_for


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return held_units(tmp_path_factory.mktemp("heavy"), "heavy")


def _env(folder: Path, site: Path) -> dict[str, str]:
    return held_env(folder, site, "heavy")


def _running(folder: Path, env: dict[str, str]) -> AbstractContextManager[subprocess.Popen[str]]:
    return running(folder, "heavy", env)


def _write(folder: Path, units: dict[str, Any]) -> Path:
    file = folder / "heavy.pipeline.yaml"
    file.write_text(json.dumps({"pipeline": "heavy", "units": units}, indent=2))  # JSON is YAML
    return file


def _counters(folder: Path, env: dict[str, str], unit: str) -> dict[str, Any]:
    status = run_pipeline("status", "heavy.pipeline.yaml", "--json", cwd=folder, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    return next(u["counters"] for u in json.loads(status.stdout)["units"] if u["group"] == unit)


def _viewed(url: str) -> dict[str, Any]:
    """The page's event stream for a few seconds; its sections, which must include the units."""
    events = read_events(url, seconds=4.0)
    assert "units" in events, f"the viewer sent no units section, only {sorted(events)}"
    return events["units"]


def test_a_unit_long_in_loading_its_runtime_shows_as_busy_loading(
    tmp_path: Path, site: Path, page: Any
) -> None:
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
            lambda: (c := _counters(tmp_path, env, "fit")).get("busy_seconds") and c,
            timeout=60,
            what="a status record that says fit is busy",
        )
        view, url = start_view(file, env)
        try:
            viewed = _viewed(url)
            page.goto(url)
            row = wait_on_page(page, lambda: (r := unit_row(page, "fit")).get("state") and r, "fit")
            node = page.get_attribute('#graph [data-node="u:fit"]', "class")
            said_in_graph = page.text_content('#graph [data-node="u:fit"] [data-field="state"]')
            cell = page.get_attribute('#units tr[data-unit="fit"] td.state', "class")
            legend = page.locator(".legend li").all_text_contents()
            problems = list(page.problems)
        finally:
            said = stop_view(view)
        (tmp_path / "heavy.release").write_text("go")
        out, _ = run.communicate(timeout=300)
    # loading, and long in the import: busy with it, as a hang in process() reads
    assert seen["state"] == "loading", seen
    assert seen["busy_with"] == "importing the unit's runtime", seen
    assert viewed["fit"]["state"] == "loading", viewed
    assert viewed["fit"]["busy_with"] == seen["busy_with"], viewed
    assert viewed["fit"]["busy_seconds"] >= seen["busy_seconds"], viewed
    # the page says it in the table and the graph, in loading's colour, and explains it
    assert re.fullmatch(r"busy \d+s \(importing the unit's runtime\)", row["state"]), row
    assert re.fullmatch(r"busy \d+s", said_in_graph or ""), said_in_graph
    assert "state-loading" in node, node
    assert "state-loading" in (cell or ""), cell
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
