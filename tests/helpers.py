"""Helpers shared by the core tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PIPELINE = str(Path(sys.executable).with_name("pipeline"))
#: the listing cache of the commands run by the tests, away from the user's own
CACHE_DIR = os.path.join(tempfile.gettempdir(), f"asapo-pipelines-test-cache-{os.getpid()}")


def run_pipeline(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `pipeline` command as a user would, capturing its output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    full_env["COLUMNS"] = "200"
    full_env["ASAPO_PIPELINES_CACHE_DIR"] = CACHE_DIR
    full_env.update(env or {})
    return subprocess.run(
        [PIPELINE, *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        input=input,
        check=False,
    )


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def until_it_lands(
    tmp_path: Path, size: int, attempt: Callable[[Path, int], tuple[Any, ...]]
) -> tuple[Path, int, tuple[Any, ...]]:
    """`attempt(work, size)` in a folder of its own under `tmp_path`, made again 5x and 25x
    longer until the last of the values it returns is true: a fault injected into a run (a
    SIGKILL of a worker, of the supervisor) must land while the run goes on, and a loaded
    machine can be late for a short run, which a fault after its end tests nothing. The
    folder, size and values of the last attempt; the caller asserts that it landed."""
    for n, longer in enumerate((size, size * 5, size * 25)):
        work = tmp_path / f"attempt-{n}"
        work.mkdir()
        values = attempt(work, longer)
        if values[-1]:
            break
    return work, longer, values


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def read_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None


def core_pipeline(
    directory: Path,
    *,
    files: Path,
    out: Path,
    watch: bool = False,
    store: str | None = None,
    name: str = "faults",
) -> Path:
    """files (core.files) -> copy (core.identity) -> sink (core.jsonl-sink)."""
    doc: dict[str, Any] = {
        "pipeline": name,
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": str(files), "watch": watch, "settle_seconds": 0.1},
                "outputs": {"files": "raw"},
            },
            "copy": {
                "unit": "core.identity",
                "inputs": {"input": "raw"},
                "outputs": {"output": "copied"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": str(out)},
                "inputs": {"messages": "copied"},
            },
        },
    }
    if store is not None:
        doc["transport"] = {"embedded": {"path": store}}
    path = directory / f"{name}.pipeline.yaml"
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return path


def files_to_sink(
    directory: Path,
    name: str,
    *,
    files: int = 2,
    sink: str = "results/out.jsonl",
    deploy: Mapping[str, Any] | None = None,
) -> Path:
    """`directory/NAME.pipeline.yaml`: files (core.files, over `files` text files in data/)
    -> sink (core.jsonl-sink at `sink`), with `deploy` as its deploy section when given."""
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (data / f"f{i}.txt").write_text(f"file {i}\n")
    doc: dict[str, Any] = {
        "pipeline": name,
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": "data"},
                "outputs": {"files": "files"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": sink},
                "inputs": {"messages": "files"},
            },
        },
    }
    if deploy is not None:
        doc["deploy"] = dict(deploy)
    path = directory / f"{name}.pipeline.yaml"
    path.write_text(json.dumps(doc, indent=1))  # JSON is YAML
    return path


def run_to_end(worker: Any, timeout: float = 60.0) -> Any:
    """Run a worker built in the test until it ends, in a thread as a pipeline's task would;
    close its transport and give its counters."""
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the worker did not end"
    worker.transport.close()
    return worker.counters


def event_stream(url: str, seconds: float) -> str:
    """The viewer page's event stream at `url` for `seconds`, as `curl -sN --max-time` shows
    it: HTTP/1.0, so the body is the plain stream (no chunks), which never ends by itself."""
    import socket
    import time
    from urllib.parse import urlsplit

    where = urlsplit(url)
    received = b""
    deadline = time.monotonic() + seconds
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(f"GET /events HTTP/1.0\r\nHost: {where.hostname}\r\n\r\n".encode())
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
    return received.partition(b"\r\n\r\n")[2].decode()


def installed_plugin(
    root: Path, distribution: str, modules: Mapping[str, str], entry_points: Mapping[str, str]
) -> Path:
    """A plugin distribution written under `root` and pip-installed into `root/site`, the
    folder to put on PYTHONPATH (`plugin_env`): a real out-of-tree plugin, as a facility's."""
    from asapo_pipelines.testing.distributions import PluginProject, install

    project = PluginProject(distribution, modules=modules, entry_points=entry_points)
    install([project.write(root)], root / "site")
    return root / "site"


def plugin_env(site: Path, **extra: str) -> dict[str, str]:
    """The environment of a `pipeline` command that sees the plugins installed in `site`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    return {**env, "PYTHONPATH": str(site), **extra}
