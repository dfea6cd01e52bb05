"""The base classes a unit author subclasses; the author never touches the transport.

A runtime class is instantiated without arguments by the worker (or the test harness), which
then attaches a `UnitContext` and calls the hooks in this order::

    on_start()                          once, after `self.params` is set; load models here
    restore_sent(message), restore(message)
                                        with `restores_state`: rebuild the state from what an
                                        earlier run sent and the inputs it processed
    on_restored()                       with `restores_state`: once `restore` rebuilt the state
    on_stream_start(stream)             before the first message of each input stream (scan)
    process(message)                    once per input message (processors, sinks, agents)
    run()                               sources only: produce messages until done or stopping
    on_stream_end(stream)               after an input stream is finished and drained
    flush()                             before inputs are acknowledged (sinks: make writes durable)
    on_shutdown()                       once, at the end, also after SIGTERM

Outputs go through `self.emit(port, value, metadata=...)`, or a processor returns its single
output. Ports and their formats come from the unit's descriptor, declared once in the plugin's
light registration module.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from asapo_pipelines.descriptor import NoParams, Port, UnitDescriptor
from asapo_pipelines.errors import PipelinesError

if TYPE_CHECKING:
    from asapo_pipelines.sdk.suggestions import Suggestion

#: Message metadata key holding provenance; reserved for the runtime.
PROVENANCE_KEY = "provenance"
#: how the provenance key of an output a unit emitted with `key=` ends: `<unit>|<port>|key:<key>`
_KEYED = "key:"


def keyed_output(unit_label: str, port: str, key: str) -> str:
    """The provenance key of an output emitted with `key`, which deduplication goes by."""
    return f"{unit_label}|{port}|{_KEYED}{key}"


class UnitUsageError(PipelinesError):
    """A unit used the SDK wrongly (unknown port, reserved metadata key)."""


class BadMessage(PipelinesError):
    """The message is at fault, not the moment: a scan that cannot be read or makes no sense.
    Raised in `process` (or a subclass of it), it sends the message to the error stream at once,
    without the retries of the unit's `retry`: a retry would fail the same way, after the
    retry delays, on every such message. Say what is wrong with the message in one sentence."""


class UnitStorageError(PipelinesError):
    """The unit's own storage failed (a full disk, a read-only mount): an error of the unit,
    not of the message it was handling. The worker stops at once without acknowledging that
    message (nor any other not yet durable), instead of sending it to the error stream; a
    restarted worker gets it again. Raise it with a sentence naming the path and the remedy.
    An OSError saying "no space left" or "read-only file system" is taken as one."""


@dataclass(frozen=True)
class Stream:
    """An input stream (one scan) as the stream hooks see it."""

    port: str
    data_source: str
    name: str
    next_stream: str | None = None


@dataclass
class Message:
    """One input message as `process()` receives it."""

    port: str
    data_source: str
    stream: str
    id: int
    payload: bytes | memoryview | None
    metadata: dict[str, Any]
    delivery_count: int = 1
    timestamp: float = 0.0
    #: the configuration of the unit that produced this message, as its run recorded it (unit,
    #: instance, distribution, version, params, fingerprint, run, pipeline file), when known
    producer: dict[str, Any] | None = None
    _value: Any = field(default=None, repr=False)
    _decoded: bool = field(default=False, repr=False)

    @property
    def value(self) -> Any:
        """The payload decoded with the format its metadata records (cached)."""
        if not self._decoded:
            from asapo_pipelines.transport.formats import decode

            self._value = decode(self.payload, self.metadata)
            self._decoded = True
        return self._value

    @property
    def provenance(self) -> dict[str, Any] | None:
        """Where this message came from, when a pipeline unit produced it."""
        prov = self.metadata.get(PROVENANCE_KEY)
        return prov if isinstance(prov, dict) else None

    @property
    def key(self) -> str | None:
        """The key its producer emitted it with (`emit(..., key=...)`), when it gave one."""
        prov = self.provenance
        full = prov.get("key") if prov is not None else None
        if not isinstance(full, str):
            return None
        parts = full.split("|", 2)  # unit labels and port names hold no "|"; keys may
        if len(parts) == 3 and parts[2].startswith(_KEYED):
            return parts[2][len(_KEYED) :]
        return None

    @property
    def user_metadata(self) -> dict[str, Any]:
        """The metadata without the runtime's provenance."""
        return {k: v for k, v in self.metadata.items() if k != PROVENANCE_KEY}

    def ref(self) -> dict[str, Any]:
        """The message's address: data source, stream and id."""
        return {"data_source": self.data_source, "stream": self.stream, "id": self.id}

    @classmethod
    def received(
        cls,
        port: str,
        data_source: str,
        taken: Any,
        *,
        keep_payload: bool = True,
        producer: dict[str, Any] | None = None,
    ) -> Message:
        """The unit's view of a message the runtime took from the transport on input `port`,
        reading `data_source` as the pipeline names it (the transport's own message carries
        bytes and metadata only, no port)."""
        # positional, in the fields' order: built for every message, and keywords cost twice
        return cls(
            port,
            data_source,
            taken.stream,
            taken.id,
            taken.payload if keep_payload else None,
            taken.metadata,
            taken.delivery_count,
            taken.timestamp,
            producer,
        )


