"""Contract tests of Nomad's documented HTTP API.

There is no Nomad agent here: a loopback server (fake_nomad.py) answers as the API documentation
shows, and these tests check what our client sends and how it renders the answers.
"""

from __future__ import annotations

import io
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from fake_nomad import (
    ALLOC_OLD,
    ALLOC_RUNNING,
    EVAL_ID,
    JOB_ID,
    TOKEN,
    FakeNomad,
    Reply,
    evaluation,
    metric,
)

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.launchplan.jobspec import JobPlan, TaskGroupPlan, TaskResources, compile_job
from asapo_pipelines.nomad.client import NomadClient
from asapo_pipelines.nomad.errors import (
    NomadNotFound,
    NomadPermissionDenied,
    NomadRejected,
    NomadServerError,
    NomadTimeout,
    NomadUnreachable,
)
from asapo_pipelines.nomad.settings import NomadSettings


def compiled(gpus: int = 0) -> dict:
    plan = JobPlan(
        id=JOB_ID,
        type="batch",
        namespace="beamline",
        groups=(
            TaskGroupPlan(
                name="scans",
                args=("worker", "f", "scans"),
                resources=TaskResources(cpu=300, memory_mb=2048, gpus=gpus),
            ),
            TaskGroupPlan(name="writer", args=("worker", "f", "writer")),
        ),
    )
    return compile_job(plan)


def client() -> NomadClient:
    return NomadClient(NomadSettings.from_env())


def test_contract_nomad_api_register_carries_token_namespace_region_and_job_wrapping(
    nomad_env: FakeNomad,
) -> None:
    payload = compiled()
    result = client().deploy(payload)

    [register] = nomad_env.calls("POST", "/v1/jobs")
    assert register.headers["X-Nomad-Token"] == TOKEN
    assert register.query["namespace"] == ["beamline"]
    assert register.query["region"] == ["europe"]
    assert set(register.body) == {"Job"}
    assert register.body == payload
    assert register.body["Job"]["TaskGroups"][0]["Name"] == "scans"
    # every request, not just the first, carries the token
    assert all(r.headers.get("X-Nomad-Token") == TOKEN for r in nomad_env.requests)
    assert result.evaluation is not None
    assert result.evaluation.eval_id == EVAL_ID
    assert result.evaluation.status == "complete"
    assert result.failures == []


def test_contract_nomad_api_deploy_waits_on_the_evaluation_with_blocking_queries(
    nomad_env: FakeNomad,
) -> None:
    nomad_env.eval_answers = [
        evaluation("pending", ModifyIndex=42),
        evaluation("pending", ModifyIndex=43),
        evaluation("complete", ModifyIndex=45),
    ]
    result = client().deploy(compiled(), wait=30)
    assert result.evaluation is not None
    assert result.evaluation.status == "complete"
    reads = nomad_env.calls("GET", f"/v1/evaluation/{EVAL_ID}")
    assert len(reads) == 3
    # the first read learns the index, the next ones block on it (documented `index`/`wait`)
    assert "index" not in reads[0].query
    assert reads[1].query["index"] == ["42"]
    assert reads[2].query["index"] == ["43"]
    assert reads[1].query["wait"][0].endswith("s")


def test_contract_nomad_api_deploy_gives_up_waiting_with_a_sentence(
    nomad_env: FakeNomad,
) -> None:
    nomad_env.eval_answers = [evaluation("pending")]
    with pytest.raises(NomadTimeout, match=r"evaluation .* is still pending after 1 s"):
        client().deploy(compiled(), wait=1)


@pytest.mark.parametrize(
    ("failed", "expected"),
    [
        (
            metric(NodesFiltered=3, ConstraintFiltered={"missing drivers": 3}),
            "the raw_exec driver is not enabled on 3 nodes; enable it in the clients' plugin "
            '"raw_exec" configuration (raw_exec is disabled by default)',
        ),
        (
            metric(NodesFiltered=2, ConstraintFiltered={"missing devices": 2}),
            "no nvidia/gpu device on 2 nodes; install the NVIDIA device plugin",
        ),
        (
            metric(NodesExhausted=3, DimensionExhausted={"memory": 3}),
            "not enough free memory for 2048 MB on 3 nodes; lower the unit's memory",
        ),
        (
            metric(NodesExhausted=1, DimensionExhausted={"devices: no devices match request": 1}),
            "no free nvidia/gpu device on 1 node (no devices match request)",
        ),
        (
            metric(NodesAvailable={"dc1": 0}, NodesEvaluated=0, NodesInPool=0),
            "no client node is available in datacenter 'dc1'",
        ),
    ],
    ids=["missing-driver", "missing-gpu", "memory", "gpu-busy", "no-nodes"],
)
def test_contract_nomad_api_deploy_reports_placement_failures_from_the_evaluation(
    nomad_env: FakeNomad, failed: dict, expected: str
) -> None:
    nomad_env.eval_answers = [evaluation("complete", failed={"scans": failed})]
    result = client().deploy(compiled(gpus=1))
    [failure] = result.failures
    [sentence] = failure.sentences()
    assert sentence.startswith("unit scans cannot be placed: ")
    assert expected in sentence
    assert "\n" not in sentence


