"""Running one unit, independent of where messages come from: the worker and the test harness
share it, so what a unit does under test is what it does in a pipeline.

It loads the runtime class, calls the hooks, retries a failing message, turns what the unit
emitted into outputs with provenance and a deterministic key, and turns a final failure into an
error record. It never talks to a transport.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NoReturn

from pydantic import BaseModel

from asapo_pipelines import storage
from asapo_pipelines.descriptor import UnitDescriptor
from asapo_pipelines.errors import ConfigurationError, PipelinesError, reason_of
from asapo_pipelines.sdk.provenance_text import ProvenanceText
from asapo_pipelines.sdk.suggestions import SUGGESTION_CONTENT_TYPE
from asapo_pipelines.sdk.units import (
    PROVENANCE_KEY,
    ROLE_BASES,
    BadMessage,
    Emitted,
    Message,
    Processor,
    Source,
    Stream,
    Unit,
    UnitContext,
    UnitStorageError,
    UnitUsageError,
    as_suggestion,
    keyed_output,
)
from asapo_pipelines.transport.base import (
    EncodedMetadata,
    encode_json_string,
    encode_json_value,
    encode_metadata,
)
from asapo_pipelines.transport.errors import TransportConfigError
from asapo_pipelines.worker.naming import FIRST_STREAM

#: how `_output` makes an `EncodedMetadata` without a Python-level __init__ call: dict's own
_new_dict = dict.__new__
_dict_update = dict.update


class UnitStartError(ConfigurationError):
    """The unit cannot start: bad params, a runtime that does not import, a missing resource."""


class OutputEncodingError(PipelinesError):
    """A value a unit emitted does not fit its port's format (a numpy scalar is fine on a JSON
    port; a set, an object or NaN is not); the message names the unit and the port."""


class SourceUsageError(ConfigurationError):
    """A source's `run()` ended on a misuse of the SDK (an unknown port, a reserved metadata
    key): its code is at fault, and a restart would end the same way; exit 78, not restarted."""


class UnitFlushError(PipelinesError):
    """A unit's `flush()` failed (disk full, lost mount): nothing more can be acknowledged."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing message is tried again, and how long to wait between tries.

    `retries` is what a pipeline file calls `retry: {attempts: N}`: the tries after the first.
    """

    retries: int = 0
    delay: float = 0.0

    @property
    def tries(self) -> int:
        return 1 + self.retries

    @classmethod
    def from_config(cls, config: Any) -> RetryPolicy:
        """From a pipeline file's `retry` section (a model or a dict `{attempts, delay}`)."""
        if config is None:
            return cls()
        if isinstance(config, dict):
            return cls(int(config.get("attempts", 0)), float(config.get("delay", 0.0)))
        return cls(int(config.attempts), float(config.delay))


@dataclass(slots=True)
class Output:
    """One message ready to send: where to, what, and the key that makes it idempotent."""

    port: str
    stream: str
    payload: bytes | memoryview | None
    metadata: dict[str, Any]
    key: str | None
    finish: bool = False  # a source's request to move on: finish `stream`, continue in `next`
    next_stream: str | None = None


@dataclass(slots=True)
class Outcome:
    """What handling one message gave: outputs to send, or the error record after all retries."""

    outputs: list[Output] = field(default_factory=list)
    error: dict[str, Any] | None = None
    attempts: int = 0


#: how `json.dumps` writes a number JSON has not -> the text a summary carries instead
_NON_FINITE = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}


def error_record(
    exc: BaseException, *, unit: str, message: Message | None, attempts: int, hook: str
) -> dict[str, Any]:
    """The JSON document sent to a unit's error stream."""
    return {
        "unit": unit,
        "hook": hook,
        "message": None
        if message is None
        else {**message.ref(), "port": message.port, "metadata": message.user_metadata},
        "provenance": None if message is None else message.provenance,
        "exception": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "error": str(exc),
        "reason": reason_of(exc, hook),
        "traceback": "".join(traceback.format_exception(exc)),
        "attempts": attempts,
        "time": datetime.now(UTC).isoformat(),
    }


def _unencodable(value: Any, path: str = "") -> tuple[str, str] | None:
    """Where in `value` the first thing JSON cannot hold is (`snr`, `a.b[3]`) and what it is
    (`nan`, `a set`), for the `json` format: in a result of twenty fields the error names the
    one at fault. None when nothing is found."""
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unencodable(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for n, item in enumerate(value):
            found = _unencodable(item, f"{path}[{n}]")
            if found:
                return found
        return None
    if value is None or isinstance(value, str | bool | int):
        return None
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return _unencodable(value.tolist(), path)  # as the JSON format writes it
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, repr(value))
    return path, f"a {type(value).__name__}"


