"""`pipeline deploy` (and `start`) to Slurm of a pipeline whose Redis refuses the password,
or whose password variable is not set or password file missing: refused in one sentence,
non-zero exit, no job submitted. Before (an outside tester, P65 on Slurm with Redis), deploy
warned that "the pipeline's transport cannot be reached from here (... refused the password
...)", submitted every job and exited 0; each worker then died with exit 78 on the same
password, which it reads as deploy does. A Redis nobody listens on is still deployed, with the
warning that its workers record the run (it may be reachable from the nodes alone; the slurm
plugin's test_slurm_failure_cause deploys one). On a real one-node Slurm and a real
redis-server with requirepass."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from asapo_pipelines_redis.testing import RedisServer

pytest.importorskip("asapo_pipelines_slurm", reason="needs the slurm plugin (plugins/slurm)")

from asapo_pipelines_slurm.testing import LocalSlurm, SlurmUnavailable

PIPELINE = Path(sys.executable).with_name("pipeline")
PASSWORD = "right-horse-battery"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


@pytest.fixture(scope="module")
def slurm() -> Iterator[LocalSlurm]:
    # not under pytest's tmp_path (0700): munged, as the munge user, must reach its socket
    directory = Path(tempfile.mkdtemp(prefix="asapo-redis-slurm-"))
    cluster = LocalSlurm(directory)
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"no local Slurm cluster: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _password_file(work: Path) -> Path:
    """secrets/redis beside the pipeline file, holding the server's password."""
    (work / "secrets").mkdir()
    password = work / "secrets" / "redis"
    password.write_text(PASSWORD + "\n")
    return password


def _write(work: Path, url: str, secret: str, *, watch: bool = False) -> Path:
    (work / "data").mkdir(parents=True, exist_ok=True)
    (work / "data" / "a.txt").write_text("a\n")
    path = work / "cred.pipeline.yaml"
    path.write_text(
        "pipeline: cred\n"
        "transport:\n"
        f"  redis: {{url: {url}, {secret}, key_prefix: cred-{uuid.uuid4().hex[:8]}}}\n"
        "units:\n"
        f"  files: {{unit: core.files, params: {{directory: data, watch: {str(watch).lower()}}}, "
        "outputs: {files: raw}}\n"
        "  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: raw}}\n"
        "deploy:\n"
        "  slurm: {partition: debug, poll_interval: 0.5}\n"
    )
    return path


