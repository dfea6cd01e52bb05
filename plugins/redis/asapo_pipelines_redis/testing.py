"""A real redis-server for tests and benchmarks: Debian's `redis-server` started on a free
loopback port in a directory of its own, with its append-only file on, stopped by the pid this
helper started (never by name)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``with RedisServer(tmp_path) as server: server.url`` -> redis://127.0.0.1:<port>/0.

    ``password`` turns on requirepass; ``appendfsync`` is Redis's own setting (``always``: a
    write is on disk before Redis answers it); ``config`` adds redis.conf lines."""

    def __init__(
        self,
        directory: Path,
        *,
        password: str | None = None,
        appendfsync: str = "everysec",
        config: tuple[str, ...] = (),
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian package redis-server)")
        self.binary = binary
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.appendfsync = appendfsync
        self.extra = config
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    def start(self, timeout: float = 20.0) -> RedisServer:
        conf = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.dir}",
            "daemonize no",
            "save ''",
            "appendonly yes",
            f"appendfsync {self.appendfsync}",
            f"logfile {self.log}",
            "protected-mode yes",
        ]
        conf.extend(self.extra)
        if self.password:
            conf.append(f"requirepass {self.password}")
        (self.dir / "redis.conf").write_text("\n".join(conf) + "\n")
        self.proc = subprocess.Popen(
            [self.binary, str(self.dir / "redis.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self._log_tail()}")
            if self._ready():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"redis-server did not get ready on port {self.port}: {self._log_tail()}"
        )

    def _ready(self) -> bool:
        # a PING answered (+PONG or -NOAUTH) and not -LOADING: the AOF is read back
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                answer = s.recv(64)
        except OSError:
            return False
        return answer.startswith((b"+PONG", b"-NOAUTH"))

    def _log_tail(self) -> str:
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Stop the server this object started (SIGTERM: Redis flushes its AOF and exits)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        """Stop (by ``sig``: SIGKILL is a crash) and start again on the same port and files."""
        self.stop(sig)
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def copy_chain(
    name: str, url: str, incoming: Path | str, out: Path | str, *, watch: bool = False, **redis: Any
) -> dict[str, Any]:
    """A pipeline document (JSON is YAML: write it with `json.dumps`): `core.files` on
    `incoming` -> `core.identity` -> `core.jsonl-sink` into `out`, on the Redis at `url` with a
    2 s timeout (and the other `redis` options), each message committed on its own: the chain
    the restart and outage tests count every file through. `watch`: the source waits for
    files that arrive later."""
    one = {"messages": 1}
    files: dict[str, Any] = {"directory": str(incoming)}
    if watch:
        files.update(watch=True, settle_seconds=0.2)
    return {
        "pipeline": name,
        "transport": {"redis": {"url": url, "timeout": 2, **redis}},
        "units": {
            "files": {
                "unit": "core.files",
                "params": files,
                "outputs": {"files": "raw"},
                "batch": one,
            },
            "identity": {
                "unit": "core.identity",
                "inputs": {"input": "raw"},
                "outputs": {"output": "copied"},
                "batch": one,
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": str(out)},
                "inputs": {"messages": "copied"},
                "batch": one,
            },
        },
    }
