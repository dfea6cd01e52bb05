"""The worker loop: one unit instance between its input and output data sources.

Messages are taken in batches (up to `ack_batch` messages; a batch is closed after at most
`batch_wait` seconds, before a message that would take it past that at the unit's pace, or as
soon as the input runs dry): for each message the unit is called (with retries) and its outputs
(each with provenance) are collected; then the batch's outputs are written with one `send_many`
per output stream, made durable, and only then are the batch's inputs acknowledged with one
`acknowledge_many` per input stream. While the unit works on one message for long (a slow fit,
a hang), a thread keeps the leases of the messages the worker holds and commits what the batch
finished once its wait is over (`CallWatch`). A worker killed anywhere in a
batch gets the whole unacknowledged batch again; outputs already written are recognised by their
keys. An exception that survives the retries becomes a record on the error stream, and the loop
goes on. Streams (scans) are followed through `next_stream`; an input stream ends when it is
finished, fully acknowledged and has no holes (late messages are still being waited for); output
streams are finished as their inputs end (after their last outputs are written). The worker
returns when every input is done, or when asked to stop (after the current message; its batch
is committed). A worker of a pipeline that runs until stopped (a service job: a source that
keeps watching, an external stream) does not return when its inputs are done: every executor
restarts a service's task that exits, whatever its exit code, and fails it after its restart
attempts, so it waits for new streams and late messages until it is stopped.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from asapo_pipelines.descriptor import UnitDescriptor
from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.sdk.runner import (
    Outcome,
    Output,
    RetryPolicy,
    SourceUsageError,
    UnitRunner,
    error_record,
)
from asapo_pipelines.sdk.units import PROVENANCE_KEY, Message, Stream, Unit
from asapo_pipelines.transport import (
    LEASE_MARGIN,
    CorruptPayload,
    EndOfStream,
    MissingId,
    NoData,
    StreamFinished,
    Transport,
    TransportError,
    formats,
)
from asapo_pipelines.transport.base import payload_checksum
from asapo_pipelines.worker.dedupe import KeyIndex, read_metadata, source_keys, user_key
from asapo_pipelines.worker.naming import (
    FIRST_STREAM,
    JOB_TYPE_ENV,
    data_source_for,
    errors_source,
    group_name,
    processed_source,
    status_source,
    status_stream,
)
from asapo_pipelines.worker.placement import PLACEMENT_FIELDS, this_process
from asapo_pipelines.worker.sent import SentMessage
from asapo_pipelines.worker.status import ENDED_STATES, Counters, StatusPublisher, retrying

log = logging.getLogger("asapo_pipelines.worker")
#: keys sent before with other content that are each named in a warning; the rest are counted
CHANGED_WARNINGS = 10

#: how many messages of one stream are taken in a row before looking at the others
BURST = 256
#: a batch holds at most this many messages and is committed (outputs written and made durable,
#: then inputs acknowledged) at the latest ACK_SECONDS after its first message: one transaction
#: per output stream and one per input stream for many messages instead of several per message
ACK_BATCH = 128
ACK_SECONDS = 0.2
#: a unit call (process() or a stream hook, a `restore` at start-up, a source's `run()` between
#: two calls to the runtime) lasting this many seconds is shown as busy in the status records
#: (`Worker.busy`): shorter ones come and go between two records anyway
BUSY_AFTER = 3.0
#: a unit call lasting this many seconds is said once in the worker's log (`pipeline logs`)
BUSY_LOG_SECONDS = 60.0


def _made_from(metadata: Mapping[str, Any], refs: set[tuple[str, str, int]]) -> bool:
    """Whether an output's provenance names one of `refs` (data source, stream, id) as input."""
    prov = metadata.get(PROVENANCE_KEY)
    inputs = prov.get("inputs") if isinstance(prov, dict) else None
    return any((r["data_source"], r["stream"], r["id"]) in refs for r in inputs or ())


def _add_backlog(backlog: int | None, info: Any, group: str) -> int | None:
    """`backlog` plus what `group` has not acknowledged of a stream; None (unknown) once a
    stream with messages says nothing per group: a transport that counts no acknowledgements
    (ASAP::O) would otherwise show every message of a finished run as still to do."""
    if backlog is None:
        return None
    if info.group_lag:
        return backlog + int(info.group_lag.get(group, info.message_count or 0))
    return None if info.message_count or info.last_id else backlog


class UnitFailed(PipelinesError):
    """A source's `run()` raised: the worker stops with this sentence."""


class UnrestorableInput(PipelinesError):
    """An input a unit processed before cannot be read to restore its state: the error
    stream's record of it (`Worker._report_unrestorable`)."""


class StoppedWhileRestoring(Exception):
    """A stop (SIGTERM, SIGINT) asked while the unit restored its state: the worker ends
    "stopped" before it takes a message. Restoring reads by id and acknowledges nothing, and
    nothing is written before it is done, so the next start restores from the beginning."""


@dataclass
class RestoreProgress:
    """How far the unit's restore got (`Worker._stopped_while_restoring` says it): `done` of
    `total` (None while the worker is still finding out what to restore) `what`."""

    what: str = "inputs"
    total: int | None = None
    done: int = 0


class CallWatch:
    """Looks after a worker while its unit works on one message, from a thread of its own.

    A call can take minutes (a slow fit) or never return (a hang). Meanwhile the messages the
    worker holds (the one in the unit and the open batch's) must keep their leases, or the
    transport hands them to another consumer (or back to this one) and they are processed
    twice; and what the batch finished must not wait for the call to end. So, once a call has
    lasted `tick` seconds, `look(entered)` is called every `tick` until it returns (`entered`:
    when the call began, monotonic time). A worker that dies stops renewing, so its messages
    still come back after their lease.

    The worker's transport objects are used by one thread at a time: the worker's thread holds
    `lock` except while it is inside a unit call (`enter` to `leave`), and `look` runs only
    with the lock taken. An exception in `look` is raised by `leave`, in the worker's thread.
    """

    def __init__(self, look: Callable[[float], None], tick: float) -> None:
        self.look = look
        self.tick = tick
        self.lock = threading.Lock()
        self.lock.acquire()  # the worker's thread holds it outside unit calls
        self.entered: float | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="call-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def enter(self) -> None:
        """The worker's thread calls the unit now (`Worker._process` does this itself)."""
        self.entered = time.monotonic()
        self.lock.release()

    def leave(self) -> None:
        """The unit call returned: wait for a `look` under way, and raise what it raised."""
        self.lock.acquire()
        self.entered = None
        error, self.error = self.error, None
        if error is not None:
            raise error

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            if self.entered is None or self.error is not None:
                continue
            if not self.lock.acquire(blocking=False):
                continue
            try:
                # looked at again with the lock: the call seen before may have ended since
                entered = self.entered
                if entered is not None and time.monotonic() - entered >= self.tick:
                    self.look(entered)
            except BaseException as exc:  # raised in the worker's thread (see `leave`)
                self.error = exc
            finally:
                self.lock.release()


@dataclass
class StreamState:
    name: str
    #: (input port, stream): what the worker's open batch lists this stream's messages by
    key: tuple[str, str] = ("", "")
    started: bool = False
    ended: bool = False
    next_stream: str | None = None
    holes_reported: bool = False


@dataclass
class InputPort:
    name: str
    data_source: str
    consumer: Any
    streams: dict[str, StreamState] = field(default_factory=dict)

    def add(self, name: str) -> StreamState:
        state = self.streams.get(name)
        if state is None:
            state = self.streams[name] = StreamState(name, (self.name, name))
        return state

    @property
    def done(self) -> bool:
        if not self.streams or not all(s.ended for s in self.streams.values()):
            return False
        return all(
            s.next_stream is None or s.next_stream in self.streams for s in self.streams.values()
        )


class Worker:
    def __init__(
        self,
        transport: Transport,
        descriptor: UnitDescriptor,
        params: Any = None,
        *,
        pipeline: str,
        instance: str,
        inputs: dict[str, str] | None = None,
        outputs: dict[str, str] | None = None,
        replica: int = 0,
        retry: RetryPolicy | None = None,
        status_interval: float = 2.0,
        lease_seconds: float = 30.0,
        linger: float = 0.5,
        poll: float = 0.02,
        refresh: float = 0.5,
        ack_batch: int = ACK_BATCH,
        batch_wait: float = ACK_SECONDS,
        data_sources: Mapping[str, str] | None = None,
        run: Mapping[str, Any] | None = None,
        configurations: Mapping[str, Mapping[str, Any]] | None = None,
        upstream: Mapping[str, int] | None = None,
        until_stopped: bool | None = None,
    ) -> None:
        self.transport = transport
        #: whether the worker waits for more input when its inputs are done (see the module's
        #: docstring); by default, what the job that started it says (`JOB_TYPE_ENV`)
        self.until_stopped = (
            os.environ.get(JOB_TYPE_ENV) == "service" if until_stopped is None else until_stopped
        )
        #: instance -> replicas of the pipeline's units that write this unit's inputs: in a
        #: resumed session, input streams finished by an earlier session are not the end
        #: until these have ended in this one (see `_upstream_ended`)
        self.upstream = dict(upstream or {})
        self._upstream_seen: tuple[float, bool] = (0.0, False)
        self._upstream_reader: Any = None
        #: stream name -> data source (the pipeline's namespace for this run); by default a
        #: stream is the data source of its own name (a worker built by hand, in tests)
        self.data_sources = dict(data_sources or {})
        #: the run: id, pipeline file and hash, and this unit's fingerprint
        self.run_info = dict(run or {})
        #: fingerprint -> a unit configuration, for the producers of this unit's inputs
        self.configurations = dict(configurations or {})
        self.descriptor = descriptor
        self.pipeline = pipeline
        self.instance = instance
        self.replica = replica
        self.inputs = dict(inputs or {})
        self.outputs = dict(outputs or {})
        self.lease_seconds = lease_seconds
        self.linger = linger
        self.poll = poll
        #: the idle wait's wake-up on stop() (see `_stop_fd`), made when first idle
        self._stop_pipe: tuple[int, int] | None = None
        self.refresh = refresh
        self.status_interval = status_interval
        self.group = group_name(pipeline, instance)
        self.runner = UnitRunner(
            descriptor,
            params,
            pipeline=pipeline,
            instance=instance,
            replica=replica,
            retry=retry,
            logger=logging.getLogger(f"asapo_pipelines.unit.{instance}"),
            output_streams=self.outputs,
        )
        self.label = self.runner.unit_label
        #: (pipeline, run, session, fingerprint) -> the producer `_producer_of` resolved
        self._producers: dict[tuple[Any, ...], dict[str, Any]] = {}
        #: (pipeline, run) -> that run's record as last read (`_run_record`)
        self._run_records: dict[tuple[str, str], Any] = {}
        session = self.run_info.get("resumed_at") or self.run_info.get("started")
        if self.run_info.get("run"):
            provenance = {
                "run": self.run_info["run"],
                "fingerprint": self.run_info.get("fingerprint"),
            }
            if session is not None:
                # when this session began: a consumer resolves the file, its hash and the
                # overrides the output was made with from the run's record by it
                provenance["session"] = session
            # where it is computed (host, executor's job): in every output, as no run
            # record can say it (replicas of one session run in several jobs)
            provenance.update(this_process())
            self.runner.provenance = provenance
            self.runner.context.run = dict(self.run_info)
        self.counters = Counters(unit=descriptor.name, instance=instance, replica=replica)
        if self.run_info.get("run"):
            self.counters.session = f"{self.run_info['run']}@{session}"
            self.counters.session_number = int(self.run_info.get("session_number") or 0)
        self.ports: list[InputPort] = []
        self.producers: dict[str, Any] = {}  # output port -> producer
        # readers opened on first use (see `_reader`): a worker that is never redelivered
        # anything and reports no error opens two connections fewer at start and closes two fewer
        self.output_readers: dict[str, Any] = {}  # output port -> consumer (for dedupe)
        self._errors: Any = None
        self._errors_reader: Any = None
        self.status: StatusPublisher | None = None
        self.finished_outputs: set[tuple[str, str]] = set()
        self.written_outputs: set[tuple[str, str]] = set()
        self.pending_finish: dict[str, str | None] = {}
        self.ack_batch = max(1, ack_batch)
        self.ack_seconds = max(0.0, min(batch_wait, lease_seconds / 4))
        #: outputs of the open batch, not yet written: (port, stream) -> [(payload, metadata)]
        self.pending_outputs: dict[tuple[str, str], list[tuple[Any, Any]]] = {}
        #: inputs of the open batch that a unit keeping state processed without an output, not
        #: yet recorded (see `_trace`): [(payload, metadata)]
        self.pending_traces: list[tuple[Any, Any]] = []
        #: the producer of those records and the input ports they are kept for, once the unit
        #: says it keeps state (`_start_traces`)
        self._traces: Any = None
        self._traced_ports: frozenset[str] = frozenset()
        #: seconds the unit took per message (smoothed): how many messages to lease at once
        self.per_message = 0.0
        #: when the last batch was committed (monotonic): how far apart commits come decides
        #: whether the status record is sent at once (`StatusPublisher.committed`)
        self._committed_at = 0.0
        self.prefetch = 0
        #: time the unit took on the messages of the open batch, and how many
        self.batch_seconds = 0.0
        self.batch_messages = 0
        #: processed but not yet acknowledged: (input port, stream) -> ids
        self.unacked: dict[tuple[str, str], list[int]] = {}
        self.unacked_count = 0
        #: of those, the ones the unit processed without error: `processed` once acknowledged
        self.unacked_done = 0
        #: of those, (port, stream, id) of the ones that went to the error stream (rare)
        self.unacked_failed: set[tuple[str, str, int]] = set()
        #: (port, stream, id) -> delivery count of the ones handed out more than once (rare)
        self.unacked_counts: dict[tuple[str, str, int], int] = {}
        self.unacked_since = 0.0
        #: when the batch's first message was handed out (wall clock, as leases are): before
        #: the unit worked on it, which may have taken longer than its lease
        self.unacked_handed = 0.0
        self.key_indexes: dict[tuple[str | None, str], KeyIndex] = {}
        #: looks after the worker during long unit calls (consumers only; see `CallWatch`)
        self._watch: CallWatch | None = None
        #: the message in the unit now: (input port, stream, id)
        self._current: tuple[str, str, int] | None = None
        #: the hook the unit is in (`_in_unit`: stream_start, stream_end), None in process()
        self._hook: str | None = None
        #: when the call the log said was long began (`_look_after`, `_say_long`): said once
        #: per call
        self._long_told: float | None = None
        #: the unit's call at start-up, which no watch looks after: when it began (monotonic)
        #: and what it is (`importing the unit's runtime`, `starting: on_start`, `restoring
        #: state from raw/default#3`, `on_restored`); None between calls. Read by the status
        #: thread (`busy`)
        self._start_call: tuple[float, str] | None = None
        #: when the held messages' leases were last renewed (monotonic)
        self._renewed = 0.0
        self._lease_warned = False
        #: what this replica processed in the run's earlier sessions (a resumed session only)
        self._processed_before = 0
        #: inputs of earlier sessions `_restore` gave the unit back (see `Counters.reapplied`)
        self._restored_inputs = 0
        self._progress = RestoreProgress()
        #: whether every input's consumer can extend a lease (`extend_lease`)
        self._extendable = False
        #: whether the unit makes its own writes durable in `flush`, which must not run beside
        #: its calls: the watch then writes what a batch finished but leaves the acknowledgements
        self._own_flush = True

    # -- set-up --------------------------------------------------------------------------------
    def _check_wiring(self) -> None:
        d = self.descriptor
        for port in d.inputs:
            if port.required and port.name not in self.inputs:
                raise PipelinesError(f"input port {port.name} of unit {self.instance} is not fed")
        for port in d.outputs:
            if port.name not in self.outputs:
                # an output nobody reads still goes somewhere predictable
                self.outputs[port.name] = f"{self.instance}-{port.name}".replace("_", "-")

    def _open(self) -> None:
        self._check_wiring()
        t = self.transport
        for port, stream_name in self.inputs.items():
            source = self.data_sources.get(stream_name) or data_source_for(stream_name)
            consumer = self._consumer(source)
            self.ports.append(InputPort(port, source, consumer))
        for port in self.outputs:
            self.producers[port] = t.producer(self._output_source(port))
        # opened at start, not at the first error: the pipeline's data sources are all there
        # from the start (ASAP::O lists a data source once something wrote to it)
        self._errors = t.producer(errors_source(self.pipeline))

    def _carry_counters(self) -> None:
        """Take over the counts of this replica's killed predecessor in the same session (see
        `Counters.carry`); the status stream is read once, before the first record is sent.
        The unit's summary is carried too (`_carry_summary`), and in a new session of the run
        the summary the run's earlier sessions left (`_carry_earlier_sessions`)."""
        if not self.counters.session:
            return

        def read() -> Any:
            with self.transport.consumer(
                status_source(self.pipeline), "pipeline-status"
            ) as consumer:
                return consumer.get_last(status_stream(self.instance, self.replica)).metadata

        try:
            # a transport restarting is waited for: counting from zero would lose the session's
            # counts for good, as this replica's next records replace its last one
            last = dict(retrying(read, "read the status counters of this replica"))
        except (EndOfStream, TransportError):  # nothing before us, or not readable: from zero
            last = {}
        if last and self.counters.carry(last):
            # debug: the executor already says that it restarted the worker, and a restarted
            # worker's stderr is read for its one-sentence failure
            log.debug(
                "%s: restarted within its session; counting on from %d processed",
                self.label,
                self.counters.processed,
            )
            if self._carry_summary(last):
                return  # it counted on from the earlier sessions already, if it does
        self._carry_earlier_sessions()

    def _carry_summary(self, last: dict[str, Any]) -> bool:
        """Hand the unit the summary its predecessor published last (`carried_summary`): a
        unit counting work done in its summary goes on from it, as the counters do."""
        summary = last.get("summary")
        if isinstance(summary, dict) and summary:
            self.runner.context.carried_summary = dict(summary)
            self.runner.context.carried_after_restart = True
            # in this replica's records until the unit's own replaces it: a restart that fails
            # to start would otherwise end the session with no summary of what was done
            self.counters.summary = dict(summary)
            return True
        return False

    def _carry_earlier_sessions(self) -> None:
        """In a resumed session, hand the unit the summary this replica left at the end of the
        run's earlier sessions, as the run's record has it. Not the last status record: the
        status streams are the pipeline's, and another run (a reprocess) may have written
        them since. Every executor starts the same worker, so it reads the record itself."""
        began = self.run_info.get("resumed_at")
        run_id = self.run_info.get("run")
        if began is None or not run_id:
            return  # the run's first session: nothing before it
        from asapo_pipelines.runs.store import RunStore

        store = RunStore(self.transport, self.pipeline)
        try:
            run = retrying(lambda: store.get(str(run_id)), "read the record of this run")
        except PipelinesError as exc:
            log.warning(
                "%s: its summary starts from nothing: cannot read run %s: %s",
                self.label,
                run_id,
                exc.message,
            )
            return
        name = self.instance if self.replica == 0 else f"{self.instance}[{self.replica}]"
        self._processed_before = int((run.counts.get(name) or {}).get("processed") or 0)
        summary = run.summaries_before(began).get(name)
        if isinstance(summary, dict):
            self.runner.context.carried_summary = dict(summary)

    def _running_summary(self) -> None:
        """Put the unit's summary in the status records sent from now on: a worker killed
        outright leaves its last one to the process restarted in its place."""
        if self.descriptor.role != "source":  # a source's: `_source_summary`
            self.counters.summary = self.runner.summary(running=True)

    def _source_summary(self) -> None:
        """A running source's summary, taken by the status thread for each record it sends: a
        source has no batches to take it at, and its `run` keeps its thread, so without this
        `pipeline status` showed nothing of it (a scan file that could not be read, files sent)
        until it ended. A summary that cannot be read at that moment (the unit's state changing
        under it) leaves the one before."""
        if self.counters.state == "running":
            fresh = self.runner.summary(running=True)
            if fresh:
                self.counters.summary = fresh

    def _output_source(self, port: str) -> str:
        stream_name = self.outputs[port]
        return self.data_sources.get(stream_name) or data_source_for(stream_name)

    def _reader(self, port: str) -> Any:
        """A reader of an output's data source, for looking up what was already written."""
        reader = self.output_readers.get(port)
        if reader is None:
            reader = self.output_readers[port] = self.transport.consumer(
                self._output_source(port), self.group
            )
        return reader

    @property
    def errors(self) -> Any:
        """The producer of the pipeline's error stream."""
        if self._errors is None:
            self._errors = self.transport.producer(errors_source(self.pipeline))
        return self._errors

    @property
    def errors_reader(self) -> Any:
        if self._errors_reader is None:
            self._errors_reader = self.transport.consumer(errors_source(self.pipeline), self.group)
        return self._errors_reader

    def _consumer(self, source: str) -> Any:
        """An input consumer that leases messages in batches where the backend can (one claim
        transaction for many messages); `_tune_prefetch` keeps slow units from leasing more
        than they can process well within the lease."""
        t = self.transport
        if "prefetch" in inspect.signature(t.consumer).parameters:
            return t.consumer(  # type: ignore[call-arg]
                # one to begin with: how many more is learnt from the unit's pace
                source,
                self.group,
                lease_seconds=self.lease_seconds,
                prefetch=1,
            )
        # a backend without prefetch (ASAP::O leases one message per request)
        return t.consumer(source, self.group, lease_seconds=self.lease_seconds)

    def _tune_prefetch(self) -> None:
        """Lease as many messages as the unit processes in a batch's wait: a fast unit takes
        whole batches per claim, a slow one (a fit of a second) one at a time, so messages are
        not held leased by one replica while others are idle, nor outlive their lease. The
        pace is learnt per batch (at its commit), not per message."""
        if not self.batch_messages:
            return
        seconds = self.batch_seconds / self.batch_messages
        self.batch_seconds, self.batch_messages = 0.0, 0
        self.per_message = (
            seconds if not self.per_message else 0.8 * self.per_message + 0.2 * seconds
        )
        want = self.ack_batch
        if self.per_message > 0:
            want = int(max(self.ack_seconds, 0.01) / self.per_message)
        want = max(1, min(self.ack_batch, want))
        if want == self.prefetch:
            return
        self.prefetch = want
        for port in self.ports:
            if hasattr(port.consumer, "prefetch"):
                port.consumer.prefetch = want

    def _close(self) -> None:
        pipe, self._stop_pipe = self._stop_pipe, None  # a late stop() writes to no stale fd
        for fd in pipe or ():
            os.close(fd)
        for obj in [
            *(p.consumer for p in self.ports),
            *self.producers.values(),
            *self.output_readers.values(),
            self._errors,
            self._errors_reader,
            self._upstream_reader,
            self._traces,
        ]:
            if obj is not None:
                try:
                    obj.close()
                except TransportError as exc:  # closing must not hide the real outcome
                    log.warning("closing %s failed: %s", obj, exc)

    def stop(self, *_args: Any) -> None:
        """Stop taking messages; the current one is finished (signal handler)."""
        self.runner.stop()
        pipe = self._stop_pipe
        if pipe is not None:
            with contextlib.suppress(OSError):  # full: a wake is already waiting
                os.write(pipe[1], b"\0")

    def install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)

    @property
    def stopping(self) -> bool:
        return self.runner.context.stop_event.is_set()

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> str:
        """Run until done ("finished") or stopped ("stopped"); raises on start-up failures."""
        self._open()
        self._carry_counters()
        # published while the unit's runtime is imported (`import larch.xafs` takes seconds):
        # the live table says "loading" until the unit is ready, then "running"
        self.status = StatusPublisher(
            self.transport, self.pipeline, self.counters, interval=self.status_interval
        )
        self.status.busy = self.busy
        self.counters.state = "loading"
        if self.descriptor.role == "source":
            self.status.refresh = self._source_summary
        self.status.start()
        try:
            try:
                self._restore_state(self.runner.start(self._starting))
            except StoppedWhileRestoring:
                return self._stopped_while_restoring(self.status)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.status.stop("failed")
                raise
            self._running_summary()
            self.counters.state = "running"
            if self.counters.summary and self.counters.session:
                # the unit's summary at its start, sent now: a fast sink killed before the
                # status thread's next record would leave its restart nothing to count on from
                self.status.publish_sync()
            else:
                self.status.publish_now()
            try:
                if self.descriptor.role == "source":
                    state = self._run_source()
                else:
                    state = self._run_consumer()
                self._write_outputs()
                self.runner.flush()
                self._flush_producers()
            except BaseException:
                # the original failure is what the user must see; clean up as far as possible
                with contextlib.suppress(Exception):
                    self.runner.shutdown()
                with contextlib.suppress(Exception):
                    self.status.stop("failed")
                raise
            self.runner.shutdown()
            self.status.stop(state, summary=self.runner.summary())
            return state
        finally:
            self._close()

    def _starting(self, what: str | None) -> None:
        """The part of the unit's start under way (`UnitRunner.start`): importing its runtime,
        its `on_start`; timed as a restore call is, so that a hang there reads as busy with
        it (`busy 40s (importing the unit's runtime)`), not as a worker loading for ever."""
        self._start_call = None if what is None else (time.monotonic(), what)

    def _restore_state(self, unit: Any) -> None:
        """Give a unit that keeps state back what it had (`_restore_sent`, or `_restore` and
        its `on_restored` outputs). A stop asked meanwhile (while the runtime was imported,
        or between two messages restored) ends it: on a long run restoring takes minutes, and
        `pipeline stop` escalates to SIGKILL after its grace period."""
        if not unit.restores_state:
            return
        self._check_stop()
        if self.descriptor.role == "source":
            self._restore_sent(unit)
            return
        self._start_traces(unit)
        self._restore(unit)
        self._check_stop()  # restored, but asked to stop: no outputs of `on_restored` either
        self._send_restored(unit)

    def _check_stop(self) -> None:
        if self.stopping:
            raise StoppedWhileRestoring

    def _stopped_while_restoring(self, status: StatusPublisher) -> str:
        """End "stopped" as a stop in the main loop does, with the summary the unit had
        before (not that of its half-restored state), and say how far the restore got."""
        p = self._progress
        how_far = (
            f", before it had counted the {p.what} to restore; its next start restores them all"
            if p.total is None
            else f": {p.done} of {p.total} {p.what} restored; its next start restores them "
            "all again"
        )
        log.info("%s stopped while restoring its state%s", self.label, how_far)
        self.runner.shutdown()
        summary = self.counters.summary or self.runner.context.carried_summary
        status.stop("stopped", summary=dict(summary) if summary else None)
        return "stopped"

    def _sent_before(self) -> Iterator[tuple[str, Any]]:
        """(output port, message) of each output an earlier run of this unit wrote, in the
        order written (stream by stream); their metadata only (the provenance), payloads left
        unread where the transport can: a resumed run of large files would read them all."""
        for port in self.producers:
            reader = self._reader(port)
            for info in reader.streams():
                for msg_id in range(1, info.last_id + 1):
                    msg = read_metadata(reader, info.name, msg_id)
                    prov = msg.metadata.get(PROVENANCE_KEY) if msg is not None else None
                    if isinstance(prov, dict) and prov.get("unit") == self.label:
                        yield port, msg

    def _restore_sent(self, unit: Any) -> None:
        """Feed a source's `restore()` the messages an earlier run of it sent: a source has no
        inputs, and what it sent is its state (which version of a file it read, say). Each
        payload is read only if `restore()` asks for it (`SentMessage`)."""
        self._progress = RestoreProgress("messages it sent")
        sent = []
        for each in self._sent_before():
            self._check_stop()
            sent.append(each)
        self._progress.total = len(sent)
        for port, tmsg in sent:
            self._check_stop()
            message = SentMessage(port, self._output_source(port), tmsg, self._reader(port))
            self._restore_one(
                unit.restore, message, f"{message.data_source}/{tmsg.stream}/{tmsg.id}"
            )
            self._progress.done += 1
        if sent:
            log.info("%s restored its state from %d messages it sent", self.label, len(sent))

    def _restore_one(self, restore: Any, message: Message, where: str) -> None:
        """`restore(message)`: the unit's `restore` or `restore_sent`, timed for the status
        records: a restore stuck on one message shows as busy, not as a worker loading."""
        # named as a message in process() is (port/stream#id; a source's: its output port)
        what = f"restoring state from {message.port}/{message.stream}#{message.id}"
        self._start_call = (time.monotonic(), what)
        try:
            restore(message)
        except Exception as exc:
            from asapo_pipelines.plugin_manager import describe_exception
            from asapo_pipelines.sdk.runner import UnitStartError

            raise UnitStartError(
                f"unit {self.descriptor.name} failed to restore its state from {where}: "
                f"{describe_exception(exc)}"
            ) from exc
        finally:
            self._start_call = None

    def _restore(self, unit: Any) -> None:
        """Feed `unit.restore()` the inputs an earlier run processed: those named by the
        provenance of this unit's outputs, in the order the outputs were written, then those
        that made no output (`_trace`), in the order processed, then every message of its
        `restore_ports` (state that leaves no output, such as feedback); before them,
        `unit.restore_sent()` those outputs, when the unit defines it."""
        whole = self._restore_port_sources(unit)
        refs: dict[tuple[str, str, int], None] = {}
        # what it sent is state too (the last result per key), when the unit asks for it
        sent_to = unit.restore_sent if type(unit).restore_sent is not Unit.restore_sent else None
        for port, msg in self._sent_before():
            self._check_stop()
            if sent_to is not None:
                message = SentMessage(port, self._output_source(port), msg, self._reader(port))
                self._restore_one(sent_to, message, f"{message.data_source}/{msg.stream}/{msg.id}")
            for ref in msg.metadata[PROVENANCE_KEY].get("inputs") or ():
                refs[(ref["data_source"], ref["stream"], int(ref["id"]))] = None
        # then those it processed without an output, in the order processed (`_trace`)
        for ref in self._traced_before():
            self._check_stop()
            refs[(ref["data_source"], ref["stream"], int(ref["id"]))] = None
        # outputs that name no input: nothing was processed before (a first start); a unit
        # without outputs (a sink) has none to tell by, and its restore ports are replayed
        if not refs and (self.producers or not whole):
            if self.producers and self._processed_before:
                self._report_state_gone()
            return
        ports = {p.data_source: p.name for p in self.ports}
        readers: dict[str, Any] = {}

        def reader(source: str) -> Any:
            if source not in readers:
                readers[source] = self.transport.consumer(source, f"{self.group}-restore")
            return readers[source]

        # a whole port's messages come after these, each once, in their order
        named = [ref for ref in refs if ref[0] in ports and ref[0] not in whole]
        replayed = 0
        lost: list[tuple[Message, str]] = []
        try:
            # a whole port's streams as they are now: what arrives later is processed
            streams = {s: [(i.name, i.last_id) for i in reader(s).streams()] for s in whole}
            self._progress.total = len(named) + sum(n for s in streams.values() for _, n in s)
            for ref in named:
                self._restore_by_id(unit, reader(ref[0]), ports[ref[0]], ref, lost)
            for source in whole:
                replayed += self._restore_whole(
                    unit, reader(source), ports[source], (source, streams[source]), lost
                )
        finally:
            for each in readers.values():
                each.close()
        self._restored_inputs = len(named) - len(lost) + replayed
        log.info(
            "%s restored its state from %d processed inputs", self.label, len(named) - len(lost)
        )
        if whole:
            log.info("%s replayed %d messages of its restore ports", self.label, replayed)
        if lost:
            self._report_unrestorable(lost)

    def _start_traces(self, unit: Any) -> None:
        """From now on record the inputs this unit processes without an output (`_trace`): a
        unit that keeps state needs them back after a restart as much as those its outputs
        name. Not those of its `restore_ports`, which are replayed whole."""
        self._traces = self.transport.producer(processed_source(self.pipeline, self._run_id))
        self._traced_ports = frozenset(p.name for p in self.ports) - set(unit.restore_ports)

    def _trace(self, msg: Message) -> None:
        """Record that the unit processed `msg` and emitted nothing (an agent that decides only
        now and then, a merge that leaves out a copy of a scan): written with the batch's
        outputs and made durable before the acknowledgement, so a restart hands it to `restore`
        (`_traced_before`) as it does the inputs its outputs name. Metadata only: the input's
        address, in the provenance as an output's inputs are."""
        prov = {**self.runner.provenance, "unit": self.label, "inputs": [msg.ref()]}
        self.pending_traces.append((b"", {PROVENANCE_KEY: prov}))

    def _traced_before(self) -> Iterator[dict[str, Any]]:
        """The addresses of the inputs earlier runs of this unit recorded with `_trace` (in
        this run's namespace), in the order they were processed."""
        reader = self.transport.consumer(
            processed_source(self.pipeline, self._run_id), f"{self.group}-restore"
        )
        try:
            last = reader.stream_info(self.instance).last_id
            for msg_id in range(1, last + 1):
                msg = read_metadata(reader, self.instance, msg_id)
                prov = msg.metadata.get(PROVENANCE_KEY) if msg is not None else None
                if isinstance(prov, dict) and prov.get("unit") == self.label:
                    yield from prov.get("inputs") or ()
        finally:
            reader.close()

    def _send_restored(self, unit: Unit) -> None:
        """Write what the unit's `on_restored` emits, before it takes any message: a result its
        restored state gives under changed parameters (a resumed run's new threshold) would
        otherwise wait for an input that may never come (a watched directory with no new file).
        Outputs an earlier run wrote under the same key are skipped."""
        self._start_call = (time.monotonic(), "on_restored")
        try:
            outcome = self.runner.restored()
        finally:
            self._start_call = None
        self._apply(outcome, None, check=True, marker="on_restored")
        if outcome.error is None and type(unit).on_restored is not Unit.on_restored:
            # its results now are those of the settings in force, sent or the same as before
            self.counters.reapplied += self._restored_inputs
        if not outcome.outputs and outcome.error is None:
            return  # nothing to make durable: most units emit nothing here
        self._write_outputs(check_leases=False)
        self._flush_producers()

    def _report_state_gone(self) -> None:
        """Say that a unit which keeps state starts it from nothing in a resumed run, though it
        processed inputs in the run's earlier sessions: none of its outputs, which name them,
        are in the store any more (their data source moved aside as a damaged store's remedy
        says, pruned, or lost). A merge would go on from one scan while the scientist reads
        its result as the run's: a warning and one error record make it seen."""
        count = self._processed_before
        why = UnrestorableInput(
            f"{self.label} processed {count} input{'' if count == 1 else 's'} in the run's "
            "earlier sessions, but none of its outputs, which name them, are in the store any "
            "more (moved aside, pruned or lost): its state starts from nothing, and its results "
            "from now on leave those inputs out"
        )
        log.warning("%s", why)
        record = error_record(why, unit=self.label, message=None, attempts=0, hook="restore")
        session = self.run_info.get("resumed_at")
        self._send_error(record, key=f"{self.label}|error|restore:{session}")
        self.counters.errors += 1

    def _restore_port_sources(self, unit: Any) -> list[str]:
        """The data sources of the unit's `restore_ports` that are fed in this pipeline."""
        inputs = {p.name for p in self.descriptor.inputs}
        for name in unit.restore_ports:
            if name not in inputs:
                from asapo_pipelines.sdk.runner import UnitStartError

                raise UnitStartError(
                    f"unit {self.descriptor.name} names {name!r} in restore_ports, which is "
                    f"not one of its input ports ({', '.join(sorted(inputs)) or 'none'})"
                )
        return [p.data_source for p in self.ports if p.name in unit.restore_ports]

    def _restore_whole(
        self,
        unit: Any,
        reader: Any,
        port: str,
        whole: tuple[str, list[tuple[str, int]]],
        lost: list[Any],
    ) -> int:
        """Hand `unit.restore()` every message of a data source (input `port`), stream by
        stream in id order, as `whole` (the source, its (stream, last id)s) has them; how many
        there were."""
        source, streams = whole
        return sum(
            self._restore_by_id(unit, reader, port, (source, stream, msg_id), lost)
            for stream, last_id in streams
            for msg_id in range(1, last_id + 1)
        )

    def _restore_by_id(
        self, unit: Any, reader: Any, port: str, ref: tuple[str, str, int], lost: list[Any]
    ) -> bool:
        """Hand `unit.restore()` input `ref` (data source, stream, id) read on input `port`;
        False when it is missing or damaged. A message the store holds but cannot give back
        whole (its payload file deleted or cut short since it arrived) is added to `lost` as
        (the message without payload, why): the unit's state leaves it out, which is said."""
        self._check_stop()
        source, stream, msg_id = ref
        try:
            tmsg = reader.get_by_id(stream, msg_id)
        except (EndOfStream, StreamFinished):
            return False
        except (MissingId, CorruptPayload) as exc:
            held = self._held(reader, stream, msg_id)
            if held is not None:
                lost.append((Message.received(port, source, held, keep_payload=False), str(exc)))
            return False  # else an id that never arrived (a hole), or one pruned whole
        # with its producer, as `process` gets it: a sink keys and records messages by it
        message = Message.received(port, source, tmsg, producer=self._producer_of(tmsg.metadata))
        self._restore_one(unit.restore, message, f"{source}/{stream}/{msg_id}")
        self._progress.done += 1
        return True

    @staticmethod
    def _held(reader: Any, stream: str, msg_id: int) -> Any:
        """Message `msg_id` without its payload when the store still records it, whatever
        became of its payload; else None."""
        try:
            return reader.get_metadata_by_id(stream, msg_id)
        except TransportError:
            return None

    def _report_unrestorable(self, lost: list[tuple[Message, str]]) -> None:
        """Say that the unit's state leaves out inputs it can no longer read: one warning in its
        log, and one record per input on the error stream (once, also over restarts), counted
        in `errors`, so that `status`, `runs` and `tail FILE errors` show it. A merge that
        silently lost half its scans would report a noise its data do not have."""
        errors = self._index(None, self.instance)
        for message, why in lost:
            where = f"{message.data_source}/{message.stream}/{message.id}"
            key = f"{self.label}|error|{where}"
            if errors.contains(key, message.timestamp):
                continue  # reported at its arrival, or by an earlier start
            reason = UnrestorableInput(
                f"input {where} cannot be read to restore the state of {self.label} ({why}); "
                "its results from now on leave that input out"
            )
            record = error_record(
                reason, unit=self.label, message=message, attempts=0, hook="restore"
            )
            self._send_error(record, key=key, msg=message)
            self.counters.errors += 1
        shown = ", ".join(f"{m.data_source}/{m.stream}/{m.id}" for m, _ in lost[:5])
        more = f" and {len(lost) - 5} more" if len(lost) > 5 else ""
        log.warning(
            "%s: %d input(s) it processed before cannot be read any more (%s%s: damaged or "
            "removed from the store); its state and its results from now on leave them out; "
            "see `pipeline tail FILE errors`",
            self.label,
            len(lost),
            shown,
            more,
        )

    # -- sources -------------------------------------------------------------------------------
    def _run_source(self) -> str:
        # key -> checksum of the payload sent under it (None: the transport keeps none)
        sent: dict[str, str | None] = {}
        for port in self.producers:
            sent.update(source_keys(self._reader(port), self.label))

        def send(out: Output) -> None:
            producer = self.producers[out.port]
            if out.finish:
                producer.finish_stream(out.stream, next_stream=out.next_stream)
                self.finished_outputs.add((out.port, out.stream))
                return
            if out.key is not None and out.key in sent:
                self.counters.duplicates_skipped += 1
                self._say_if_changed(out, sent[out.key])
                return
            producer.send(out.stream, out.payload, out.metadata)
            self.written_outputs.add((out.port, out.stream))
            if out.key is not None:
                # hashed for keyed outputs alone (xxh3, in place): a key sent again in this
                # session with other content is said as one sent by an earlier session is
                sent[out.key] = None if out.payload is None else payload_checksum(out.payload)
            self.counters.outputs += 1
            self.counters.processed += 1
            self.counters.last_message_time = time.time()

        # what this source already reported in this run (a restarted worker), read on the
        # first report; a new run reports its bad inputs again
        reported = KeyIndex(self.errors_reader, self.instance, run=self._run_id)

        def report(record: dict[str, Any], key: str) -> None:
            if reported.contains(key, None):
                # a resumed or restarted source reading its items again: the record is on the
                # error stream once, and counted by the session that sent it
                self.counters.duplicates_skipped += 1
                return
            self._send_error(record, key=key)
            reported.keys.add(key)
            self.counters.errors += 1

        def skipped(count: int) -> None:
            # known as sent and unchanged, not read again (`Source.already_sent`)
            self.counters.duplicates_skipped += count

        try:
            self.runner.run_source(send, report, skipped)
        except SourceUsageError:
            raise  # its record is sent and counted; exit 78, no restart to report it again
        except Exception as exc:
            from asapo_pipelines.plugin_manager import describe_exception
            from asapo_pipelines.sdk.runner import error_record

            record = error_record(exc, unit=self.label, message=None, attempts=1, hook="run")
            self._send_error(record, key=f"{self.label}|error|run|{time.time()}")
            raise UnitFailed(
                f"source {self.instance} ({self.descriptor.name}) failed: "
                f"{describe_exception(exc)}; the traceback is on the error stream"
            ) from exc
        if self.stopping:
            return "stopped"
        for port, stream in self.runner.source_streams.items():
            if (port, stream) not in self.finished_outputs:
                self.producers[port].finish_stream(stream)
                self.finished_outputs.add((port, stream))
        if self.until_stopped:
            # a service's source that has sent everything still must not exit (see the
            # module's docstring): it waits, with its streams finished, until it is stopped
            while not self.runner.context.stop_event.wait(1.0):
                pass
            return "stopped"
        return "finished"

    def _say_if_changed(self, out: Output, before: str | None) -> None:
        """A key sent before is not sent again (exactly once per key), but when what the source
        sends under it now is other bytes (a file rewritten with new frames, keyed by its name)
        the new content is lost: a warning naming the key, and a count the run's end lines
        show (`changed_lines`). Said only where the transport kept the earlier checksum."""
        if before is None or out.payload is None or payload_checksum(out.payload) == before:
            return
        self.counters.changed_not_sent += 1
        if self.counters.changed_not_sent > CHANGED_WARNINGS:
            return  # the count says the rest
        assert out.key is not None
        log.warning(
            "%s: key %r was sent before with other content; the new content is not sent, as "
            "each key is sent once: give such outputs a key that names the content's version "
            "(see docs/unit-authors.md, Source)%s",
            self.instance,
            user_key(out.key),
            "; further such keys are only counted"
            if self.counters.changed_not_sent == CHANGED_WARNINGS
            else "",
        )

    # -- consumers (processors, sinks, agents) -------------------------------------------------
    def _refresh(self) -> None:
        backlog: int | None = 0
        for port in self.ports:
            infos = port.consumer.streams()
            for info in infos:
                state = port.add(info.name)
                if not state.ended and self._drained(info):
                    self._end_stream(port, state, info.next_stream)
                backlog = _add_backlog(backlog, info, self.group)
            names = {info.name for info in infos}
            placeholder = port.streams.get(FIRST_STREAM)
            if (
                placeholder is not None
                and FIRST_STREAM not in names
                and names
                and not placeholder.started
            ):
                # the upstream named its first scan otherwise: stop waiting for `default`
                del port.streams[FIRST_STREAM]
            if not port.streams:
                port.add(FIRST_STREAM)
        self.counters.backlog = backlog

    def _drained(self, info: Any) -> bool:
        """Whether stream information alone shows a stream finished, complete and acknowledged
        by this group (backends that count per group); otherwise `get_next` tells."""
        if not info.finished or info.message_count is None:
            return False
        if info.message_count < info.last_id:
            return False  # holes: late messages are still to come
        if self.group in info.group_lag:
            return bool(info.group_lag[self.group] == 0)
        return bool(info.message_count == 0)

    def _run_consumer(self) -> str:
        self._extendable = all(hasattr(p.consumer, "extend_lease") for p in self.ports)
        self._own_flush = getattr(type(self.runner.unit), "flush", None) is not Unit.flush
        # looked at often enough to renew a lease well before it runs out
        self._watch = CallWatch(self._look_after, max(0.01, min(0.5, self.lease_seconds / 20)))
        self._watch.start()
        try:
            return self._consume()
        finally:
            self._watch.stop()
            self._watch = None

    def _consume(self) -> str:
        last_refresh = 0.0
        done_since: float | None = None
        while not self.stopping:
            now = time.monotonic()
            revisit = now - last_refresh >= self.refresh
            if revisit:
                self._refresh()
                last_refresh = now
            progressed = False
            for port in self.ports:
                for state in list(port.streams.values()):
                    # ended streams are looked at now and then: late messages may still come
                    if state.ended and not revisit:
                        continue
                    progressed |= self._drain(port, state)
                    if self.stopping:
                        break
                if self.stopping:
                    break
            if self.stopping:
                break
            self._finish_ready_outputs()
            if self._inputs_done(now):
                if done_since is None:
                    done_since = now
                    last_refresh = 0.0  # look once more right away
                elif now - done_since >= self.linger:
                    break
            else:
                done_since = None
            if not progressed:
                due = last_refresh + self.refresh  # ended streams and new ones looked at then
                if done_since is not None:
                    due = min(due, done_since + self.linger)
                self._idle(due)
        self._commit()
        if self.stopping:
            return "stopped"
        self._finish_ready_outputs(final=True)
        return "finished"

    def _inputs_done(self, now: float) -> bool:
        """Whether this worker's work is over: every input done and every upstream unit ended;
        never for a service's worker, which waits for new streams and late messages until it
        is stopped."""
        if self.until_stopped:
            return False
        return all(p.done for p in self.ports) and self._upstream_ended(now)

    def _upstream_ended(self, now: float) -> bool:
        """Whether every unit writing this one's inputs has ended in this session.

        Only a resumed session asks (``run_info["resumed_at"]``): its inputs' streams were
        finished by the session before, so they look complete and drained before a resumed
        upstream has sent what is new (a file added since); a consumer that trusted them would
        end after its linger and leave the new messages for the next resume. Looked at once per
        `refresh`, from the final status records the upstream workers publish on the transport.
        """
        since = self.run_info.get("resumed_at")
        if since is None or not self.upstream:
            return True
        checked, ended = self._upstream_seen
        if ended or now - checked < self.refresh:
            return ended
        ended = all(
            self._ended_since(status_stream(instance, replica), float(since))
            for instance, replicas in self.upstream.items()
            for replica in range(replicas)
        )
        self._upstream_seen = (now, ended)
        return ended

    def _ended_since(self, stream: str, since: float) -> bool:
        if self._upstream_reader is None:
            self._upstream_reader = self.transport.consumer(
                status_source(self.pipeline), f"{self.group}-upstream"
            )
        try:
            record = self._upstream_reader.get_last(stream).metadata
        except (EndOfStream, NoData, StreamFinished, MissingId):
            return False
        return record.get("state") in ENDED_STATES and float(record.get("time") or 0) >= since

    def _idle(self, due: float) -> None:
        """Nothing to do: wait until `due` (monotonic time: the next refresh, or the end of
        the linger), waking as soon as an input's backend says data arrived (the embedded
        store's inotify) or `stop()` is called. A message waits for no sleep, and an idle
        worker does not spin: it wakes at each refresh, not 1/`poll` times a second. Inputs
        whose backend cannot wake it (no `wake_fd`) are polled every `poll` seconds.

        Only inputs with a stream still open are waited on. The others are looked at at the
        next refresh anyway (late messages, new streams), so their data need not wake the
        worker; and their wake fd, which only `get_next` clears, would stay readable after
        any commit to their data source (another group's acknowledgements) and keep the
        worker spinning until then."""
        fds = [
            getattr(p.consumer, "wake_fd", lambda: None)()
            for p in self.ports
            if any(not state.ended for state in p.streams.values())
        ]
        if None in fds:
            self.runner.context.stop_event.wait(self.poll)
            return
        fds.append(self._stop_fd())
        if self.stopping:  # stopped before the pipe existed: nothing wrote to it
            return
        with contextlib.suppress(InterruptedError, OSError, ValueError):
            select.select(fds, [], [], max(0.0, due - time.monotonic()))

    def _stop_fd(self) -> int:
        """The read end of a pipe `stop()` writes to. A signal alone would not end the idle
        wait: select() resumes waiting after the handler has run (PEP 475)."""
        if self._stop_pipe is None:
            read, write = os.pipe()
            os.set_blocking(write, False)
            self._stop_pipe = (read, write)
        return self._stop_pipe[0]

    def _drain(self, port: InputPort, state: StreamState) -> bool:
        """Take up to BURST messages of one stream; True when anything happened."""
        progressed = False
        stopping = self.runner.context.stop_event.is_set  # `self.stopping`, looked up once
        for _ in range(BURST):
            if stopping():
                break
            try:
                msg = port.consumer.get_next(state.name, timeout=0.0)
            except NoData:
                if progressed and not state.ended:
                    # the last messages may have been ours: acknowledge them and see at once
                    # whether that drained a finished stream, instead of at the next refresh
                    self._commit()
                    info = port.consumer.stream_info(state.name)
                    if self._drained(info):
                        self._end_stream(port, state, info.next_stream)
                break
            except StreamFinished as fin:
                if not state.ended and self._complete(port, state):
                    self._end_stream(port, state, fin.next_stream)
                    progressed = True
                break
            except CorruptPayload as exc:
                if exc.damaged is None:
                    raise
                # a payload file gone or cut short: that message, not the unit, is broken
                self._reject(port, exc.damaged, exc.message)
                progressed = True
                continue
            self._process(port, state, msg)
            progressed = True
        self._commit()
        return progressed

    def _complete(self, port: InputPort, state: StreamState) -> bool:
        """A finished stream with holes below its last id is still waiting for late messages."""
        info = port.consumer.stream_info(state.name)
        if info.message_count is not None and info.message_count < info.last_id:
            if not state.holes_reported:
                log.info(
                    "stream %s of %s is finished but %d of its %d messages have not arrived; "
                    "waiting for them",
                    state.name,
                    port.data_source,
                    info.last_id - info.message_count,
                    info.last_id,
                )
                state.holes_reported = True
            return False
        return True

    def _process(self, port: InputPort, state: StreamState, tmsg: Any) -> None:
        # the path every message takes: attributes read once, clocks read as few times as
        # the bookkeeping allows (a 1 KiB hop spends a few microseconds per message here)
        metadata = tmsg.metadata
        producer = self._producer_of(metadata) if PROVENANCE_KEY in metadata else None
        stream_name, msg_id = tmsg.stream, tmsg.id
        count, written = tmsg.delivery_count, tmsg.timestamp
        # `Message.received`, without its call
        msg = Message(
            port.name,
            port.data_source,
            stream_name,
            msg_id,
            tmsg.payload,
            metadata,
            count,
            written,
            producer,
        )
        c = self.counters
        c.received += 1
        redelivered = count > 1
        holding = (port.name, stream_name, msg_id)
        if redelivered:
            c.redelivered += 1
            self.unacked_counts[holding] = count
        # handed out now: before the unit works on it (see `unacked_handed`)
        c.last_message_time = now = time.time()
        if not state.started:
            state.started = True
            stream = Stream(port.name, port.data_source, state.name)
            self._apply(
                self._in_unit(
                    lambda: self.runner.stream_start(stream), "stream_start", stream, holding
                ),
                None,
                check=True,
                marker=f"start:{port.data_source}/{state.name}",
            )
        # the unit's call, looked after by the watch (`_in_unit`, without its closure); its
        # time is the pace `_tune_prefetch` learns and the batch's commit is timed by
        watch = self._watch
        if watch is None:
            began = time.monotonic()
            outcome = self.runner.handle(msg)
        else:
            self._current = holding
            # `watch.enter()`, without its call
            watch.entered = began = time.monotonic()
            watch.lock.release()
            try:
                outcome = self.runner.handle(msg)
            finally:
                watch.leave()
                self._current = None
        ended = time.monotonic()
        self.batch_seconds += ended - began
        self.batch_messages += 1
        if self.prefetch < 2:
            self._tune_prefetch()  # one at a time so far: learn the pace from this message
        error = outcome.error
        outputs = outcome.outputs
        again = redelivered or getattr(tmsg, "possibly_redelivered", False)
        if error is None and outputs and not again:
            # `_apply` of a first delivery's outputs: nothing to look up
            pending = self.pending_outputs
            for out in outputs:
                where = (out.port, out.stream)
                items = pending.get(where)
                if items is None:
                    items = pending[where] = []
                items.append((out.payload, out.metadata))
            c.outputs += len(outputs)
        else:
            self._apply(outcome, msg, check=again)
            if error is None and not outputs and port.name in self._traced_ports:
                self._trace(msg)
        if error is None:
            # counted as processed at its acknowledgement (`_commit`), not now: a worker
            # killed before that gets it back, and its successor counts it then, once
            self.unacked_done += 1
        else:
            self.unacked_failed.add(holding)
            c.retries = self.runner.retries
        if not self.unacked_count:
            # the batch's first message: when it was handed out (as leases are timed) and its
            # lag, which a batch (`ack_seconds` at most) shows for all its messages
            self.unacked_since = ended
            self.unacked_handed = now
            c.lag_seconds = max(0.0, now - written) if written else 0.0
        ids = self.unacked.get(state.key)
        if ids is None:
            ids = self.unacked[state.key] = []
        ids.append(msg_id)
        self.unacked_count += 1
        # committed now when the next message, at the unit's pace, would keep the batch open
        # past its wait: a slow unit's result is not held back by the message after it
        if (
            self.unacked_count >= self.ack_batch
            or ended - self.unacked_since + self.per_message >= self.ack_seconds
        ):
            self._commit()

    def _in_unit(
        self,
        call: Callable[[], Outcome],
        hook: str,
        stream: Stream,
        holding: tuple[str, str, int] | None = None,
    ) -> Outcome:
        """`call()`, a call of the unit's `hook` for `stream`, looked after by the watch while
        it lasts (see `CallWatch`); `holding` is the message it works on: (input port, stream,
        id)."""
        watch = self._watch
        if watch is None:
            return call()
        self._current = holding
        self._hook = f"{hook} {stream.port}/{stream.name}"
        watch.enter()
        try:
            return call()
        finally:
            watch.leave()
            self._current = None
            self._hook = None

    def busy(self) -> dict[str, Any] | None:
        """What the status records say of a unit call that has lasted `BUSY_AFTER` seconds or
        more (`StatusPublisher.busy`): its seconds and what it works on, so that a unit busy
        for minutes (a fit, a model's inference, a hang) reads as such, not as an idle one
        with `rate 0.0/s`. Read by the status thread from the watch, the start-up's call or
        the source's clock (`_unit_call`): nothing is added to the path every message takes.
        A call no watch looks after is said in the log from here (`_say_long`)."""
        call = self._unit_call()
        if call is None:
            return None
        entered, what, watched = call
        seconds = time.monotonic() - entered
        if seconds < BUSY_AFTER:
            return None
        if not watched:
            self._say_long(entered, what)
        return {"busy_seconds": round(seconds, 1), "busy_with": what}

    def _unit_call(self) -> tuple[float, str, bool] | None:
        """The unit's code the worker is in now: when it was entered (monotonic), what it is
        (`_call_text`), and whether the watch looks after it; None when it is in none.

        - process() or a stream hook: the call, from the watch;
        - at start-up, the import of its runtime, its `on_start`, one call of `restore`,
          `restore_sent` or `on_restored` (`_start_call`);
        - a source's `run()`: its own code since it last called on the runtime (run()'s
          start, an emit, a `wait`, a look at `stopping`; `UnitContext.run_since`). One run()
          call lasts as long as the source does, and a source waiting for new files is idle,
          not stuck: what is measured is the time its code went without emitting, waiting or
          going round its loop (a read that blocks, a device that does not answer, a slow
          file)."""
        watch = self._watch
        entered = None if watch is None else watch.entered
        if entered is not None:
            return entered, self._call_text(), True
        start = self._start_call
        if start is not None:
            return start[0], start[1], False
        since = self.runner.context.run_since
        if since is not None and self.counters.state == "running":
            return since, "run() without emit or wait", False
        return None

    def _say_long(self, entered: float, what: str) -> None:
        """Say once in the log that the unit has been in its call (begun at `entered`) for
        `BUSY_LOG_SECONDS` or more: `pipeline logs` shows a hang after the table is gone."""
        if time.monotonic() - entered < BUSY_LOG_SECONDS or self._long_told == entered:
            return
        self._long_told = entered  # once per call
        log.info(
            "%s: the unit has been busy for over %g s with %s (still in its call; "
            "`pipeline status` shows how long)",
            self.label,
            BUSY_LOG_SECONDS,
            what,
        )

    def _call_text(self) -> str:
        """The call the unit is in: `port/stream#id` of a message, or the hook and stream."""
        hook, current = self._hook, self._current
        if hook is not None:
            return hook
        if current is None:
            return "?"
        port, stream, msg_id = current
        return f"{port}/{stream}#{msg_id}"

    def _look_after(self, entered: float) -> None:
        """What the watch does while a unit call that began at `entered` lasts: commit the open
        batch once its wait is over (its inputs are acknowledged too unless the unit has its
        own `flush`), then keep the leases of what the worker still holds, renewed three times
        per lease."""
        now = time.monotonic()
        self._say_long(entered, self._call_text())
        if self.unacked_count and now - self.unacked_since >= self.ack_seconds:
            if not self._own_flush:
                self._commit(unit_flush=False)
            elif self.pending_outputs:
                self._write_outputs()
                for producer in self.producers.values():
                    producer.flush()
        if not self._extendable:
            self._cannot_extend(now - entered)
        elif self._renewed < entered or now - self._renewed >= self.lease_seconds / 3:
            self._renewed = now
            self._renew_leases()

    def _renew_leases(self) -> None:
        """Extend the leases of the message in the unit and of the open batch's."""
        held = {key: list(ids) for key, ids in self.unacked.items()}
        if self._current is not None:
            port, stream, msg_id = self._current
            held.setdefault((port, stream), []).append(msg_id)
        consumers = {p.name: p.consumer for p in self.ports}
        try:
            for (port, stream), ids in held.items():
                for msg_id in ids:
                    consumers[port].extend_lease(stream, msg_id)
        except TransportError as exc:
            # not fatal: past its lease a message comes back, and its outputs are recognised
            log.warning("%s: cannot extend the leases of its messages: %s", self.label, exc)

    def _cannot_extend(self, took: float) -> None:
        """Say once that a long call outlasts what a transport without `extend_lease` holds."""
        if self._lease_warned or took < self.lease_seconds / 2:
            return
        self._lease_warned = True
        log.warning(
            "%s: a message has been in the unit for %.0f s of its %g s lease, and the %s "
            "transport cannot extend a lease: past it, the message is handed out again and "
            "processed twice (its outputs are not written twice); give the workers a longer "
            "lease (pipeline worker --lease-seconds)",
            self.label,
            took,
            self.lease_seconds,
            self.transport.kind or type(self.transport).__name__,
        )

    def _reject(self, port: InputPort, tmsg: Any, reason: str) -> None:
        """Report a message that cannot be read on the error stream (once, even when it comes
        back after a crash) and acknowledge it with the others: the stream moves on."""
        from asapo_pipelines.sdk.runner import error_record

        msg = Message.received(port.name, port.data_source, tmsg, keep_payload=False)
        log.warning("%s: %s; reported on the error stream", self.label, reason)
        record = error_record(
            CorruptPayload(reason), unit=self.label, message=msg, attempts=0, hook="read"
        )
        self.counters.received += 1
        if msg.delivery_count > 1:
            self.counters.redelivered += 1
            self.unacked_counts[(port.name, msg.stream, msg.id)] = msg.delivery_count
        self.unacked_failed.add((port.name, msg.stream, msg.id))
        self._apply(Outcome(error=record), msg, check=msg.delivery_count > 1)
        if not self.unacked_count:
            self.unacked_since = time.monotonic()
            self.unacked_handed = time.time()
        self.unacked.setdefault((port.name, msg.stream), []).append(msg.id)
        self.unacked_count += 1

    def _producer_of(self, metadata: Mapping[str, Any]) -> dict[str, Any] | None:
        """The unit that produced a message, as the producing pipeline's run record has it:
        its configuration (by the fingerprint in the message's provenance) and the session it
        ran in (by the provenance's `session`): the pipeline file and hash, the overrides and
        the run's start. Resolved once per pipeline, run, session and fingerprint; the host
        and job that computed it are the provenance's own."""
        prov = metadata.get(PROVENANCE_KEY)
        if not isinstance(prov, dict) or not prov.get("fingerprint"):
            return None
        pipeline = str(prov.get("unit") or "").partition("/")[0] or self.pipeline
        key = (pipeline, prov.get("run"), prov.get("session"), str(prov["fingerprint"]))
        found = self._producers.get(key)
        if found is None:
            found = self._producers[key] = self._resolve_producer(*key)
        producer = dict(found)  # the unit's own copy
        # where it was computed: the message's own (the replicas of one configuration run
        # on several hosts and jobs), as `placement` made it
        for name in PLACEMENT_FIELDS:
            value = prov.get(name)
            if value is not None:
                producer[name] = value
        return producer

    def _resolve_producer(
        self, pipeline: str, run_id: Any, session: Any, fingerprint: str
    ) -> dict[str, Any]:
        producer: dict[str, Any] = {"fingerprint": fingerprint, "run": run_id}
        if pipeline == self.pipeline:
            producer.update(self.configurations.get(fingerprint) or {})
        run = self._run_record(pipeline, str(run_id), session) if run_id else None
        if run is None:
            return producer
        producer.update(run.all_configurations.get(fingerprint) or {})
        found = run.session_began(session) if session is not None else None
        if found is None:
            found = run.last_session_with(fingerprint)
        producer.update(
            pipeline=pipeline,
            run_started=run.started,
            session_started=found.get("began") if found else None,
            pipeline_file=found.get("file") if found else None,
            pipeline_sha256=found.get("file_sha256") if found else None,
            overrides=found.get("overrides") if found else None,
        )
        return producer

    def _run_record(self, pipeline: str, run_id: str, session: Any) -> Any:
        """Run `run_id` of `pipeline` from its record in this transport; read again when it
        does not know `session` yet (a session begun after it was read). None when the store
        has no such record (a worker started outside any run, a pruned run)."""
        from asapo_pipelines.runs.store import RunStore

        run = self._run_records.get((pipeline, run_id))
        if run is not None and (session is None or run.session_began(session) is not None):
            return run
        try:
            run = RunStore(self.transport, pipeline).get(run_id)
        except PipelinesError as exc:
            log.debug("%s: no record of run %s of %s: %s", self.label, run_id, pipeline, exc)
            return None
        self._run_records[(pipeline, run_id)] = run
        return run

    def _commit(self, *, unit_flush: bool = True) -> None:
        """Make every output durable, then acknowledge the inputs that produced them (without
        calling the unit's `flush` only for the watch, and only when the unit has none)."""
        self._tune_prefetch()
        if not self.unacked_count:
            return
        self._release_lost()
        # durable before acknowledged: the batch's outputs written, the unit's own writes, then
        # the transport's
        self._write_outputs(check_leases=False)
        if unit_flush:
            self.runner.flush()
        self._flush_producers()
        consumers = {p.name: p for p in self.ports}
        for (port, stream), ids in self.unacked.items():
            if ids:
                self._acknowledge(consumers[port], stream, ids)
        # after the acknowledgements: a message is counted by the one worker that acknowledged
        # it, not again by a successor it comes back to (see `Counters.processed`)
        c = self.counters
        c.processed += self.unacked_done
        c.retries = self.runner.retries
        self.unacked.clear()
        self.unacked_count = 0
        self.unacked_done = 0
        self.unacked_failed.clear()
        self.unacked_counts.clear()
        if self.status is not None:
            self._running_summary()
            now = time.monotonic()
            self.status.committed(now - self._committed_at)
            self._committed_at = now

    def _lost_leases(self) -> dict[tuple[str, str], set[int]]:
        """The open batch's messages this worker holds no more, by (input port, stream): their
        leases ran out while it was paused (a stalled host, a call that kept the watch from
        renewing them) and the group handed them to another worker, or one acknowledged them.
        Asked only when a lease can have run out: a message is handed out with at least
        `LEASE_MARGIN` of its lease left, so a batch whose first message was handed out less
        than that ago holds them all."""
        if time.time() - self.unacked_handed < LEASE_MARGIN * self.lease_seconds:
            return {}
        consumers = {p.name: p.consumer for p in self.ports}
        lost: dict[tuple[str, str], set[int]] = {}
        for (port, stream), ids in self.unacked.items():
            counts = self.unacked_counts
            held = {i: counts.get((port, stream, i), 1) for i in ids}
            try:
                gone = consumers[port].lost_leases(stream, held)
            except TransportError as exc:
                log.warning("%s: cannot tell whether it still holds its batch: %s", self.label, exc)
                gone = None
            if gone:
                lost[(port, stream)] = gone
        return lost

    def _release_lost(self) -> None:
        """Leave the open batch's messages this worker holds no more (`_lost_leases`) to the
        worker that has them now: not acknowledged, not counted, their outputs not written here
        (that worker writes them, once)."""
        lost = self._lost_leases()
        if lost:
            self._give_up(lost)

    def _give_up(self, lost: dict[tuple[str, str], set[int]]) -> None:
        sources = {p.name: p.data_source for p in self.ports}
        refs = {(sources[port], stream, i) for (port, stream), ids in lost.items() for i in ids}
        for key, gone in lost.items():
            self.unacked[key] = [i for i in self.unacked[key] if i not in gone]
            self.unacked_done -= sum((*key, i) not in self.unacked_failed for i in gone)
        dropped = 0
        for key, items in list(self.pending_outputs.items()):
            kept = [item for item in items if not _made_from(item[1], refs)]
            dropped += len(items) - len(kept)
            if kept:
                self.pending_outputs[key] = kept
            else:
                del self.pending_outputs[key]
        self.counters.outputs -= dropped
        self.pending_traces = [t for t in self.pending_traces if not _made_from(t[1], refs)]
        log.warning(
            "%s: %d message(s) of its batch went to another worker of the group while this one "
            "held them past their %g s lease (was it paused?); %d of their outputs are left to "
            "that worker, which writes them once",
            self.label,
            len(refs),
            self.lease_seconds,
            dropped,
        )

    def _acknowledge(self, port: InputPort, stream: str, ids: list[int]) -> None:
        port.consumer.acknowledge_many(stream, ids)

    def _write_outputs(self, *, check_leases: bool = True) -> None:
        """Write the open batch's outputs, one `send_many` per output stream (in the order the
        unit produced them); before any stream is finished and before outputs are looked up.
        Not those of messages this worker holds no more (`_release_lost`)."""
        if not self.pending_outputs and not self.pending_traces:
            return
        if check_leases:
            self._release_lost()
        pending, self.pending_outputs = self.pending_outputs, {}
        for (port, stream), items in pending.items():
            self.producers[port].send_many(stream, items)
            self.written_outputs.add((port, stream))
        traces, self.pending_traces = self.pending_traces, []
        if traces:
            self._traces.send_many(self.instance, traces)

    def _flush_producers(self) -> None:
        """Make what the producers wrote durable: outputs, records of inputs that made none
        (`_trace`), error records."""
        for producer in self.producers.values():
            producer.flush()
        for producer in (self._traces, self._errors):
            if producer is not None:
                producer.flush()

    def _apply(
        self, outcome: Outcome, msg: Message | None, *, check: bool, marker: str = ""
    ) -> None:
        """Send an outcome's outputs (skipping those already written) or its error record."""
        if outcome.error is not None:
            where = f"{msg.data_source}/{msg.stream}/{msg.id}" if msg is not None else marker
            key = f"{self.label}|error|{where}"
            errors = self._index(None, self.instance)
            if check and errors.contains(key, msg.timestamp if msg else None):
                self.counters.duplicates_skipped += 1
            else:
                self._send_error(outcome.error, key=key, msg=msg)
            self.counters.errors += 1
            return
        if not outcome.outputs:
            return
        if check:
            self._write_outputs()  # what this batch produced so far is looked up too
        for out in outcome.outputs:
            if check and out.key is not None:
                index = self._index(out.port, out.stream)
                if index.contains(out.key, msg.timestamp if msg else None):
                    self.counters.duplicates_skipped += 1
                    continue
            self.pending_outputs.setdefault((out.port, out.stream), []).append(
                (out.payload, out.metadata)
            )
            self.counters.outputs += 1

    def _index(self, port: str | None, stream: str) -> KeyIndex:
        """The key index of an output stream (port None: the error stream, which every run of
        the pipeline writes: only this run's records count)."""
        index = self.key_indexes.get((port, stream))
        if index is None:
            if port is None:
                index = KeyIndex(self.errors_reader, stream, run=self._run_id)
            else:
                index = KeyIndex(self._reader(port), stream)
            self.key_indexes[(port, stream)] = index
        return index

    @property
    def _run_id(self) -> str | None:
        """The run this worker works in (None: a worker started outside any run)."""
        run = self.run_info.get("run")
        return str(run) if run else None

    def _send_error(self, record: dict[str, Any], *, key: str, msg: Message | None = None) -> None:
        payload, meta = formats.encode(record, "json")
        meta.update(
            {
                "unit": record["unit"],
                "exception": record["exception"],
                "error": record["error"][:500],
                "message": record["message"],
                PROVENANCE_KEY: {
                    "unit": self.label,
                    "port": "errors",
                    "inputs": [msg.ref()] if msg is not None else [],
                    "seq": 0,
                    "key": key,
                    **self.runner.provenance,  # the run and fingerprint, as on outputs
                },
            }
        )
        self.errors.send(self.instance, payload, meta)
        self.errors.flush()

    def _end_stream(self, port: InputPort, state: StreamState, next_stream: str | None) -> None:
        state.ended = True
        state.next_stream = next_stream
        if next_stream:
            port.add(next_stream)
        stream = Stream(port.name, port.data_source, state.name, next_stream)
        if not state.started:
            state.started = True
            self._apply(
                self._in_unit(lambda: self.runner.stream_start(stream), "stream_start", stream),
                None,
                check=True,
                marker=f"start:{port.data_source}/{state.name}",
            )
        self._apply(
            self._in_unit(lambda: self.runner.stream_end(stream), "stream_end", stream),
            None,
            check=True,
            marker=f"end:{port.data_source}/{state.name}",
        )
        self._write_outputs()
        self.runner.flush()
        for producer in self.producers.values():
            producer.flush()
        self.pending_finish.setdefault(state.name, next_stream)

    def _finish_ready_outputs(self, *, final: bool = False) -> None:
        """Finish output stream S once S has ended on every input that is not done."""
        self._write_outputs()  # a stream is finished after its last message, never before
        for name, next_stream in list(self.pending_finish.items()):
            ready = final or all(
                p.done or (name in p.streams and p.streams[name].ended) for p in self.ports
            )
            if not ready:
                continue
            for port, producer in self.producers.items():
                if (port, name) not in self.finished_outputs:
                    producer.finish_stream(name, next_stream=next_stream)
                    self.finished_outputs.add((port, name))
            del self.pending_finish[name]
        if final:
            for port, name in sorted(self.written_outputs - self.finished_outputs):
                self.producers[port].finish_stream(name)
                self.finished_outputs.add((port, name))
