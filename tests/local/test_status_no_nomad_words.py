"""`pipeline status FILE` of a file whose `deploy:` section names Nomad, used on a beamline
machine with `pipeline run` alone and no Nomad agent (an outside tester, the P65 example in
a fresh folder): with no local run recorded it said only "cannot reach Nomad ...", exit 1,
where `pipeline runs` said the pipeline has no runs; now it says that no local run is
recorded, how to start one, and why Nomad could not be asked, exit 2 (no run of FILE
recorded). The `status` of a finished local run asked the Nomad agent too, paying its
connect time; it now asks no Nomad. Real `pipeline` processes, a real embedded store, and a
loopback listener standing where NOMAD_ADDR points that records whether anything connected."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import files_to_sink, run_pipeline


class Listener:
    """A TCP listener on a loopback port that counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()  # a Nomad that answers nothing: its client fails at once

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    try:
        yield found
    finally:
        found.close()


def _write(directory: Path) -> Path:
    """files -> jsonl-sink over two files, its deploy section naming Nomad."""
    nomad = {"nomad": {"datacenters": ["*"], "driver": "raw_exec"}}
    return files_to_sink(directory, "beamline", deploy=nomad)


def test_status_without_a_local_run_says_so_and_why_nomad_was_not_asked(tmp_path: Path) -> None:
    file = _write(tmp_path)
    nowhere = "http://127.0.0.1:9"  # nobody listens: connection refused
    shown = run_pipeline("status", file.name, env={"NOMAD_ADDR": nowhere}, cwd=tmp_path)
    assert shown.returncode == 2, shown.stdout + shown.stderr
    assert shown.stderr.startswith(
        "error: no local run of beamline.pipeline.yaml is recorded; start one with "
        "`pipeline run beamline.pipeline.yaml`; and the nomad executor its deploy section "
        f"names could not be asked about a deployment of it: cannot reach Nomad at {nowhere}"
    ), shown.stderr
    assert len(shown.stderr.splitlines()) == 1, shown.stderr
    # `runs` says the same of the store: nothing recorded
    listed = run_pipeline("runs", file.name, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == "pipeline beamline has no runs in this store yet\n"


def test_status_of_a_finished_local_run_asks_no_nomad(tmp_path: Path, listener: Listener) -> None:
    file = _write(tmp_path)
    nomad = {"NOMAD_ADDR": f"http://127.0.0.1:{listener.port}"}
    ran = run_pipeline("run", file.name, env=nomad, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    before = listener.connections
    shown = run_pipeline("status", file.name, env=nomad, cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "Nomad" not in shown.stdout + shown.stderr
    assert listener.connections == before == 0


@pytest.mark.parametrize(
    ("command", "then"),
    [
        (("stop",), "nothing to stop"),
        (("logs", "files"), "start one with `pipeline run beamline.pipeline.yaml`"),
    ],
)
def test_stop_and_logs_without_a_local_run_say_so_as_status_does(
    tmp_path: Path, command: tuple[str, ...], then: str
) -> None:
    """Every file `pipeline new` writes names Nomad in its deploy section: `stop` and `logs`
    of one never run said only "cannot reach Nomad", exit 1 (an outside tester)."""
    file = _write(tmp_path)
    nowhere = "http://127.0.0.1:9"
    shown = run_pipeline(
        command[0], file.name, *command[1:], env={"NOMAD_ADDR": nowhere}, cwd=tmp_path
    )
    assert shown.returncode == 2, shown.stdout + shown.stderr
    assert shown.stderr.startswith(
        f"error: no local run of beamline.pipeline.yaml is recorded; {then}; and the nomad "
        "executor its deploy section names could not be asked about a deployment of it: "
        f"cannot reach Nomad at {nowhere}"
    ), shown.stderr
    assert len(shown.stderr.splitlines()) == 1, shown.stderr
