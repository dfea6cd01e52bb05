"""A loopback HTTP server answering as Nomad's HTTP API documentation shows.

It is a contract double, not a Nomad: each route returns the shapes documented for that endpoint
(developer.hashicorp.com/nomad/api-docs: jobs, evaluations, client fs logs, variables), with
values of our own, and records every request so tests can check what the client sends (token header,
namespace and region query parameters, `{"Job": ...}` wrapping).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: the ACL token the tests configure; it must never appear in any output
TOKEN = "3f1c2b9e-secret-token-0000-aaaabbbbcccc"

JOB_ID = "p65-xas"
EVAL_ID = "5d1c9a3e-7b42-4f0e-9a61-2c7d8e9f0a11"
BLOCKED_EVAL_ID = "8e2f0b4c-1a3d-4c5e-8f70-9b1a2c3d4e5f"
ALLOC_RUNNING = "0b7d3f2a-6c1e-4d9a-b8f5-3e2a1c0d9e8f"
ALLOC_OLD = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
NODE_ID = "c0ffee00-1111-4222-8333-444455556666"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    #: raw chunks written one after the other (flushed), for streamed endpoints
    chunks: list[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json"


Route = Callable[[Recorded], Reply]


def ns(seconds: float) -> int:
    return int(seconds * 1e9)


def evaluation(status: str, failed: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """An evaluation as `GET /v1/evaluation/:id` documents it."""
    return {
        "ID": EVAL_ID,
        "Namespace": "beamline",
        "Priority": 50,
        "Type": "batch",
        "TriggeredBy": "job-register",
        "JobID": JOB_ID,
        "JobModifyIndex": 41,
        "NodeID": "",
        "Status": status,
        "StatusDescription": "",
        "Wait": 0,
        "NextEval": "",
        "PreviousEval": "",
        "BlockedEval": BLOCKED_EVAL_ID if failed else "",
        "FailedTGAllocs": failed,
        "ClassEligibility": None,
        "EscapedComputedClass": False,
        "AnnotatePlan": False,
        "QueuedAllocations": {"scans": 1 if failed else 0},
        "SnapshotIndex": 42,
        "CreateIndex": 42,
        "ModifyIndex": 43,
        "CreateTime": 1_764_000_000_000_000_000,
        "ModifyTime": 1_764_000_000_500_000_000,
        **extra,
    }


def metric(**kw: Any) -> dict[str, Any]:
    """An AllocationMetric as evaluations document it (FailedTGAllocs values)."""
    base: dict[str, Any] = {
        "AllocationTime": 5123,
        "ClassExhausted": None,
        "ClassFiltered": None,
        "CoalescedFailures": 0,
        "ConstraintFiltered": None,
        "DimensionExhausted": None,
        "NodesAvailable": {"dc1": 3},
        "NodesEvaluated": 3,
        "NodesExhausted": 0,
        "NodesFiltered": 0,
        "NodesInPool": 3,
        "QuotaExhausted": None,
        "ResourcesExhausted": None,
        "ScoreMetaData": None,
        "Scores": None,
    }
    base.update(kw)
    return base


def task_event(kind: str, when: float, **kw: Any) -> dict[str, Any]:
    event = {
        "Type": kind,
        "Time": ns(when),
        "FailsTask": False,
        "RestartReason": "",
        "SetupError": "",
        "DriverError": "",
        "ExitCode": 0,
        "Signal": 0,
        "Message": "",
        "KillTimeout": 0,
        "KillError": "",
        "KillReason": "",
        "StartDelay": 0,
        "DownloadError": "",
        "ValidationError": "",
        "DiskLimit": 0,
        "FailedSibling": "",
        "VaultError": "",
        "TaskSignalReason": "",
        "TaskSignal": "",
        "DriverMessage": "",
        "DisplayMessage": "",
    }
    event.update(kw)
    return event


def allocations() -> list[dict[str, Any]]:
    """`GET /v1/job/:job_id/allocations`: one old failed and one running allocation of `scans`,
    and one of `writer`."""
    t0 = 1_764_000_100.0

    def alloc(
        alloc_id: str, name: str, group: str, status: str, tasks: dict[str, Any], create: int
    ) -> dict[str, Any]:
        return {
            "ID": alloc_id,
            "EvalID": EVAL_ID,
            "Name": name,
            "Namespace": "beamline",
            "NodeID": NODE_ID,
            "NodeName": "hpc-node-07",
            "JobID": JOB_ID,
            "JobType": "batch",
            "JobVersion": 2,
            "TaskGroup": group,
            "DesiredStatus": "run",
            "DesiredDescription": "",
            "ClientStatus": status,
            "ClientDescription": "",
            "TaskStates": tasks,
            "FollowupEvalID": "",
            "NextAllocation": "",
            "RescheduleTracker": None,
            "CreateIndex": create,
            "ModifyIndex": create + 5,
            "CreateTime": ns(t0),
            "ModifyTime": ns(t0 + 60),
        }

    running_scans = {
        "scans": {
            "State": "running",
            "Failed": False,
            "Restarts": 2,
            "LastRestart": "2026-11-25T01:02:03Z",
            "StartedAt": "2026-11-25T01:00:00Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
            "Events": [
                task_event("Received", t0, DisplayMessage="Task received by client"),
                task_event(
                    "Terminated",
                    t0 + 10,
                    ExitCode=137,
                    DisplayMessage='Exit Code: 137, Exit Message: "OOM Killed"',
                ),
                task_event(
                    "Restarting",
                    t0 + 11,
                    RestartReason="Restart within policy",
                    DisplayMessage="Task restarting in 5.2s",
                ),
                task_event("Started", t0 + 17, DisplayMessage="Task started by client"),
            ],
        },
        "install-env": {
            "State": "dead",
            "Failed": False,
            "Restarts": 0,
            "Events": [task_event("Terminated", t0 + 5, DisplayMessage="Exit Code: 0")],
        },
    }
    failed_scans = {
        "scans": {
            "State": "dead",
            "Failed": True,
            "Restarts": 5,
            "Events": [
                task_event(
                    "Not Restarting",
                    t0 - 100,
                    FailsTask=True,
                    DisplayMessage="Exceeded allowed attempts 5 in interval 30m0s",
                )
            ],
        }
    }
    writer = {"writer": {"State": "pending", "Failed": False, "Restarts": 0, "Events": []}}
    return [
        alloc(ALLOC_OLD, f"{JOB_ID}.scans[0]", "scans", "failed", failed_scans, 50),
        alloc(ALLOC_RUNNING, f"{JOB_ID}.scans[0]", "scans", "running", running_scans, 60),
        alloc(
            "f0e1d2c3-b4a5-4968-8776-655443322110",
            f"{JOB_ID}.writer[0]",
            "writer",
            "pending",
            writer,
            61,
        ),
    ]


def job(stop: bool = False) -> dict[str, Any]:
    """`GET /v1/job/:job_id`: the job as the server returns it (server fields filled)."""
    return {
        "ID": JOB_ID,
        "Name": JOB_ID,
        "Namespace": "beamline",
        "Region": "global",
        "Type": "batch",
        "Priority": 50,
        "Datacenters": ["dc1"],
        "Meta": {"pipeline": JOB_ID},
        "TaskGroups": [
            {
                "Name": "scans",
                "Count": 1,
                "Tasks": [
                    {"Name": "scans", "Driver": "raw_exec", "Config": {"command": "pipeline"}}
                ],
            },
            {
                "Name": "writer",
                "Count": 1,
                "Tasks": [
                    {"Name": "writer", "Driver": "raw_exec", "Config": {"command": "pipeline"}}
                ],
            },
        ],
        "Stop": stop,
        "Status": "dead" if stop else "running",
        "StatusDescription": "",
        "Stable": False,
        "Version": 2,
        "SubmitTime": ns(1_764_000_000),
        "CreateIndex": 40,
        "ModifyIndex": 41,
        "JobModifyIndex": 41,
    }


def summary() -> dict[str, Any]:
    """`GET /v1/job/:job_id/summary`."""
    return {
        "JobID": JOB_ID,
        "Namespace": "beamline",
        "Summary": {
            "scans": {
                "Queued": 0,
                "Complete": 0,
                "Failed": 1,
                "Running": 1,
                "Starting": 0,
                "Lost": 0,
                "Unknown": 0,
            },
            "writer": {
                "Queued": 0,
                "Complete": 0,
                "Failed": 0,
                "Running": 0,
                "Starting": 1,
                "Lost": 0,
                "Unknown": 0,
            },
        },
        "Children": {"Pending": 0, "Running": 0, "Dead": 0},
        "CreateIndex": 40,
        "ModifyIndex": 61,
    }


def log_frames(text: bytes, file: str = "alloc/logs/scans.stdout.0", size: int = 7) -> bytes:
    """A framed log body: Data frames of `size` bytes, a heartbeat and a file event, written
    back to back as the endpoint streams them."""
    out = []
    for offset in range(0, len(text), size):
        piece = text[offset : offset + size]
        out.append(
            {"File": file, "Offset": offset + len(piece), "Data": base64.b64encode(piece).decode()}
        )
        if offset == 0:
            out.append({})
    out.append({"File": file, "FileEvent": "file truncated"})
    return "".join(json.dumps(o) for o in out).encode()


class FakeNomad:
    """Routes keyed by (METHOD, path regex); the default set answers for job `p65-xas`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.routes: dict[tuple[str, str], Route] = {}
        self.eval_answers: list[dict[str, Any]] = [evaluation("complete")]
        self.job_stopped = False
        #: the last job registered (`POST /v1/jobs`): `GET /v1/job/:job_id` answers with it
        self.registered: dict[str, Any] | None = None
        #: Nomad variables by (namespace, path) -> items: `GET /v1/var/:path` reads them
        self.variables: dict[tuple[str, str], dict[str, str]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.install_defaults()

    # -- routes ---------------------------------------------------------------------------------

    def route(self, method: str, pattern: str, reply: Reply | Route) -> None:
        self.routes[(method, pattern)] = reply if callable(reply) else (lambda _r, x=reply: x)

    def install_defaults(self) -> None:
        def register(req: Recorded) -> Reply:
            if req.path == "/v1/jobs" and isinstance(req.body, dict):
                self.registered = req.body.get("Job")
                self.job_stopped = bool((self.registered or {}).get("Stop"))
            return Reply(
                body={
                    "EvalID": EVAL_ID,
                    "EvalCreateIndex": 42,
                    "JobModifyIndex": 41,
                    "Warnings": "",
                    "Index": 42,
                    "LastContact": 0,
                    "KnownLeader": False,
                }
            )

        def read_eval(req: Recorded) -> Reply:
            answer = (
                self.eval_answers.pop(0) if len(self.eval_answers) > 1 else self.eval_answers[0]
            )
            index = answer.get("ModifyIndex", 43)
            return Reply(body=answer, headers={"X-Nomad-Index": str(index)})

        def read_job(req: Recorded) -> Reply:
            return Reply(body=self.read_job(), headers={"X-Nomad-Index": "41"})

        def deregister(req: Recorded) -> Reply:
            self.job_stopped = True
            return Reply(body={"EvalID": EVAL_ID, "EvalCreateIndex": 44, "JobModifyIndex": 44})

        def plan(req: Recorded) -> Reply:
            return Reply(body=plan_answer())

        self.route("POST", r"/v1/jobs", register)
        self.route("POST", rf"/v1/job/{JOB_ID}", register)
        self.route("GET", r"/v1/evaluation/[0-9a-f-]+", read_eval)
        self.route("GET", rf"/v1/job/{JOB_ID}", read_job)
        self.route("DELETE", rf"/v1/job/{JOB_ID}", deregister)
        self.route("GET", rf"/v1/job/{JOB_ID}/summary", Reply(body=summary()))
        self.route("GET", rf"/v1/job/{JOB_ID}/allocations", Reply(body=allocations()))
        self.route("GET", rf"/v1/job/{JOB_ID}/evaluations", Reply(body=[evaluation("complete")]))
        self.route("POST", rf"/v1/job/{JOB_ID}/plan", plan)
        self.route("GET", r"/v1/client/fs/logs/[0-9a-f-]+", self._logs)
        self.route("GET", r"/v1/var/.+", self._variable)

    def _variable(self, req: Recorded) -> Reply:
        """Read variable: the documented body (metadata and its decrypted Items), or 404 with
        Nomad's text; `namespace` from the query, `default` without one."""
        namespace = req.query.get("namespace", ["default"])[0]
        path = req.path.removeprefix("/v1/var/")
        items = self.variables.get((namespace, path))
        if items is None:
            return Reply(status=404, chunks=[b"variable not found"], content_type="text/plain")
        return Reply(
            body={
                "Namespace": namespace,
                "Path": path,
                "CreateIndex": 1457,
                "ModifyIndex": 1457,
                "CreateTime": 1662061225600373000,
                "ModifyTime": 1662061225600373000,
                "Items": items,
            },
            headers={"X-Nomad-Index": "1457"},
        )

    def read_job(self) -> dict[str, Any]:
        """The job as Nomad returns it: as registered (its Meta, task groups and tasks), with
        the server's fields filled; the default job before any registration."""
        served = job(stop=self.job_stopped)
        for key in ("Meta", "TaskGroups"):
            if self.registered and key in self.registered:
                served[key] = self.registered[key]
        return served

    def _logs(self, req: Recorded) -> Reply:
        kind = req.query.get("type", ["stdout"])[0]
        task = req.query.get("task", [""])[0]
        text = f"{task} {kind} line 1\n{task} {kind} line 2 é\n".encode()
        if req.query.get("plain", ["false"])[0] == "true":
            return Reply(chunks=[text[:5], text[5:]], content_type="text/plain")
        body = log_frames(text, file=f"alloc/logs/{task}.{kind}.0")
        # split the body at awkward places, as TCP may
        return Reply(
            chunks=[body[i : i + 13] for i in range(0, len(body), 13)], content_type="text/plain"
        )

    # -- server ---------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeNomad:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                req = Recorded(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k: v for k, v in self.headers.items()},
                    body=body,
                )
                fake.requests.append(req)
                for (method, pattern), route in fake.routes.items():
                    if method == self.command and re.fullmatch(pattern, parts.path):
                        reply = route(req)
                        break
                else:
                    reply = Reply(
                        status=404, body=None, chunks=[b"Not Found"], content_type="text/plain"
                    )
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if reply.chunks is not None:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for chunk in reply.chunks:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    data = (
                        json.dumps(reply.body).encode()
                        if not isinstance(reply.body, bytes)
                        else reply.body
                    )
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                self.wfile.flush()

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- helpers for tests ----------------------------------------------------------------------

    def calls(self, method: str, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]


