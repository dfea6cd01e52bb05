"""Reads what the page shows from the transport: status, streams, errors and plotted outputs.

Only reads that leave consumer groups alone are used (`streams()`, `get_by_id`, `get_last`), so
watching a pipeline never takes a message away from a unit. Each `poll()` reads what is new since
the previous one and returns the page's sections as JSON-ready dicts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines.descriptor import PlotHint
from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.launchplan import rundir
from asapo_pipelines.transport import Transport, TransportError
from asapo_pipelines.transport.formats import decode_message
from asapo_pipelines.viewer.model import PipelineView, UnitView
from asapo_pipelines.worker.dedupe import provenance_run
from asapo_pipelines.worker.naming import (
    RUN_ID,
    data_source_for,
    errors_source,
    group_name,
    runs_source,
    status_source,
)
from asapo_pipelines.worker.status import BUSY_STATES

if TYPE_CHECKING:  # pragma: no cover - read only when a run is recorded
    from asapo_pipelines.runs.store import Run

log = logging.getLogger("asapo_pipelines.viewer")

#: the consumer group named when opening readers; it never takes or acknowledges a message
VIEWER_GROUP = "pipeline-viewer"
#: status messages read from the history of a replica when the viewer starts
STATUS_HISTORY = 5000
ERRORS_KEPT = 100
MAX_POINTS = 2000
#: series one hint keeps (`PlotHint.series`); beyond, the one updated least recently is dropped
MAX_SERIES = 20
#: messages a split hint reads back per stream when the viewer starts (`_lookback`)
SERIES_LOOKBACK = 200
FINAL_STATES = ("finished", "stopped", "failed")
#: a source unit in a reprocess: it does not run, the run replays its messages of an earlier run
REPLAYED = "replayed"
#: the run's states (`run` section) that are not its end: it goes on, or its supervisor is gone
#: without having ended it (`pipeline status` says what to do)
RUN_GOING = ("running", "lost")
#: a unit's state is the first in this order among its replicas': a replica in trouble shows
#: over the others; one not yet at work (`starting`: restarted, its first status record not yet
#: published; `loading`: importing its unit's runtime, restoring its state) over those at work,
#: so that a unit reads as running once all its replicas are; one still at work over those done.
#: Every state a worker's status record can carry (`worker.status.Counters.state`) is here.
STATE_ORDER = (
    *("failed", "exited", "restarting", "starting", "loading", "running", "waiting"),
    *("stopped", "finished", REPLAYED),
)
#: the states of a worker at work: its rate counts
AT_WORK = ("starting", "loading", "running")


def _rank(state: str) -> int:
    """Where `state` comes in `STATE_ORDER`; one this viewer does not know (a record of a newer
    worker) ranks as running, rather than the units section failing while it is shown."""
    return STATE_ORDER.index(state if state in STATE_ORDER else "running")


@dataclass
class ReplicaState:
    last: dict[str, Any] | None = None
    seen_id: int = 0
    #: (pid, host, started) of each process of this replica -> its latest counters
    lives: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    times: deque[float] = field(default_factory=lambda: deque(maxlen=5))

    def add(self, snap: dict[str, Any]) -> None:
        self.lives[(snap.get("pid"), snap.get("host"), snap.get("started"))] = snap
        self.last = snap
        t = snap.get("time")
        if isinstance(t, int | float):
            self.times.append(float(t))

    @property
    def restarts(self) -> int:
        return max(0, len(self.lives) - 1)

    def in_session(self, since: float | None) -> ReplicaState:
        """This replica as the current session sees it: only the processes started since the
        session began (`since`, None: every process). The status stream is the pipeline's, not
        a run's: without this, the processes of earlier runs and sessions would add to the
        counters and count as restarts. Each process stamps `started` when it begins, after
        `pipeline run` (or `deploy`, `start`) recorded the session, as the workers' own
        "ended in this session" check relies on (`worker.runtime._upstream_ended`)."""
        if since is None:
            return self
        kept = ReplicaState(seen_id=self.seen_id, times=self.times)
        kept.lives = {k: s for k, s in self.lives.items() if _started(s) >= since}
        if self.last is not None and _started(self.last) >= since:
            kept.last = self.last
        return kept

    def total(self, key: str) -> float:
        """A counter over every process of the replica. A worker restarted within its session
        goes on from its predecessor's count (`worker.status.Counters.carry`: its records name
        the session), so its latest record holds the whole; records without a session (workers
        started by hand, outside a run) count from zero in each process, and add up."""
        if self.last is not None and self.last.get("session"):
            return float(self.last.get(key) or 0)
        return sum(float(snap.get(key) or 0) for snap in self.lives.values())

    def interval(self) -> float:
        """The worker's status beat: as its records say (they come closer together after
        commits, so their gaps would make a quiet worker look silent), else their least gap."""
        said = self.last.get("interval") if self.last is not None else None
        if isinstance(said, int | float) and said > 0:
            return float(said)
        gaps = [b - a for a, b in zip(self.times, list(self.times)[1:], strict=False) if b > a]
        return min(gaps) if gaps else 2.0

    def state(self, now: float) -> str:
        if self.last is None:
            return "waiting"
        state = str(self.last.get("state", "running"))
        if state in FINAL_STATES:
            return state
        # a worker that went silent without a final state was killed; its task's restart policy
        # (set explicitly for every task) brings it back
        if now - float(self.last.get("time", now)) > max(1.0, 2.5 * self.interval()):
            return "restarting"
        return state


def _replica_states(states: list[ReplicaState], now: float) -> list[dict[str, Any]]:
    """What a unit's replicas do when they do not all do the same, worst state first (the one
    the unit shows): each replica long in one call (`busy_text`) on its own, the longest first,
    the others counted per state. Empty when every replica is in one state: the unit's state
    and busy text say it all."""
    named = [(s.state(now), s.last) for s in states if s.last is not None]
    if len({name for name, _ in named}) < 2:
        return []

    def busy(name: str, snap: dict[str, Any]) -> float | None:
        seconds = snap.get("busy_seconds")
        return float(seconds) if name in BUSY_STATES and isinstance(seconds, int | float) else None

    parts: list[dict[str, Any]] = []
    idle: dict[str, int] = {}
    for name, snap in named:
        seconds = busy(name, snap)
        if seconds is None:
            idle[name] = idle.get(name, 0) + 1
        else:
            parts.append(
                {
                    "state": name,
                    "replicas": 1,
                    "busy_seconds": seconds,
                    "busy_with": snap.get("busy_with"),
                }
            )
    parts.sort(key=lambda p: -float(p["busy_seconds"]))
    parts += [
        {"state": name, "replicas": n, "busy_seconds": None, "busy_with": None}
        for name, n in idle.items()
    ]
    # in the order of the states' rank (a stable sort): of each state, the busy replicas,
    # longest first, before the others
    return sorted(parts, key=lambda p: _rank(p["state"]))


def _started(snap: dict[str, Any]) -> float:
    started = snap.get("started")
    return float(started) if isinstance(started, int | float) else 0.0


def _backlog(snaps: list[dict[str, Any]]) -> int | None:
    """The replicas' backlog together; None (shown "-") when a replica's transport does not
    count it per group: a sum of the others would look like the whole."""
    counts = [s.get("backlog", 0) for s in snaps]
    if any(c is None for c in counts):
        return None
    return int(sum(float(c or 0) for c in counts))


def _walk(obj: Any, parts: list[str]) -> tuple[bool, Any]:
    for part in parts:
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            return False, None
    return True, obj


#: a plot hint's field naming the whole decoded payload (an array port's array)
VALUE_FIELD = "value"


def get_field(message: Any, value: Any, path: str) -> Any:
    """A field of a message as a plot hint names it: the decoded payload first, then the
    message's metadata (where a leading `metadata.` is dropped)."""
    if path == "id":
        return message.id
    if path == "time":
        return message.timestamp
    parts = path.split(".")
    found, obj = _walk(value, parts)
    if found:
        return obj
    if path == VALUE_FIELD:
        # the payload itself: an array port (seedee) or a port carrying one number
        return value
    if parts[0] == "metadata" and len(parts) > 1:
        parts = parts[1:]
    return _walk(message.metadata, parts)[1]


