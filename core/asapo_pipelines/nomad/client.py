"""Driving a pipeline's job on a Nomad cluster through python-nomad.

Every request carries the ACL token (`X-Nomad-Token`), the namespace and region as query
parameters, verifies TLS unless told not to, and has a timeout. Every failure becomes one
sentence (`asapo_pipelines.nomad.errors`): unreachable agent, TLS, timeout, 400, 403, 404, 5xx.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, TypeVar
from urllib.parse import quote

from asapo_pipelines.nomad.errors import (
    NomadError,
    NomadNotFound,
    NomadPermissionDenied,
    NomadRejected,
    NomadServerError,
    NomadTimeout,
    NomadUnreachable,
)
from asapo_pipelines.nomad.frames import FrameDecoder
from asapo_pipelines.nomad.placement import PlacementFailure, explain_all
from asapo_pipelines.nomad.settings import NomadSettings

T = TypeVar("T")

TERMINAL_EVAL = {"complete", "failed", "canceled"}
#: How long a followed log stream may stay silent (Nomad sends heartbeats while it is quiet).
FOLLOW_READ_TIMEOUT = 120.0
RECENT_EVENTS = 3


def _first_line(text: str, limit: int = 300) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "host name not found"),
        ("nodename nor servname", "host name not found"),
        ("Temporary failure in name resolution", "host name not found"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
        ("timed out", "connection timed out"),
        ("RemoteDisconnected", "the connection was closed without an answer"),
        ("Connection reset", "the connection was reset"),
    ):
        if needle in text:
            return reason
    return "connection failed"


def _ns_time(value: Any) -> str:
    try:
        return datetime.fromtimestamp(int(value) / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


@dataclass
class EvalResult:
    eval_id: str
    status: str
    failures: list[PlacementFailure] = field(default_factory=list)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "eval_id": self.eval_id,
            "status": self.status,
            "description": self.description,
            "placement_failures": [f.to_dict() for f in self.failures],
        }


@dataclass
class DeployResult:
    job_id: str
    namespace: str
    evaluation: EvalResult | None
    warnings: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[PlacementFailure]:
        return self.evaluation.failures if self.evaluation else []

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job_id,
            "namespace": self.namespace,
            "evaluation": self.evaluation.to_dict() if self.evaluation else None,
            "warnings": self.warnings,
        }


@dataclass
class TaskStatus:
    name: str
    state: str
    failed: bool
    restarts: int
    events: list[dict[str, str]]


@dataclass
class AllocStatus:
    id: str
    name: str
    group: str
    node: str
    desired: str
    status: str
    version: int | None
    modified: str
    tasks: list[TaskStatus]


@dataclass
class JobStatus:
    id: str
    type: str
    status: str
    stopped: bool
    version: int | None
    namespace: str
    datacenters: list[str]
    groups: dict[str, dict[str, int]]
    allocations: list[AllocStatus]
    failures: list[PlacementFailure]

    @property
    def state(self) -> str:
        """What became of the job. Nomad says `dead` for any job with no allocation left to
        run: stopped, a batch job whose work is done, or one that failed for good. The newest
        allocation of each name tells the last two apart (`allocations` lists them newest
        first): `complete` when every one completed, else `failed`."""
        if self.stopped:
            return "stopped"
        if self.status != "dead":
            return self.status
        newest: dict[str, str] = {}
        for alloc in self.allocations:
            newest.setdefault(alloc.name, alloc.status)
        if not newest:
            return self.status
        return "complete" if set(newest.values()) == {"complete"} else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "state": self.state,
            "stopped": self.stopped,
            "version": self.version,
            "namespace": self.namespace,
            "datacenters": self.datacenters,
            "groups": self.groups,
            "allocations": [
                {**a.__dict__, "tasks": [t.__dict__ for t in a.tasks]} for a in self.allocations
            ],
            "placement_failures": [f.to_dict() for f in self.failures],
        }


@dataclass
class PlanResult:
    job_id: str
    changes: list[str]
    updates: dict[str, dict[str, int]]
    failures: list[PlacementFailure]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job_id,
            "changes": self.changes,
            "updates": self.updates,
            "placement_failures": [f.to_dict() for f in self.failures],
            "warnings": self.warnings,
        }


class NomadClient:
    """The operations `pipeline deploy/start/stop/status/logs/plan` need."""

    def __init__(self, settings: NomadSettings | None = None) -> None:
        import nomad
        import requests
        from nomad.api.base import Requester

        self.settings = settings or NomadSettings.from_env()
        s = self.settings
        self._api = nomad.Nomad(
            address=s.address,
            token=s.token,
            namespace=s.namespace,
            region=s.region,
            timeout=s.timeout,
            verify=s.verify,
            cert=s.cert,
            session=requests.Session(),
        )
        # python-nomad falls back to NOMAD_* of the process for unset values; pin ours on
        # every endpoint object (the /client endpoints are one level further down).
        for obj in [*vars(self._api).values(), *vars(self._api.client).values()]:
            if isinstance(obj, Requester):
                obj.namespace = s.namespace
                obj.token = s.token
                obj.region = s.region
                obj.cert = s.cert

    @property
    def namespace(self) -> str:
        return self.settings.namespace or "default"

    # -- low level ---------------------------------------------------------------------------

    def _call(
        self,
        action: str,
        fn: Callable[[], T],
        *,
        not_found: str | None = None,
    ) -> T:
        import requests
        from nomad.api import exceptions as nx

        address = self.settings.address
        try:
            return fn()
        except nx.URLNotAuthorizedNomadException as exc:
            body = _first_line(getattr(exc.nomad_resp, "text", "") or "Permission denied")
            if self.settings.token:
                hint = (
                    f"the token in NOMAD_TOKEN is not allowed to {action} in namespace "
                    f"{self.namespace!r}"
                )
            else:
                hint = "NOMAD_TOKEN is not set and the cluster requires an ACL token"
            raise NomadPermissionDenied(f"Nomad refused to {action} (403 {body}): {hint}") from None
        except nx.URLNotFoundNomadException as exc:
            body = _first_line(getattr(exc.nomad_resp, "text", "") or "not found")
            raise NomadNotFound(
                not_found or f"Nomad found nothing to {action} (404 {body})"
            ) from None
        except nx.BadRequestNomadException as exc:
            body = _first_line(getattr(exc.nomad_resp, "text", "") or "bad request")
            raise NomadRejected(f"Nomad rejected the request to {action}: {body}") from None
        except nx.TimeoutNomadException as exc:
            # python-nomad wraps every connection error of a streamed request in this class.
            cause = exc.args[0] if exc.args else exc
            if isinstance(cause, requests.exceptions.Timeout):
                raise self._timeout(action) from None
            raise self._unreachable(cause) from None
        except nx.BaseNomadException as exc:
            resp = exc.nomad_resp
            if isinstance(resp, requests.Response):
                body = _first_line(resp.text or resp.reason or "")
                if resp.status_code >= 500:
                    raise NomadServerError(
                        f"Nomad failed to {action} (HTTP {resp.status_code}: {body}); the "
                        "cluster may be unhealthy or without a leader"
                    ) from None
                raise NomadServerError(
                    f"Nomad answered HTTP {resp.status_code} to {action}: {body}"
                ) from None
            if isinstance(resp, requests.exceptions.Timeout):
                raise self._timeout(action) from None
            if isinstance(resp, BaseException):
                raise self._unreachable(resp) from None
            raise NomadUnreachable(f"cannot reach Nomad at {address}: {resp}") from None
        except ValueError:
            # a body that is not JSON (requests' JSONDecodeError is a ValueError too): not a
            # Nomad agent, or a proxy's error page
            raise NomadServerError(
                f"the answer to {action} is not Nomad's JSON; is NOMAD_ADDR={address} a Nomad "
                "agent?"
            ) from None
        except requests.exceptions.Timeout:
            raise self._timeout(action) from None
        except requests.exceptions.RequestException as exc:
            raise self._unreachable(exc) from None

    def _timeout(self, action: str) -> NomadTimeout:
        return NomadTimeout(
            f"Nomad at {self.settings.address} did not answer within "
            f"{self.settings.timeout:g} s while trying to {action}"
        )

    def _unreachable(self, exc: BaseException) -> NomadError:
        import requests

        address = self.settings.address
        if isinstance(exc, requests.exceptions.SSLError):
            text = str(exc)
            if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
                return NomadUnreachable(
                    f"Nomad at {address} does not speak TLS; use an http:// NOMAD_ADDR"
                )
            return NomadUnreachable(
                f"TLS verification of Nomad at {address} failed; set NOMAD_CACERT to the "
                "cluster's CA certificate (NOMAD_SKIP_VERIFY=true skips the check, unsafe)"
            )
        return NomadUnreachable(
            f"cannot reach Nomad at {address} ({_reason(exc)}); check NOMAD_ADDR and that the "
            "agent is running"
        )

    def _json(
        self,
        action: str,
        requester: Any,
        *path: str,
        method: str = "get",
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        not_found: str | None = None,
    ) -> Any:
        def go() -> Any:
            kwargs: dict[str, Any] = {"method": method, "params": dict(params or {})}
            if body is not None:
                kwargs["json"] = body
            return requester.request(*path, **kwargs).json()

        return self._call(action, go, not_found=not_found)

    @staticmethod
    def _id(job_id: str) -> str:
        return quote(job_id, safe="")

    def _job_not_found(self, job_id: str) -> str:
        return (
            f"no job {job_id!r} is registered in namespace {self.namespace!r}; deploy it with "
            "`pipeline deploy FILE` (or check NOMAD_NAMESPACE)"
        )

    # -- jobs --------------------------------------------------------------------------------

    def register(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/jobs with `{"Job": ...}`; returns Nomad's answer (EvalID, Warnings...)."""
        if "Job" not in payload:
            raise NomadRejected('the job to register must be wrapped as {"Job": {...}}')
        answer = self._json(
            "register the job",
            self._api.jobs,
            method="post",
            body=dict(payload),
            not_found=f"{self.settings.address} has no Nomad job API (404); is NOMAD_ADDR the "
            "agent's address, without a path?",
        )
        if not isinstance(answer, dict):
            raise NomadServerError("Nomad's answer to registering the job is not an object")
        return answer

    def read_job(self, job_id: str) -> dict[str, Any]:
        answer = self._json(
            f"read job {job_id}",
            self._api.job,
            self._id(job_id),
            not_found=self._job_not_found(job_id),
        )
        if not isinstance(answer, dict):
            raise NomadServerError(f"Nomad's answer for job {job_id} is not an object")
        return answer

    def variable_keys(self, path: str) -> frozenset[str] | None:
        """GET /v1/var/:path in the client's namespace: the keys of the Nomad variable there
        (its values are read, as the API gives them, and dropped), or None when there is none.
        Raises NomadPermissionDenied when the token may not read it."""
        try:
            # python-nomad adds the namespace to /v1/var/ requests of its own accord only
            # for endpoints it names "variable": given here
            answer = self._json(
                f"read the Nomad variable {path}",
                self._api.variable,
                path,
                params={"namespace": self.namespace},
            )
        except NomadNotFound:
            return None
        items = answer.get("Items") if isinstance(answer, dict) else None
        if not isinstance(items, dict):
            raise NomadServerError(f"Nomad's answer for the variable {path} has no Items")
        return frozenset(items)

    def deploy(self, payload: Mapping[str, Any], *, wait: float = 60.0) -> DeployResult:
        """Register the job, wait for its evaluation and explain placement failures."""
        answer = self.register(payload)
        job = payload["Job"]
        warnings = [w.strip() for w in str(answer.get("Warnings") or "").splitlines() if w.strip()]
        eval_id = str(answer.get("EvalID") or "")
        evaluation = self.wait_for_evaluation(eval_id, job=job, wait=wait) if eval_id else None
        return DeployResult(
            job_id=str(job.get("ID")),
            namespace=str(job.get("Namespace") or self.namespace),
            evaluation=evaluation,
            warnings=warnings,
        )

    def wait_for_evaluation(
        self, eval_id: str, *, job: Mapping[str, Any] | None = None, wait: float = 60.0
    ) -> EvalResult:
        """Block (Nomad's blocking queries) until the evaluation is complete, failed or
        canceled; raise NomadTimeout after `wait` seconds."""
        deadline = time.monotonic() + wait
        index = 0
        while True:
            remaining = deadline - time.monotonic()
            params: dict[str, Any] = {}
            if index:
                params = {"index": index, "wait": f"{max(1, min(int(remaining), 30))}s"}

            def get(params: dict[str, Any] = params) -> Any:
                # a blocking query may legitimately hang for `wait`; allow for it
                timeout = self.settings.timeout + (30 if params else 0)
                return self._api.evaluation.request(
                    eval_id, method="get", params=params, timeout=timeout
                )

            response = self._call(
                f"read evaluation {eval_id}",
                get,
                not_found=f"evaluation {eval_id} no longer exists (garbage collected?)",
            )
            evaluation = self._call(f"read evaluation {eval_id}", response.json)
            status = str(evaluation.get("Status") or "")
            if status in TERMINAL_EVAL:
                return EvalResult(
                    eval_id=eval_id,
                    status=status,
                    failures=explain_all(evaluation.get("FailedTGAllocs"), job),
                    description=str(evaluation.get("StatusDescription") or ""),
                )
            if time.monotonic() >= deadline:
                raise NomadTimeout(
                    f"evaluation {eval_id} is still {status or 'pending'} after {wait:g} s; "
                    "see `pipeline status` later"
                )
            new_index = int(response.headers.get("X-Nomad-Index") or 0)
            if new_index <= index:
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            index = new_index

    def start(self, job_id: str, *, wait: float = 60.0) -> DeployResult | None:
        """Run a stopped job again (as `nomad job start`): register it with Stop cleared.
        Returns None when the job is already running."""
        job = self.read_job(job_id)
        if not job.get("Stop"):
            return None
        job["Stop"] = False
        return self.deploy({"Job": job}, wait=wait)

    def stop(self, job_id: str, *, purge: bool = False) -> str:
        """Deregister the job (its allocations stop); with purge, Nomad forgets it at once.
        Returns the evaluation ID."""
        params = {"purge": "true"} if purge else {}
        answer = self._json(
            f"stop job {job_id}",
            self._api.job,
            self._id(job_id),
            method="delete",
            params=params,
            not_found=self._job_not_found(job_id),
        )
        return str((answer or {}).get("EvalID") or "")

    def plan(self, payload: Mapping[str, Any]) -> PlanResult:
        """Dry-run the scheduler for the job and describe what would change."""
        job = payload["Job"]
        job_id = str(job["ID"])
        answer = self._json(
            f"plan job {job_id}",
            self._api.job,
            self._id(job_id),
            "plan",
            method="post",
            body={"Job": job, "Diff": True},
        )
        annotations = (answer.get("Annotations") or {}).get("DesiredTGUpdates") or {}
        warnings = [w for w in str(answer.get("Warnings") or "").splitlines() if w.strip()]
        return PlanResult(
            job_id=job_id,
            changes=render_diff(answer.get("Diff") or {}),
            updates={
                group: {k: int(v) for k, v in (upd or {}).items() if v}
                for group, upd in sorted(annotations.items())
            },
            failures=explain_all(answer.get("FailedTGAllocs"), job),
            warnings=warnings,
        )

    # -- status ------------------------------------------------------------------------------

    def allocations(self, job_id: str) -> list[dict[str, Any]]:
        answer = self._json(
            f"list the allocations of job {job_id}",
            self._api.job,
            self._id(job_id),
            "allocations",
            not_found=self._job_not_found(job_id),
        )
        if not isinstance(answer, list):
            raise NomadServerError(f"Nomad's allocation list for job {job_id} is not a list")
        return answer

    def status(self, job_id: str) -> JobStatus:
        job = self.read_job(job_id)
        summary = self._json(
            f"read the summary of job {job_id}",
            self._api.job,
            self._id(job_id),
            "summary",
            not_found=self._job_not_found(job_id),
        )
        allocs = self.allocations(job_id)
        evaluations = self._json(
            f"list the evaluations of job {job_id}",
            self._api.job,
            self._id(job_id),
            "evaluations",
            not_found=self._job_not_found(job_id),
        )
        failures: list[PlacementFailure] = []
        # A blocked evaluation waits for capacity: its metrics say why groups are not placed.
        for evaluation in sorted(
            evaluations or [], key=lambda e: int(e.get("CreateIndex") or 0), reverse=True
        ):
            if evaluation.get("Status") == "blocked" and evaluation.get("FailedTGAllocs"):
                failures = explain_all(evaluation["FailedTGAllocs"], job)
                break
        groups = {
            name: {k: int(v) for k, v in (counts or {}).items()}
            for name, counts in sorted(((summary or {}).get("Summary") or {}).items())
        }
        return JobStatus(
            id=str(job.get("ID")),
            type=str(job.get("Type") or ""),
            status=str(job.get("Status") or ""),
            stopped=bool(job.get("Stop")),
            version=job.get("Version"),
            namespace=str(job.get("Namespace") or self.namespace),
            datacenters=list(job.get("Datacenters") or []),
            groups=groups,
            allocations=[
                _alloc_status(a)
                for a in sorted(
                    allocs,
                    key=lambda a: (
                        str(a.get("TaskGroup")),
                        str(a.get("Name")),
                        -int(a.get("CreateIndex") or 0),
                    ),
                )
            ],
            failures=failures,
        )

    # -- logs --------------------------------------------------------------------------------

    def pick_allocation(self, job_id: str, unit: str, replica: int | None = None) -> dict[str, Any]:
        allocs = self.allocations(job_id)
        mine = [a for a in allocs if a.get("TaskGroup") == unit]
        if not mine:
            units = sorted({str(a.get("TaskGroup")) for a in allocs})
            if units:
                raise NomadNotFound(
                    f"job {job_id} has no allocation of unit {unit!r}; its units with "
                    f"allocations are {', '.join(units)}"
                )
            raise NomadNotFound(
                f"job {job_id} has no allocations yet; see `pipeline status` for why"
            )
        if replica is not None:
            mine = [a for a in mine if str(a.get("Name", "")).endswith(f"[{replica}]")]
            if not mine:
                raise NomadNotFound(f"unit {unit} of job {job_id} has no replica {replica}")
        # prefer a running allocation, then the newest
        mine.sort(
            key=lambda a: (a.get("ClientStatus") == "running", int(a.get("CreateIndex") or 0)),
            reverse=True,
        )
        return mine[0]

    def stream_logs(
        self,
        alloc_id: str,
        task: str,
        *,
        stderr: bool = False,
        follow: bool = False,
        plain: bool = False,
        origin: str = "start",
        offset: int = 0,
    ) -> Iterator[bytes]:
        """The task's log bytes from GET /v1/client/fs/logs/:alloc_id, decoding Nomad's frames
        (or reading plain=true text as is)."""
        params = {
            "task": task,
            "type": "stderr" if stderr else "stdout",
            "follow": "true" if follow else "false",
            "origin": origin,
            "offset": str(offset),
            "plain": "true" if plain else "false",
        }
        read_timeout = FOLLOW_READ_TIMEOUT if follow else self.settings.timeout
        action = f"read the logs of task {task}"
        response = self._call(
            action,
            lambda: self._api.client.stream_logs.request(
                alloc_id,
                method="get",
                params=params,
                stream=True,
                timeout=(self.settings.timeout, read_timeout),
            ),
            not_found=f"allocation {alloc_id[:8]} has no logs for task {task!r} (logs "
            "disabled, or the allocation was garbage collected)",
        )
        return self._log_bytes(response, plain=plain, action=action)

    def _log_bytes(self, response: Any, *, plain: bool, action: str) -> Iterator[bytes]:
        decoder = FrameDecoder()
        chunks = response.iter_content(chunk_size=None)
        try:
            while True:
                chunk = self._call(action, lambda: next(chunks, None))
                if chunk is None:
                    break
                if plain:
                    yield chunk
                    continue
                for frame in decoder.feed(chunk):
                    if frame.data:
                        yield frame.data
            if not plain:
                decoder.close()
        finally:
            response.close()

    def logs(
        self,
        job_id: str,
        unit: str,
        out: IO[bytes],
        *,
        stderr: bool = False,
        follow: bool = False,
        replica: int | None = None,
        plain: bool = False,
    ) -> dict[str, Any]:
        alloc = self.pick_allocation(job_id, unit, replica)
        for data in self.stream_logs(
            str(alloc["ID"]), unit, stderr=stderr, follow=follow, plain=plain
        ):
            out.write(data)
            out.flush()
        return alloc


