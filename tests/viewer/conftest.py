"""Fixtures of the viewer tests: a real chromium, the viewer served on loopback, and a pipeline
of real worker processes on an embedded store."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from browser_setup import CHROMIUM_ARGS, ensure_chromium  # noqa: E402
from viewer_support import LivePipeline  # noqa: E402


def _unavailable(why: str) -> None:
    # on CI a browser that cannot be had is a failure, elsewhere the tests are skipped
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"the viewer's browser tests need chromium: {why}")
    pytest.skip(f"the viewer's browser tests need chromium: {why}")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    path, why = ensure_chromium()
    if path is None:
        _unavailable(why)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1500})
    page = context.new_page()
    page.problems = []  # console errors and page errors the test may assert on
    page.on("pageerror", lambda exc: page.problems.append(f"pageerror: {exc}"))
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    yield page
    # shown by pytest only when the test failed: what the page itself complained of
    for problem in page.problems:
        print(f"page problem: {problem}")
    context.close()


class Served:
    def __init__(self, app: Any) -> None:
        from asapo_pipelines.viewer.server import listen, make_server

        self.sock = listen("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.server = make_server(app, self.sock)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the viewer did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Any]:
    """serve(view, transport) -> URL of the viewer app on 127.0.0.1."""
    served: list[Served] = []

    def start(view: Any, transport: Any, **kwargs: Any) -> str:
        from asapo_pipelines.viewer.server import create_app

        kwargs.setdefault("poll_interval", 0.3)
        s = Served(create_app(view, transport, **kwargs))
        served.append(s)
        return s.url

    yield start
    for s in served:
        s.stop()


@pytest.fixture(scope="session")
def finished_p65(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The P65 example run to its end by `pipeline run` once for the session's browser tests
    of its plots and layout (`pipeline view` only reads it): its pipeline file."""
    import shutil

    from test_xas_browser import xas_unavailable
    from viewer_support import ROOT

    from helpers import run_pipeline

    why = xas_unavailable()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("p65-finished")
    shutil.copytree(
        ROOT / "examples",
        root / "examples",
        ignore=shutil.ignore_patterns(".pipeline-data", "results"),
    )
    file = root / "examples" / "p65-xas.pipeline.yaml"
    ran = run_pipeline("run", str(file), timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return file


@pytest.fixture(scope="session")
def live_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test units installed as a real plugin distribution (a directory for PYTHONPATH)."""
    from asapo_pipelines.testing.distributions import PluginProject, install

    root = tmp_path_factory.mktemp("live-plugin")
    project = PluginProject(
        "viewer-live-units",
        modules={"units.py": (HERE / "live_units.py").read_text(encoding="utf-8")},
        entry_points={"viewer_live": "viewer_live_units.units"},
    ).write(root / "src")
    install([project], root / "site")
    return root / "site"


@pytest.fixture
def live_pipeline(tmp_path: Path, live_plugin: Path) -> Iterator[Any]:
    pipelines: list[LivePipeline] = []

    def make(**params: Any) -> LivePipeline:
        p = LivePipeline(tmp_path, live_plugin, **params)
        pipelines.append(p)
        return p

    yield make
    for p in pipelines:
        p.stop_all()
        # shown by pytest only when the test failed: what each worker and the viewer said
        print(p.said())
