"""End to end on a real redis-server, as a user runs it (`pipeline run` in a copy of
examples/): the P65 example with `transport: {redis: ...}` gives the same results as on the
embedded store (the summary's E0, edge step, noise and decisions, and every number in the NeXus
file, both runs made here); a worker SIGKILLed mid-run leaves every input in the sink exactly
once; `pipeline streams`, `status` and `view` show a redis pipeline."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines_redis.testing import RedisServer

ROOT = Path(__file__).resolve().parents[3]
PIPELINE = Path(sys.executable).with_name("pipeline")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(
            importlib.util.find_spec(m) is None
            for m in ("asapo_pipelines_xas", "asapo_pipelines_nexus", "h5py")
        ),
        reason="needs plugins/xas and plugins/nexus installed beside the redis plugin",
    ),
    pytest.mark.skipif(not (ROOT / "examples").is_dir(), reason="needs the repository's examples"),
]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(ASAPO_PIPELINES_CACHE_DIR=str(tmp / "cache"), COLUMNS="200")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PIPELINE), *args],
        cwd=cwd,
        env=_env(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _redis_section(server: RedisServer) -> str:
    # a key prefix per run: the session's server is shared; relative payload_dir: next to the file
    return (
        f'{{redis: {{url: "{server.url}", key_prefix: "e2e-{uuid.uuid4().hex[:8]}", '
        "payload_dir: payloads, inline_max: 65536}}"
    )


def _copy_example(work: Path, transport: str | None) -> Path:
    examples = work / "examples"
    shutil.copytree(
        ROOT / "examples", examples, ignore=shutil.ignore_patterns(".pipeline-data", "results")
    )
    path = examples / "p65-xas.pipeline.yaml"
    if transport is not None:
        text, n = re.subn(r"(?m)^transport: .*$", f"transport: {transport}", path.read_text())
        assert n == 1
        path.write_text(text)
    return path


def _results(stdout: str) -> list[str]:
    """The summary lines that carry the science: per-scan E0/edge step/noise, merge, decision."""
    keep = re.compile(r"^\s*(file \S+, e0|\S+/Fe/K/transmission: )")
    return [line.strip() for line in stdout.splitlines() if keep.match(line)]


def _nexus_numbers(path: Path) -> dict[str, dict[str, Any]]:
    """Every floating-point dataset of the NeXus file, by entry title (entry numbers follow
    arrival order, which two runs need not share) and path inside the entry."""
    import h5py

    out: dict[str, dict[str, Any]] = {}
    with h5py.File(path, "r") as f:
        for name in f:
            entry = f[name]
            numbers: dict[str, Any] = {}
            entry.visititems(
                lambda n, o, numbers=numbers: (
                    numbers.__setitem__(n, o[()])
                    if isinstance(o, h5py.Dataset) and o.dtype.kind == "f"
                    else None
                )
            )
            out[entry["title"][()].decode()] = numbers
    return out


def _entry_kinds(path: Path) -> dict[str, int]:
    """How many entries of each content type the file holds; an agent's decision, told by
    its `decision` group, as `decision`."""
    import h5py
    from asapo_pipelines_nexus.writer import is_decision

    kinds: dict[str, int] = {}
    with h5py.File(path, "r") as f:
        for entry in f.values():
            kind = "decision" if is_decision(entry) else entry.attrs["asapo_content_type"]
            kinds[str(kind)] = kinds.get(str(kind), 0) + 1
    return kinds


@pytest.fixture(scope="module")
def p65_runs(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    embedded_file = _copy_example(tmp_path_factory.mktemp("p65-embedded"), None)
    redis_file = _copy_example(tmp_path_factory.mktemp("p65-redis"), _redis_section(redis_server))
    embedded = _cli("run", embedded_file.name, cwd=embedded_file.parent)
    on_redis = _cli("run", redis_file.name, cwd=redis_file.parent)
    return embedded, on_redis, embedded_file, redis_file


def test_p65_on_redis_gives_the_embedded_results(p65_runs: Any) -> None:
    import numpy as np

    embedded, on_redis, embedded_file, redis_file = p65_runs
    assert embedded.returncode == 0, embedded.stdout + embedded.stderr
    assert on_redis.returncode == 0, on_redis.stdout + on_redis.stderr
    assert "job p65-xas completed" in on_redis.stdout
    want, got = _results(embedded.stdout), _results(on_redis.stdout)
    assert len(want) == 4, embedded.stdout  # two scans, one merge, one decision
    assert got == want
    # every number in the NeXus file: the same entries, the same arrays
    ref = _nexus_numbers(embedded_file.parent / "results" / "p65.nxs")
    out = _nexus_numbers(redis_file.parent / "results" / "p65.nxs")
    assert sorted(out) == sorted(ref)
    # the agent's decisions (entries without data) are among them, one per merge
    kinds = _entry_kinds(embedded_file.parent / "results" / "p65.nxs")
    decisions = kinds.pop("decision", 0)
    assert kinds == {"xas/scan": 2, "xas/spectrum": 2, "xas/merged": 2}
    assert decisions == kinds["xas/merged"]
    assert len(ref) == sum(kinds.values()) + decisions
    for title, numbers in ref.items():
        assert sorted(out[title]) == sorted(numbers), title
        for key, value in numbers.items():
            assert np.array_equal(out[title][key], value, equal_nan=True), f"{title}: {key}"
    # nothing of the run went to the embedded store: the streams are in Redis
    assert not (redis_file.parent / ".pipeline-data" / "store.json").exists()


def test_streams_status_and_view_show_the_redis_run(p65_runs: Any) -> None:
    *_, path = p65_runs
    streams = _cli("streams", path.name, "--json", cwd=path.parent)
    assert streams.returncode == 0, streams.stderr
    text = json.dumps(json.loads(streams.stdout))
    for source in ("raw-scans", "spectra", "merged", "plans"):
        assert f'"p65-xas.r1.{source}"' in text, text[:2000]

    status = _cli("status", path.name, cwd=path.parent)
    assert status.returncode == 0, status.stderr
    for unit in ("scans", "normalize", "merge", "advisor", "writer"):
        assert re.search(rf"{unit}\[0\]\s.*complete", status.stdout), status.stdout

    view = subprocess.Popen(
        [str(PIPELINE), "view", path.name, "--port", "0", "--interval", "0.2"],
        cwd=path.parent,
        env={**_env(path.parent), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert view.stderr is not None
        first = view.stderr.readline()
        url = re.search(r"http://\S+/", first)
        assert url, first
        events = ""
        deadline = time.monotonic() + 30
        with urllib.request.urlopen(url.group(0) + "events", timeout=30) as stream:
            while (
                "event: streams" not in events or "\n\n" not in events.split("event: streams", 1)[1]
            ):
                events += stream.readline().decode()
                assert time.monotonic() < deadline, events[-2000:]
    finally:
        view.terminate()
        view.wait(10)
    shown = events.split("event: streams", 1)[1].split("\n\n", 1)[0]
    by_name = {s["name"]: s for s in json.loads(shown.split("data:", 1)[1])}
    for source in ("raw-scans", "spectra", "merged", "plans"):
        assert by_name[source]["messages"] == 2
        assert by_name[source]["finished"] is True

    # retention from the command line: one stream, then the whole run
    dropped = _cli(
        "prune",
        path.name,
        "--source",
        "p65-xas.r1.plans",
        "--drop-stream",
        "default",
        cwd=path.parent,
    )
    assert dropped.returncode == 0, dropped.stderr
    pruned = _cli("prune", path.name, "--run", "r1", "--json", cwd=path.parent)
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["freed_bytes"] > 0
    left = json.loads(_cli("streams", path.name, "--json", cwd=path.parent).stdout)
    sources = left if isinstance(left, list) else left.get("sources", left.get("data_sources"))
    assert not [
        s["name"] for s in sources if s["name"].startswith("p65-xas.r1.") and s["streams"]
    ], sources


N_FILES = 300


def _lines(out: Path) -> list[dict[str, Any]]:
    try:
        text = out.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(x) for x in text.splitlines() if x.endswith("}")]


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _run_killing_the_copy(
    redis_server: RedisServer, work: Path, n_files: int
) -> tuple[dict[str, Any], Path, bool]:
    """A detached run of `n_files` on Redis whose copy worker is SIGKILLed once the sink has
    output; returns (the run's final state, the sink's file, whether the kill reached the
    worker mid-stream)."""
    files = work / "files"
    files.mkdir()
    for i in range(n_files):
        (files / f"f{i:05d}.txt").write_text(f"file {i}\n")
    out = work / "out" / "copied.jsonl"
    doc = {
        "pipeline": "e2e",
        "transport": {
            "redis": {"url": redis_server.url, "key_prefix": f"kill-{uuid.uuid4().hex[:8]}"}
        },
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": str(files)},
                "outputs": {"files": "raw"},
            },
            "copy": {
                "unit": "core.identity",
                "inputs": {"input": "raw"},
                "outputs": {"output": "copied"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": str(out), "payload": "text"},
                "inputs": {"messages": "copied"},
            },
        },
    }
    file = work / "e2e.pipeline.yaml"
    file.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    started = _cli("run", file.name, "--detach", cwd=work)
    assert started.returncode == 0, started.stderr
    run_dir = work / ".pipeline-data" / "runs" / "e2e"

    def state() -> dict[str, Any] | None:
        try:
            return json.loads((run_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None

    def copy_pid() -> int | None:
        units = (state() or {}).get("units", [])
        return next((u["pid"] for u in units if u["group"] == "copy" and u.get("pid")), None)

    pid = _wait_for(copy_pid, 60, "the copy worker")
    # once the sink has something, the copy worker is mid-stream, unless it is done already
    _wait_for(lambda: _lines(out), 60, "the first output")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    final = _wait_for(
        lambda: (s := state()) and s["status"] in ("complete", "failed") and s, 120, "the run"
    )
    copy = next(u for u in final["units"] if u["group"] == "copy")
    return final, out, copy["exit_codes"][:1] == [-signal.SIGKILL]


def test_a_worker_sigkilled_mid_run_leaves_every_input_in_the_sink_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # the kill must land mid-stream: a copy worker done before it tested nothing, so the run
    # is made again, longer
    for attempt, n_files in enumerate((N_FILES, N_FILES * 5, N_FILES * 25)):
        work = tmp_path / f"attempt-{attempt}"
        work.mkdir()
        final, out, killed = _run_killing_the_copy(redis_server, work, n_files)
        if killed:
            break
    assert killed, "the copy worker was done before it was killed: it tested nothing"
    assert final["status"] == "complete", final.get("message")
    copy = next(u for u in final["units"] if u["group"] == "copy")
    assert copy["exit_codes"] == [-signal.SIGKILL, 0]
    payloads = [line["payload"] for line in _lines(out)]
    # nothing lost, nothing twice
    assert sorted(payloads) == sorted(f"file {i}\n" for i in range(n_files))