@dataclass(frozen=True)
class ReplayedRun:
    """The earlier run a `pipeline reprocess` replays (`UnitContext.replays`): its id (`r1`)
    and its start (Unix time), recorded by the reprocess when it began, so it survives a prune
    of that run (None only for a reprocess recorded before runs kept it, once that run's record
    is gone). Run ids start again at r1 when a store is deleted: the id and the start together
    name one run, as in results' provenance (`Message.producer`'s `run` and `run_started`)."""

    run: str
    started: float | None = None


@dataclass(slots=True)
class Emitted:
    """One output as a unit emitted it, before the runtime sends it."""

    port: str
    value: Any
    metadata: dict[str, Any]
    key: str | None = None
    stream: str | None = None
    raw: bool = False
    #: a source's request to finish the port's current stream and continue in `stream`
    next_stream: bool = False


class UnitContext:
    """What the runtime gives a unit: its descriptor, params, names, and where outputs go.

    The worker and the test harness each make one; `sink` receives every emitted output.
    """

    def __init__(
        self,
        descriptor: UnitDescriptor,
        params: BaseModel,
        *,
        pipeline: str = "test",
        instance: str = "unit",
        replica: int = 0,
        sink: Callable[[Emitted], None] | None = None,
        logger: logging.Logger | None = None,
        output_streams: dict[str, str] | None = None,
    ) -> None:
        self.descriptor = descriptor
        self.params = params
        self.pipeline = pipeline
        self.instance = instance
        self.replica = replica
        self.sink = sink
        self.logger = logger or logging.getLogger(f"asapo_pipelines.unit.{instance}")
        #: output port -> stream name in the pipeline (for the unit's information only)
        self.output_streams = dict(output_streams or {})
        self.stop_event = threading.Event()
        #: where a source's `report_error` goes: (exception, key) -> None; set by the runtime
        self.report: Callable[[BaseException, str | None], None] | None = None
        #: where a source's `already_sent` counts go (how many items); set by the runtime
        self.skipped: Callable[[int], None] | None = None
        #: the run this unit works in (id, pipeline file and hash, this unit's fingerprint;
        #: `pipeline_file`: the file the run started from, `session_pipeline_file`: the one
        #: this session runs from, which a sentence naming a command names (the project
        #: folder may have been moved or copied since the start);
        #: `configured_at`: when a resumed session last changed this unit's own settings, None
        #: while they are the run's first; `overrides`: the run's `--set` overrides in force,
        #: `{"normalize.pre_edge.norm1": 150}`), set by the worker; empty outside a pipeline run
        #: (the test harness)
        self.run: dict[str, Any] = {}
        #: the `summary()` this replica had so far in this run, set before `on_start`: when
        #: its worker was restarted within the session (killed, or failed), the summary it
        #: published last; in a new session of the same run (`pipeline run` resuming it), the
        #: one it had at the end of the run's earlier sessions, as the run's record has it
        #: (never another run's: a reprocess starts from nothing). Empty in a run's first
        #: session and outside a run. A unit whose summary counts work done adds its counts
        #: to these, or the summary shows only the last process's share
        self.carried_summary: dict[str, Any] = {}
        #: whether `carried_summary` is a predecessor's within this session (restarted after a
        #: kill or failure): its last record may be short of what it wrote, which a sink can
        #: count from its file. False for the earlier sessions' summary: each ended with its
        #: whole summary, and whatever its file gained since then another writer wrote
        self.carried_after_restart = False
        #: while a source's `run()` runs (`UnitRunner.run_source`): when its own code last
        #: called on the runtime, monotonic time (run()'s start, the return of an emit, `wait`,
        #: `report_error` or `already_sent`, a look at `stopping`); None while it is inside one
        #: of those, and outside `run()`. The worker's status thread reads it (`Worker.busy`): a
        #: source long in one call of its own (a read that blocks, a device that does not
        #: answer) shows as busy; one waiting for new files in `wait()`, or in a loop that looks
        #: at `stopping` at every turn, does not
        self.run_since: float | None = None
        #: whether `run_since` is kept now (a source's `run()` is running)
        self.timing_run = False

    @property
    def replays(self) -> ReplayedRun | None:
        """In a `pipeline reprocess`, the earlier run whose source messages it replays into
        this run's streams; None in any other run and outside a run. Read from `run`, which the
        worker sets: a unit that cites its inputs' sources (a sink naming the raw entries a
        result comes from) cites this run's, not every earlier run that holds the same scans.
        """
        found = self.run.get("replays")
        if not isinstance(found, dict) or not found.get("run"):
            return None
        started = found.get("started")
        return ReplayedRun(
            str(found["run"]), float(started) if isinstance(started, int | float) else None
        )


