"""`pipeline view` as a user runs it: a real process serving real HTTP on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from asapo_pipelines.viewer.server import ViewerError, check_bind

CORE_PIPELINE = """\
pipeline: files-demo
transport: {embedded: {path: .pipeline-data}}
units:
  files: {unit: core.files, params: {directory: data}, outputs: {files: raw}}
  copy: {unit: core.identity, inputs: {input: raw}, outputs: {output: copies}}
  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: copies}}
"""


def run_view(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asapo_pipelines", "view", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def core_pipeline(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    path = tmp_path / "files.pipeline.yaml"
    path.write_text(CORE_PIPELINE, encoding="utf-8")
    return path


@pytest.mark.parametrize("address", ["0.0.0.0", "192.0.2.7", "::", "example.org"])
def test_non_loopback_bind_is_refused_in_one_sentence(core_pipeline, address):
    done = run_view(str(core_pipeline), "--bind", address, cwd=core_pipeline.parent)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"refusing to serve the viewer on {address}" in done.stderr
    assert "--allow-remote" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_loopback_addresses_pass_and_allow_remote_opens_the_rest():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        check_bind(host, allow_remote=False)
    check_bind("0.0.0.0", allow_remote=True)
    with pytest.raises(ViewerError):
        check_bind("10.0.0.1", allow_remote=False)


def test_taken_port_is_one_sentence(core_pipeline):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_view(str(core_pipeline), "--port", str(port), cwd=core_pipeline.parent)
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_a_file_it_needs_exactly_one_pipeline_here(tmp_path):
    done = run_view(cwd=tmp_path)
    assert done.returncode != 0
    assert "no *.pipeline.yaml here" in done.stderr
    assert "Traceback" not in done.stderr


def get(url: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_serves_the_page_its_scripts_and_the_pipeline(core_pipeline):
    proc = subprocess.Popen(
        [sys.executable, "-m", "asapo_pipelines", "view", "--port", "0"],
        cwd=core_pipeline.parent,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        url = match.group(1)
        assert "files-demo" in line

        status, headers, body = get(url)
        assert status == 200
        assert b"/static/viewer.js" in body
        assert "script-src 'self'" in headers["content-security-policy"]

        status, headers, body = get(url + "static/plotly.min.js")
        assert status == 200
        assert len(body) > 1_000_000
        assert b"plotly" in body[:2000].lower()

        status, _, body = get(url + "api/pipeline")
        info = json.loads(body)
        assert [u["instance"] for u in info["units"]] == ["files", "copy", "sink"]
        assert info["streams"] == ["raw", "copies"]
        assert info["svg"].startswith("<svg")

        assert get(url + "api/messages?stream=nope")[0] == 404
        assert get(url + "static/../server.py")[0] == 404
        # a page elsewhere reaching us through DNS rebinding is turned away
        assert get(url, host="attacker.example")[0] == 400
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    rest = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in rest
    assert proc.returncode in (0, 130)


def test_a_broken_or_missing_pipeline_file_is_reported_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.pipeline.yaml"
    bad.write_text("pipeline: bad\nunits:\n  a: {unit: core.no-such-unit}\n", encoding="utf-8")
    done = run_view(str(bad), cwd=tmp_path)
    assert done.returncode != 0
    assert "core.no-such-unit" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_view("missing.pipeline.yaml", cwd=tmp_path)
    # as `run`, `status`, `logs`, `stop`, `runs`, `streams` and `tail` say it (it was exit 1)
    assert done.returncode == 2, done.stderr
    assert done.stderr == "error: no such file: missing.pipeline.yaml\n"


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("127.0.0.1:8765", "127.0.0.1"),
        ("localhost", "localhost"),
        ("[::1]:8765", "[::1]"),
        ("LocalHost:1", "localhost"),
        ("attacker.example:8765", "attacker.example"),
    ],
)
def test_host_header_parsing(header, host):
    from asapo_pipelines.viewer.server import host_of

    assert host_of(header) == host