def test_contract_nomad_api_status_renders_the_documented_answers(nomad_env: FakeNomad) -> None:
    blocked = evaluation(
        "blocked",
        failed={"writer": metric(NodesExhausted=2, DimensionExhausted={"cpu": 2})},
        ID="b10c6ed0-0000-4000-8000-000000000000",
        CreateIndex=70,
    )
    nomad_env.route(
        "GET", rf"/v1/job/{JOB_ID}/evaluations", Reply(body=[evaluation("complete"), blocked])
    )
    status = client().status(JOB_ID)

    assert (status.id, status.type, status.status, status.version) == (
        JOB_ID,
        "batch",
        "running",
        2,
    )
    assert status.namespace == "beamline"
    assert status.groups["scans"]["Running"] == 1
    assert status.groups["scans"]["Failed"] == 1
    assert status.groups["writer"]["Starting"] == 1
    by_id = {a.id: a for a in status.allocations}
    running = by_id[ALLOC_RUNNING]
    assert (running.group, running.status, running.node) == ("scans", "running", "hpc-node-07")
    scans_task = next(t for t in running.tasks if t.name == "scans")
    assert scans_task.state == "running"
    assert scans_task.restarts == 2
    # the three most recent events, oldest first, with their display messages
    assert [e["type"] for e in scans_task.events] == ["Terminated", "Restarting", "Started"]
    assert "OOM Killed" in scans_task.events[0]["message"]
    assert scans_task.events[2]["time"].startswith("2025-11-")
    old = next(t for t in by_id[ALLOC_OLD].tasks if t.name == "scans")
    assert old.failed
    assert "Exceeded allowed attempts" in old.events[-1]["message"]
    [failure] = status.failures
    assert failure.group == "writer"
    assert failure.reasons == ["not enough free CPU on 2 nodes"]
    for path in ("/v1/job/", "/v1/job/p65-xas/summary", "/v1/job/p65-xas/allocations"):
        assert all(r.query.get("namespace") == ["beamline"] for r in nomad_env.calls("GET", path))


def test_contract_nomad_api_logs_decodes_the_framed_stream(nomad_env: FakeNomad) -> None:
    out = io.BytesIO()
    alloc = client().logs(JOB_ID, "scans", out)
    # the running allocation is preferred over the failed older one
    assert alloc["ID"] == ALLOC_RUNNING
    assert out.getvalue().decode() == "scans stdout line 1\nscans stdout line 2 é\n"
    [request] = nomad_env.calls("GET", "/v1/client/fs/logs/")
    assert request.path == f"/v1/client/fs/logs/{ALLOC_RUNNING}"
    assert request.query["task"] == ["scans"]
    assert request.query["type"] == ["stdout"]
    assert request.query["follow"] == ["false"]
    assert request.query["plain"] == ["false"]
    assert request.query["namespace"] == ["beamline"]
    assert request.headers["X-Nomad-Token"] == TOKEN


def test_contract_nomad_api_logs_stderr_follow_and_plain(nomad_env: FakeNomad) -> None:
    out = io.BytesIO()
    client().logs(JOB_ID, "scans", out, stderr=True, follow=True, plain=True)
    assert out.getvalue().decode() == "scans stderr line 1\nscans stderr line 2 é\n"
    [request] = nomad_env.calls("GET", "/v1/client/fs/logs/")
    assert request.query["type"] == ["stderr"]
    assert request.query["follow"] == ["true"]
    assert request.query["plain"] == ["true"]


def test_contract_nomad_api_logs_of_an_unknown_unit_names_the_known_ones(
    nomad_env: FakeNomad,
) -> None:
    with pytest.raises(NomadNotFound, match=r"no allocation of unit 'merge'; .* scans, writer"):
        client().logs(JOB_ID, "merge", io.BytesIO())


def test_contract_nomad_api_stop_and_purge(nomad_env: FakeNomad) -> None:
    assert client().stop(JOB_ID) == EVAL_ID
    assert client().stop(JOB_ID, purge=True) == EVAL_ID
    first, second = nomad_env.calls("DELETE", f"/v1/job/{JOB_ID}")
    assert "purge" not in first.query
    assert second.query["purge"] == ["true"]
    assert second.query["namespace"] == ["beamline"]