def resolve_params(descriptor: UnitDescriptor, params: Any) -> BaseModel:
    """Validate `params` (a dict as written, or a model instance) against the unit's model;
    a default the model itself refuses, for a setting left unset, is refused too: pydantic
    does not validate defaults, and the unit must never run with one."""
    from asapo_pipelines.pipeline.checks import broken_defaults

    resolved = params if isinstance(params, descriptor.params) else _validated(descriptor, params)
    broken = broken_defaults(resolved)
    if broken:
        raise UnitStartError(broken[0].sentence(descriptor.name))
    return resolved


def _validated(descriptor: UnitDescriptor, params: Any) -> BaseModel:
    """Params given as a dict (the test harness's) validated as a pipeline file's are, with
    JSON's types (`validate_as_json`): a test passing `"200"` for a number would otherwise
    pass with params no pipeline file can hold."""
    from pydantic import ValidationError

    from asapo_pipelines.pipeline.checks import validate_as_json

    try:
        return validate_as_json(descriptor.params, dict(params or {}))
    except ValidationError as exc:
        raise UnitStartError(f"unit {descriptor.name} has invalid params: {_first(exc)}") from None


def _first(exc: Any) -> str:
    """A params model's first problem as `pipeline validate` says it (`params.target_snr:
    input should be a valid number (got '200')`)."""
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in ("params", *err["loc"]))
    value = err.get("input")
    got = "" if isinstance(value, dict | list) or "input" not in err else f" (got {value!r})"
    more = len(exc.errors()) - 1
    also = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {err['msg'][:1].lower()}{err['msg'][1:]}{got}{also}"


#: what a unit is busy with while its worker imports its runtime, and while it runs its
#: `on_start` (`UnitRunner.start`): a model loaded there, a device that does not answer
IMPORTING = "importing the unit's runtime"
ON_START = "starting: on_start"


def load_unit_class(descriptor: UnitDescriptor) -> type[Unit]:
    """Import the runtime class and check that it fits the descriptor's role."""
    from asapo_pipelines.plugin_manager import describe_exception

    try:
        cls = descriptor.load_runtime()
    except Exception as exc:
        raise UnitStartError(
            f"cannot import the runtime {descriptor.runtime} of unit {descriptor.name}: "
            f"{describe_exception(exc)}"
        ) from exc
    base = ROLE_BASES[descriptor.role]
    if descriptor.role == "agent":
        base = Processor
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise UnitStartError(
            f"the runtime {descriptor.runtime} of unit {descriptor.name} is not a "
            f"{base.__module__}.{base.__name__} subclass, as a {descriptor.role} must be"
        )
    return cls


class UnitRunner:
    """One unit instance with its hooks, retries and output bookkeeping."""

    def __init__(
        self,
        descriptor: UnitDescriptor,
        params: Any = None,
        *,
        pipeline: str = "test",
        instance: str = "unit",
        replica: int = 0,
        retry: RetryPolicy | None = None,
        logger: logging.Logger | None = None,
        output_streams: dict[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.descriptor = descriptor
        self.params = resolve_params(descriptor, params)
        self.unit_label = f"{pipeline}/{instance}"
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self._buffer: list[Emitted] = []
        self._direct: Callable[[Output], None] | None = None
        self.context = UnitContext(
            descriptor,
            self.params,
            pipeline=pipeline,
            instance=instance,
            replica=replica,
            sink=self._buffer.append,
            logger=logger,
            output_streams=output_streams,
        )
        self.unit: Unit | None = None
        # a source's current output stream per port, and its running sequence per stream
        self.source_streams: dict[str, str] = {p.name: FIRST_STREAM for p in descriptor.outputs}
        self.retries = 0
        self._provenance: dict[str, Any] = {}
        #: puts the JSON text of outputs' metadata together (see `ProvenanceText`)
        self._text = ProvenanceText(self.unit_label, self._provenance)
        #: output ports whose values must be suggestions (what reads them takes them for such),
        #: found once: the other ports' outputs pay one test of an empty set, per output
        self._suggestion_ports = frozenset(
            p.name for p in descriptor.outputs if p.content_type == SUGGESTION_CONTENT_TYPE
        )

    @property
    def provenance(self) -> Mapping[str, Any]:
        """Added to every output's provenance: the run id and this unit's fingerprint.
        Replaced whole, never changed in place (it is read-only): the JSON text of what
        is constant in every output's provenance is made from it once (`ProvenanceText`)."""
        return MappingProxyType(self._provenance)

    @provenance.setter
    def provenance(self, value: Mapping[str, Any]) -> None:
        self._provenance = dict(value)
        self._text = ProvenanceText(self.unit_label, self._provenance)

    # -- life cycle ----------------------------------------------------------------------------
    def start(self, step: Callable[[str | None], None] | None = None) -> Unit:
        """Import the runtime, make the unit and call its `on_start`. `step(what)` is told
        each part as it begins (`IMPORTING`, `ON_START`) and None once they are over: a
        worker's status records say which one a unit hangs in (`Worker.busy`)."""
        said = step or (lambda _what: None)
        said(IMPORTING)
        try:
            cls = load_unit_class(self.descriptor)
            said(ON_START)
            return self._started(cls)
        finally:
            said(None)

    def _started(self, cls: type[Unit]) -> Unit:
        from asapo_pipelines.plugin_manager import describe_exception

        try:
            unit = cls()
            unit.attach(self.context)
            unit.on_start()
        except UnitStorageError:
            # its storage, not its configuration (a file another program holds, a full disk):
            # not an exit 78, so the executor's restarts apply once that is put right
            raise
        except PipelinesError as exc:
            raise UnitStartError(f"unit {self.descriptor.name} failed to start: {exc}") from exc
        except Exception as exc:
            raise UnitStartError(
                f"unit {self.descriptor.name} failed to start: {describe_exception(exc)}"
            ) from exc
        self.unit = unit
        return unit

    def shutdown(self) -> None:
        """`on_shutdown`; a failure there is logged: the work is done and acknowledged."""
        if self.unit is not None:
            try:
                self.unit.on_shutdown()
            except Exception as exc:
                self.context.logger.error("on_shutdown failed: %s", exc, exc_info=exc)

    def flush(self) -> None:
        """The unit's `flush`; when it fails nothing may be acknowledged, so the worker stops."""
        if self.unit is not None:
            try:
                self.unit.flush()
            except Exception as exc:
                from asapo_pipelines.plugin_manager import describe_exception

                raise UnitFlushError(
                    f"unit {self.descriptor.name} could not make its output durable: "
                    f"{describe_exception(exc)}; its unacknowledged inputs will be delivered again"
                ) from exc

    def summary(self, *, running: bool = False) -> dict[str, Any]:
        """The unit's `summary()`; a failing or non-JSON summary is logged, never fatal. One
        taken `running` is a copy (the status thread sends it while the unit goes on), and its
        failure is not logged: the final one says it once.

        A NaN or an infinity (a mean over nothing, a fit that did not converge: numpy gives
        them freely) is written as the text `nan`, `inf` or `-inf`: JSON has no such numbers,
        and the status record that carries the summary, with the unit's counters and errors,
        could not be sent at all."""
        if self.unit is None:
            return {}
        import json

        non_finite = False

        def constant(name: str) -> str:
            nonlocal non_finite
            non_finite = True
            return _NON_FINITE[name]

        try:
            result = dict(self.unit.summary() or {})
            copy = json.loads(json.dumps(result), parse_constant=constant)
        except Exception as exc:
            if not running:
                self.context.logger.warning("summary() of %s failed: %s", self.unit_label, exc)
            return {}
        return dict(copy) if running or non_finite else result

    def stop(self) -> None:
        self.context.stop_event.set()

    # -- messages ------------------------------------------------------------------------------
    def handle(self, message: Message) -> Outcome:
        """Process one message with retries; outputs carry the message as provenance."""
        assert self.unit is not None
        return self._call(
            self.unit.process,  # type: ignore[attr-defined]
            message,
            "process",
            # `message.ref()`, without its call
            [{"data_source": message.data_source, "stream": message.stream, "id": message.id}],
            message.stream,
        )

    def stream_start(self, stream: Stream) -> Outcome:
        assert self.unit is not None
        unit = self.unit
        return self._call(
            lambda _: unit.on_stream_start(stream),
            None,
            "on_stream_start",
            [],
            stream.name,
            f"start:{stream.port}:{stream.name}",
        )

    def restored(self) -> Outcome:
        """`on_restored`, its outputs by default on the first stream (see `Unit.on_restored`)."""
        assert self.unit is not None
        unit = self.unit
        return self._call(
            lambda _: unit.on_restored(),
            None,
            "on_restored",
            [],
            FIRST_STREAM,
            None,  # unkeyed outputs are never taken for an earlier session's
        )

    def stream_end(self, stream: Stream) -> Outcome:
        assert self.unit is not None
        unit = self.unit
        return self._call(
            lambda _: unit.on_stream_end(stream),
            None,
            "on_stream_end",
            [],
            stream.name,
            f"end:{stream.port}:{stream.name}",
        )

    def _call(
        self,
        call: Callable[[Any], Any],
        message: Message | None,
        hook: str,
        inputs: list[dict[str, Any]],
        stream: str,
        marker: str | None = None,
    ) -> Outcome:
        attempts = 0
        buffer = self._buffer
        while True:
            attempts += 1
            buffer.clear()
            try:
                result = call(message)
                if result is not None:
                    if not isinstance(self.unit, Processor):
                        raise UnitUsageError(f"{hook} returned a value; use self.emit()")
                    self.unit.emit(None, result)
                return Outcome(self._outputs(buffer, inputs, stream, marker), None, attempts)
            except UnitStorageError:
                raise  # the unit's disk, not this message: the worker stops, nothing is acked
            except (OutputEncodingError, UnitUsageError, BadMessage) as exc:
                # the unit's code or the message, not the moment: a retry would fail the same
                # way, after the retry delays, on every such message; said in the unit's log,
                # as a retried failure is, so that `pipeline logs` shows why
                self.context.logger.warning("%s refused it: %s", hook, exc)
                record = error_record(
                    exc, unit=self.unit_label, message=message, attempts=attempts, hook=hook
                )
                return Outcome([], record, attempts)
            except Exception as exc:
                if isinstance(exc, OSError) and storage.kind_of(exc) in (
                    storage.FULL,
                    storage.READ_ONLY,
                ):
                    path = getattr(exc, "filename", None) or os.getcwd()
                    raise UnitStorageError(
                        f"unit {self.unit_label} cannot write: "
                        + storage.remedy(storage.kind_of(exc), path)
                    ) from exc
                if attempts < self.retry.tries:
                    self.retries += 1
                    # named as the final failure is (its type and line, `reason_of`): a
                    # unit's `KeyError` alone reads `'value'`
                    self.context.logger.warning(
                        "%s failed (attempt %d of %d): %s",
                        hook,
                        attempts,
                        self.retry.tries,
                        reason_of(exc, hook),
                    )
                    if self.retry.delay:
                        self.sleep(self.retry.delay)
                    continue
                record = error_record(
                    exc, unit=self.unit_label, message=message, attempts=attempts, hook=hook
                )
                # said in the unit's log (and so by `pipeline run`), as a refusal is above:
                # with no retries left the record alone would hold it
                self.context.logger.warning(
                    "%s failed, sent to the error stream: %s", hook, record["reason"]
                )
                return Outcome([], record, attempts)
            finally:
                buffer.clear()

    def _outputs(
        self,
        emitted: list[Emitted],
        inputs: list[dict[str, Any]],
        stream: str,
        marker: str | None,
    ) -> list[Output]:
        if not emitted:
            return []
        outputs = []
        # each port's outputs are numbered; one output (the most common case) is number 0
        seq: dict[str, int] | None = {} if len(emitted) > 1 else None
        text = self._text
        label = self.unit_label
        # what outputs of these inputs are recognised by (also escaped) and the inputs as
        # JSON: made once per call
        refs, refs_escaped, inputs_json = text.refs(inputs)
        for item in emitted:
            port = item.port
            n = 0
            if seq is not None:
                n = seq.get(port, 0)
                seq[port] = n + 1
            head, unit_port = text.ports.get(port) or text.port(port)
            key_json = None  # the key as JSON, when it is made of escaped parts
            if item.key is not None:
                key: str | None = keyed_output(label, port, item.key)
            elif inputs:
                key = f"{label}|{port}|{refs}|{n}"
                if refs_escaped is not None:
                    key_json = f'"{unit_port}|{refs_escaped}|{n}"'
            elif marker is not None:
                key = f"{label}|{port}|{marker}|{n}"
            else:
                key = None
            outputs.append(
                self._output(
                    item, item.stream or stream, inputs, n, key, inputs_json, head, key_json
                )
            )
        return outputs

    def make_output(
        self,
        item: Emitted,
        *,
        stream: str,
        inputs: list[dict[str, Any]],
        seq: int,
        key: str | None,
    ) -> Output:
        """`item` as the message to send: its metadata with this output's provenance, and
        the JSON text the transport stores."""
        inputs_json = self._text.refs(inputs)[2]
        head = self._text.port(item.port)[0]
        return self._output(item, stream, inputs, seq, key, inputs_json, head, None)

    def _output(
        self,
        item: Emitted,
        stream: str,
        inputs: list[dict[str, Any]],
        seq: int,
        key: str | None,
        inputs_json: str,
        head: str,
        key_json: str | None,
    ) -> Output:
        """`make_output`, given `inputs` as JSON, the port's provenance text up to them
        (`ProvenanceText.port`) and the key as JSON when known (None: escaped here)."""
        if self._suggestion_ports and item.port in self._suggestion_ports:
            item = self._suggestion(item)
        if item.raw:
            # emit() and emit_raw() made this copy of the unit's metadata: it is ours to extend
            payload, meta = item.value, item.metadata
        else:
            from asapo_pipelines.transport.formats import encode

            port = self.descriptor.output(item.port)
            assert port is not None
            try:
                payload, fmt_meta = encode(item.value, port.format)
            except TransportConfigError as exc:
                # name the unit and the port: "value cannot be written as JSON" alone leaves
                # the author guessing which of the unit's emits sent what
                # (json_arrays carries NaN in packed arrays: a walk of its own would be needed)
                spot = _unencodable(item.value) if port.format == "json" else None
                at = f" ({spot[0]} is {spot[1]})" if spot and spot[0] else ""
                raise OutputEncodingError(
                    f"unit {self.unit_label} ({self.descriptor.name}) emitted on port "
                    f"{item.port!r} (format {port.format}) a value of type "
                    f"{type(item.value).__name__} that cannot be encoded{at}: {exc}"
                ) from None
            meta = {**item.metadata, **fmt_meta}
        prov = {
            "unit": self.unit_label,
            "port": item.port,
            "inputs": inputs,
            "seq": seq,
            "key": key,
            **self._provenance,
        }
        # checked here, per message, not when the batch is written: a transport refusing the
        # batch would stop the worker on every redelivery instead of reporting this message.
        # The text is kept for the transport, which then does not encode the same dict again.
        tail = self._text.tail
        if tail is None or PROVENANCE_KEY in meta:
            meta[PROVENANCE_KEY] = prov
            try:
                text = encode_json_value(meta)
            except (TypeError, ValueError, RecursionError):
                self._refuse_metadata(meta, item.port)
        else:
            # the text of the whole dict, the provenance's put together (`ProvenanceText`)
            try:
                user = encode_json_value(meta)
            except (TypeError, ValueError, RecursionError):
                self._refuse_metadata(meta, item.port)
            meta[PROVENANCE_KEY] = prov
            if key_json is None:
                key_json = "null" if key is None else encode_json_string(key)
            start = "{" if user == "{}" else user[:-1] + ","
            text = f'{start}{head}{inputs_json},"seq":{seq},"key":{key_json}{tail}'
        # `EncodedMetadata(meta, text)` without its __init__ (a call per output)
        encoded = _new_dict(EncodedMetadata)
        _dict_update(encoded, meta)
        encoded.text = text
        return Output(item.port, stream, payload, encoded, key)

    def _suggestion(self, item: Emitted) -> Emitted:
        """`item`, sent on a suggestion port, checked to be a suggestion however it was sent
        (`suggest()`, returned, `emit()`, passed on raw): a queue bridge or the viewer's inbox
        reading the port takes every value for one. A value that is not one raises
        UnitUsageError (see `as_suggestion`); a passed-on payload is sent as it came."""
        value = item.value
        if item.raw:
            from asapo_pipelines.transport.formats import decode

            try:
                value = decode(item.value, item.metadata)
            except Exception as exc:
                raise UnitUsageError(
                    f"unit {self.unit_label} ({self.descriptor.name}) passed on to its "
                    f"suggestion port {item.port!r} a payload that cannot be read: {exc}"
                ) from None
        found = as_suggestion(
            value,
            unit=f"{self.unit_label} ({self.descriptor.name})",
            port=item.port,
            agent=self.descriptor.name,
        )
        if item.raw:
            return item
        meta = {"kind": "suggestion", **item.metadata}
        return Emitted(item.port, found.model_dump(mode="json"), meta, item.key, item.stream)

    def _refuse_metadata(self, meta: dict[str, Any], port: str) -> NoReturn:
        """Raise OutputEncodingError for metadata JSON cannot hold, in `encode_metadata`'s
        words, naming the unit and `port`."""
        try:
            encode_metadata(
                meta,
                f"the metadata unit {self.unit_label} ({self.descriptor.name}) emitted on port "
                f"{port!r}",
            )
        except TransportConfigError as exc:
            raise OutputEncodingError(str(exc)) from None
        raise OutputEncodingError(f"unit {self.unit_label} emitted metadata JSON cannot hold")

    # -- sources -------------------------------------------------------------------------------
    def run_source(
        self,
        send: Callable[[Output], None],
        report: Callable[[dict[str, Any], str], None] | None = None,
        skipped: Callable[[int], None] | None = None,
    ) -> None:
        """Run a source's `run()`, sending each output as soon as it is emitted; errors the
        source reports go to `report(record, key)` as error records, the counts it passes to
        `already_sent` to `skipped(count)`."""
        assert isinstance(self.unit, Source)
        unit = self.unit
        seqs: dict[tuple[str, str], int] = {}
        context = self.context

        def direct(item: Emitted) -> None:
            # the time sending takes is the runtime's, not the source's (`run_since`)
            context.run_since = None
            try:
                sent(item)
            finally:
                context.run_since = time.monotonic()

        def sent(item: Emitted) -> None:
            if item.next_stream and item.stream:
                # next_stream(): finish the port's current stream and move on
                current = self.source_streams[item.port]
                self.source_streams[item.port] = item.stream
                send(
                    Output(item.port, current, None, {}, None, finish=True, next_stream=item.stream)
                )
                return
            stream = item.stream or self.source_streams[item.port]
            n = seqs.get((item.port, stream), 0)
            seqs[(item.port, stream)] = n + 1
            key = keyed_output(self.unit_label, item.port, item.key) if item.key else None
            try:
                output = self.make_output(item, stream=stream, inputs=[], seq=n, key=key)
            except OutputEncodingError as exc:
                # as with a processor's message: this one value goes to the error stream and
                # `run()` goes on; raised into `run()` it would end the run (few sources catch
                # it) and a restarted worker would meet the same value again, and again
                self.context.logger.warning("not sent: %s", exc)
                which = f"key:{item.key}" if item.key else f"{stream}:{n}"
                reported(exc, item.key, f"emit:{item.port}:{which}")
                return
            send(output)

        def reported(exc: BaseException, item: str | None, what: str | None = None) -> None:
            """A record of `exc` about item `item`; `what` tells it from others of this run."""
            record = error_record(exc, unit=self.unit_label, message=None, attempts=1, hook="run")
            record["key"] = item
            what = what or (f"key:{item}" if item else "run")
            timing, context.run_since = context.timing_run, None
            try:
                if report is not None:
                    report(record, f"{self.unit_label}|error|{what}")
                else:
                    self.context.logger.error("%s", record["error"])
            finally:
                if timing:
                    context.run_since = time.monotonic()

        def passed_over(count: int) -> None:
            context.run_since = None
            try:
                if skipped is not None:
                    skipped(count)
            finally:
                context.run_since = time.monotonic()

        self.context.sink = direct
        self.context.report = reported
        self.context.skipped = passed_over
        # from now on the time run()'s own code takes between two calls to the runtime is
        # kept, for the status records (`UnitContext.run_since`)
        context.run_since, context.timing_run = time.monotonic(), True
        try:
            produced = unit.run()
            if produced is not None:
                for value in produced:
                    unit.emit(None, value)
                    if unit.stopping:
                        break
        except (UnitUsageError, OutputEncodingError) as exc:
            # the SDK refused a call (an unknown port) and `run()` let it out: `run()` is over
            # and its code would end it the same way after a restart; one record, exit 78
            reported(exc, None, "run:sdk")
            raise SourceUsageError(
                f"source {self.unit_label} ({self.descriptor.name}) misused the SDK in run(): "
                f"{exc}; the traceback is on the error stream"
            ) from exc
        finally:
            context.timing_run, context.run_since = False, None
            self.context.sink = self._buffer.append
            self.context.report = None
            self.context.skipped = None
