"""Run records on the pipeline's own transport (data source `<pipeline>.runs`).

Streams of that data source:
- `owner`: the pipeline file that owns the namespace. The first claim stored wins (message ids are
  given out atomically), so two files with the same `pipeline:` name racing for one store cannot
  both win; the loser is refused with one sentence naming both files.
- `index`: one message per run started; its id numbers the run (`r<id>`), so two runs started at
  once never get the same id. Ids whose data sources are in the store without a record (the
  records were moved aside) are passed over, so a new run never reads an old run's streams.
- `r<N>`: the run's events, in order: `started` (file text and hash, each unit's configuration
  and fingerprint, `--set` overrides, what it was replayed from), `resumed` (the file's hash,
  its text when it changed, the changed configuration when resumed with `--resume`), `ended`
  (state, the units' summaries and counts). A local session also records its run directory
  (`run_dir`), where its supervisor holds the lock that says it is alive.

Records are JSON payloads, so large pipeline files fit on every transport.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asapo_pipelines import __version__
from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.transport import (
    EndOfStream,
    MissingId,
    StreamFinished,
    formats,
    holds_data_source,
    lost_data_sources,
)
from asapo_pipelines.worker.naming import RUN_ID, errors_source, runs_source, status_source

OWNER_STREAM = "owner"
INDEX_STREAM = "index"
GROUP = "run-records"


class RunsError(PipelinesError):
    """A run cannot be found, claimed or started: one sentence for the user."""


def file_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Run:
    id: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events = _without_void_sessions(self.events)

    @property
    def number(self) -> int:
        return int(self.id[1:])

    @property
    def start(self) -> dict[str, Any]:
        return next((e for e in self.events if e.get("event") == "started"), {})

    @property
    def started(self) -> float | None:
        return self.start.get("time")

    @property
    def ended(self) -> float | None:
        last = self.last_end
        return None if last is None else last.get("time")

    @property
    def last_end(self) -> dict[str, Any] | None:
        """The `ended` event of the last session, None while one is going on."""
        for event in reversed(self.events):
            if event.get("event") == "ended":
                return event
            if event.get("event") in ("started", "resumed"):
                return None
        return None

    @property
    def session(self) -> dict[str, Any]:
        """The event that began the last session (`started` or `resumed`)."""
        return next(
            (e for e in reversed(self.events) if e.get("event") in ("started", "resumed")), {}
        )

    @property
    def file_sha256(self) -> str | None:
        """The pipeline file's hash of the last session that recorded one: the file the
        results of this session are made with (a session resumed under an edited file records
        the edited file's)."""
        for event in reversed(self.events):
            if event.get("file_sha256"):
                return str(event["file_sha256"])
        return None

    @property
    def text(self) -> str | None:
        """The pipeline file's text that goes with `file_sha256`."""
        for event in reversed(self.events):
            if event.get("text") is not None:
                return str(event["text"])
        return None

    @property
    def state(self) -> str:
        end = self.last_end
        return "running" if end is None else str(end.get("state", "ended"))

    @property
    def configurations(self) -> dict[str, dict[str, Any]]:
        """The configuration in force now (the last one recorded)."""
        for event in reversed(self.events):
            if event.get("configurations"):
                return dict(event["configurations"])
        return {}

    @property
    def all_configurations(self) -> dict[str, dict[str, Any]]:
        """fingerprint -> configuration, of every configuration this run ever had."""
        found: dict[str, dict[str, Any]] = {}
        for event in self.events:
            for config in (event.get("configurations") or {}).values():
                found[config["fingerprint"]] = config
        return found

    @property
    def sessions(self) -> list[dict[str, Any]]:
        """Each session of the run, in order, with what its results were made with: `began`
        (the time of its `started` or `resumed` event, the key a result's provenance names
        its session by), the pipeline `file` and its `file_sha256`, the `overrides` and the
        `configurations` (instance -> configuration with its fingerprint) in force in it.
        A `resumed` event records only what changed: the rest is carried from before."""
        out: list[dict[str, Any]] = []
        state: dict[str, Any] = {"file": None, "file_sha256": None, "overrides": {}}
        state["configurations"] = {}
        for event in self.events:
            kind = event.get("event")
            if kind not in ("started", "resumed"):
                if kind == "ended" and out:
                    out[-1].update(
                        ended=event.get("time"),
                        state=event.get("state", "ended"),
                        message=str(event.get("message") or ""),
                    )
                continue
            for key in ("file", "file_sha256", "configurations", "overrides"):
                if event.get(key) is not None:
                    state[key] = event[key]
            out.append(
                {
                    "began": event.get("time"),
                    "event": kind,
                    "file": state["file"],
                    "file_sha256": state["file_sha256"],
                    "overrides": dict(state["overrides"] or {}),
                    "configurations": dict(state["configurations"] or {}),
                    "ended": None,
                    "state": "running",
                    # why it ended as it did ("" while it goes on)
                    "message": "",
                }
            )
        return out

    def configuration_of_last_work(self, instance: str) -> dict[str, Any] | None:
        """`instance`'s configuration in the last ended session in which it processed or sent
        anything, or gave its results from its restored state (`reapplied`): the one its
        results were made with. None when it never did."""
        configurations: dict[str, Any] = {}
        found = None
        for event in self.events:
            kind = event.get("event")
            if kind in ("started", "resumed") and event.get("configurations") is not None:
                configurations = event["configurations"]
            elif kind == "ended":
                did = (event.get("counts") or {}).get(instance) or {}
                if did.get("processed") or did.get("outputs") or did.get("reapplied"):
                    found = configurations.get(instance)
        return None if found is None else dict(found)

    def session_began(self, began: Any) -> dict[str, Any] | None:
        """The session (as in `sessions`) that began at `began`; None when none did."""
        for session in self.sessions:
            if _same_time(session["began"], began):
                return session
        return None

    def last_session_with(self, fingerprint: str) -> dict[str, Any] | None:
        """The last session (as in `sessions`) in which a configuration of `fingerprint` was in
        force: the session of a message whose provenance names none (written before messages
        named their session)."""
        for session in reversed(self.sessions):
            configs = session["configurations"].values()
            if any(c.get("fingerprint") == fingerprint for c in configs):
                return session
        return None

    @property
    def overrides(self) -> dict[str, Any]:
        for event in reversed(self.events):
            if "overrides" in event:
                return dict(event["overrides"] or {})
        return {}

    @property
    def summaries(self) -> dict[str, Any]:
        """instance -> the unit's summary at the end of the last session in which it processed
        or sent anything (else of the last session). A session with nothing to do, such as a
        resume of a finished run, ends with summaries of nothing: taken as the run's, they
        blanked its scans and decisions, and `reprocess` compared against those."""
        found: dict[str, Any] = {}
        for event in self.events:
            if event.get("event") != "ended":
                continue
            counts = event.get("counts") or {}
            for instance, summary in (event.get("summaries") or {}).items():
                did = counts.get(instance) or {}
                if instance not in found or did.get("processed") or did.get("outputs"):
                    found[instance] = summary
        return found

    def summaries_before(self, began: Any) -> dict[str, Any]:
        """`summaries` as the sessions before the one that began at `began` (its `started` or
        `resumed` event's time; else the last session) left them: what a unit of that session
        counts on from (`UnitContext.carried_summary`). A unit that counts on from it ends
        its session with the run's whole summary, which `summaries` then takes as it is."""
        starts = [i for i, e in enumerate(self.events) if e.get("event") in ("started", "resumed")]
        if not starts:
            return {}
        index = next(
            (i for i in starts if _same_time(self.events[i].get("time"), began)), starts[-1]
        )
        return Run(self.id, self.events[:index]).summaries

    @property
    def counts(self) -> dict[str, Any]:
        """instance -> its counters summed over every session of the run: a run resumed after
        a stop has processed what each session processed, not only the last one's share."""
        total: dict[str, dict[str, Any]] = {}
        for event in self.events:
            if event.get("event") != "ended":
                continue
            for instance, counters in (event.get("counts") or {}).items():
                into = total.setdefault(instance, {})
                for key, value in counters.items():
                    summable = isinstance(value, int | float) and not isinstance(value, bool)
                    into[key] = into.get(key, 0) + value if summable else value
        return total

    def to_dict(self, *, text: bool = False) -> dict[str, Any]:
        start = self.start
        out = {
            "id": self.id,
            "state": self.state,
            "started": self.started,
            "ended": self.ended,
            "mode": start.get("mode", "run"),
            # who ran the last session: `local` for `pipeline run`, else the deploying executor
            "executor": self.session.get("executor", "local"),
            "from_run": start.get("from_run"),
            "file": start.get("file"),
            # the file of the last session, and the one the run started with
            "file_sha256": self.file_sha256,
            "started_file_sha256": start.get("file_sha256"),
            "sessions": sum(1 for e in self.events if e.get("event") in ("started", "resumed")),
            # each session: what a result's fingerprint and session (its provenance) resolve to
            "session_list": self.sessions,
            "overrides": self.overrides,
            "configurations": self.configurations,
            "counts": self.counts,
            # why its last session ended as it did ("" while one goes on)
            "message": str((self.last_end or {}).get("message") or ""),
        }
        if text:
            out["text"] = self.text
        return out


class RunStore:
    """The run records of one pipeline namespace on an open transport."""

    def __init__(self, transport: Any, pipeline: str) -> None:
        self.transport = transport
        self.pipeline = pipeline
        self.source = runs_source(pipeline)

    # -- reading ----------------------------------------------------------------------------------
    def _holds(self, source: str) -> bool:
        """Whether the store holds `source`; one whose index it lost raises `IndexLost`
        (`holds_data_source`): lost run records are not "no runs yet", which sent the user
        to start one with `pipeline run`."""
        return holds_data_source(self.transport, source)

    def _read(self, stream: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        with self.transport.consumer(self.source, GROUP) as consumer:
            names = {info.name: info for info in consumer.streams()}
            info = names.get(stream)
            if info is None:
                return out
            for msg_id in range(1, info.last_id + 1):
                try:
                    msg = consumer.get_by_id(stream, msg_id)
                except (MissingId, EndOfStream, StreamFinished):
                    continue
                body = formats.decode(msg.payload, msg.metadata)
                if isinstance(body, dict):
                    out.append(body)
        return out

    def run_ids(self) -> list[str]:
        if not self._holds(self.source):
            return []
        with self.transport.consumer(self.source, GROUP) as consumer:
            ids = [i.name for i in consumer.streams() if RUN_ID.match(i.name)]
        return sorted(ids, key=lambda r: int(r[1:]))

    def pruned_ids(self) -> set[str]:
        """The run ids the index gave out whose run records are gone (`pipeline prune --run`).
        The index keeps every number, so that no later run reuses one; a store without its run
        records has no index either, and nothing counts as pruned."""
        if not self._holds(self.source):
            return set()
        with self.transport.consumer(self.source, GROUP) as consumer:
            streams = {info.name: info.last_id for info in consumer.streams()}
        given = streams.get(INDEX_STREAM, 0)
        return {f"r{n}" for n in range(1, given + 1)} - {n for n in streams if RUN_ID.match(n)}

    def runs(self) -> list[Run]:
        return [Run(rid, self._read(rid)) for rid in self.run_ids()]

    def get(self, run_id: str) -> Run:
        """A run by id (`r3`, or just `3`); a sentence when there is none."""
        wanted = run_id if run_id.startswith("r") else f"r{run_id}"
        ids = self.run_ids()
        if wanted not in ids:
            # the newest five; a longer list says how many it leaves out (r1 was not "gone")
            known = ", ".join(ids[-5:]) if ids else "none yet"
            if len(ids) > 5:
                known = f"{len(ids)}, the newest {known}"
            raise RunsError(
                f"pipeline {self.pipeline} has no run {run_id!r} in this store (its runs: "
                f"{known}; see `pipeline runs`)"
            )
        return Run(wanted, self._read(wanted))

    def latest(self, *, resumable: bool = False) -> Run | None:
        """The newest run; with `resumable`, the newest that `pipeline run` may resume (not a
        reprocess, which replays a past run and ends)."""
        for run_id in reversed(self.run_ids()):
            run = Run(run_id, self._read(run_id))
            if not resumable or run.start.get("mode") != "reprocess":
                return run
        return None

    def current(self) -> Run | None:
        """The run whose last session began last: the one whose results a user means when
        naming none. Not `latest`'s highest id: `pipeline run` resumes the newest run that is
        not a reprocess, so after a reprocess the resumed older run is the one going on."""
        runs = self.runs()
        if not runs:
            return None
        return max(runs, key=lambda run: (_session_time(run), run.number))

    def errors_held(self, run_id: str) -> dict[str, int] | None:
        """instance -> how many error records of run `run_id` its error stream holds (an error
        reported again is stored once); None when the store has no error stream."""
        source = errors_source(self.pipeline)
        if not self._holds(source):
            return None
        from asapo_pipelines.worker.dedupe import read_metadata

        held: dict[str, int] = {}
        with self.transport.consumer(source, GROUP) as consumer:
            for info in consumer.streams():
                for msg_id in range(1, info.last_id + 1):
                    # the metadata even of a record whose payload is damaged: it still counts
                    msg = read_metadata(consumer, info.name, msg_id)
                    if msg is None:
                        continue
                    prov = dict(msg.metadata or {}).get("provenance") or {}
                    if prov.get("run") == run_id:
                        held[info.name] = held.get(info.name, 0) + 1
        return held

    def _errors_as_stored(self, run: Run, counts: dict[str, Any]) -> dict[str, Any]:
        """A resumed session reports the errors of earlier sessions again (a source reads its
        malformed files again); the error stream stores each once. The session is credited
        with the records it added, so the counts summed over sessions (`Run.counts`, what
        `pipeline runs` shows) equal what `pipeline tail FILE errors` lists."""
        held = self.errors_held(run.id)
        if held is None:
            return counts
        earlier = run.counts
        out = {name: dict(c) for name, c in counts.items()}
        replicas: dict[str, list[str]] = {}
        for name in out:  # `merge`, `merge[1]`: one error stream per instance
            replicas.setdefault(name.partition("[")[0], []).append(name)
        for instance, names in replicas.items():
            before = sum(int(earlier.get(n, {}).get("errors", 0)) for n in names)
            added = max(0, held.get(instance, 0) - before)
            for i, name in enumerate(names):
                out[name]["errors"] = added if i == 0 else 0
        return out

    def _claimed(self) -> dict[str, Any] | None:
        """The owner record: the first claim of the namespace."""
        claims = self._read(OWNER_STREAM) if self._holds(self.source) else []
        return claims[0] if claims else None

    def owner(self) -> str | None:
        claim = self._claimed()
        return None if claim is None else str(claim["file"])

    def _in_store(self, pipeline_file: str | Path) -> str | None:
        """`pipeline_file`'s path relative to the store's folder, for a store kept in a folder
        (`Transport.local_root`): the same after the project folder holding both was moved or
        copied, which changes every absolute path."""
        root = self.transport.local_root
        if root is None:
            return None
        return os.path.relpath(Path(pipeline_file).resolve(), Path(root).resolve())

    def _owns(self, claim: dict[str, Any], pipeline_file: str | Path) -> bool:
        if claim["file"] == str(Path(pipeline_file).resolve()):
            return True
        relative = claim.get("in_store")
        return relative is not None and relative == self._in_store(pipeline_file)

    def other_owner(self, pipeline_file: str | Path) -> str | None:
        """The file that owns the namespace when it is not `pipeline_file` (one read of the
        owner record); None for the owner, or a store with no owner recorded yet."""
        claim = self._claimed()
        return None if claim is None or self._owns(claim, pipeline_file) else str(claim["file"])

    def belongs_to(self, owner: str) -> str:
        """The start of every sentence that says another file owns the namespace: `claim`'s
        refusal, and the warning of a command that reads the runs through a copy."""
        return f"pipeline name {self.pipeline!r} in this store belongs to {owner}"

    def refusal(self, owner: str, pipeline_file: str | Path) -> str:
        """Why `pipeline_file` may not write or prune in `owner`'s namespace, and the remedy.
        An owner file that no longer exists here is most often this very file renamed: the
        remedy is then its old name, which keeps the runs, not a new `pipeline:` name, which
        starts over."""
        mine = Path(pipeline_file).resolve()
        if not Path(owner).exists():
            return (
                f"{self.belongs_to(owner)}, which no longer exists here, so {mine} cannot use "
                f"it: if {mine.name} is that file renamed or moved, give it back its name and "
                f"place (`mv {shlex.quote(str(mine))} {shlex.quote(owner)}`) to go on with its "
                "runs; else give it another `pipeline:` name"
            )
        option = getattr(self.transport, "separate_store", "")
        which = f" (another `{option}`)" if option else ""
        return (
            f"{self.belongs_to(owner)}, so {mine} cannot use it: give "
            "one of the two files another `pipeline:` name, or a store of its own in its "
            f"`transport:` section{which}"
        )

    # -- writing ----------------------------------------------------------------------------------
    def _append(self, stream: str, record: dict[str, Any]) -> int:
        payload, meta = formats.encode(record, "json")
        with self.transport.producer(self.source) as producer:
            msg_id = producer.send(stream, payload, meta)
            producer.flush()
        return int(msg_id)

    def claim(self, pipeline_file: str | Path) -> None:
        """Make `pipeline_file` the owner of the namespace, or refuse when another file is.
        The owner is known by its absolute path and, in a store kept in a folder, by its path
        relative to that folder: moved or copied together with its store, it is still the
        owner, while another file beside it is not."""
        mine = str(Path(pipeline_file).resolve())
        claim = self._claimed()
        if claim is None:
            record = {"file": mine, "in_store": self._in_store(mine)}
            self._append(OWNER_STREAM, {**record, "time": time.time(), "host": _host()})
            claim = self._claimed()
        if claim is None or not self._owns(claim, mine):
            raise RunsError(self.refusal(str(claim and claim["file"]), mine))

    def begin(
        self,
        *,
        pipeline_file: str | Path | None,
        text: str,
        configurations: dict[str, dict[str, Any]],
        overrides: dict[str, Any],
        mode: str = "run",
        from_run: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Run:
        self.refuse_lost(None)
        # the replayed run's start, which with its id names one run (`UnitContext.replays`):
        # kept in this run's own record, as that run may be pruned while this one's workers
        # still start (a restart, a resumed deployment) and must be told the same run
        replays_started = None if from_run is None else self.get(from_run).started
        number, unrecorded = self._next_number()
        run_id = f"r{number}"
        record = {
            "event": "started",
            "run": run_id,
            "pipeline": self.pipeline,
            "time": time.time(),
            "mode": mode,
            "from_run": from_run,
            "from_run_started": replays_started,
            "file": None if pipeline_file is None else str(Path(pipeline_file).resolve()),
            "file_sha256": file_sha256(text),
            "text": text,
            "configurations": configurations,
            "overrides": overrides,
            "program": "asapo-pipelines",
            "program_version": __version__,
            "host": _host(),
            **(details or {}),
        }
        if unrecorded:
            record["unrecorded_runs"] = unrecorded
        self._append(run_id, record)
        return Run(run_id, [record])

    def refuse_lost(self, run_id: str | None) -> None:
        """Refuse, before a session is recorded or a worker starts, a store that lost the index
        of a data source the session would use (the run's own, the shared errors and counters):
        opened as new by a worker, it had a source send every input again. Only where the
        transport can tell (`lost_data_sources`: the embedded store's files)."""
        shared = {errors_source(self.pipeline), status_source(self.pipeline)}
        own = f"{self.pipeline}.{run_id}." if run_id else None
        for source in lost_data_sources(self.transport):
            if source in shared or (own is not None and source.startswith(own)):
                self.transport.check_data_source(source)  # raises, with what to do

    def _next_number(self) -> tuple[int, list[str]]:
        """A new run's number from the index, past every run whose data sources the store
        holds without a record (the records were moved aside or lost: a run reusing those
        streams would find their inputs all read and compute nothing), and those runs' ids.

        The data sources are listed before the number is taken, so a source seen there with
        a number not below ours cannot be another starter's: that one's number was given out
        before ours. The numbers passed over are taken from the index too, so starters racing
        past the same old data still get one number each."""
        found = self._numbers_with_data()
        number = self._append(INDEX_STREAM, _index_entry())
        unrecorded = sorted(n for n in found if n >= number)
        if not unrecorded:
            return number, []
        # each id given out is above the one before, so after as many more as there are
        # numbers up to the last unrecorded run, the last is past them all
        passed = {"time": time.time(), "host": _host(), "passed_over": "unrecorded run data"}
        entry = formats.encode(passed, "json")
        with self.transport.producer(self.source) as producer:
            producer.send_many(INDEX_STREAM, [entry] * (unrecorded[-1] - number))
            last = producer.send(INDEX_STREAM, *formats.encode(_index_entry(), "json"))
            producer.flush()
        return int(last), [f"r{n}" for n in unrecorded]

    def _numbers_with_data(self) -> set[int]:
        """The run numbers of this pipeline's data sources in the store (`<pipeline>.r3.x`)."""
        prefix = f"{self.pipeline}."
        numbers = set()
        for source in self.transport.data_sources():
            run_id = source[len(prefix) :].partition(".")[0] if source.startswith(prefix) else ""
            if RUN_ID.match(run_id):
                numbers.add(int(run_id[1:]))
        return numbers

    def resume(
        self,
        run: Run,
        *,
        configurations: dict[str, dict[str, Any]] | None = None,
        changes: dict[str, list[str]] | None = None,
        overrides: dict[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
        text: str | None = None,
        pipeline_file: str | Path | None = None,
    ) -> Run:
        """A new session of `run`; `text` is the pipeline file it runs with, whose hash the
        session's results carry (and its text, when it differs from the session before)."""
        self.refuse_lost(run.id)
        record: dict[str, Any] = {
            "event": "resumed",
            "time": time.time(),
            "host": _host(),
            **(details or {}),
        }
        if pipeline_file is not None:
            record["file"] = str(Path(pipeline_file).resolve())
        if text is not None:
            record["file_sha256"] = file_sha256(text)
            if record["file_sha256"] != run.file_sha256:
                record["text"] = text
        if configurations is not None:
            record.update(configurations=configurations, changes=changes or {})
        if overrides is not None:
            record["overrides"] = overrides
        self._append(run.id, record)
        run.events.append(record)
        return run

    def end(
        self,
        run: Run,
        state: str,
        message: str = "",
        summaries: dict[str, Any] | None = None,
        counts: dict[str, Any] | None = None,
        *,
        void: bool = False,
        at: float | None = None,
    ) -> None:
        """Record the end of the run's session. `void`: the session ran nothing (a deploy
        whose submission failed before any worker started): the run reads as it was before
        it, its executor, end, state and message (`_without_void_sessions`). `at`: when it
        ended, when that was before now (a lost session, ended by the next start)."""
        record = {
            "event": "ended",
            "time": time.time() if at is None else at,
            "state": state,
            "message": message,
            "summaries": summaries or {},
            "counts": self._errors_as_stored(run, counts or {}),
        }
        if void:
            record["void"] = True
        self._append(run.id, record)
        run.events = _without_void_sessions([*run.events, record])

    def ensure(self, configurations: dict[str, dict[str, Any]], text: str) -> Run:
        """The latest run, or the first one when none is recorded (workers started without
        `pipeline run`: every racing worker adopts run r1, whose record the first one writes)."""
        if self.run_ids():
            latest = self.latest(resumable=True)
            if latest is not None:
                return latest
            # only reprocess runs so far
            return self.begin(
                pipeline_file=None,
                text=text,
                configurations=configurations,
                overrides={},
                mode="workers",
            )
        self._append(INDEX_STREAM, {"time": time.time(), "host": _host(), "by": "worker"})
        run = Run("r1", self._read("r1"))
        if not run.events:
            record = {
                "event": "started",
                "run": "r1",
                "pipeline": self.pipeline,
                "time": time.time(),
                "mode": "workers",
                "file_sha256": file_sha256(text),
                "text": text,
                "configurations": configurations,
                "overrides": {},
                "program": "asapo-pipelines",
                "program_version": __version__,
            }
            self._append("r1", record)
            run = Run("r1", self._read("r1"))
        return run


#: how many of the runs a store holds instead of a lost one `held_instead` names
HELD_SHOWN = 5


def held_instead(held: list[str]) -> str:
    """The clause of a sentence saying the store no longer holds a run (a worker started for
    it, `pipeline start`, `status` and `stop` of its deployment): what the store holds instead,
    its latest runs or none. Each sentence names the pipeline before it ("run r1 of pipeline
    p65"), so "this pipeline" is that one; the store lists its own runs only (`run_ids`)."""
    if not held:
        return "it holds no run of this pipeline"
    latest = ", ".join(held[-HELD_SHOWN:])
    if len(held) <= HELD_SHOWN:
        return f"it holds {latest}"
    return f"it holds {len(held)} runs, the latest {latest}"


def _same_time(a: Any, b: Any) -> bool:
    """Whether two recorded times are the same (a time read back from JSON is the float that
    was written, an int when it had no fraction)."""
    try:
        return a is not None and b is not None and float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _session_time(run: Run) -> float:
    """When the run's last session began; a run whose record is not readable yet counts as
    the oldest."""
    began = run.session.get("time")
    return float(began) if isinstance(began, int | float) else float("-inf")


def _without_void_sessions(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events without the sessions that ended `void` (the `resumed` that began one, and
    its end): kept in the store, they are not the run's history."""
    kept: list[dict[str, Any]] = []
    for event in events:
        if event.get("event") == "ended" and event.get("void"):
            began = next(
                (i for i in range(len(kept) - 1, -1, -1) if kept[i].get("event") == "resumed"),
                None,
            )
            if began is not None:
                del kept[began:]
            continue
        kept.append(event)
    return kept


def _host() -> str:
    return socket.gethostname()


def _index_entry() -> dict[str, Any]:
    return {"time": time.time(), "host": _host()}