def test_contract_nomad_api_start_registers_the_stopped_job_again(nomad_env: FakeNomad) -> None:
    nomad_env.job_stopped = True
    result = client().start(JOB_ID)
    assert result is not None
    assert result.evaluation is not None
    [register] = nomad_env.calls("POST", "/v1/jobs")
    assert register.body["Job"]["ID"] == JOB_ID
    assert register.body["Job"]["Stop"] is False
    # a running job is left alone
    nomad_env.job_stopped = False
    assert client().start(JOB_ID) is None
    assert len(nomad_env.calls("POST", "/v1/jobs")) == 1


def test_contract_nomad_api_plan_renders_the_diff(nomad_env: FakeNomad) -> None:
    result = client().plan(compiled())
    [request] = nomad_env.calls("POST", f"/v1/job/{JOB_ID}/plan")
    assert request.body["Diff"] is True
    assert request.body["Job"]["ID"] == JOB_ID
    assert "~ scans.Count: '1' => '2'" in result.changes
    assert "~ scans/scans.Resources.MemoryMB: '256' => '512'" in result.changes
    assert "+ unit merge" in result.changes
    assert not any("writer" in line for line in result.changes)
    assert result.updates["scans"] == {"DestructiveUpdate": 1, "Place": 1}
    [failure] = result.failures
    assert failure.group == "merge"
    assert failure.reasons[0].startswith("not enough free memory on 2 nodes")


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (
            400,
            "1 error occurred:\n\t* Task group scans validation failed",
            NomadRejected,
            "Nomad rejected the request to register the job: 1 error occurred:",
        ),
        (
            403,
            "Permission denied",
            NomadPermissionDenied,
            "Nomad refused to register the job (403 Permission denied): the token in NOMAD_TOKEN "
            "is not allowed to register the job in namespace 'beamline'",
        ),
        (
            404,
            "Not Found",
            NomadNotFound,
            "{addr} has no Nomad job API (404); is NOMAD_ADDR the agent's address, without a path?",
        ),
        (
            500,
            "rpc error: No cluster leader",
            NomadServerError,
            "Nomad failed to register the job (HTTP 500: rpc error: No cluster leader); the "
            "cluster may be unhealthy or without a leader",
        ),
        (503, "", NomadServerError, "Nomad failed to register the job (HTTP 503"),
    ],
)
def test_contract_nomad_api_error_statuses_give_one_sentence(
    nomad_env: FakeNomad, status: int, body: str, error: type, message: str
) -> None:
    nomad_env.route(
        "POST", r"/v1/jobs", Reply(status=status, chunks=[body.encode()], content_type="text/plain")
    )
    with pytest.raises(error) as info:
        client().deploy(compiled())
    assert isinstance(info.value, PipelinesError)
    text = str(info.value)
    assert text.startswith(message.format(addr=nomad_env.address))
    assert "\n" not in text
    assert TOKEN not in text
    assert "Traceback" not in text


def test_contract_nomad_api_404_on_a_job_names_job_and_namespace(nomad_env: FakeNomad) -> None:
    with pytest.raises(NomadNotFound) as info:
        client().status("no-such-pipeline")
    assert str(info.value) == (
        "no job 'no-such-pipeline' is registered in namespace 'beamline'; deploy it with "
        "`pipeline deploy FILE` (or check NOMAD_NAMESPACE)"
    )


