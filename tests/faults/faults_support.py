"""Pipelines and readers shared by the fault tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers import (
    CACHE_DIR,
    PIPELINE,
    alive,
    core_pipeline,
    read_state,
    wait_for,
)


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("ASAPO_PIPELINES_", "NOMAD_"))}
    out["COLUMNS"] = "200"
    out["ASAPO_PIPELINES_CACHE_DIR"] = CACHE_DIR
    out.update(extra)
    return out


def pipeline(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 120,
    prefix: list[str] | None = None,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or []), PIPELINE, *args],
        capture_output=True,
        text=True,
        env=env(**extra),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def write_files(directory: Path, start: int, stop: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(start, stop):
        tmp = directory / f".f{i:05d}.tmp"
        tmp.write_text(f"file {i}\n")
        tmp.rename(directory / f"f{i:05d}.txt")


def sink_names(out: Path) -> Counter[str]:
    """How often each input file reached the sink (complete lines only)."""
    try:
        text = out.read_text()
    except FileNotFoundError:
        return Counter()
    names: Counter[str] = Counter()
    for line in text.splitlines():
        if line.endswith("}"):
            names[json.loads(line)["metadata"]["name"]] += 1
    return names


def kill_run(run_dir: Path) -> None:
    """Clean up after a test: SIGKILL a run's supervisor and the tasks its state names."""
    state = read_state(run_dir) or {}
    pids = [state.get("pid")] + [u.get("pid") for u in state.get("units", [])]
    for pid in pids:
        if pid and alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def lose_supervisor(run_dir: Path) -> tuple[int, list[int]]:
    """SIGKILL a run's supervisor only; its workers go on (orphans). Returns both pids."""
    state = read_state(run_dir)
    assert state is not None
    supervisor = int(state["pid"])
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not alive(supervisor), timeout=60, what="the supervisor to die")
    orphans = [int(u["pid"]) for u in read_state(run_dir)["units"] if u["pid"]]
    assert orphans
    assert all(alive(p) for p in orphans)  # the workers outlive their supervisor
    return supervisor, orphans


@dataclass
class LostRun:
    """A run whose supervisor was SIGKILLed while its workers went on (`lost_run`)."""

    file: Path  #: the pipeline file (files -> copy -> sink, watching `files`)
    files: Path  #: the directory the files unit watches
    out: Path  #: the sink's output
    run_dir: Path  #: the lost run's directory
    supervisor: int  #: its supervisor's pid, dead now
    orphans: list[int]  #: its workers' pids, still running


@contextlib.contextmanager
def lost_run(
    tmp_path: Path, *, count: int = 10, ready: int | None = None, data_dir: Path | None = None
) -> Iterator[LostRun]:
    """The "lost supervisor" every orphan test starts from: a watching core pipeline over
    `count` files, started with `pipeline run --detach` (with `--data-dir data_dir` when
    given), whose supervisor is SIGKILLed once the sink has `ready` outputs (all by default).
    On leaving, whatever still runs is killed: the lost run's workers (if the test's start
    did not stop them) and the run a test started after it, in the default run directory."""
    files, out = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl"
    write_files(files, 0, count)
    file = core_pipeline(tmp_path, files=files, out=out, watch=True)
    default = tmp_path / ".pipeline-data" / "runs" / "faults"
    run_dir = data_dir / "runs" / "faults" if data_dir is not None else default
    orphans: list[int] = []
    try:
        where = ["--data-dir", str(data_dir)] if data_dir is not None else []
        started = pipeline("run", str(file), "--detach", *where, cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        wanted = count if ready is None else ready
        wait_for(lambda: len(sink_names(out)) >= wanted, timeout=60, what="the first outputs")
        supervisor, orphans = lose_supervisor(run_dir)
        yield LostRun(file, files, out, run_dir, supervisor, list(orphans))
    finally:
        for pid in orphans:  # each leads its own process group, until it is gone
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
        kill_run(run_dir)
        if run_dir != default:
            kill_run(default)
