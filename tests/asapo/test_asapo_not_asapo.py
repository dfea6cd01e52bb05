"""An endpoint that is not ASAP::O (a web server, a proxy's page, a service that answers
something else) is one sentence naming the endpoint, not the asapo library's internals or a
whole HTML page. Before: `ASAP::O failed data source list: 'NoneType' object has no attribute
'decode'` (no endpoint, no remedy), and `validate --online` printed a 404 page's many lines in
its P502 warning (an outside tester). Protocol level: the real asapo wheels against a loopback
HTTP server started here, driven by real `pipeline` commands."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import run_pipeline

pytest.importorskip("asapo_consumer", reason="the asapo extra is not installed")


class NotAsapo(http.server.BaseHTTPRequestHandler):
    """Answers discovery with its own address, as ASAP::O's discovery names the broker, and
    every other request with a body that is not ASAP::O's (`junk`) or a web server's 404 page."""

    junk = True

    def do_GET(self) -> None:
        if "asapo-discovery" in self.path:
            host, port = self.server.server_address[:2]
            body = f"{host}:{port}".encode()
        elif self.junk:
            body = b"this is not what ASAP::O answers"
        else:
            self.send_error(404, "Error response")  # an HTML page, as http.server sends it
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(params=["junk", "html"])
def endpoint(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    handler = type("Handler", (NotAsapo,), {"junk": request.param == "junk"})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", request.param
    finally:
        server.shutdown()
        server.server_close()


def _file(directory: Path, endpoint: str) -> Path:
    (directory / "token").write_text("a-token\n")
    (directory / "data").mkdir()
    file = directory / "web.pipeline.yaml"
    file.write_text(
        "pipeline: web\n"
        f'transport: {{asapo: {{endpoint: "{endpoint}", beamtime: "11012345", '
        "token_file: token, request_timeout: 3}}\n"
        "units:\n"
        "  files: {unit: core.files, params: {directory: data}, outputs: {files: raw}}\n"
        "  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: raw}}\n"
    )
    return file


def test_protocol_level_an_endpoint_that_is_not_asapo_is_one_sentence(
    tmp_path: Path, endpoint: tuple[str, str]
) -> None:
    address, kind = endpoint
    file = _file(tmp_path, address)
    listed = run_pipeline("runs", file.name, cwd=tmp_path, timeout=120)
    assert listed.returncode != 0, listed.stdout
    (line,) = listed.stderr.splitlines()
    assert "Traceback" not in listed.stderr
    assert f"ASAP::O at {address}" in line, line
    if kind == "junk":
        assert "gave an answer to data source list that is not ASAP::O's" in line, line
        assert line.endswith(f"check that {address} is the ASAP::O service"), line
    else:
        assert "an HTML page ('Error response')" in line, line
        assert "<" not in line, line

    checked = run_pipeline("validate", "--online", file.name, cwd=tmp_path, timeout=120)
    warnings = [x for x in checked.stdout.splitlines() + checked.stderr.splitlines() if "P502" in x]
    (warning,) = warnings
    assert f"ASAP::O at {address}" in warning, warning
    assert "<" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr
