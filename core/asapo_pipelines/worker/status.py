"""Counters of a running worker, published periodically to the pipeline's status data source."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.transport.errors import TransportConfigError, Unavailable
from asapo_pipelines.worker.naming import status_source, status_stream

if TYPE_CHECKING:  # pragma: no cover - workers import this module; the model is the CLI's
    from asapo_pipelines.pipeline.model import Pipeline

log = logging.getLogger("asapo_pipelines.worker")


#: the states of a worker's final status record: it will send nothing more in this session
ENDED_STATES = ("finished", "stopped", "failed")


#: the states in which a unit's long call shows as busy: in `process()` or a stream hook while
#: running; while loading, in the import of its runtime, its `on_start` or a `restore` that
#: hangs (the viewer shows it in these states too)
BUSY_STATES = ("running", "loading")


def busy_text(record: Mapping[str, Any]) -> str:
    """`busy 25s (raw/default#3)` for a worker whose unit has been in one call for a while
    (`Counters.busy_seconds`), "" otherwise: a long process() reads as busy, not as idle, and
    a start-up stuck in the import of the unit's runtime, its `on_start` or a `restore`
    (`busy 12s (restoring state from raw/default#3)`) not as a worker still loading."""
    seconds = record.get("busy_seconds")
    if record.get("state") not in BUSY_STATES or not isinstance(seconds, int | float):
        return ""
    return f"busy {seconds:.0f}s ({record.get('busy_with') or '?'})"


def rate_text(record: Mapping[str, Any], unit: str = "/s") -> str:
    """A worker's rate as tables show it: messages per second over its last interval while it
    works, "-" once its record says it ended. A finished unit's last interval says nothing of
    its run (0.0/s for one that ended idle, 15.2/s for one that ended busy), and an average
    over the run would be as wrong for a watching run that waited hours for scans: its
    `processed` count is what it did."""
    value = record.get("rate")
    if record.get("state") in ENDED_STATES or not isinstance(value, int | float):
        return "-"
    return f"{value:.1f}{unit}"


#: the counters a restarted process takes over from the one before it in the same session
CARRIED = (
    "received",
    "processed",
    "redelivered",
    "errors",
    "retries",
    "outputs",
    "duplicates_skipped",
    "reapplied",
    "changed_not_sent",
)
#: How long a worker keeps trying, while the transport is unavailable (a server restarting, a
#: network cut), to publish its final status record and to read the one before it: the counts
#: of a replica are its last record, and the next process of that replica counts on from it,
#: so a lost final record loses what was done since the record before. Within the 30 s the
#: compiled job gives a worker to stop (`KillTimeout`).
FINAL_RECORD_SECONDS = 20.0
#: least seconds between two records sent because a batch was committed (`committed`): a
#: worker killed outright is counted short of at most that much of its work
COMMIT_GAP = 0.2
#: commits at least this far apart are published at once, by the worker itself, before it
#: takes its next message (`committed`): one record costs a unit this slow a few per cent at
#: most, and a slow unit (a NeXus writer) killed outright is then counted for every commit
SLOW_COMMITS = 0.02
_T = TypeVar("_T")


def retrying(call: Callable[[], _T], what: str, seconds: float = FINAL_RECORD_SECONDS) -> _T:
    """`call()`, tried again while the transport is `Unavailable`, backing off from 0.2 s to
    2 s, for up to `seconds`; then its error goes up. Said once in the log, as `what`."""
    deadline = time.monotonic() + seconds
    delay = 0.2
    while True:
        try:
            return call()
        except Unavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            if delay == 0.2:
                log.warning("cannot %s yet: %s; trying again for %g s", what, exc.message, seconds)
            time.sleep(delay)
            delay = min(2 * delay, 2.0)


@dataclass
class Counters:
    unit: str = ""
    instance: str = ""
    replica: int = 0
    state: str = "starting"
    received: int = 0
    #: inputs the unit processed without error, counted once their results are durable and
    #: they are acknowledged: each input once, also when a killed worker's batch comes back
    processed: int = 0
    #: messages handed to the unit again (delivered before, to a worker killed before it
    #: acknowledged them, or whose lease ran out): work done twice, counted once in processed
    redelivered: int = 0
    errors: int = 0
    retries: int = 0
    outputs: int = 0
    duplicates_skipped: int = 0
    #: of the duplicates skipped, a source's keys sent before whose content now is other bytes
    #: (the transport's checksum differs): not sent again, said (`changed_lines`)
    changed_not_sent: int = 0
    #: inputs of earlier sessions whose state the unit restored and then gave its results
    #: from under the settings in force (`restores_state` with `on_restored`), whether or not
    #: those results differ from what it sent before: work under this session's settings
    reapplied: int = 0
    #: messages of the inputs not yet acknowledged by this unit's group; None when the transport
    #: does not count acknowledgements per group (`StreamInfo.group_lag`), shown as "-"
    backlog: int | None = 0
    #: seconds between an input being written and this unit taking it (the first message of
    #: the last batch, which lasts a fraction of a second: see `Worker.ack_seconds`)
    lag_seconds: float = 0.0
    last_message_time: float | None = None
    started: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)
    #: the unit's own `summary()`, filled in for the final status record
    summary: dict[str, Any] = field(default_factory=dict)
    host: str = field(default_factory=socket.gethostname)
    #: the run and session this process works in (`<run>@<session start>`; "" outside a run)
    session: str = ""
    #: seconds the unit has been in its current call, and what it works on (`port/stream#id`,
    #: a hook and its stream, `importing the unit's runtime`, `starting: on_start`,
    #: `restoring state from port/stream#id`, or a source's
    #: `run() without emit or wait`), once that call has lasted a few seconds (`Worker.busy`);
    #: None between calls. Put in by the status thread, never by the worker's own
    busy_seconds: float | None = None
    busy_with: str | None = None
    #: which session of its run that is (1: the run's first; 0: outside a run): the counts
    #: are this session's, so tables say so from the second one on (`session_note`)
    session_number: int = 0

    def carry(self, last: dict[str, Any]) -> bool:
        """Go on from a predecessor's last record: a replica restarted within its session (the
        process before was killed, or failed) counts the session's work, not only its own, so
        that `pipeline status`, the viewer and the run's counts, which read each replica's last
        record, show what was done. Nothing is carried across sessions: each session's counts
        are recorded when it ends, and the run adds them up."""
        if not self.session or last.get("session") != self.session:
            return False
        for key in CARRIED:
            value = last.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, key, getattr(self, key) + value)
        return True

    def snapshot(self, rate: float) -> dict[str, Any]:
        data = asdict(self)
        data["rate"] = round(rate, 3)
        data["time"] = time.time()
        return data


class StatusPublisher:
    """A thread that sends the counters every `interval` seconds (and once at the end)."""

    def __init__(
        self, transport: Any, pipeline: str, counters: Counters, *, interval: float = 2.0
    ) -> None:
        self.transport = transport
        self.source = status_source(pipeline)
        self.stream = status_stream(counters.instance, counters.replica)
        self.counters = counters
        self.interval = interval
        self._stop = threading.Event()
        self._now = threading.Event()
        self._producer: Any = None
        self._thread: threading.Thread | None = None
        # a restarted worker's counters go on from its predecessor's (`Counters.carry`): its
        # first rate is of what it handles, not of what was carried (11,070 messages/s in the
        # live view of a worker that was still importing its runtime)
        self._last = (time.monotonic(), self._handled())
        self._lock = threading.Lock()
        #: held while `_producer` is made, used or dropped: the thread and `publish_sync`
        #: send through that one producer. Two producers of one stream in one process each
        #: number their messages from what the service said when they were made (ASAP::O);
        #: the second one's record took an id the first then sent again, refused as a
        #: duplicate: lost, and when it was the final record, a resumed downstream worker
        #: waited for this one's end for ever (`Worker._upstream_ended`)
        self._sending = threading.Lock()
        #: when the last record was sent (monotonic), for `committed`
        self._published = 0.0
        #: whether the unit's summary was refused by the transport (said once)
        self._summary_refused = False
        #: called before each record is taken (a source's summary: see `Worker._source_summary`)
        self.refresh: Callable[[], None] | None = None
        #: what a record says of a long unit call under way (`Worker.busy`): None when none is
        self.busy: Callable[[], dict[str, Any] | None] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="status", daemon=True)
        self._thread.start()

    def _handled(self) -> int:
        # the messages handed to the unit (a source's: sent); processed grows per batch
        c = self.counters
        return c.received or c.processed + c.errors

    def _rate(self) -> float:
        now, processed = time.monotonic(), self._handled()
        then, before = self._last
        self._last = (now, processed)
        return (processed - before) / (now - then) if now > then else 0.0

    def _loop(self) -> None:
        # Counters are a view of the work, never a reason to stop it: a transport error here
        # (ASAP::O unreachable, a full store) is logged once in one line, and the thread tries
        # again at the next interval with a new producer. The producer is left open for the
        # final record (`stop`): one data source connection per worker, not two.
        last_error = ""
        # the first record at once: a unit still importing its runtime shows as "loading"
        first = True
        while first or not self._stop.is_set():
            if not first:
                self._now.wait(self.interval)
                self._now.clear()
                # woken by commits (or a change of state): one record per COMMIT_GAP at most
                spare = COMMIT_GAP - (time.monotonic() - self._published)
                if self._stop.is_set() or (spare > 0 and self._stop.wait(spare)):
                    break
            first = False
            try:
                self._send_shared()
                last_error = ""
            except PipelinesError as exc:
                if exc.message != last_error:
                    log.warning("cannot publish the status counters: %s", exc.message)
                    last_error = exc.message

    def _send_shared(self, *, flush: bool = False) -> None:
        """Publish one record through the one producer (made at the first record); a broken
        one is dropped, and the next record makes another."""
        with self._sending:
            try:
                if self._producer is None:
                    self._producer = self.transport.producer(self.source)
                self._publish(self._producer)
                if flush:
                    self._producer.flush()
            except PipelinesError:
                self._discard(self._producer)
                self._producer = None
                raise

    @staticmethod
    def _discard(producer: Any) -> None:
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.close()

    def publish_now(self) -> None:
        """Publish at once instead of at the next interval (a change of state)."""
        self._now.set()

    def publish_sync(self) -> None:
        """Publish one record from the calling thread, now: the thread sends at most one per
        `COMMIT_GAP`, and a record due at once (the unit's summary at its start) must not wait
        for it. A transport error is left to the thread's next beat."""
        try:
            self._send_shared(flush=True)
        except PipelinesError as exc:
            log.debug("cannot publish the status counters now: %s", exc.message)

    def committed(self, since_last: float = 0.0) -> None:
        """The worker made a batch durable and acknowledged it: publish soon, not at the next
        interval, so that a worker killed (SIGKILL, OOM) before that interval is not counted
        short of what it did (its restart goes on from its last record). The thread sends at
        most one record per `COMMIT_GAP` seconds: a busy worker commits hundreds of batches a
        second. A commit `since_last` seconds after the one before, at least `SLOW_COMMITS`, is
        published now, from the calling thread: a NeXus writer killed within the gap after a
        record (it commits every entry) was counted two entries short of its file.

        Sent without waiting for the transport to confirm it (the embedded store has it when
        the send returns; ASAP::O's library delivers it): a slow service must not hold up the
        unit's next message."""
        if since_last >= SLOW_COMMITS:
            try:
                self._send_shared()
            except PipelinesError as exc:
                log.debug("cannot publish the status counters now: %s", exc.message)
            else:
                return
        self._now.set()

    def _publish(self, producer: Any) -> None:
        with self._lock:
            self._published = time.monotonic()
            if self.refresh is not None:
                self.refresh()
            record = self.counters.snapshot(self._rate())
            busy = self.busy() if self.busy is not None else None
            if busy is not None:
                record.update(busy)
            # the regular beat, for readers that tell a silent (killed) worker from a quiet one:
            # records sent after commits come closer together than that
            record["interval"] = self.interval
            try:
                producer.send(self.stream, None, record)
            except TransportConfigError as exc:
                # a summary the transport cannot store must not take the counters and the
                # error count with it: they are what the table, `runs` and the viewer show
                if not record.pop("summary", None):
                    raise
                if not self._summary_refused:
                    self._summary_refused = True
                    log.warning("the unit's summary is left out of its status: %s", exc.message)
                producer.send(self.stream, None, record)

    def stop(
        self,
        state: str,
        *,
        summary: dict[str, Any] | None = None,
        seconds: float = FINAL_RECORD_SECONDS,
    ) -> None:
        """Stop the thread and publish the final state from the calling thread, trying again
        for up to `seconds` while the transport is unavailable (see `FINAL_RECORD_SECONDS`);
        a failure to publish it is logged: the work itself is done.

        `summary`, the unit's final one, is put in only once the thread has ended: a record
        the thread was taking meanwhile (a running source's summary, see `refresh`) would
        otherwise replace it with one taken before the unit stopped."""
        self._stop.set()
        self._now.set()
        held: list[Any] = [None]
        if self._thread is not None:
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                with self._sending:
                    held[0], self._producer = self._producer, None
        with self._lock:
            if summary is not None:
                self.counters.summary = summary
            self.counters.state = state

        def publish() -> None:
            try:
                if held[0] is None:
                    held[0] = self.transport.producer(self.source)
                self._publish(held[0])
            except PipelinesError:
                # a broken connection is not used again: the next try opens a new one
                self._discard(held[0])
                held[0] = None
                raise

        try:
            retrying(publish, "publish the final status counters", seconds)
        except PipelinesError as exc:
            log.warning("cannot publish the final status counters: %s", exc.message)
        finally:
            self._discard(held[0])


def not_final(records: Iterable[dict[str, Any]]) -> list[str]:
    """The replicas (`instance` or `instance[replica]`) whose last status record is not a final
    one: their counts stop at that record (the final one did not reach the transport, or the
    process was killed), so they may be below what the replica did."""
    out = []
    for record in records:
        if record.get("state") in ENDED_STATES:
            continue
        replica = int(record.get("replica") or 0)
        instance = str(record.get("instance") or "?")
        out.append(instance if replica == 0 else f"{instance}[{replica}]")
    return sorted(out)


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_plain(v) for v in value)
    return str(value)


def summary_lines(records: Any) -> list[str]:
    """The units' own summaries (from their final status records) as lines for people:
    `instance: key value, ...`; a list, or an object of objects, gives one indented line per
    item."""
    lines: list[str] = []
    for record in records:
        summary = record.get("summary") if isinstance(record, dict) else None
        if not summary:
            continue
        replica = record.get("replica", 0)
        label = str(record.get("instance", "?")) + (f"[{replica}]" if replica else "")
        scalars = {k: v for k, v in summary.items() if not isinstance(v, list | dict)}
        lines.append(f"{label}: " + (_plain(scalars) if scalars else ""))
        for key, value in summary.items():
            if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
                lines.append(f"  {key}:")
                lines.extend(f"    {k}: {_plain(v)}" for k, v in value.items())
            elif isinstance(value, dict):
                lines.append(f"  {key}: {_plain(value)}")
            elif isinstance(value, list):
                lines.append(f"  {key}:")
                lines.extend(f"    {_plain(item)}" for item in value)
    return lines + changed_lines(records)


def changed_lines(records: Any) -> list[str]:
    """One line per source that skipped keys it had sent before with other content: the new
    content (a rewritten file) reached no unit, which the log's warnings alone hide."""
    lines = []
    for record in records:
        count = record.get("changed_not_sent") if isinstance(record, dict) else None
        if isinstance(count, int) and count > 0:
            keys = "1 key was" if count == 1 else f"{count} keys were"
            lines.append(
                f"{record.get('instance', '?')}: {keys} sent before with other content and "
                f"{'was' if count == 1 else 'were'} not sent again; give such outputs a key "
                "that includes the content's version, see docs/unit-authors.md (Source)"
            )
    return lines


def session_note(records: Iterable[Any]) -> str:
    """A line for under a table of the workers' counters when they are those of a resumed
    run: each session counts from zero, while the units' summaries below the table may count
    the whole run, and "processed 0" above "spectra 12" reads as a contradiction. Empty in a
    run's first session and outside a run."""
    latest: tuple[int, str] = (0, "")
    for record in records:
        if isinstance(record, dict):
            number = record.get("session_number")
            if isinstance(number, int) and number > latest[0]:
                latest = (number, str(record.get("session") or "").partition("@")[0])
    number, run = latest
    if number < 2:
        return ""
    # said of the table alone: a summary under it reading "entries_written 6" in a session
    # that wrote nothing is the run's, and a line that seemed to say otherwise misled
    return (
        f"The table counts this session only: run {run or '?'} was resumed (session {number}). "
        "The units' summaries under it are the whole run's so far where the unit carries "
        "them across sessions (the reference units do: `carried_summary` in "
        "docs/unit-authors.md); `pipeline runs` adds up its sessions as they end."
    )


def session_label(run_id: str, began: Any) -> str:
    """The session (`Counters.session`) the workers of run `run_id`'s session that began at
    `began` (its `started` or `resumed` event's time) put in their status records."""
    return f"{run_id}@{began}"


def in_session(record: dict[str, Any], session: str) -> bool:
    """Whether status `record` was published in `session` (`session_label`). The status
    streams are the pipeline's, not a run's: until the workers of a session publish, the last
    record of a replica is one of an earlier session of the run, or of another run (a
    reprocess), whose counts and summary are not this session's."""
    run, _, began = session.partition("@")
    theirs, _, when = str(record.get("session") or "").partition("@")
    try:  # a time read back from JSON may be an int where the other side has a float
        return theirs == run and float(when) == float(began)
    except ValueError:
        return False


