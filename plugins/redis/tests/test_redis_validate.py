"""`pipeline validate` of a `transport: {redis: ...}` section, as a user runs it. An outside
tester (P65 on Slurm with Redis) found `validate --online` calling a file "valid" whose Redis
nobody listened on, refused the password, or whose password file did not exist: every worker
then died on it. Now, offline, a password file that does not exist is an error at its line
(P111); with --online the server is asked: unreachable is a warning at the url (P502), a refused
password an error at the setting that gives it (P501), an unset password variable a warning
(P502: not asked). And a bad URL's sentence no longer starts with pydantic's "value error, "."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from asapo_pipelines_redis.testing import RedisServer, free_port

PIPELINE = Path(sys.executable).with_name("pipeline")
PASSWORD = "right-horse-battery"
needs_server = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (Debian package redis-server)",
)


def _write(work: Path, url: str, secret: str) -> Path:
    """A pipeline file whose transport section holds `url` on line 4 and `secret` on line 5."""
    (work / "data").mkdir(parents=True, exist_ok=True)
    path = work / "check.pipeline.yaml"
    path.write_text(
        "pipeline: check\n"
        "transport:\n"
        "  redis:\n"
        f"    url: {url}\n"
        f"    {secret}\n"
        f"    key_prefix: check-{uuid.uuid4().hex[:8]}\n"
        "units:\n"
        "  files: {unit: core.files, params: {directory: data}, outputs: {files: raw}}\n"
        "  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: raw}}\n"
    )
    return path


def _validate(file: Path, *args: str) -> tuple[int, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.pop("CHECK_REDIS_PW", None)
    env.update(ASAPO_PIPELINES_CACHE_DIR=str(file.parent / "cache"), COLUMNS="200")
    done = subprocess.run(
        [str(PIPELINE), "validate", *args, file.name],
        cwd=file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, (done.stdout + done.stderr).splitlines()


def test_a_bad_url_is_said_without_pydantics_prefix(tmp_path: Path) -> None:
    file = _write(tmp_path, "http://127.0.0.1:6379/0", "password_env: CHECK_REDIS_PW")
    code, lines = _validate(file)
    assert code == 1
    assert (
        "check.pipeline.yaml:4:10: error P103 transport.redis.url: url must start with "
        "redis://, rediss:// or unix:// (got 'http://127.0.0.1:6379/0')"
    ) in lines, lines


def test_a_missing_password_file_is_an_error_at_its_line_offline(tmp_path: Path) -> None:
    file = _write(tmp_path, "redis://127.0.0.1:6379/0", "password_file: secrets/nope")
    code, lines = _validate(file)
    assert code == 1
    assert (
        f"check.pipeline.yaml:5:20: error P111 password_file secrets/nope does not exist "
        f"({tmp_path / 'secrets' / 'nope'}); the transport reads it when it opens, on every node"
    ) in lines, lines
    # there, relative to the pipeline file's folder (not the current directory): valid
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "nope").write_text("x\n")
    assert _validate(file)[0] == 0


@needs_server
def test_validate_online_asks_the_redis_server(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", password=PASSWORD) as server:
        work = tmp_path / "p"
        (work / "secrets").mkdir(parents=True)
        (work / "secrets" / "right").write_text(PASSWORD + "\n")
        (work / "secrets" / "wrong").write_text("wrong-password\n")

        file = _write(work, server.url, "password_file: secrets/right")
        assert _validate(file, "--online") == (0, ["check.pipeline.yaml: valid"])

        port = free_port()  # nothing listens there
        file = _write(work, f"redis://127.0.0.1:{port}/0", "password_file: secrets/right")
        code, lines = _validate(file, "--online")
        assert code == 0, lines
        assert lines[0].startswith(
            f"check.pipeline.yaml:4:10: warning P502 Redis at 127.0.0.1:{port} is unreachable "
            "while connecting"
        ), lines

        file = _write(work, server.url, "password_file: secrets/wrong")
        code, lines = _validate(file, "--online")
        assert code == 1, lines
        assert lines[0] == (
            f"check.pipeline.yaml:5:20: error P501 Redis at 127.0.0.1:{server.port} refused the "
            f"password from {work / 'secrets' / 'wrong'} while connecting"
        ), lines

        file = _write(work, server.url, "password_env: CHECK_REDIS_PW")
        code, lines = _validate(file, "--online")
        assert code == 0, lines
        assert lines[0] == (
            "check.pipeline.yaml:5:19: warning P502 Redis was not asked: the environment "
            "variable CHECK_REDIS_PW (the Redis password) is not set"
        ), lines
