"""Real services on loopback for the tests: Debian's redis-server and bluesky-queueserver's
start-re-manager on a simulated XAS beamline (examples/queue-server). Started once per session
(opening the RE environment takes a few seconds), stopped by the pid the tests started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILE = Path(__file__).resolve().parents[3] / "examples" / "queue-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args[0]} did not listen on {port}: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group the test started (start-re-manager runs its RE worker as a
    child process), SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@dataclass
class QueueServer:
    """A running RE Manager, its Redis and the addresses the bridge needs."""

    control: str
    info: str
    redis_port: int
    prefix: str
    procs: list[subprocess.Popen[bytes]]
    log: Path

    def api(self, timeout: float = 5.0) -> Any:
        from bluesky_queueserver_api.zmq import REManagerAPI

        api = REManagerAPI(
            zmq_control_addr=self.control, zmq_info_addr=self.info, timeout_recv=timeout
        )
        api.user, api.user_group = "tests", "primary"
        return api

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"control_address": self.control, "timeout": 5.0, **extra}

    def reset(self) -> None:
        """Empty queue and history, the queue stopped: each test starts from a known state."""
        api = self.api()
        try:
            api.wait_for_idle(timeout=60)
            api.queue_clear()
            api.history_clear()
        finally:
            api.close()

    def suggestion_items(self) -> dict[str, list[dict[str, Any]]]:
        """Items carrying a suggestion uid, by where they are: queue, running, history."""
        api = self.api()
        try:
            queue = api.queue_get(reload=True)
            history = api.history_get(reload=True)
        finally:
            api.close()
        running = [queue["running_item"]] if queue.get("running_item") else []
        found: dict[str, list[dict[str, Any]]] = {}
        for where, items in (
            ("queue", queue["items"]),
            ("running", running),
            ("history", history["items"]),
        ):
            found[where] = [i for i in items if (i.get("meta") or {}).get("suggestion")]
        return found

    def wait_history(self, uid: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.suggestion_items()["history"]:
                if item["meta"]["suggestion"]["uid"] == uid:
                    return item
            time.sleep(0.2)
        raise AssertionError(f"suggestion {uid} never reached the history")


def start_queue_server(workdir: Path) -> QueueServer:
    redis = shutil.which("redis-server")
    if redis is None:
        raise RuntimeError("redis-server is not installed (Debian package redis-server)")
    startup = workdir / "startup"
    shutil.copytree(PROFILE, startup)
    redis_port, control, info = free_port(), free_port(), free_port()
    log = workdir / "services.log"
    out = log.open("ab")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen(
                [
                    redis,
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(workdir),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        wait_port(redis_port, procs[0], log)
        # a prefix of our own: keys of another session on this Redis never mix with ours
        prefix = f"asapo_tests_{uuid.uuid4().hex[:8]}"
        procs.append(manager(startup, redis_port, prefix, control, info, out))
        wait_port(control, procs[1], log)
        server = QueueServer(
            f"tcp://127.0.0.1:{control}", f"tcp://127.0.0.1:{info}", redis_port, prefix, procs, log
        )
        api = server.api()
        try:
            # the plans the server allows come from the profile once its environment is open
            api.environment_open()
            api.wait_for_idle(timeout=120)
        finally:
            api.close()
        return server
    except BaseException:
        for proc in reversed(procs):
            stop(proc)
        raise
    finally:
        out.close()


def manager(
    startup: Path, redis_port: int, prefix: str, control: int, info: int, out: Any
) -> subprocess.Popen[bytes]:
    """start-re-manager on loopback: its keys under `prefix` on the Redis at `redis_port`."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "start-re-manager"),
            "--startup-dir",
            str(startup),
            "--redis-addr",
            f"127.0.0.1:{redis_port}",
            "--redis-name-prefix",
            prefix,
            "--zmq-control-addr",
            f"tcp://127.0.0.1:{control}",
            "--zmq-info-addr",
            f"tcp://127.0.0.1:{info}",
            "--use-ipython-kernel",
            "OFF",
            "--console-output",
            "OFF",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def restart_manager(server: QueueServer) -> None:
    """A new RE Manager in place of a stopped one: the same addresses, Redis and prefix, so
    the queue and history it had are there again (its environment stays closed)."""
    assert server.procs[1].poll() is not None, "stop the RE Manager first"
    control, info = (int(a.rsplit(":", 1)[1]) for a in (server.control, server.info))
    with server.log.open("ab") as out:
        server.procs[1] = manager(
            server.log.parent / "startup", server.redis_port, server.prefix, control, info, out
        )
    wait_port(control, server.procs[1], server.log)