def _axis_title(field: str) -> str:
    """`arrays.norm` -> `norm`, `values.epsilon_k` -> `epsilon k`: the field's last part, as
    words; `value` (the whole payload) has no better name than its hint's title."""
    last = field.rsplit(".", 1)[-1]
    return "" if field == VALUE_FIELD else last.replace("_", " ")


def _x_title(hint: PlotHint) -> str:
    if hint.x:
        return _axis_title(hint.x)
    return "time" if hint.kind == "scalar" else ""


def _plain(value: Any) -> Any:
    """Arrays and numpy scalars as JSON values (NaN as null)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _thin(xs: list[Any], ys: list[Any]) -> tuple[list[Any], list[Any]]:
    step = max(1, math.ceil(len(ys) / MAX_POINTS))
    return xs[::step], ys[::step]


def _hint_key(instance: str, hint: PlotHint) -> str:
    # one field can be drawn twice by a unit: the agent's target as a level and as the y of
    # its predicted point
    return f"{instance}:{hint.port}:{hint.kind}:{hint.x}:{hint.y}"


def _line(
    instance: str, hint: PlotHint, msg: Any, value: Any, y: Any, name: str
) -> dict[str, Any] | None:
    """One line of an `xy` hint (its arrays thinned to MAX_POINTS), None without an array;
    with `x_focus`, the x the page opens the view around (`focus`, None when the message has
    no number there)."""
    if not isinstance(y, list):
        return None
    x = _plain(get_field(msg, value, hint.x)) if hint.x else None
    x = x if isinstance(x, list) and len(x) == len(y) else list(range(len(y)))
    x, y = _thin(x, y)
    line = {"unit": instance, "name": name, "x": x, "y": y, "id": msg.id, "stream": msg.stream}
    if hint.x_focus is not None:
        focus = _plain(get_field(msg, value, hint.x_focus))
        number = isinstance(focus, int | float) and not isinstance(focus, bool)
        line["focus"] = focus if number else None
    return line


def _scalar(
    instance: str, hint: PlotHint, msg: Any, value: Any, y: Any, name: str
) -> dict[str, Any] | None:
    """One point of a `scalar` hint, None without a single value."""
    if y is None or isinstance(y, list | dict):
        return None
    x = _plain(get_field(msg, value, hint.x)) if hint.x else msg.timestamp
    return {"unit": instance, "x": x, "y": y, "text": name, "time": hint.x is None}


def _lookback(hint: PlotHint) -> int:
    """How many of a stream's newest messages can show: `keep`, or for a split hint `keep` of
    each series, whose messages interleave (the newest merge of a foil scanned an hour ago)."""
    if hint.series is None:
        return hint.keep
    return max(hint.keep, min(hint.keep * MAX_SERIES, SERIES_LOOKBACK))


def label_text(hint: PlotHint, label: Any) -> str:
    """What a point or line is called by its `label` field: text as it is; a number in the
    hint's `label_format` (`{} scan{s} merged` gives `10 scans merged`, `1 scan merged`), else
    after its field's name (`n_merged 3`: a number alone says little)."""
    if isinstance(label, str):
        return label
    if hint.label_format is not None:
        return hint.label_format.replace("{s}", "" if label == 1 else "s").replace(
            "{}", _number(label)
        )
    field = hint.label.rsplit(".", 1)[-1] if hint.label else ""
    return f"{field} {label}"


