"""Helpers of the Slurm executor's tests: copies of the examples, a local reference run, and
waiting on a deployment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asapo_pipelines.catalog import Catalog
from asapo_pipelines.pipeline import load_pipeline
from asapo_pipelines_slurm.config import SlurmConfig
from asapo_pipelines_slurm.executor import SlurmExecutor

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
PIPELINE = str(Path(sys.executable).with_name("pipeline"))
#: Quick reactions for tests: look at the jobs twice a second, resubmit after one second.
FAST = {"poll_interval": 0.5, "restart": {"attempts": 3, "interval": 600, "delay": 1}}
#: files/ (watched) -> results/out.jsonl, deployed on Slurm: the smallest live deployment
WATCHING = """\
pipeline: {name}
units:
  files:
    unit: core.files
    params: {{directory: files/, pattern: "*.txt", watch: {watch}, settle_seconds: 0.1}}
    outputs: {{files: raw}}
  sink:
    unit: core.jsonl-sink
    params: {{path: results/out.jsonl, payload: text}}
    inputs: {{messages: raw}}
{sink_resources}deploy:
  slurm: {{{slurm}}}
"""


def watching_file(
    workdir: Path,
    name: str,
    *,
    slurm: str = "partition: debug, poll_interval: 0.5",
    sink_resources: str = "",
    first_file: bool = False,
) -> Path:
    """`workdir/NAME.pipeline.yaml` of `WATCHING`; `slurm` is the inside of its deploy mapping,
    `sink_resources` lines added to the sink; `first_file` puts files/a.txt there to read."""
    (workdir / "files").mkdir(exist_ok=True)
    if first_file:
        (workdir / "files" / "a.txt").write_text("first\n")
    file = workdir / f"{name}.pipeline.yaml"
    file.write_text(watching_text(name, slurm=slurm, sink_resources=sink_resources))
    return file


def watching_text(
    name: str,
    *,
    slurm: str = "partition: debug, poll_interval: 0.5",
    sink_resources: str = "",
    watch: bool = True,
) -> str:
    return WATCHING.format(
        name=name, slurm=slurm, sink_resources=sink_resources, watch=str(watch).lower()
    )


def copy_example(name: str, into: Path, *folders: str) -> Path:
    """The example pipeline file and its data folders, in `into` (a fresh directory)."""
    into.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / name, into / name)
    for folder in folders:
        shutil.copytree(EXAMPLES / folder, into / folder)
    return into / name


#: Every executor a test made, so that a failing test leaves no watcher or job behind.
MADE: list[SlurmExecutor] = []


def executor(file: Path, **config: Any) -> SlurmExecutor:
    catalog = Catalog.load()
    pipeline = load_pipeline(file, catalog)
    made = SlurmExecutor(pipeline, catalog, file, SlurmConfig.model_validate({**FAST, **config}))
    MADE.append(made)
    return made


def run_locally(file: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`pipeline run FILE` with the local executor, as a user would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    # the local executor starts `pipeline worker` from PATH, as a user's shell would
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [PIPELINE, "run", str(file)],
        cwd=file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def wait_finished(ex: SlurmExecutor, timeout: float) -> Any:
    def done() -> Any:
        status = ex.status()
        return status if status.state in ("complete", "failed") else None

    return wait_until("the deployment to finish", done, timeout)


def jsonl_records(path: Path) -> list[dict[str, Any]]:
    """The sink's lines, without what differs between two copies of the input files (their
    modification times), between two runs (when the producing run and session began, and
    where: the host and the executor's job that computed each result) and between two copies
    of the pipeline file (the deployed copy's path, and its hash: its transport paths are
    made absolute), sorted."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        record["metadata"].pop("mtime", None)
        for key in ("session", "host", "job"):
            record["metadata"].get("provenance", {}).pop(key, None)
        producer = record.get("producer", {})
        for key in ("run_started", "session_started", "pipeline_file", "pipeline_sha256"):
            producer.pop(key, None)
        for key in ("host", "job"):
            producer.pop(key, None)
        records.append(record)
    return sorted(records, key=lambda r: json.dumps(r, sort_keys=True))


def jsonl_jobs(path: Path) -> set[tuple[str, str, str]]:
    """(producing instance, executor, job id) of the sink's lines: where each was computed."""
    found = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        producer = json.loads(line)["producer"]
        job = producer["job"]
        found.add((producer["instance"], job["executor"], job.get("id")))
    return found


def squeue(job_ids: list[str], env: dict[str, str]) -> dict[str, str]:
    """job id -> state, straight from squeue (not through the executor)."""
    done = subprocess.run(
        ["squeue", "--noheader", "--states=all", f"--jobs={','.join(job_ids)}", "--format=%i %T"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return dict(line.split() for line in done.stdout.splitlines() if line.strip())


def run_pipeline(*args: str, env: dict[str, str], cwd: Path | None = None) -> Any:
    """A `pipeline` command as a user types it (the venv's bin first on PATH, so that a local
    run finds `pipeline worker`), without the test process's own ASAPO_PIPELINES_* variables."""
    clean = {k: v for k, v in env.items() if not k.startswith("ASAPO_PIPELINES_")}
    clean["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"
    return subprocess.run(
        [PIPELINE, *args],
        cwd=cwd,
        env={**clean, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def runs_of(file: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """`pipeline runs FILE --json`'s runs."""
    done = run_pipeline("runs", str(file), "--json", env=env)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["runs"])