def plan_answer() -> dict[str, Any]:
    """`POST /v1/job/:job_id/plan` with Diff=true: an edited task and an added group."""
    return {
        "Index": 0,
        "NextPeriodicLaunch": "0001-01-01T00:00:00Z",
        "Warnings": "",
        "JobModifyIndex": 41,
        "Diff": {
            "Type": "Edited",
            "ID": JOB_ID,
            "Fields": None,
            "Objects": None,
            "TaskGroups": [
                {
                    "Type": "Edited",
                    "Name": "scans",
                    "Updates": {"create/destroy update": 1},
                    "Fields": [
                        {
                            "Type": "Edited",
                            "Name": "Count",
                            "Old": "1",
                            "New": "2",
                            "Annotations": None,
                        }
                    ],
                    "Objects": None,
                    "Tasks": [
                        {
                            "Type": "Edited",
                            "Name": "scans",
                            "Annotations": ["forces create/destroy update"],
                            "Fields": [],
                            "Objects": [
                                {
                                    "Type": "Edited",
                                    "Name": "Resources",
                                    "Fields": [
                                        {
                                            "Type": "Edited",
                                            "Name": "MemoryMB",
                                            "Old": "256",
                                            "New": "512",
                                            "Annotations": None,
                                        }
                                    ],
                                    "Objects": None,
                                }
                            ],
                        }
                    ],
                },
                {
                    "Type": "Added",
                    "Name": "merge",
                    "Updates": {"create": 1},
                    "Fields": None,
                    "Objects": None,
                    "Tasks": [],
                },
                {
                    "Type": "None",
                    "Name": "writer",
                    "Updates": {"ignore": 1},
                    "Fields": None,
                    "Objects": None,
                    "Tasks": [],
                },
            ],
        },
        "CreatedEvals": [],
        "FailedTGAllocs": {
            "merge": metric(
                NodesExhausted=2,
                DimensionExhausted={"memory": 2},
                NodesAvailable={"dc1": 2},
                NodesEvaluated=2,
            ),
        },
        "Annotations": {
            "DesiredTGUpdates": {
                "scans": {
                    "DestructiveUpdate": 1,
                    "InPlaceUpdate": 0,
                    "Stop": 0,
                    "Migrate": 0,
                    "Place": 1,
                    "Ignore": 0,
                },
                "merge": {
                    "DestructiveUpdate": 0,
                    "InPlaceUpdate": 0,
                    "Stop": 0,
                    "Migrate": 0,
                    "Place": 1,
                    "Ignore": 0,
                },
                "writer": {
                    "DestructiveUpdate": 0,
                    "InPlaceUpdate": 0,
                    "Stop": 0,
                    "Migrate": 0,
                    "Place": 0,
                    "Ignore": 1,
                },
            }
        },
    }
