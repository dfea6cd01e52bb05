"""Real `pipeline worker` processes on the embedded transport, for the XAS plugin's tests (which
run with only the core and this plugin installed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from xas_testdata import REFERENCE_SETTINGS

PIPELINE = str(Path(sys.executable).with_name("pipeline"))


def pipeline_command(pipeline: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`pipeline <name> FILE ARGS` in the pipeline's folder, as a user runs it (no
    ASAPO_PIPELINES_ setting of the test's environment; the listing cache beside the file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(pipeline.parent / "cache")
    return subprocess.run(
        [PIPELINE, name, str(pipeline), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=pipeline.parent,
        timeout=300,
        check=False,
    )


def scan_chain(
    directory: str, normalize: dict[str, Any], merge: dict[str, Any] | None = None, **scan: Any
) -> dict[str, Any]:
    """xas.scan-files on `directory` (`*.xdi`, `scan` adding params), xas.normalize with
    `normalize`, and with `merge` (its params, {} for none) xas.merge: the units every XAS
    test pipeline starts with."""
    units: dict[str, Any] = {
        "scans": {
            "unit": "xas.scan-files",
            "params": {"directory": directory, "pattern": "*.xdi", **scan},
            "outputs": {"scans": "raw-scans"},
        },
        "normalize": {
            "unit": "xas.normalize",
            "params": normalize,
            "inputs": {"scans": "raw-scans"},
            "outputs": {"spectra": "spectra"},
        },
    }
    if merge is not None:
        units["merge"] = {
            "unit": "xas.merge",
            **({"params": merge} if merge else {}),
            "inputs": {"spectra": "spectra"},
            "outputs": {"merged": "merged"},
        }
    return units


def watch_units(**scan_params: Any) -> dict[str, Any]:
    """The P65 decision path in watch mode on `incoming/`: scan files, normalize, merge."""
    return scan_chain("incoming", REFERENCE_SETTINGS, {}, watch=True, **scan_params)


def decision_units(
    directory: str, normalize: dict[str, Any], advisor: dict[str, Any]
) -> dict[str, Any]:
    """The P65 decision path on the scan files in `directory`, read once: scan files,
    normalize (with `normalize`), merge and the convergence agent (with `advisor`), which
    writes its plans to `plans`."""
    return {
        **scan_chain(directory, normalize, {}),
        "advisor": {
            "unit": "xas.convergence-agent",
            "params": advisor,
            "inputs": {"merged": "merged"},
            "outputs": {"plans": "plans"},
        },
    }


def write_pipeline(directory: Path, name: str, units: dict[str, Any], **extra: Any) -> Path:
    """A pipeline file (JSON is YAML) with the embedded store in `directory/store`; `extra`
    adds top-level sections (`streams`)."""
    path = directory / f"{name}.pipeline.yaml"
    doc = {"pipeline": name, "transport": {"embedded": {"path": "store"}}, **extra, "units": units}
    path.write_text(json.dumps(doc, indent=2))
    return path


def spawn(pipeline: Path, unit: str, log_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(log_dir / "cache")
    log = open(log_dir / f"{unit}.log", "ab")  # noqa: SIM115  (the process holds it)
    return subprocess.Popen(
        [PIPELINE, "worker", str(pipeline), unit, "--status-interval", "0.3"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=pipeline.parent,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """SIGTERM (the worker drains and exits 0), SIGKILL if it does not."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def read(store: Path, source: str, stream: str = "default") -> list[Any]:
    """Every message of one stream, as (metadata, decoded value) pairs."""
    from asapo_pipelines.transport import open_transport
    from asapo_pipelines.transport.formats import decode

    with open_transport({"embedded": {"path": str(store)}}) as t:
        # a pipeline's own stream is in its namespace; workers started by hand work in run r1
        found = [n for n in t.data_sources() if n.endswith(f".r1.{source}")]
        with t.consumer(found[0] if found else source, "xas-test-reader") as c:
            if stream not in {info.name for info in c.streams()}:
                return []
            out = []
            for i in range(1, c.stream_info(stream).last_id + 1):
                msg = c.get_by_id(stream, i)
                out.append((msg.metadata, decode(msg.payload, msg.metadata)))
            return out


def last_status(store: Path, pipeline: str, instance: str) -> dict[str, Any]:
    from asapo_pipelines.transport import open_transport

    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.consumer(f"{pipeline}.status", "xas-test-reader") as c,
    ):
        return dict(c.get_last(f"{instance}.0").metadata)


def wait_until(predicate: Any, timeout: float = 120.0, procs: list[Any] = ()) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"a worker exited early with {proc.returncode}: {proc.args}")
        time.sleep(0.1)
    return False


def running(store: Path, pipeline: str, instance: str) -> bool:
    """Whether the worker of `instance` says it runs (a source's watch starts right after)."""
    try:
        return last_status(store, pipeline, instance).get("state") == "running"
    except Exception:  # no status stream yet: the worker is starting
        return False


def inotify_available(directory: Path) -> bool:
    """Whether the directory watcher gets inotify events here (`DirectoryEvents` with writes):
    the watch tests that need a read at the writer's close skip without."""
    from asapo_pipelines.sdk import DirectoryEvents

    probe = DirectoryEvents(directory, writes=True)
    try:
        return probe.available
    finally:
        probe.close()
