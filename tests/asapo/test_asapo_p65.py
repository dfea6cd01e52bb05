"""The P65 example on the asapo transport, through the real asapo wheels, against the loopback
ASAP::O (protocol level: tests/asapo/loopback.py), beside the same example on the embedded store.

Both runs happen here, as a user runs them (`pipeline run` in a copy of examples/): the asapo run
must give the same E0, edge step, noise, merge and decisions as the embedded one; `pipeline
streams`, `status` and `view` must show its streams; and the token must appear nowhere a user or
a log collector would see it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from loopback import LoopbackAsapo

from helpers import CACHE_DIR

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "p65-loopback-Tok3n-never-printed"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(
            importlib.util.find_spec(m) is None
            for m in ("asapo_pipelines_xas", "asapo_pipelines_nexus", "asapo_consumer")
        ),
        reason="needs plugins/xas, plugins/nexus and the asapo extra installed",
    ),
]
PIPELINE = Path(sys.executable).with_name("pipeline")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(ASAPO_PIPELINES_CACHE_DIR=CACHE_DIR, COLUMNS="200", P65_TOKEN=TOKEN)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PIPELINE), *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _copy_example(work: Path, transport: str | None) -> Path:
    examples = work / "examples"
    shutil.copytree(
        ROOT / "examples", examples, ignore=shutil.ignore_patterns(".pipeline-data", "results")
    )
    path = examples / "p65-xas.pipeline.yaml"
    if transport is not None:
        text = path.read_text()
        text, n = re.subn(r"(?m)^transport: .*$", f"transport: {transport}", text)
        assert n == 1
        path.write_text(text)
    return path


def _results(stdout: str) -> list[str]:
    """The summary lines that carry the science: per-scan E0/edge step/noise, merge, decision."""
    keep = re.compile(r"^\s*(file \S+, e0|\S+/Fe/K/transmission: )")
    return [line.strip() for line in stdout.splitlines() if keep.match(line)]


@pytest.fixture(scope="module")
def service():
    with LoopbackAsapo(TOKEN, beamtime="p65-test") as svc:
        yield svc


@pytest.fixture(scope="module")
def runs(service, tmp_path_factory):
    embedded_file = _copy_example(tmp_path_factory.mktemp("p65-embedded"), None)
    asapo = (
        f'{{asapo: {{endpoint: "{service.endpoint}", beamtime: {service.beamtime}, '
        "token_env: P65_TOKEN, request_timeout: 5}}"
    )
    asapo_file = _copy_example(tmp_path_factory.mktemp("p65-asapo"), asapo)
    embedded = _cli("run", embedded_file.name, cwd=embedded_file.parent)
    on_asapo = _cli("run", asapo_file.name, cwd=asapo_file.parent)
    return embedded, on_asapo, asapo_file


def test_p65_on_loopback_asapo_gives_the_embedded_results(runs) -> None:
    embedded, on_asapo, _ = runs
    assert embedded.returncode == 0, embedded.stdout + embedded.stderr
    assert on_asapo.returncode == 0, on_asapo.stdout + on_asapo.stderr
    assert "job p65-xas completed" in on_asapo.stdout
    want, got = _results(embedded.stdout), _results(on_asapo.stdout)
    # two scans with E0/edge step/noise, one merge line, one decision line
    assert len(want) == 4, embedded.stdout
    assert got == want
    # the agent decided (what it decided is the XAS plugin's business, tested there)
    assert "action " in got[-1], got[-1]


def test_streams_status_and_view_show_the_asapo_run(runs, service) -> None:
    _, _, path = runs
    streams = _cli("streams", path.name, "--json", cwd=path.parent)
    assert streams.returncode == 0, streams.stderr
    listed = json.loads(streams.stdout)
    text = json.dumps(listed)
    for source in ("raw-scans", "spectra", "merged", "plans"):
        # the pipeline's own streams are in its namespace (docs/runs.md): run r1's data sources
        assert f'"p65-xas.r1.{source}"' in text, text[:2000]

    status = _cli("status", path.name, cwd=path.parent)
    assert status.returncode == 0, status.stderr
    for unit in ("scans", "normalize", "merge", "advisor", "writer"):
        assert re.search(rf"{unit}\[0\]\s.*complete", status.stdout), status.stdout

    view = subprocess.Popen(
        [str(PIPELINE), "view", path.name, "--port", "0", "--interval", "0.2"],
        cwd=path.parent,
        env={**_env(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert view.stderr is not None
        first = view.stderr.readline()
        url = re.search(r"http://\S+/", first)
        assert url, first
        page = urllib.request.urlopen(url.group(0), timeout=10).read().decode()
        events = ""
        deadline = time.monotonic() + 20
        with urllib.request.urlopen(url.group(0) + "events", timeout=20) as stream:
            while (
                "event: streams" not in events or "\n\n" not in events.split("event: streams", 1)[1]
            ):
                events += stream.readline().decode()
                assert time.monotonic() < deadline, events[-2000:]
    finally:
        view.terminate()
        view.wait(10)
    shown = events.split("event: streams", 1)[1].split("\n\n", 1)[0]
    data = json.loads(shown.split("data:", 1)[1])
    by_name = {s["name"]: s for s in data}
    for source in ("raw-scans", "spectra", "merged", "plans"):
        assert by_name[source]["finished"] is True
    for source in ("raw-scans", "spectra", "merged"):
        assert by_name[source]["messages"] == 2
    # one suggestion per merge, but none for a merge that arrives after the newer one (ASAP::O
    # keeps no order between messages sent at once): one or two
    assert by_name["plans"]["messages"] in (1, 2)
    assert TOKEN not in page + events


def test_the_token_appears_nowhere_but_the_tasks_secrets(runs) -> None:
    _, on_asapo, path = runs
    assert TOKEN not in on_asapo.stdout + on_asapo.stderr
    plan = _cli("plan", path.name, "--json", cwd=path.parent)
    assert plan.returncode == 0, plan.stderr
    assert TOKEN not in plan.stdout + plan.stderr, "the compiled job holds the token"
    secrets = 0
    for file in path.parent.rglob("*"):
        if not file.is_file():
            continue
        if file.parent.name == "secrets":
            # Nomad's secrets directory: readable by the task's user only
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
            secrets += 1
            continue
        assert TOKEN.encode() not in file.read_bytes(), f"the token is in {file}"
    assert secrets >= 5  # one per task, as Nomad renders a template into secrets/