class Unit:
    """Base of every runtime class. Subclass one of Source, Sink, Processor or Agent."""

    #: The descriptor kinds this base class serves (checked when the worker starts).
    roles: ClassVar[tuple[str, ...]] = ()

    _context: UnitContext

    # -- wiring (runtime) ----------------------------------------------------------------------
    def attach(self, context: UnitContext) -> None:
        """Called by the runtime before `on_start`."""
        self._context = context

    @property
    def context(self) -> UnitContext:
        return self._context

    @property
    def params(self) -> Any:
        """The unit's params model instance, validated from the pipeline file."""
        return self._context.params

    @property
    def descriptor(self) -> UnitDescriptor:
        return self._context.descriptor

    @property
    def log(self) -> logging.Logger:
        return self._context.logger

    @property
    def stopping(self) -> bool:
        """True once the worker was asked to stop (SIGTERM, SIGINT): sources should return."""
        context = self._context
        if context.timing_run:
            # a source that looks here goes round its loop (a watch polling for new files),
            # it is not stuck in one call (`UnitContext.run_since`)
            context.run_since = time.monotonic()
        return context.stop_event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early when stopping; returns `stopping`. A source
        waiting here (for new files) is idle, not busy (`UnitContext.run_since`)."""
        context = self._context
        if not context.timing_run:
            return context.stop_event.wait(seconds)
        context.run_since = None
        try:
            return context.stop_event.wait(seconds)
        finally:
            context.run_since = time.monotonic()

    # -- hooks ---------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Once at start-up; raise to refuse starting (the worker exits non-zero)."""

    def on_stream_start(self, stream: Stream) -> None:
        """Before the first message of an input stream (a scan)."""

    def on_stream_end(self, stream: Stream) -> None:
        """After an input stream is finished and all its messages are processed."""

    def flush(self) -> None:
        """Make everything written so far durable; called before inputs are acknowledged."""

    def on_shutdown(self) -> None:
        """Once at the end (also after SIGTERM): release resources."""

    #: Set True in a unit that keeps state in memory across messages (a merge, a running sum):
    #: at start-up the worker then calls `restore(message)` for each input an earlier run of
    #: the unit already processed (those its outputs name, then those that made no output,
    #: which the worker records as it acknowledges them). A source has no inputs: its
    #: `restore` gets each message an earlier run of it sent.
    restores_state: ClassVar[bool] = False

    #: With `restores_state`: input ports whose every message received in this run is replayed
    #: to `restore()` after the inputs the unit processed, e.g. feedback that leaves no output (a
    #: queue's status of a suggestion). Messages not yet acknowledged come again through
    #: `process` afterwards, so `restore` and `process` must take them idempotently.
    restore_ports: ClassVar[tuple[str, ...]] = ()

    def restore(self, message: Message) -> None:
        """Rebuild in-memory state from one input processed by an earlier run (oldest first,
        before any new message); emit nothing here, those outputs were sent then. In a source,
        from one message an earlier run sent (`message.port` is the output port)."""

    def restore_sent(self, message: Message) -> None:
        """With `restores_state`, in processors, sinks and agents that define it: each output an
        earlier run of the unit sent (oldest first, `message.port` its output port,
        `message.key` the key it was sent under), before the `restore` calls of the inputs. What
        it sent is state too: a unit that sends a result only when it differs from the last one
        it sent (a merge after a change of settings that leaves it as it was) learns here which
        one that was. Its payload is read from the store only when used (`message.value`)."""

    def on_restored(self) -> None:
        """With `restores_state`, in processors, sinks and agents: once after every `restore`
        call of the start-up (also when there was nothing to restore), before any new message.
        Emit here what the restored state gives under the parameters now in force, when that
        can differ from what the earlier run sent (a run resumed with another threshold):
        without it, that result would wait for the next input, which may never come. Emit with
        `key=` (what the result is): an output whose key was written before is not sent again.
        Outputs go to stream `default` unless `emit(stream=...)` names one."""

    def summary(self) -> dict[str, Any]:
        """What this unit did, for people: a small JSON object (counts, key results, files
        written). The worker publishes it in its final status record, where `pipeline status`
        and `pipeline run` show it; called after `on_shutdown`, and (processors, sinks and
        agents) also after `on_start` and after each `flush`, so that a worker restarted within
        its session, or started in a later session of the run, gets it back in
        `context.carried_summary`. A source's is also taken while its `run` goes on, from the
        worker's status thread, every record (about every 2 s): read your state there, never
        change it. Keep it cheap. Nothing by default."""
        return {}

    # -- outputs -------------------------------------------------------------------------------
    def output_port(self, port: str | None = None) -> Port:
        """The descriptor's output port `port`, or the only one when `port` is None."""
        # looked up once per port name: a pass-through unit emits for every message
        cache = self.__dict__.get("_output_ports")
        if cache is None:
            cache = self.__dict__["_output_ports"] = {}
        found = cache.get(port)
        if found is None:
            found = cache[port] = self._find_output_port(port)
        return found

    def _find_output_port(self, port: str | None) -> Port:
        outputs = self.descriptor.outputs
        if port is None:
            if len(outputs) != 1:
                raise UnitUsageError(
                    f"unit {self.descriptor.name} has {len(outputs)} output ports; "
                    "name the port to emit to"
                )
            return outputs[0]
        found = self.descriptor.output(port)
        if found is None:
            names = ", ".join(p.name for p in outputs) or "none"
            raise UnitUsageError(
                f"unit {self.descriptor.name} has no output port {port!r} (ports: {names})"
            )
        return found

    def emit(
        self,
        port: str | None,
        value: Any,
        *,
        metadata: dict[str, Any] | None = None,
        key: str | None = None,
        stream: str | None = None,
    ) -> None:
        """Send `value` on output `port` (encoded with the port's format).

        `metadata` is added to the message's JSON metadata. `key` names the output for
        deduplication when a source is restarted (e.g. the file name). `stream` chooses the
        output stream; by default it is the stream of the input being processed.
        """
        self._emit(Emitted(self.output_port(port).name, value, dict(metadata or {}), key, stream))

    def emit_raw(
        self,
        port: str | None,
        payload: bytes | memoryview | None,
        metadata: dict[str, Any],
        *,
        key: str | None = None,
        stream: str | None = None,
    ) -> None:
        """Send an already encoded payload with its metadata unchanged (pass-through units)."""
        meta = dict(metadata)
        meta.pop(PROVENANCE_KEY, None)  # the input's; the runtime adds this output's own
        # `_emit` without its check (the key was just removed): a pass-through unit emits
        # for every message
        sink = self._context.sink
        if sink is None:
            raise UnitUsageError("emit() called outside of a running worker")
        ports = self.__dict__.get("_output_ports")  # `output_port`'s, without its call
        found = ports.get(port) if ports is not None else None
        if found is None:
            found = self.output_port(port)
        sink(Emitted(found.name, payload, meta, key, stream, True))

    def _emit(self, item: Emitted) -> None:
        if PROVENANCE_KEY in item.metadata:
            raise UnitUsageError(f"metadata key {PROVENANCE_KEY!r} is reserved for the runtime")
        sink = self._context.sink
        if sink is None:
            raise UnitUsageError("emit() called outside of a running worker")
        sink(item)