def _alloc_status(alloc: Mapping[str, Any]) -> AllocStatus:
    tasks = []
    for name, state in sorted((alloc.get("TaskStates") or {}).items()):
        state = state or {}
        events = []
        for event in (state.get("Events") or [])[-RECENT_EVENTS:]:
            message = (
                event.get("DisplayMessage")
                or event.get("Message")
                or event.get("DriverError")
                or event.get("SetupError")
                or event.get("RestartReason")
                or ""
            )
            if event.get("Type") == "Terminated" and not message:
                message = f"exit code {event.get('ExitCode', 0)}"
            events.append(
                {
                    "time": _ns_time(event.get("Time")),
                    "type": str(event.get("Type") or ""),
                    "message": str(message),
                }
            )
        tasks.append(
            TaskStatus(
                name=name,
                state=str(state.get("State") or ""),
                failed=bool(state.get("Failed")),
                restarts=int(state.get("Restarts") or 0),
                events=events,
            )
        )
    return AllocStatus(
        id=str(alloc.get("ID") or ""),
        name=str(alloc.get("Name") or ""),
        group=str(alloc.get("TaskGroup") or ""),
        node=str(alloc.get("NodeName") or str(alloc.get("NodeID") or "")[:8]),
        desired=str(alloc.get("DesiredStatus") or ""),
        status=str(alloc.get("ClientStatus") or ""),
        version=alloc.get("JobVersion"),
        modified=_ns_time(alloc.get("ModifyTime")),
        tasks=tasks,
    )