def _number(value: Any) -> str:
    """A number as the page shows a level (viewer.js `fmtNumber`): 3 significant digits, small
    and large ones with a short exponent (3.56e-5, 1.2e-4)."""
    if not isinstance(value, float):
        return str(value)
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:.3g}"


def series_name(value: Any, field: str) -> str:
    """What a trace split by `PlotHint.series` is called: the field's value, a mapping (a
    merge's group) by its values joined with ", "; a message without it is one series too."""
    if isinstance(value, dict):
        value = [v for v in value.values() if v not in (None, "")]
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or f"(no {_axis_title(field)})"
    return f"(no {_axis_title(field)})" if value in (None, "") else str(value)


@dataclass
class PlotState:
    id: str
    title: str
    kind: str
    hints: list[tuple[str, str, PlotHint]]  # (instance, data source, hint)
    #: (source, stream, hint key) -> the last id read: per hint, since two hints of one figure
    #: can read one stream (the agent's target and its fitted floor)
    seen: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: hint key -> series name (None: a hint without `series`) -> its newest points or lines
    traces: dict[str, dict[str | None, deque[dict[str, Any]]]] = field(default_factory=dict)
    #: (hint key, series name) -> when it last got a point (a count): the least recent goes first
    updated: dict[tuple[str, str | None], int] = field(default_factory=dict)
    added: int = 0

    def points(self, key: str, series: str | None, keep: int) -> deque[dict[str, Any]]:
        """The points of one series of a hint, which it keeps `keep` of."""
        by_series = self.traces.setdefault(key, {})
        if series not in by_series and len(by_series) >= MAX_SERIES:
            oldest = min(by_series, key=lambda name: self.updated.get((key, name), 0))
            del by_series[oldest]
            self.updated.pop((key, oldest), None)
        self.added += 1
        self.updated[(key, series)] = self.added
        return by_series.setdefault(series, deque(maxlen=keep))

    def items(self, key: str) -> list[dict[str, Any]]:
        """A hint's points, series by series in the order they first came."""
        return [item for points in self.traces.get(key, {}).values() for item in points]


