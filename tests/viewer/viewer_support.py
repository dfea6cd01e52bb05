"""What the viewer tests share besides fixtures: the repository's paths and the live test
pipeline with its processes. A module of its own, not conftest, so that test modules import it
by a name no other test folder uses, whatever order pytest collects the folders in."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
ARTIFACTS = ROOT / "test-artifacts"


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


def pipeline_env(plugin: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(plugin), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


class LivePipeline:
    """The test pipeline: `pipeline worker` processes (what an executor starts) and
    `pipeline view`, all real commands, with the units from an installed plugin."""

    def __init__(self, root: Path, plugin: Path, **params: Any) -> None:
        import live_units

        from asapo_pipelines.testing import catalog_from_plugins
        from asapo_pipelines.viewer.model import load_view

        values = {"count": 40, "delay": 0.25, "sample": "foil", "fail_every": 0, **params}
        self.file = root / "live.pipeline.yaml"
        self.file.write_text(PIPELINE_YAML % values, encoding="utf-8")
        self.view = load_view(self.file, catalog_from_plugins(live_units))
        self.env = pipeline_env(plugin)
        self.logs = root / "logs"
        self.logs.mkdir()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: dict[str, int] = {}
        self.viewer: subprocess.Popen[bytes] | None = None

    def start(self, instance: str) -> None:
        n = self.starts[instance] = self.starts.get(instance, 0) + 1
        with open(self.logs / f"{instance}.{n}.log", "wb") as log:
            self.procs[instance] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "asapo_pipelines",
                    "worker",
                    str(self.file),
                    instance,
                    "--status-interval",
                    "0.3",
                    "--lease-seconds",
                    "2",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def start_all(self) -> None:
        for unit in self.view.units:
            self.start(unit.instance)

    def kill(self, instance: str) -> None:
        proc = self.procs[instance]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def serve(self) -> str:
        """`pipeline view FILE --port 0` in its own process; returns the page's address. Its
        stderr goes to a log file, not a pipe nobody reads after the first line: a viewer that
        warns often must not block on a full pipe and freeze the page under test."""
        log = self.logs / "viewer.log"
        with open(log, "wb") as out:
            self.viewer = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "asapo_pipelines",
                    "view",
                    str(self.file),
                    "--port",
                    "0",
                    "--interval",
                    "0.3",
                ],
                stderr=out,
                env=self.env,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            said = log.read_text(encoding="utf-8", errors="replace")
            match = re.search(r"(http://127\.0\.0\.1:\d+/)", said)
            if match:
                return match.group(1)
            if self.viewer.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"pipeline view gave no address: {said}")

    def said(self, lines: int = 40) -> str:
        """The last lines of every worker's log and the viewer's exit code: a failing test's
        report, where a worker that hung or exited shows."""
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(tail))
        codes = {name: proc.returncode for name, proc in self.procs.items()}
        parts.append(f"--- worker exit codes {codes}")
        if self.viewer is not None:
            parts.append(f"--- viewer exit code {self.viewer.returncode}")
        return "\n".join(parts)

    def stop_all(self) -> None:
        procs = list(self.procs.values()) + ([self.viewer] if self.viewer else [])
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc is self.viewer else signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_view(file: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """`pipeline view FILE --port 0` as a user starts it; the process and the page's address."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("pipeline")), "view", str(file), "--port", "0"],
        cwd=file.parent,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    if not match:
        proc.kill()
        raise AssertionError(f"pipeline view said: {line}{proc.stderr.read()}")
    return proc, match.group(1)


def stop_view(proc: subprocess.Popen[str]) -> str:
    """Ctrl+C the viewer; what it wrote on stderr after its first line."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.stderr.read() if proc.stderr else ""


def read_events(url: str, seconds: float = 3.0) -> dict[str, Any]:
    """What `curl -sN --max-time SECONDS URL/events` shows, as the newest data of each event
    name (the page's sections: run, units, streams...). HTTP/1.0, so the body is the plain
    event stream (no chunks) until the time is up."""
    import json

    from helpers import event_stream

    latest: dict[str, Any] = {}
    body = event_stream(url, seconds)
    for block in body.split("\n\n")[:-1]:  # the last one may be cut off
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields and "data" in fields:
            latest[fields["event"]] = json.loads(fields["data"])
    return latest