class Source(Unit):
    """A connector that brings data in: implement `run()`.

    `run()` emits with `self.emit(...)` (or yields values for the only output port) and
    returns when there is nothing more to send; in watch mode it loops until `self.stopping`.
    The worker finishes the output streams when `run()` returns without being stopped.
    """

    roles = ("source",)

    def run(self) -> Iterable[Any] | None:
        raise NotImplementedError("a Source must implement run()")

    def report_error(self, error: BaseException, *, key: str | None = None) -> None:
        """Send a record of `error` to the pipeline's error stream and go on (e.g. a malformed
        file among good ones). `key` names the item (a file name): a restarted source reports
        the same item once."""
        report = self._context.report
        if report is None:
            raise UnitUsageError("report_error() called outside of a running source")
        report(error, key)

    def already_sent(self, count: int = 1) -> None:
        """Say that `count` items were passed over because an earlier session of this run
        sent them and they are unchanged (a resumed watch over a folder of scans it need not
        open again). They count as duplicates skipped, as an item emitted again under a key
        already sent does, so the run's status and summary show them and a resumed run that
        found only these and new bad items is not taken for one that turned its inputs away."""
        skipped = self._context.skipped
        if skipped is None:
            raise UnitUsageError("already_sent() called outside of a running source")
        if count < 0:
            raise UnitUsageError(f"already_sent() takes a count of 0 or more, not {count}")
        skipped(count)

    def next_stream(self, port: str | None, name: str) -> None:
        """Finish the current output stream of `port` and continue in stream `name` (a scan)."""
        self._emit(
            Emitted(self.output_port(port).name, None, {}, None, name, raw=True, next_stream=True)
        )


