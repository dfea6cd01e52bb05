"""A token the ASAP::O authorizer refuses, through the real asapo wheels against the loopback
ASAP::O (protocol level: tests/asapo/loopback.py, `authorizer_refusal`): the broker passes the
authorizer's 401 or 403 on as HTTP 503, which the client library calls "service unavailable".

Before, `pipeline validate --online` said the file was valid, and `pipeline run` and the worker
said ASAP::O was unavailable (the worker exiting 1, to be restarted into the same refusal): an
operator checked the network instead of the token. Now each says the token in its file was
refused for the beamtime, the worker exits 78 (not restarted), and the token is never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loopback import LoopbackAsapo

from asapo_pipelines.transport import open_transport
from asapo_pipelines.transport.errors import CredentialsError

from helpers import run_pipeline

pytest.importorskip("asapo_consumer", reason="the asapo extra is not installed")

TOKEN = "refused-Tok3n-never-printed"
GOOD = "accepted-Tok3n"


@pytest.fixture(params=[401, 403], ids=["authorizer-401", "authorizer-403"])
def service(request: pytest.FixtureRequest):
    with LoopbackAsapo(GOOD, "bt-refused") as svc:
        svc.authorizer_refusal = request.param
        yield svc


def _pipeline(tmp_path: Path, service: LoopbackAsapo) -> tuple[Path, Path]:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a\n")
    token_file = tmp_path / "asapo.token"
    token_file.write_text(TOKEN + "\n")
    doc = {
        "pipeline": "refused",
        "transport": {
            "asapo": {
                "endpoint": service.endpoint,
                "beamtime": service.beamtime,
                "token_file": token_file.name,
                "request_timeout": 5,
            }
        },
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": "files"},
                "outputs": {"files": "raw"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": "out.jsonl", "payload": "text"},
                "inputs": {"messages": "raw"},
            },
        },
    }
    file = tmp_path / "refused.pipeline.yaml"
    file.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return file, token_file


@pytest.mark.parametrize(
    ("command", "code"),
    [(("validate", "--online"), 1), (("run",), 1), (("worker", "FILE", "sink"), 78)],
    ids=["validate-online", "run", "worker"],
)
def test_refused_token_is_said_refused_not_unreachable_against_the_asapo_protocol(
    tmp_path: Path, service: LoopbackAsapo, command: tuple[str, ...], code: int
) -> None:
    file, token_file = _pipeline(tmp_path, service)
    args = [str(file) if a == "FILE" else a for a in command]
    if "FILE" not in command:
        args.append(str(file))
    done = run_pipeline(*args, cwd=tmp_path, timeout=90)
    said = done.stdout + done.stderr
    assert done.returncode == code, said
    refused = f"refused the token in the token file {token_file} for beamtime {service.beamtime}"
    assert refused in said, said
    assert "unavailable" not in said.lower(), said
    assert TOKEN not in said
    assert "Traceback" not in said
    if command[0] == "validate":  # at the token's option in the file
        line = next(n for n, t in enumerate(file.read_text().splitlines(), 1) if "token_file" in t)
        assert f"{file}:{line}:" in said, said
        assert "error P501" in said, said


def test_refused_token_is_a_credentials_error_for_the_producer_against_the_asapo_protocol(
    service: LoopbackAsapo, tmp_path: Path
) -> None:
    """The broker refuses an automatic id's question, and the receiver refuses the token too
    ("wrong token"): what was queued is reported as not stored, and why, rather than as ASAP::O
    unavailable."""
    _file, token_file = _pipeline(tmp_path, service)
    spec = {"endpoint": service.endpoint, "beamtime": service.beamtime}
    transport = open_transport({"asapo": {**spec, "token_file": str(token_file)}})
    producer = transport.producer("src")
    # an automatic id asks the broker for the stream's last id: refused at once
    with pytest.raises(CredentialsError) as raised:
        producer.send("s", b"x", None)
    assert f"refused the token in the token file {token_file}" in str(raised.value)
    producer.send("s", b"x", None, id=1)
    with pytest.raises(CredentialsError) as raised:
        producer.flush(10)
    assert f"refused the token in the token file {token_file}" in str(raised.value)
    assert TOKEN not in str(raised.value)
    assert {m for s, m, *_ in producer.failed if s == "s"} == {1}
    assert ("src", "s") not in service.state.streams