class Collector:
    def __init__(
        self, view: PipelineView, transport: Transport, *, run_dir: Path | None = None
    ) -> None:
        from asapo_pipelines.viewer.runstate import RunState

        self.view = view
        self.transport = transport
        self.run = RunState(view, run_dir)
        self._consumers: dict[str, Any] = {}
        self.replicas: dict[tuple[str, str], ReplicaState] = {}
        self.error_seen: dict[str, int] = {}
        self.errors: deque[dict[str, Any]] = deque(maxlen=ERRORS_KEPT)
        self.plots = self._plot_states()
        self._infos: dict[str, list[Any]] = {}
        self._sources: set[str] | None = None
        #: the pipeline's latest run, whose data sources the page shows (None: none yet)
        self.run_id: str | None = None
        #: when the latest run's last session began (None: no run recorded, every process counts)
        self.session_start: float | None = None
        #: (run id, last id of its record stream) the session start was read at
        self._run_seen: tuple[str, int] | None = None
        #: the latest run's record in the run store (its mode, its recorded end)
        self.record: Run | None = None
        #: the runs `pipeline prune --run` removed: their error records are not shown
        self.pruned: set[str] = set()
        #: (runs given out, run records there) the pruned runs were read at
        self._pruned_seen: tuple[int, frozenset[str]] | None = None
        #: (run, its file's hash, the file's mtime and size) the edit warning was asked at, and
        #: what it said: the file is compared again only when it or the run changed
        self._edit_seen: tuple[Any, ...] | None = None
        self._edit_told: str | None = None

    def source_of(self, stream: str) -> str:
        """The data source of a pipeline stream in the latest run (its own name when external,
        or before any run). The errors are the pipeline's, not a run's: `<pipeline>.errors`
        holds every run's, so it keeps its name."""
        if self.run_id is None or stream in self.view.external:
            return stream
        if stream == errors_source(self.view.name):
            return stream
        return data_source_for(stream, self.view.name, self.run_id)

    def _refresh_run(self) -> None:
        infos = {i.name: i for i in self.infos(runs_source(self.view.name)) if RUN_ID.match(i.name)}
        if not infos:
            return
        # the run written to last (a session began or ended), not the highest id: after a
        # reprocess made r2, `pipeline run` resumes r1, which is then the one going on
        run_id = max(infos, key=lambda r: (infos[r].last_timestamp or 0.0, int(r[1:])))
        if run_id != self.run_id:
            self._forget_run()
            self.run_id = run_id
            self.record = None
        seen = (run_id, infos[run_id].last_id)
        if seen != self._run_seen:  # a new run, a new session of this one, or its end
            self._run_seen = seen
            self._read_record(run_id)

    def _read_record(self, run_id: str) -> None:
        """The run's record, read the way `pipeline runs` reads it: when its last session
        began (`Run.session`: `started`, or the last `resumed`) and whether it ended."""
        from asapo_pipelines.runs.store import RunStore

        try:
            record = RunStore(self.transport, self.view.name).get(run_id)
        except PipelinesError as exc:  # pruned meanwhile: keep what we knew, try next poll
            log.debug("cannot read run %s: %s", run_id, exc)
            self._run_seen = None
            return
        self.record = record
        started = record.session.get("time")
        self.session_start = float(started) if isinstance(started, int | float) else None

    def _forget_run(self) -> None:
        """A new run (`pipeline run --fresh`, a reprocess): its streams are new data sources,
        so what the plots hold of the run before must not mix with it."""
        for plot in self.plots:
            plot.traces.clear()
            plot.updated.clear()
            plot.seen.clear()
        for source in [s for s in self._consumers if self._is_run_source(s)]:
            with contextlib.suppress(TransportError):
                self._consumers.pop(source).close()

    def _is_run_source(self, source: str) -> bool:
        return self.run_id is not None and source.startswith(f"{self.view.name}.{self.run_id}.")

    # -- readers -----------------------------------------------------------------------------
    def _exists(self, source: str) -> bool:
        if self._sources is None:  # listed once per poll (a request to a service)
            try:
                self._sources = set(self.transport.data_sources())
            except NotImplementedError:  # a service cannot list its sources: just try
                return True
        return source in self._sources

    def consumer(self, source: str) -> Any | None:
        reader = self._consumers.get(source)
        if reader is None:
            if not self._exists(source):
                return None
            reader = self._consumers[source] = self.transport.consumer(source, VIEWER_GROUP)
        return reader

    def close(self) -> None:
        for reader in self._consumers.values():
            with contextlib.suppress(TransportError):
                reader.close()
        self._consumers.clear()

    def infos(self, source: str) -> list[Any]:
        """The streams of a data source, read once per poll however many sections need them."""
        infos = self._infos.get(source)
        if infos is None:
            reader = self.consumer(source)
            infos = self._infos[source] = reader.streams() if reader is not None else []
        return infos

    def _new_messages(self, source: str, stream: str, last_id: int, seen: int) -> list[Any]:
        found = (self._message(source, stream, mid) for mid in range(seen + 1, last_id + 1))
        return [msg for msg in found if msg is not None]

    def _message(self, source: str, stream: str, mid: int) -> Any | None:
        """Message `mid` of a stream; None for a hole (a message not written yet) or a pruned
        one."""
        try:
            return self._consumers[source].get_by_id(stream, mid)
        except TransportError:
            return None

    # -- sections ----------------------------------------------------------------------------
    def poll(self) -> dict[str, Any]:
        now = time.time()
        self._infos.clear()
        self._sources = None
        self._refresh_run()
        streams = self._streams()
        self._read_status()
        self._read_errors()
        self._read_plots()
        executor = self.run.read()
        run = self._run_section(executor)
        return {
            "run": run,
            "units": self._units(now, executor, ended=run["ended"]),
            "streams": streams,
            "errors": list(self.errors),
            "plots": [self._plot_section(p) for p in self.plots],
        }

    def _read_status(self) -> None:
        source = status_source(self.view.name)
        for info in self.infos(source):
            instance, _, replica = info.name.rpartition(".")
            state = self.replicas.setdefault((instance, replica), ReplicaState())
            seen = max(state.seen_id, info.last_id - STATUS_HISTORY)
            for msg in self._new_messages(source, info.name, info.last_id, seen):
                state.add(dict(msg.metadata))
            state.seen_id = info.last_id

    def _run_section(self, executor: dict[str, Any] | None) -> dict[str, Any]:
        """The run as a whole: its recorded end (the run store: what `pipeline runs` says), or,
        while none is recorded, what `pipeline status` says from the local executor's state
        file: the end its supervisor wrote there when the store could not take it (a full
        disk), or `lost` when the supervisor is gone (with its words for what to do)."""
        record = self.record
        state, message = "running", ""
        if record is not None and record.last_end is not None:
            state = str(record.last_end.get("state") or "ended")
            message = str(record.last_end.get("message") or "")
        elif executor is not None and self._executor_runs_session():
            state, message = self._executor_end(executor) or (state, message)
        if state == "running":
            # no state file of this session (deleted, or its supervisor never wrote one): the
            # record alone would say "running" for ever, where `pipeline status` says why not
            unsupervised = self._unsupervised()
            state, message = ("lost", unsupervised) if unsupervised else (state, message)
        start = record.start if record is not None else {}
        return {
            "id": self.run_id,
            "mode": start.get("mode", "run"),
            "from_run": start.get("from_run"),
            "state": state,
            "ended": state not in RUN_GOING,
            "message": message,
            "edited": self._edited(state),
        }

    def _executor_end(self, executor: dict[str, Any]) -> tuple[str, str] | None:
        """The run's state and sentence from the executor's state file (`executor`, as
        `RunState.read` gave it) when the run store has no end of its last session; None
        while it goes on. Without a record the executor's word is all there is."""
        status = str(executor.get("status") or "running")
        said = str(executor.get("message") or "")
        if self.record is None or status == "lost":  # lost: `pipeline stop` is to be run
            return status, said
        if status not in rundir.FINAL or self.run.path is None:
            return None  # its supervisor is at work: the run goes on
        # the end the next start records (`rundir.session_end`): only the last session's
        # state file ends it, not one an earlier session left before the new supervisor wrote
        end = rundir.session_end(executor, self.run.path.parent, self.session_start or 0.0)
        return None if end is None else (end[0], end[1])

    def _unsupervised(self) -> str | None:
        """What `pipeline status` says of a run recorded as running whose last session of
        `pipeline run` no supervisor took (`rundir.supervised_since`: none holds its run
        directory and no state file was written since the session began), in its words; None
        while one runs it or may still be starting, or when the session is not this machine's
        local one (a cluster's, another host's, workers started by hand)."""
        record = self.record
        if record is None or record.last_end is not None:
            return None
        session = record.session
        if session.get("executor", "local") != "local" or session.get("mode") == "workers":
            return None
        if session.get("host") not in (None, socket.gethostname()):
            return None  # its supervisor, if any, is not seen from here
        began = session.get("time")
        where = session.get("run_dir") or (self.run.path.parent if self.run.path else None)
        if not isinstance(began, int | float) or where is None:
            return None
        run = Path(where)
        if rundir.start_under_way(run) or rundir.supervised_since(run, float(began)):
            return None
        if time.time() < rundir.starting_until(run, float(began)):
            return None  # as `pipeline status` waits for a supervisor still starting
        shown = self.view.path if self.view.path is not None else self.view.name
        return rundir.unsupervised(record.id, self.view.name, shown)

    def _session_state(self, executor: dict[str, Any] | None) -> dict[str, Any] | None:
        """The state file (`executor`, as `RunState.read` gave it) when it is the one the
        run's last session wrote, not one an earlier session or another run directory left."""
        if executor is None or not self._executor_runs_session():
            return None
        started = executor.get("started")
        began = self.session_start or 0.0
        return executor if isinstance(started, int | float) and started >= began else None

    def _edited(self, state: str) -> str | None:
        """The warning `pipeline status` gives under its table when the pipeline file was
        edited while the run's local session goes on (`runs.edits`), in the same words; None
        when it was not, or the run is not going on here."""
        from asapo_pipelines.runs.edits import edit_warning

        record, path = self.record, self.view.path
        if record is None or path is None or state != "running":
            return None
        if record.session.get("executor", "local") != "local":
            return None  # as `pipeline status`, which says it of a local session only
        try:
            stat = Path(path).stat()
        except OSError:
            return None
        seen = (record.id, record.file_sha256, stat.st_mtime_ns, stat.st_size)
        if seen != self._edit_seen:
            self._edit_seen = seen
            self._edit_told = edit_warning(record, Path(path), self.view.transport)
        return self._edit_told

    def _executor_runs_session(self) -> bool:
        """Whether the state file found is the one of the run's last session: a session on a
        cluster, or in another run directory, leaves an older local state file behind."""
        if self.record is None or self.run.path is None:
            return True
        session = self.record.session
        if session.get("executor", "local") != "local":
            return False
        recorded = session.get("run_dir")
        try:
            return not recorded or Path(recorded).resolve() == self.run.path.parent.resolve()
        except OSError:
            return False

    def _replayed(self, unit: UnitView) -> bool:
        """A source unit of a reprocess: it never runs, its earlier messages are replayed."""
        start = self.record.start if self.record is not None else {}
        return start.get("mode") == "reprocess" and unit.descriptor.role == "source"

    def _units(
        self, now: float, data: dict[str, Any] | None = None, *, ended: bool = False
    ) -> dict[str, Any]:
        executor = self.run.units(data)
        # once the run ended, its tasks' states are those its supervisor wrote last, as
        # `pipeline status` shows them: a worker that could not publish its end (a full disk)
        # went silent, which alone reads as a worker killed and about to be restarted
        final = self.run.units(self._session_state(data)) if ended else {}
        units: dict[str, Any] = {}
        for unit in self.view.units:
            # the current session's processes only, as `pipeline status` shows them
            states = [
                s.in_session(self.session_start)
                for (inst, _), s in self.replicas.items()
                if inst == unit.instance
            ]
            states = [s for s in states if s.last is not None]
            snaps = [s.last for s in states if s.last]
            names = [s.state(now) for s in states] or [
                REPLAYED if self._replayed(unit) else "waiting"
            ]
            # a replica still running outweighs those done; among the others the worst shows
            state = min(names, key=_rank)
            of_replicas = state
            restarts = sum(s.restarts for s in states)
            run = executor.get(unit.instance)
            if unit.instance in final:
                state = min(final[unit.instance]["states"], key=_rank)
            elif run is not None:
                # the executor knows what a dead worker cannot say: it waits to be restarted,
                # or it failed for good
                # `exited`: its supervisor is lost, its process gone; no one restarts it
                for said in ("failed", "exited", "restarting"):
                    if said in run["states"]:
                        state = said
                        break
                else:
                    if state == "restarting" and "running" in run["states"]:
                        state = "starting"  # restarted, its first status not yet published
            if run is not None:
                restarts = max(restarts, run["restarts"])

            def total(key: str, states: list[ReplicaState] = states) -> int:
                return int(sum(s.total(key) for s in states))

            # only processes at work add to the rate (a dead or finished one's last rate is old)
            live = [s.last for s in states if s.last and s.state(now) in AT_WORK]
            # the replica longest in one unit call, as `pipeline status` shows it (`busy_text`):
            # of a loading worker, an import, `on_start` or `restore` that hangs. Of those in
            # the state the unit shows only: the page colours the busy text by that state, and
            # a replica busy in process() beside one loading read "busy" in loading's colour
            busy = max(
                (
                    s.last
                    for s in states
                    if s.last
                    and s.state(now) == state
                    and isinstance(s.last.get("busy_seconds"), int | float)
                ),
                key=lambda s: float(s["busy_seconds"]),
                default={},
            )
            units[unit.instance] = {
                "unit": unit.descriptor.name,
                "state": state,
                "replicas": len(states),
                "processed": total("processed"),
                # handed again after a worker was killed: processed counts each message once
                "redelivered": total("redelivered"),
                "errors": total("errors"),
                "outputs": total("outputs"),
                "rate": round(sum(float(s.get("rate") or 0) for s in live), 2),
                "backlog": _backlog(snaps),
                "lag_seconds": round(
                    max((float(s.get("lag_seconds") or 0) for s in snaps), default=0.0), 3
                ),
                "restarts": restarts,
                "busy_seconds": busy.get("busy_seconds") if state in BUSY_STATES else None,
                "busy_with": busy.get("busy_with") if state in BUSY_STATES else None,
                # replicas in different states, each as `pipeline status` shows it: the unit's
                # state and busy text alone hide a replica busy in process() beside one loading
                # (none when the executor or the run's end overrode what the replicas say)
                "replica_states": _replica_states(states, now) if state == of_replicas else [],
                "last_status": max((float(s.get("time") or 0) for s in snaps), default=None),
            }
        return units

    def _streams(self) -> list[dict[str, Any]]:
        prefix = group_name(self.view.name, "")
        rows = []
        for name in [*self.view.streams, errors_source(self.view.name)]:
            infos = self.infos(self.source_of(name))
            lag: dict[str, int] = {}
            for info in infos:
                for grp, n in info.group_lag.items():
                    if grp == VIEWER_GROUP:
                        continue
                    unit = grp[len(prefix) :] if grp.startswith(prefix) else grp
                    lag[unit] = lag.get(unit, 0) + n
            rows.append(
                {
                    "name": name,
                    "scans": len(infos),
                    "messages": sum(i.message_count or i.last_id for i in infos),
                    # ASAP::O does not tell sizes or group lags: None shows as unknown
                    "bytes": None
                    if any(i.size_bytes is None for i in infos)
                    else sum(i.size_bytes for i in infos),
                    "finished": bool(infos) and all(i.finished for i in infos),
                    "lag": lag,
                    "last_time": max((i.last_timestamp or 0 for i in infos), default=None),
                    "scan_names": [i.name for i in infos][-50:],
                }
            )
        return rows

    def _refresh_pruned(self) -> None:
        """The runs pruned, asked of the run store only when its streams say a run was given out
        or its record removed: the streams are read once per poll anyway, so this costs no
        request most polls and never one per error record."""
        from asapo_pipelines.runs.store import INDEX_STREAM, RunStore

        infos = self.infos(runs_source(self.view.name))
        given = next((i.last_id for i in infos if i.name == INDEX_STREAM), 0)
        seen = (given, frozenset(i.name for i in infos if RUN_ID.match(i.name)))
        if seen == self._pruned_seen:
            return
        try:
            self.pruned = RunStore(self.transport, self.view.name).pruned_ids()
        except NotImplementedError:  # a service that cannot list its sources: none told apart
            self.pruned = set()
        self._pruned_seen = seen
        # the error stream is the pipeline's: a prune cannot take its run's records from it, so
        # those listed before the prune are dropped here, as `pipeline tail FILE errors` does
        kept = [e for e in self.errors if e.get("run") not in self.pruned]
        if len(kept) != len(self.errors):
            self.errors = deque(kept, maxlen=ERRORS_KEPT)

    def _read_errors(self) -> None:
        self._refresh_pruned()
        source = errors_source(self.view.name)
        for info in self.infos(source):
            seen = max(self.error_seen.get(info.name, 0), info.last_id - ERRORS_KEPT)
            for msg in self._new_messages(source, info.name, info.last_id, seen):
                meta = msg.metadata
                run = provenance_run(dict(meta or {}))
                if run in self.pruned:
                    continue
                try:
                    record = decode_message(msg)
                except Exception:  # a record we cannot decode still shows its metadata
                    record = {}
                record = record if isinstance(record, dict) else {}
                self.errors.appendleft(
                    {
                        "unit": str(record.get("unit") or meta.get("unit") or info.name),
                        "run": run,
                        "stream": info.name,
                        "id": msg.id,
                        "time": msg.timestamp,
                        "exception": str(record.get("exception") or meta.get("exception", "")),
                        "error": str(record.get("error") or meta.get("error", "")),
                        "message": json.dumps(
                            record.get("message") or meta.get("message"), default=str
                        ),
                        "traceback": str(record.get("traceback", "")),
                    }
                )
            self.error_seen[info.name] = info.last_id

    # -- plots -------------------------------------------------------------------------------
    def _plot_states(self) -> list[PlotState]:
        plots: dict[str, PlotState] = {}
        for unit in self.view.units:
            for i, hint in enumerate(unit.descriptor.plots):
                source = unit.outputs.get(hint.port)
                if source is None:
                    continue
                key = hint.figure or f"{unit.instance}-{i}"
                plot = plots.get(key)
                if plot is None:
                    title = hint.title or f"{unit.instance}: {_axis_title(hint.y) or hint.port}"
                    plot = plots[key] = PlotState(key, title, hint.kind, [])
                plot.hints.append((unit.instance, source, hint))
        return list(plots.values())

    def _read_plots(self) -> None:
        # this poll's messages, each read and decoded once however many hints show it (an
        # agent's decisions feed four; a detector frame's image and its sum, two)
        read: dict[tuple[str, str, int], tuple[Any, Any] | None] = {}
        for plot in self.plots:
            for instance, stream, hint in plot.hints:
                source = self.source_of(stream)
                for info in self.infos(source):
                    key = (source, info.name, _hint_key(instance, hint))
                    # only the newest are ever shown: older ones are not read at all
                    seen = max(plot.seen.get(key, 0), info.last_id - _lookback(hint))
                    for mid in range(seen + 1, info.last_id + 1):
                        where = (source, info.name, mid)
                        if where not in read:
                            read[where] = self._decoded(source, info.name, mid)
                        found = read[where]
                        if found is not None:
                            self._add_point(plot, instance, hint, *found)
                    plot.seen[key] = info.last_id

    def _decoded(self, source: str, stream: str, mid: int) -> tuple[Any, Any] | None:
        """Message `mid` of a stream and its decoded payload; None where `_message` gives none
        or for a payload that cannot be decoded (skipped, not fatal)."""
        msg = self._message(source, stream, mid)
        if msg is None:
            return None
        try:
            return msg, decode_message(msg)
        except Exception as exc:
            log.debug("cannot decode %s/%s#%s: %s", msg.data_source, msg.stream, msg.id, exc)
            return None

    def _add_point(
        self, plot: PlotState, instance: str, hint: PlotHint, msg: Any, value: Any
    ) -> None:
        key = _hint_key(instance, hint)
        y = _plain(get_field(msg, value, hint.y))
        label = get_field(msg, value, hint.label) if hint.label else None
        if hint.label is None or label is None:
            name = f"{instance} {msg.stream}#{msg.id}"
        else:
            name = label_text(hint, label)
        if hint.kind in ("xy", "scalar"):
            series = None
            if hint.series is not None:
                series = series_name(get_field(msg, value, hint.series), hint.series)
                # the legend names a line's series: two samples' merges look alike otherwise
                name = f"{name} ({series})" if hint.kind == "xy" else name
            point = (_line if hint.kind == "xy" else _scalar)(instance, hint, msg, value, y, name)
            if point is not None:
                if series is not None:
                    point["series"] = series  # the page draws each series as a trace
                plot.points(key, series, hint.keep).append(point)
            return
        traces = plot.points(key, None, hint.keep)
        if hint.kind == "hline":  # a level across the figure: the newest only
            # a newest message without one (a decision before the agent's fit) takes the
            # older level away: it is no longer what the unit says
            traces.clear()
            if isinstance(y, int | float) and not isinstance(y, bool):
                level = {"unit": instance, "y": y, "name": hint.title or _axis_title(hint.y)}
                if hint.label is not None and label is not None:
                    level["text"] = label_text(hint, label)  # after the value: "± 3.56e-5"
                traces.append(level)
        else:  # image: the newest only
            if isinstance(y, list) and y and isinstance(y[0], list):
                traces.clear()
                traces.append({"unit": instance, "name": name, "z": y})

    def _plot_section(self, plot: PlotState) -> dict[str, Any]:
        series = []
        for instance, source, hint in plot.hints:
            points = plot.items(_hint_key(instance, hint))
            series.append(
                {
                    "unit": instance,
                    # the pipeline stream it reads: an empty plot says what it waits for
                    "stream": source,
                    # a trace of its own (a prediction, a level) is called by its hint's title
                    "title": hint.title,
                    **({"x_window": list(hint.x_window)} if hint.x_focus else {}),
                    # each item names its series, drawn as a trace of its own
                    **({"split_by": hint.series} if hint.series else {}),
                    "kind": hint.kind,
                    "x_field": hint.x or ("time" if hint.kind == "scalar" else None),
                    "y_field": hint.y,
                    # axis titles for people: the hint's own, else the field's last part
                    "x_title": hint.x_title or _x_title(hint),
                    "y_title": hint.y_title or _axis_title(hint.y),
                    "items": points,
                }
            )
        return {"id": plot.id, "title": plot.title, "kind": plot.kind, "series": series}

    def declared_plots(self) -> list[dict[str, Any]]:
        """The plots the units declare, with what each waits for: the page says so before the
        first update arrives (never that there is no plot)."""
        return [
            {
                "id": plot.id,
                "title": plot.title,
                "from": [
                    {"unit": instance, "stream": source}
                    for instance, source, hint in plot.hints
                    if hint.kind != "hline"  # a level alone draws no plot
                ],
            }
            for plot in self.plots
        ]

    # -- latest messages ---------------------------------------------------------------------
    def latest(self, source: str, count: int = 10) -> list[dict[str, Any]]:
        """The newest messages of one pipeline stream (over its scans), newest first."""
        if source not in self.view.streams and source != errors_source(self.view.name):
            raise KeyError(source)
        reader = self.consumer(self.source_of(source))
        if reader is None:
            return []
        out: list[dict[str, Any]] = []
        for info in sorted(reader.streams(), key=lambda i: i.last_timestamp or 0, reverse=True):
            for mid in range(info.last_id, max(0, info.last_id - count), -1):
                try:
                    msg = reader.get_by_id(info.name, mid)
                except TransportError:
                    continue
                out.append(
                    {
                        "stream": info.name,
                        "id": msg.id,
                        "time": msg.timestamp,
                        "size": msg.size,
                        "metadata": msg.metadata,
                        "payload": _preview(msg),
                    }
                )
                if len(out) >= count:
                    return out
        return out


def _summary(value: Any, depth: int = 0) -> Any:
    """A short picture of a value: long lists cut to their first items and their length."""
    value = _plain(value)
    if isinstance(value, list):
        if len(value) > 6:
            head = [_summary(v, depth + 1) for v in value[:3]]
            return [*head, f"\u2026 {len(value)} values"]
        return [_summary(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if depth > 3:
            return "{\u2026}"
        return {k: _summary(v, depth + 1) for k, v in value.items()}
    return value


def _preview(msg: Any, limit: int = 600) -> str:
    try:
        value = decode_message(msg)
    except Exception:
        return f"<{msg.size} bytes>"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if hasattr(value, "shape"):
        return f"<array {getattr(value, 'dtype', '')} {tuple(value.shape)}>"
    text = json.dumps(_summary(value), default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "\u2026"