def _cli(slurm: LocalSlurm, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.pop("CRED_REDIS_PW", None)
    env.update(slurm.env, COLUMNS="200", ASAPO_PIPELINES_CACHE_DIR=str(cwd / "cache"))
    env["PATH"] = f"{PIPELINE.parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(PIPELINE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _jobs(slurm: LocalSlurm) -> list[str]:
    done = subprocess.run(
        ["squeue", "-h", "-o", "%i %j"],
        env={**os.environ, **slurm.env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.fixture
def work(slurm: LocalSlurm) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="asapo-redis-cred-"))
    path.chmod(0o755)
    yield path
    # what a failing test deployed is stopped (its watcher and jobs)
    with contextlib.suppress(Exception):
        for file in path.glob("*.pipeline.yaml"):
            _cli(slurm, "stop", file.name, cwd=path)
    shutil.rmtree(path, ignore_errors=True)


def test_deploy_refuses_a_refused_or_missing_password_and_submits_nothing(
    slurm: LocalSlurm, work: Path
) -> None:
    with RedisServer(work / "redis", password=PASSWORD) as server:
        (work / "secrets").mkdir()
        (work / "secrets" / "wrong").write_text("wrong-password\n")

        file = _write(work, server.url, "password_file: secrets/wrong")
        done = _cli(slurm, "deploy", file.name, cwd=work)
        assert done.returncode == 1, done.stdout + done.stderr
        column = file.read_text().splitlines()[2].index("secrets/wrong") + 1
        assert done.stderr.splitlines() == [
            f"error: cred.pipeline.yaml:3:{column}: Redis at 127.0.0.1:{server.port} refused the "
            f"password from {work / 'secrets' / 'wrong'} while connecting"
        ], done.stderr
        assert "deployed" not in done.stdout
        assert not (work / ".pipeline-slurm" / "cred").exists()
        assert _jobs(slurm) == []

        # deploy does not validate with the transport's files (`status` and `stop` of a
        # running deployment load the file the same way): the password is missing at start
        file = _write(work, server.url, "password_file: secrets/nope")
        done = _cli(slurm, "deploy", file.name, cwd=work)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.splitlines() == [
            f"error: cannot read the Redis password file {work / 'secrets' / 'nope'}: No such "
            "file or directory; every worker would fail on it too, so nothing was submitted"
        ], done.stderr
        assert _jobs(slurm) == []

        file = _write(work, server.url, "password_env: CRED_REDIS_PW")
        done = _cli(slurm, "deploy", file.name, cwd=work)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.splitlines() == [
            "error: the environment variable CRED_REDIS_PW (the Redis password) is not set; "
            "every worker would fail on it too, so nothing was submitted"
        ], done.stderr
        assert not (work / ".pipeline-slurm" / "cred").exists()
        assert _jobs(slurm) == []


def test_start_refuses_a_password_refused_since_the_deploy(slurm: LocalSlurm, work: Path) -> None:
    """`pipeline start` of a stopped deployment begins a new session: a password the server
    refuses by now is refused there too, before any job is submitted again."""
    with RedisServer(work / "redis", password=PASSWORD) as server:
        password = _password_file(work)
        # watching its folder: the deployment runs until it is stopped
        file = _write(work, server.url, "password_file: secrets/redis", watch=True)
        deployed = _cli(slurm, "deploy", file.name, cwd=work)
        assert deployed.returncode == 0, deployed.stderr
        stopped = _cli(slurm, "stop", file.name, cwd=work)
        assert stopped.returncode == 0, stopped.stderr
        password.write_text("changed-meanwhile\n")
        started = _cli(slurm, "start", file.name, cwd=work)
        assert started.returncode == 1, started.stdout + started.stderr
        assert started.stderr.splitlines() == [
            f"error: Redis at 127.0.0.1:{server.port} refused the password from {password} "
            "while connecting; every worker would fail on it too, so nothing was submitted"
        ], started.stderr
        assert _jobs(slurm) == []


def _both_published(slurm: LocalSlurm, file: str, work: Path) -> bool:
    """Whether both units' workers have published a status record (they are connected)."""
    listed = _cli(slurm, "streams", file, "--json", cwd=work)
    if listed.returncode != 0:
        return False
    sources = {s["name"]: s for s in json.loads(listed.stdout)["data_sources"]}
    return len(sources.get("cred.status", {}).get("streams", [])) >= 2


def test_a_deployment_whose_password_file_went_missing_still_shows_and_stops(
    slurm: LocalSlurm, work: Path
) -> None:
    """`validate` and `run` refuse a password file that does not exist (P111); `status` and
    `stop` of a deployment running already do not: it must be stoppable."""
    with RedisServer(work / "redis", password=PASSWORD) as server:
        password = _password_file(work)
        file = _write(work, server.url, "password_file: secrets/redis", watch=True)
        deployed = _cli(slurm, "deploy", file.name, cwd=work)
        assert deployed.returncode == 0, deployed.stderr
        # the workers read the password as they start: taken away once both have published
        # (on a loaded machine a job may start later, and fail on the missing file)
        deadline = time.monotonic() + 120
        while not _both_published(slurm, file.name, work):
            assert time.monotonic() < deadline, "the workers did not publish within 120 s"
            time.sleep(0.5)
        password.unlink()
        # the Slurm table is shown; the counters need the password (said as before)
        status = _cli(slurm, "status", file.name, cwd=work)
        assert "slurm cred: running" in status.stdout, status.stdout + status.stderr
        assert "not a valid pipeline file" not in status.stderr, status.stderr
        stopped = _cli(slurm, "stop", file.name, cwd=work)
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped pipeline cred" in stopped.stdout, stopped.stdout
        assert _jobs(slurm) == []
