"""A unit with two replicas, one long in process() while its sibling still loads (its import
hangs): `pipeline status` shows each replica's busy text, the viewer showed the unit as loading
with the loading replica's busy text only, and hid the replica long in process() and for how
long. Its units section now says what each replica does, and the page's row shows both, each in
its state's colour. Real plugin distribution, real `pipeline run`, `status` and `view`
subprocesses, the page's event stream over loopback and the page itself in a real chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from held_units import running
from test_browser import unit_row
from test_browser import wait_for as wait_on_page
from viewer_support import read_events, start_view, stop_view

from helpers import installed_plugin, plugin_env, run_pipeline, wait_for

PLUGIN = """
from asapo_pipelines.sdk import describe, hookimpl, inp


@hookimpl
def register_units(register):
    register(describe(
        "split.fit", kind="connector", summary="One replica works long, its sibling loads long.",
        runtime="asapo_split_units.runtime:Fit", inputs=[inp("files")],
    ))
"""

# The first replica to import the runtime goes on and holds in process(); the import of its
# sibling holds: one replica busy in process() while the other is loading. Each hold writes its
# mark and waits, deaf to the worker, for the release file (at most five minutes).
RUNTIME = """
import os
import time
from pathlib import Path

from asapo_pipelines.sdk import Sink

MARKS = Path(os.environ["SPLIT_MARKS"])


def hold(mark):
    (MARKS / mark).write_text(str(os.getpid()))
    release = Path(os.environ["SPLIT_RELEASE"])
    began = time.monotonic()
    while not release.exists() and time.monotonic() - began < 300:
        time.sleep(0.1)


try:
    os.close(os.open(MARKS / "first", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
except FileExistsError:
    hold("import")


class Fit(Sink):
    def process(self, message):
        hold("process")
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed_plugin(
        tmp_path_factory.mktemp("split"),
        "asapo-split-units",
        {"runtime.py": RUNTIME, "plugin.py": PLUGIN},
        {"split": "asapo_split_units.plugin"},
    )


def _replicas(folder: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """The counters of fit's replicas as `pipeline status --json` gives them."""
    status = run_pipeline("status", "split.pipeline.yaml", "--json", cwd=folder, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    return [
        u.get("counters") or {} for u in json.loads(status.stdout)["units"] if u["group"] == "fit"
    ]


def _both_busy(folder: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """fit's replicas by state, once each says it is busy (3 s or more in one call)."""
    replicas = _replicas(folder, env)
    if len(replicas) == 2 and all(r.get("busy_seconds") for r in replicas):
        return {r["state"]: r for r in replicas}
    return {}


def test_a_replica_busy_in_process_beside_one_loading_shows_in_the_row(
    tmp_path: Path, site: Path, page: Any
) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a")
    (tmp_path / "marks").mkdir()
    doc = {
        "pipeline": "split",
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": "files"},
                "outputs": {"files": "raw"},
            },
            "fit": {"unit": "split.fit", "replicas": 2, "inputs": {"files": "raw"}},
        },
    }
    file = tmp_path / "split.pipeline.yaml"
    file.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    env = plugin_env(
        site, SPLIT_MARKS=str(tmp_path / "marks"), SPLIT_RELEASE=str(tmp_path / "split.release")
    )
    with running(tmp_path, "split", env) as run:
        for mark in ("import", "process"):
            wait_for((tmp_path / "marks" / mark).exists, timeout=120, what=f"the {mark} to hold")
        seen = wait_for(
            lambda: _both_busy(tmp_path, env),
            timeout=60,
            what="status records that say both replicas of fit are busy",
        )
        view, url = start_view(file, env)
        try:
            viewed = read_events(url, seconds=4.0)["units"]["fit"]
            page.goto(url)
            row = wait_on_page(
                page, lambda: "busy" in (r := unit_row(page, "fit")).get("state", "") and r, "fit"
            )
            cell = page.get_attribute('#units tr[data-unit="fit"] td.state', "class")
            parts = page.locator('#units tr[data-unit="fit"] td.state span')
            colours = [parts.nth(i).get_attribute("class") for i in range(parts.count())]
            problems = list(page.problems)
        finally:
            said = stop_view(view)
        (tmp_path / "split.release").write_text("go")
        out, _ = run.communicate(timeout=300)
    # `pipeline status`: one replica loading, long in its import; the other long in process()
    assert sorted(seen) == ["loading", "running"], seen
    loading, working = seen["loading"], seen["running"]
    assert loading["busy_with"] == "importing the unit's runtime", loading
    assert re.fullmatch(r"files/.+#1", working["busy_with"]), working
    # the page's row shows both, each part in its replica's state's colour
    busy_with = re.escape(working["busy_with"])
    assert re.fullmatch(
        rf"1 of 2 busy \d+s \(importing the unit's runtime\); 1 of 2 busy \d+s \({busy_with}\)",
        row["state"],
    ), row
    assert "state-loading" in (cell or ""), cell
    assert colours == ["state-loading", "state-running"], colours
    # the viewer: the unit loads until both run, and says what each replica does
    assert viewed["state"] == "loading", viewed
    assert viewed["replicas"] == 2, viewed
    states = viewed.get("replica_states")
    assert [(p["state"], p["replicas"], p["busy_with"]) for p in states or []] == [
        ("loading", 1, loading["busy_with"]),
        ("running", 1, working["busy_with"]),
    ], viewed
    assert states[0]["busy_seconds"] >= loading["busy_seconds"], viewed
    assert states[1]["busy_seconds"] >= working["busy_seconds"], viewed
    assert problems == [], problems
    assert "Traceback" not in said, said
    assert run.returncode == 0, out
