"""Fixtures of the viewer tests: a real chromium, the viewer served on loopback, and a pipeline
of real worker processes on an embedded store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
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

ROOT = HERE.parent.parent
ARTIFACTS = ROOT / "test-artifacts"


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


PIPELINE_YAML = """\
pipeline: live-demo
transport: {embedded: {path: .pipeline-data}}
units:
  waves:
    unit: live.waves
    params: {count: %(count)d, delay: %(delay)s, sample: "%(sample)s"}
    outputs: {waves: waves}
  average:
    unit: live.average
    params: {fail_every: %(fail_every)d}
    inputs: {waves: waves}
    outputs: {mean: means}
  judge:
    unit: live.judge
    inputs: {mean: means}
    outputs: {decisions: decisions}
"""


class LivePipeline:
    """The test pipeline's units as worker processes (what an executor would start)."""

    def __init__(self, root: Path, **params: Any) -> None:
        import live_units

        from asapo_pipelines.testing import catalog_from_plugins
        from asapo_pipelines.viewer.model import load_view

        values = {"count": 40, "delay": 0.25, "sample": "foil", "fail_every": 0, **params}
        self.file = root / "live.pipeline.yaml"
        self.file.write_text(PIPELINE_YAML % values, encoding="utf-8")
        self.catalog = catalog_from_plugins(live_units)
        self.view = load_view(self.file, self.catalog)
        self.store = self.view.transport["embedded"]["path"]
        self.logs = root / "logs"
        self.logs.mkdir()
        self.params = {
            "waves": {k: values[k] for k in ("count", "delay", "sample")},
            "average": {"fail_every": values["fail_every"]},
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: dict[str, int] = {}

    def start(self, instance: str) -> None:
        unit = self.view.unit(instance)
        assert unit is not None
        n = self.starts[instance] = self.starts.get(instance, 0) + 1
        log = open(self.logs / f"{instance}.{n}.log", "wb")  # noqa: SIM115 (the process owns it)
        self.procs[instance] = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "run_worker.py"),
                self.store,
                self.view.name,
                instance,
                unit.descriptor.name,
                json.dumps(dict(unit.inputs)),
                json.dumps(dict(unit.outputs)),
                json.dumps(self.params.get(instance, {})),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_all(self) -> None:
        for unit in self.view.units:
            self.start(unit.instance)

    def kill(self, instance: str) -> None:
        proc = self.procs[instance]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def live_pipeline(tmp_path: Path) -> Iterator[Any]:
    pipelines: list[LivePipeline] = []

    def make(**params: Any) -> LivePipeline:
        p = LivePipeline(tmp_path, **params)
        pipelines.append(p)
        return p

    yield make
    for p in pipelines:
        p.stop_all()