def test_contract_nomad_api_403_without_token_says_so(
    fake_nomad: FakeNomad, clean_nomad_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOMAD_ADDR", fake_nomad.address)
    fake_nomad.route(
        "GET",
        rf"/v1/job/{JOB_ID}",
        Reply(status=403, chunks=[b"Permission denied"], content_type="text/plain"),
    )
    with pytest.raises(
        NomadPermissionDenied, match="NOMAD_TOKEN is not set and the cluster requires an ACL token"
    ):
        client().status(JOB_ID)
    assert "X-Nomad-Token" not in fake_nomad.requests[0].headers
    # no namespace configured: Nomad's default applies and no parameter is sent
    assert "namespace" not in fake_nomad.requests[0].query


def test_contract_nomad_api_answer_that_is_not_json(nomad_env: FakeNomad) -> None:
    nomad_env.route(
        "GET",
        rf"/v1/job/{JOB_ID}",
        Reply(chunks=[b"<html>proxy login</html>"], content_type="text/html"),
    )
    with pytest.raises(NomadServerError, match="is not Nomad's JSON; is NOMAD_ADDR="):
        client().status(JOB_ID)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_contract_nomad_api_refused_connection(
    clean_nomad_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("NOMAD_ADDR", address)
    for call in (
        lambda c: c.deploy(compiled()),
        lambda c: c.status(JOB_ID),
        lambda c: c.logs(JOB_ID, "scans", io.BytesIO()),
    ):
        with pytest.raises(NomadUnreachable) as info:
            call(client())
        assert str(info.value) == (
            f"cannot reach Nomad at {address} (connection refused); check NOMAD_ADDR and that "
            "the agent is running"
        )


def test_contract_nomad_api_log_stream_refused_connection_is_one_sentence(
    nomad_env: FakeNomad, monkeypatch: pytest.MonkeyPatch
) -> None:
    # python-nomad reports errors of streamed requests differently; the sentence is the same
    c = client()
    port = _free_port()
    for requester in vars(c._api.client).values():
        if hasattr(requester, "address"):
            requester.address = f"http://127.0.0.1:{port}"
    with pytest.raises(NomadUnreachable, match="connection refused"):
        list(c.stream_logs(ALLOC_RUNNING, "scans", follow=True))


def test_contract_nomad_api_slow_answer_times_out(
    nomad_env: FakeNomad, monkeypatch: pytest.MonkeyPatch
) -> None:
    nomad_env.route("GET", rf"/v1/job/{JOB_ID}", Reply(body={}, delay=1.5))
    c = NomadClient(NomadSettings.from_env(timeout=0.3))
    with pytest.raises(
        NomadTimeout,
        match=r"did not answer within 0\.3 s while trying to read "
        "job p65-xas",
    ):
        c.status(JOB_ID)


@pytest.fixture
def tls_server(tmp_path: Path):
    """The fake Nomad behind TLS with a self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "ca.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    fake = FakeNomad().start()
    server = fake._server
    assert server is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    address = fake.address.replace("http://", "https://")
    try:
        yield fake, address, cert
    finally:
        fake.stop()


def test_contract_nomad_api_tls_is_verified_by_default(
    tls_server, clean_nomad_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake, address, cert = tls_server
    monkeypatch.setenv("NOMAD_ADDR", address)
    with pytest.raises(NomadUnreachable) as info:
        client().status(JOB_ID)
    assert str(info.value) == (
        f"TLS verification of Nomad at {address} failed; set NOMAD_CACERT to the cluster's CA "
        "certificate (NOMAD_SKIP_VERIFY=true skips the check, unsafe)"
    )
    monkeypatch.setenv("NOMAD_CACERT", str(cert))
    assert client().status(JOB_ID).id == JOB_ID
    monkeypatch.delenv("NOMAD_CACERT")
    monkeypatch.setenv("NOMAD_SKIP_VERIFY", "true")
    assert client().status(JOB_ID).id == JOB_ID


def test_contract_nomad_api_plain_http_to_a_tls_port_is_explained(
    tls_server, clean_nomad_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake, address, _cert = tls_server
    plain = address.replace("https://", "http://")
    monkeypatch.setenv("NOMAD_ADDR", plain)
    result: list[BaseException] = []

    def go() -> None:
        try:
            client().status(JOB_ID)
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=go)
    thread.start()
    thread.join(30)
    assert result
    assert isinstance(result[0], NomadUnreachable), result
    assert str(result[0]).startswith(f"cannot reach Nomad at {plain} (")
    assert "\n" not in str(result[0])


def test_contract_nomad_api_plan_of_an_unchanged_job_has_no_changes(nomad_env: FakeNomad) -> None:
    unchanged = {
        "Diff": {
            "Type": "None",
            "ID": JOB_ID,
            "Fields": None,
            "Objects": None,
            "TaskGroups": [
                {
                    "Type": "None",
                    "Name": "scans",
                    "Fields": None,
                    "Objects": None,
                    "Tasks": [],
                    "Updates": {"ignore": 1},
                }
            ],
        },
        "FailedTGAllocs": None,
        "Warnings": "",
        "Annotations": {"DesiredTGUpdates": {"scans": {"Ignore": 1, "Place": 0}}},
    }
    nomad_env.route("POST", rf"/v1/job/{JOB_ID}/plan", Reply(body=unchanged))
    result = client().plan(compiled())
    assert result.changes == []
    assert result.failures == []
    assert result.updates == {"scans": {"Ignore": 1}}


def test_contract_nomad_api_register_refuses_an_unwrapped_job(nomad_env: FakeNomad) -> None:
    with pytest.raises(NomadRejected, match=r'wrapped as \{"Job": \{\.\.\.\}\}'):
        client().deploy(compiled()["Job"])
    assert nomad_env.requests == []