def latest_status(
    consumer: Any, payload: dict[str, Any], session: str | None = None
) -> dict[str, dict[str, Any]]:
    """Each unit replica's latest status record (`"<group>[<i>]"` -> counters), read with a
    consumer of the pipeline's status data source (`status_consumer`), for the task groups of
    the compiled job `payload`; a replica that has not published yet is left out, and so,
    given a `session` (`session_label`), is one whose latest record is of another session."""
    out: dict[str, dict[str, Any]] = {}
    for group in payload["Job"]["TaskGroups"]:
        for index in range(int(group.get("Count", 1))):
            try:
                message = consumer.get_last(status_stream(group["Name"], index))
            except Exception:  # no status yet: the worker has not published
                continue
            record = dict(message.metadata)
            if session is None or in_session(record, session):
                out[f"{group['Name']}[{index}]"] = record
    return out


def status_consumer(transport: Any, pipeline: str) -> Any:
    """A consumer of the pipeline's status data source (it only reads the last records)."""
    return transport.consumer(status_source(pipeline), "local-run-status")


def status_reader(
    pipeline: Pipeline, payload: dict[str, Any], session: str | None = None
) -> Callable[[], dict[str, dict[str, Any]]]:
    """`latest_status` (of `session`) again and again (the live table of `pipeline run`), with
    a consumer opened at the first call and kept for the run's lifetime."""
    from asapo_pipelines.transport import open_transport

    held: dict[str, Any] = {}

    def read() -> dict[str, dict[str, Any]]:
        if "consumer" not in held:
            held["transport"] = open_transport(pipeline.transport.spec())
            held["consumer"] = status_consumer(held["transport"], pipeline.name)
        return latest_status(held["consumer"], payload, session)

    return read