class Processor(Unit):
    """Turns input messages into outputs: implement `process(message)`.

    Return the output value when the unit has one output port (None for no output), or call
    `self.emit(port, value)` any number of times. Outputs are sent only after `process`
    returns, so a retried message never sends half of its outputs twice.
    """

    roles = ("processor",)

    def process(self, message: Message) -> Any:
        raise NotImplementedError("a Processor must implement process(message)")


class Sink(Unit):
    """A connector that takes data out: implement `process(message)` and make writes durable
    in `flush()`; the input is acknowledged after `flush()` returns.

    Sinks are delivered a message twice after a crash; recognise it with `message.provenance`
    (or `message.ref()`) to write each message once.
    """

    roles = ("sink",)

    def process(self, message: Message) -> None:
        raise NotImplementedError("a Sink must implement process(message)")


class Agent(Processor):
    """Consumes results and proposes changes to the experiment plan with `self.suggest()`."""

    roles = ("agent",)

    def suggest(self, suggestion: Any, *, port: str | None = None) -> None:
        """Emit a `Suggestion` (or a dict of its fields) on the suggestion port; a value that
        is none raises UnitUsageError (the message goes to the error stream, not retried)."""
        ctx = self.context
        found = as_suggestion(
            suggestion,
            unit=f"{ctx.pipeline}/{ctx.instance} ({self.descriptor.name})",
            port=self.output_port(port).name,
            agent=self.descriptor.name,
        )
        self.emit(port, found.model_dump(mode="json"), metadata={"kind": "suggestion"})


def as_suggestion(value: Any, *, unit: str, port: str, agent: str) -> Suggestion:
    """`value` sent on a suggestion port (a `Suggestion`, or a dict of its fields) as the
    `Suggestion` of `agent` (a unit name) that goes out.

    A value that is none is a mistake in the unit's code, whichever way it was sent
    (`suggest()`, returned, `emit()`): a UnitUsageError, which sends the message to the error
    stream at once (a retry would send the same), naming `unit`, `port` and each field at
    fault with what it may be."""
    from pydantic import ValidationError

    from asapo_pipelines.sdk.suggestions import Suggestion, refusal

    if isinstance(value, Suggestion):
        suggestion = value
    else:
        try:
            suggestion = Suggestion.model_validate(value)
        except ValidationError as exc:
            raise UnitUsageError(
                f"unit {unit} sent on its suggestion port {port!r} a value that is not a "
                f"suggestion: {refusal(exc)} (a suggestion has action, target, reason and "
                "confidence, and may have arguments and plan)"
            ) from None
    if not suggestion.agent:
        suggestion = suggestion.model_copy(update={"agent": agent})
    return suggestion


ROLE_BASES: dict[str, type[Unit]] = {
    "source": Source,
    "sink": Sink,
    "processor": Processor,
    "agent": Agent,
}

__all__ = [
    "PROVENANCE_KEY",
    "Agent",
    "Emitted",
    "Message",
    "NoParams",
    "Processor",
    "Sink",
    "Source",
    "Stream",
    "Unit",
    "UnitContext",
    "UnitUsageError",
]