_MARK = {"Added": "+", "Deleted": "-", "Edited": "~"}


def render_diff(diff: Mapping[str, Any]) -> list[str]:
    """Nomad's plan diff as readable lines (`+` added, `-` deleted, `~` edited)."""
    lines: list[str] = []
    if diff.get("Type") in (None, "", "None") and not diff.get("TaskGroups"):
        return lines

    def fields(prefix: str, obj: Mapping[str, Any]) -> None:
        for f in obj.get("Fields") or []:
            if not isinstance(f, Mapping) or f.get("Type") in (None, "None"):
                continue
            mark = _MARK.get(str(f.get("Type")), "~")
            old, new = f.get("Old", ""), f.get("New", "")
            change = {"+": f"{new!r}", "-": f"{old!r}"}.get(mark, f"{old!r} => {new!r}")
            lines.append(f"{mark} {prefix}{f.get('Name')}: {change}")
        for o in obj.get("Objects") or []:
            if isinstance(o, Mapping) and o.get("Type") not in (None, "None"):
                fields(f"{prefix}{o.get('Name')}.", o)

    if diff.get("Type") in _MARK:
        lines.append(f"{_MARK[str(diff['Type'])]} job {diff.get('ID', '')}")
    fields("job.", diff)
    for group in diff.get("TaskGroups") or []:
        name = group.get("Name")
        if group.get("Type") in _MARK:
            lines.append(f"{_MARK[str(group['Type'])]} unit {name}")
        fields(f"{name}.", group)
        for task in group.get("Tasks") or []:
            if task.get("Type") in _MARK and task.get("Name") != name:
                lines.append(f"{_MARK[str(task['Type'])]} task {name}/{task.get('Name')}")
            fields(f"{name}/{task.get('Name')}.", task)
    return lines
