"""Run a unit in-process on given messages and look at what it did.

The harness drives the same `UnitRunner` the worker uses (hooks, retries, provenance, error
records) with an in-memory stand-in for the transport, so a unit's tests need no store. As in a
pipeline, params are validated with JSON's types and a failing message is retried as a file's
default `retry: {attempts: 3, delay: 1.0}` says (without the waits)::

    def test_scale(run_unit):
        result = run_unit("acme.scale", [1, 2, 3], params={"factor": 10})
        assert result.values("scaled") == [10, 20, 30]
        assert result.errors == []
        assert len(result.acknowledged) == 3
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asapo_pipelines.descriptor import UnitDescriptor
from asapo_pipelines.sdk.runner import Output, RetryPolicy, UnitRunner
from asapo_pipelines.sdk.units import Message, Source, Stream, Unit
from asapo_pipelines.worker.naming import FIRST_STREAM


@dataclass
class Given:
    """A message to feed: a value encoded with the port's format, or a raw payload."""

    value: Any = None
    port: str | None = None
    stream: str = FIRST_STREAM
    id: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    payload: bytes | None = None
    raw: bool = False
    delivery_count: int = 1
    data_source: str | None = None


def message(value: Any = None, **fields: Any) -> Given:
    """A message for `run_unit`: `message(value, port=..., stream=..., id=..., metadata=...)`,
    or `message(payload=b"...", raw=True, metadata=...)` for an already encoded one."""
    return Given(value, **fields)


@dataclass
class OutputRecord:
    port: str
    stream: str
    payload: bytes | memoryview | None
    metadata: dict[str, Any]

    @property
    def value(self) -> Any:
        from asapo_pipelines.transport.formats import decode

        return decode(self.payload, self.metadata)

    @property
    def provenance(self) -> dict[str, Any]:
        prov = self.metadata.get("provenance")
        return prov if isinstance(prov, dict) else {}


@dataclass
class HarnessResult:
    outputs: list[OutputRecord] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: (port, stream, id) of every input acknowledged, in order
    acknowledged: list[tuple[str, str, int]] = field(default_factory=list)
    #: (port, stream, next_stream) of every output stream finished
    finished: list[tuple[str, str, str | None]] = field(default_factory=list)
    retries: int = 0
    #: items a source said it passed over as sent by an earlier session (`already_sent`)
    already_sent: int = 0
    #: the unit's `summary()` at shutdown
    summary: dict[str, Any] = field(default_factory=dict)

    def on(self, port: str) -> list[OutputRecord]:
        return [o for o in self.outputs if o.port == port]

    def values(self, port: str | None = None) -> list[Any]:
        """Decoded values sent on `port` (all ports when None), in order."""
        return [o.value for o in self.outputs if port is None or o.port == port]


class UnitHarness:
    """One unit instance fed by hand; `run()` does start, messages, stream ends, shutdown."""

    def __init__(
        self,
        unit: str | UnitDescriptor,
        params: Any = None,
        *,
        catalog: Any = None,
        retry: RetryPolicy | dict[str, Any] | None = None,
        instance: str = "unit",
        pipeline: str = "test",
    ) -> None:
        if isinstance(unit, str):
            if catalog is None:
                from asapo_pipelines.catalog import Catalog

                catalog = Catalog.load()
            unit = catalog.get(unit)
        assert isinstance(unit, UnitDescriptor)
        self.descriptor = unit
        self.runner = UnitRunner(
            unit,
            params,
            pipeline=pipeline,
            instance=instance,
            retry=retry_policy(retry),
            sleep=lambda _s: None,  # the retries are run, their waits are not
        )
        self.result = HarnessResult()
        self._started = False
        self._ids: dict[tuple[str, str], int] = {}
        self._open: dict[tuple[str, str], Stream] = {}
        self._finished_outputs: set[tuple[str, str]] = set()
        self._output_streams: set[tuple[str, str]] = set()
        self._args = (retry, instance, pipeline)
        #: what earlier instances of the unit sent, received and processed without an output
        #: (see `restarted`); this instance's own are added as it goes
        self._sent_before: list[OutputRecord] = []
        self._received: list[Message] = []
        self._traced: list[Message] = []

    # -- steps ---------------------------------------------------------------------------------
    def start(self) -> UnitHarness:
        if not self._started:
            self.runner.start()
            self._started = True
        return self

    def _input_port(self, port: str | None) -> str:
        inputs = self.descriptor.inputs
        if port is None:
            if len(inputs) != 1:
                raise ValueError(f"{self.descriptor.name} has {len(inputs)} inputs; give port=")
            return inputs[0].name
        if self.descriptor.input(port) is None:
            raise ValueError(f"{self.descriptor.name} has no input port {port!r}")
        return port

    def _message(self, given: Any) -> Message:
        if not isinstance(given, Given):
            given = Given(given)
        port = self._input_port(given.port)
        if given.raw or given.payload is not None:
            payload, meta = given.payload, dict(given.metadata)
        else:
            from asapo_pipelines.transport.formats import encode

            spec = self.descriptor.input(port)
            assert spec is not None
            payload, fmt_meta = encode(given.value, spec.format)
            meta = {**given.metadata, **fmt_meta}
        key = (port, given.stream)
        msg_id = self._ids.get(key, 0) + 1 if given.id is None else given.id
        self._ids[key] = max(self._ids.get(key, 0), msg_id)
        return Message(
            port=port,
            data_source=given.data_source or f"{port}-in",
            stream=given.stream,
            id=msg_id,
            payload=payload,
            metadata=meta,
            delivery_count=given.delivery_count,
            timestamp=time.time(),
        )

    def _collect(self, outputs: list[Output]) -> None:
        for out in outputs:
            if out.finish:
                self._finish_output(out.port, out.stream, out.next_stream)
                continue
            self._output_streams.add((out.port, out.stream))
            self.result.outputs.append(
                OutputRecord(out.port, out.stream, out.payload, out.metadata)
            )

    def _finish_output(self, port: str, stream: str, next_stream: str | None) -> None:
        if (port, stream) not in self._finished_outputs:
            self._finished_outputs.add((port, stream))
            self.result.finished.append((port, stream, next_stream))

    def send(self, *messages: Any) -> HarnessResult:
        """Feed messages one by one, as the worker would, acknowledging each after flush."""
        self.start()
        for given in messages:
            msg = self._message(given)
            key = (msg.port, msg.stream)
            if key not in self._open:
                stream = Stream(msg.port, msg.data_source, msg.stream)
                self._open[key] = stream
                self._record(self.runner.stream_start(stream))
            outcome = self.runner.handle(msg)
            self._record(outcome)
            self.runner.flush()
            self._received.append(msg)
            if outcome.error is None and not outcome.outputs:
                self._traced.append(msg)  # as the worker records it, for `restore`
            self.result.acknowledged.append((msg.port, msg.stream, msg.id))
        self.result.retries = self.runner.retries
        return self.result

    def _record(self, outcome: Any) -> None:
        self._collect(outcome.outputs)
        if outcome.error is not None:
            self.result.errors.append(outcome.error)

    def end_stream(
        self,
        stream: str = FIRST_STREAM,
        *,
        port: str | None = None,
        next_stream: str | None = None,
    ) -> HarnessResult:
        """Finish an input stream: `on_stream_end`, then the matching output streams finish."""
        self.start()
        port = self._input_port(port)
        opened = self._open.pop((port, stream), None) or Stream(port, f"{port}-in", stream)
        done = Stream(opened.port, opened.data_source, opened.name, next_stream)
        self._record(self.runner.stream_end(done))
        self.runner.flush()
        for out in self.descriptor.outputs:
            self._finish_output(out.name, stream, next_stream)
        return self.result

    def run_source(self) -> HarnessResult:
        """Run a source's `run()` to its end and finish its output streams."""
        self.start()
        assert isinstance(self.runner.unit, Source)
        self.runner.run_source(
            lambda out: self._collect([out]),
            lambda record, _key: self.result.errors.append(record),
            self._already_sent,
        )
        for port, stream in self.runner.source_streams.items():
            self._finish_output(port, stream, None)
        return self.result

    def _already_sent(self, count: int) -> None:
        self.result.already_sent += count

    def restarted(self) -> UnitHarness:
        """A new instance of the unit, started as the worker restarted in the same run (after
        a kill) starts it; this instance is dropped as a killed process is (no `on_shutdown`).
        The new one carries this one's summary (`context.carried_summary`). With
        `restores_state`, as the worker does: a source's `restore` gets each message it sent;
        otherwise `restore_sent` (when the unit defines it) gets each output sent, `restore`
        each input whose outputs were sent or that gave none (not those that went to the error
        stream), then every message received on its `restore_ports`, and what `on_restored`
        emits is in the new harness's `result` (an output under a key sent before is not).
        Messages sent to it before count as acknowledged: send one again to test a redelivery.
        """
        retry, instance, pipeline = self._args
        again = UnitHarness(
            self.descriptor, self.runner.params, retry=retry, instance=instance, pipeline=pipeline
        )
        again._sent_before = [*self._sent_before, *self.result.outputs]
        again._received = list(self._received)
        again._traced = list(self._traced)
        again._ids = dict(self._ids)
        summary = self.runner.summary(running=True) if self._started else self.result.summary
        again.runner.context.carried_summary = dict(summary)
        again.runner.context.carried_after_restart = True
        self._started = False  # killed: no `on_shutdown`
        unit = again.start().runner.unit
        assert unit is not None
        if unit.restores_state:
            again._restore(unit)
        return again

    def _restore(self, unit: Any) -> None:
        """The worker's `restore` calls at start-up (`worker.runtime`), from what the harness
        kept instead of the store."""
        sent = self._sent_in_order()
        if self.descriptor.role == "source":
            for message in sent:
                self._restore_one(unit.restore, message)
            return
        if type(unit).restore_sent is not Unit.restore_sent:
            for message in sent:
                self._restore_one(unit.restore_sent, message)
        whole = set(unit.restore_ports)
        by_ref = {(m.data_source, m.stream, m.id): m for m in self._received}
        refs = {
            (ref["data_source"], ref["stream"], int(ref["id"])): None
            for message in sent
            for ref in (message.provenance or {}).get("inputs") or ()
        }
        refs.update({(m.data_source, m.stream, m.id): None for m in self._traced})
        for ref in refs:
            named = by_ref.get(ref)
            if named is not None and named.port not in whole:
                self._restore_one(unit.restore, named)
        for message in self._whole(unit):
            self._restore_one(unit.restore, message)
        keys = {o.provenance.get("key") for o in self._sent_before} - {None}
        outcome = self.runner.restored()
        outcome.outputs = [o for o in outcome.outputs if o.key is None or o.key not in keys]
        self._record(outcome)

    def _whole(self, unit: Any) -> list[Message]:
        """The messages received on the unit's `restore_ports` as the worker replays them: port
        by port, stream by stream, by id."""
        from asapo_pipelines.sdk.runner import UnitStartError

        inputs = [p.name for p in self.descriptor.inputs]
        for name in unit.restore_ports:
            if name not in inputs:
                raise UnitStartError(
                    f"unit {self.descriptor.name} names {name!r} in restore_ports, which is "
                    f"not one of its input ports ({', '.join(sorted(inputs)) or 'none'})"
                )
        streams: dict[tuple[str, str], list[Message]] = {}
        for port in inputs:
            for message in self._received:
                if port in unit.restore_ports and message.port == port:
                    streams.setdefault((port, message.stream), []).append(message)
        return [m for each in streams.values() for m in sorted(each, key=lambda m: m.id)]

    def _sent_in_order(self) -> list[Message]:
        """The outputs sent before as the worker reads them back: port by port, stream by
        stream, each numbered from 1 in its stream."""
        streams: dict[tuple[str, str], list[OutputRecord]] = {}
        for port in self.descriptor.outputs:
            for record in self._sent_before:
                if record.port == port.name:
                    streams.setdefault((record.port, record.stream), []).append(record)
        return [
            Message(
                port=port,
                data_source=port,
                stream=stream,
                id=n,
                payload=_bytes(record.payload),
                metadata=dict(record.metadata),
            )
            for (port, stream), records in streams.items()
            for n, record in enumerate(records, 1)
        ]

    def _restore_one(self, restore: Any, message: Message) -> None:
        """`restore(message)`, failing as the worker's start-up fails."""
        from asapo_pipelines.plugin_manager import describe_exception
        from asapo_pipelines.sdk.runner import UnitStartError

        try:
            restore(message)
        except Exception as exc:
            where = f"{message.data_source}/{message.stream}/{message.id}"
            raise UnitStartError(
                f"unit {self.descriptor.name} failed to restore its state from {where}: "
                f"{describe_exception(exc)}"
            ) from exc

    def stop(self) -> None:
        """As SIGTERM would: `self.stopping` turns true."""
        self.runner.stop()

    def shutdown(self) -> HarnessResult:
        if self._started:
            self.runner.flush()
            self.runner.shutdown()
            self.result.summary = self.runner.summary()
            self._started = False
        return self.result

    def run(self, messages: Iterable[Any] = (), *, finish: bool = True) -> HarnessResult:
        """Start, feed `messages` (or run a source), end the streams seen, shut down."""
        self.start()
        try:
            if isinstance(self.runner.unit, Source):
                return self.run_source()
            self.send(*messages)
            if finish:
                for port, stream in list(self._open):
                    self.end_stream(stream, port=port)
            return self.result
        finally:
            self.shutdown()


def retry_policy(retry: RetryPolicy | dict[str, Any] | None) -> RetryPolicy:
    """The retries a unit gets: `retry` as a pipeline file's `retry:` section says them (`None`:
    the file's default, 3 retries, as a unit in a file without `retry:` gets them; `{"attempts":
    0}`: none), validated as the file's section is."""
    if isinstance(retry, RetryPolicy):
        return retry
    from pydantic import ValidationError

    from asapo_pipelines.pipeline.checks import validate_as_json
    from asapo_pipelines.pipeline.model import Retry

    try:
        return RetryPolicy.from_config(validate_as_json(Retry, dict(retry or {})))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in ("retry", *err["loc"]))
        raise ValueError(f"{where}: {err['msg'][:1].lower()}{err['msg'][1:]}") from None


def run_unit(
    unit: str | UnitDescriptor,
    messages: Iterable[Any] = (),
    *,
    params: Any = None,
    catalog: Any = None,
    retry: RetryPolicy | dict[str, Any] | None = None,
    finish: bool = True,
) -> HarnessResult:
    """Run `unit` on `messages` (values, or `message(...)`) and return what it did.

    `retry` as a pipeline file's section (`None`: its default, 3 retries, their waits skipped;
    `{"attempts": 0}` for a single try)."""
    return UnitHarness(unit, params, catalog=catalog, retry=retry).run(messages, finish=finish)


# -- chains of units -----------------------------------------------------------------------------
@dataclass
class ChainResult:
    """What a chain did: each unit instance's own result, and every stream's messages."""

    units: dict[str, HarnessResult] = field(default_factory=dict)
    #: stream name -> the messages written to it, in order (inputs given included)
    streams: dict[str, list[OutputRecord]] = field(default_factory=dict)

    def values(self, stream: str) -> list[Any]:
        """Decoded values written to `stream`."""
        return [record.value for record in self.streams.get(stream, [])]

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Every unit's error records, in the chain's order."""
        return [error for result in self.units.values() for error in result.errors]


def _linear(units: list[Any], catalog: Any) -> dict[str, dict[str, Any]]:
    """`[("acme.scale", {"factor": 2}), "acme.offset"]` as a pipeline's `units:` mapping: each
    unit reads the previous unit's first output; the first reads the stream `input`."""
    wired: dict[str, dict[str, Any]] = {}
    previous = "input"
    for n, item in enumerate(units):
        unit, params = _unit_and_params(item)
        descriptor = unit if isinstance(unit, UnitDescriptor) else catalog.get(unit)
        instance = f"{n}-{descriptor.name}"
        spec: dict[str, Any] = {"unit": unit, "params": params or {}, "inputs": {}, "outputs": {}}
        if descriptor.inputs:
            spec["inputs"][descriptor.inputs[0].name] = previous
        for port in descriptor.outputs:
            spec["outputs"][port.name] = f"{instance}.{port.name}"
        if descriptor.outputs:
            previous = spec["outputs"][descriptor.outputs[0].name]
        wired[instance] = spec
    return wired


def _unit_and_params(item: Any) -> tuple[str | UnitDescriptor, Any]:
    """An item of `run_chain`'s list: a unit (its name or its descriptor), or (unit, params)."""
    if isinstance(item, str | UnitDescriptor):
        return item, None
    if isinstance(item, tuple | list) and len(item) == 2:
        return item[0], item[1]
    raise TypeError(
        f"run_chain takes units as a name, a descriptor or (unit, params), not {item!r}"
    )


def _order(units: dict[str, dict[str, Any]]) -> list[str]:
    """Unit instances with every producer before its consumers (the file's order otherwise)."""
    producer = {
        s: name for name, spec in units.items() for s in (spec.get("outputs") or {}).values()
    }
    done: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            raise ValueError(f"the chain has a cycle through {name}; the harness runs DAGs only")
        for stream in (units[name].get("inputs") or {}).values():
            if stream in producer:
                visit(producer[stream], (*path, name))
        done.append(name)

    for name in units:
        visit(name, ())
    return done


def run_chain(
    units: Any,
    inputs: dict[str, Iterable[Any]] | Iterable[Any] = (),
    *,
    catalog: Any = None,
    retry: RetryPolicy | dict[str, Any] | None = None,
    pipeline: str = "test",
    base_dir: str | Path | None = None,
) -> ChainResult:
    """Run several units in-process, each on what the earlier ones wrote, as a pipeline would
    (without a store, workers or processes): for a plugin's tests of units that work together.

    `units` is a pipeline file's `units:` mapping (`{instance: {unit, params, inputs, outputs}}`;
    read one with `units_of(path)`), or a list `[unit, (unit, params), ...]` chained in order.
    `inputs` maps the streams nothing in the chain produces to the messages to feed them (values
    or `message(...)`); for a list, the messages of its first unit. Units run one after the
    other in dependency order, each on all of its inputs, then their streams end::

        result = run_chain(
            {"scale": {"unit": "acme.scale", "params": {"factor": 2},
                       "inputs": {"values": "numbers"}, "outputs": {"scaled": "scaled"}},
             "offset": {"unit": "acme.offset", "inputs": {"value": "scaled"},
                        "outputs": {"value": "shifted"}}},
            {"numbers": [{"value": 1}, {"value": 2}]},
        )
        assert result.values("shifted") == [{"value": 3}, {"value": 5}]

    Each unit has its own `retry` when its entry says one (as in a file), `retry` otherwise
    (`None`: the file's default). Units run in `base_dir` as their working directory, as a
    worker runs in the pipeline file's folder: relative paths in params (`data/`,
    `results/out.jsonl`) mean the same as in a run. By default it is the folder of the file
    `units_of` read `units` from (the current directory for units given otherwise).
    """
    if base_dir is None:
        base_dir = getattr(units, "base_dir", None)
    if catalog is None:
        from asapo_pipelines.catalog import Catalog

        catalog = Catalog.load()
    if isinstance(units, list | tuple):
        units = _linear(list(units), catalog)
        given = {"input": list(inputs if not isinstance(inputs, dict) else inputs["input"])}
    else:
        given = {k: list(v) for k, v in dict(inputs or {}).items()}
    result = ChainResult()
    # what was given is held as plain values until a unit reads it with its port's format
    pending: dict[str, list[Any]] = given
    for name in _order(dict(units)):
        spec = units[name]
        feed: list[Any] = []
        for port, stream in (spec.get("inputs") or {}).items():
            for item in pending.get(stream, []):
                feed.append(_as_input(item, port, stream))
            for record in result.streams.get(stream, []) if stream not in pending else []:
                feed.append(
                    Given(
                        port=port,
                        stream=record.stream,
                        payload=_bytes(record.payload),
                        metadata=dict(record.metadata),
                        raw=True,
                        data_source=stream,
                    )
                )
        with _working_in(base_dir):
            harness = UnitHarness(
                spec["unit"],
                spec.get("params") or {},
                catalog=catalog,
                # the unit's own section, as in a file (`retry:` alone: the defaults)
                retry=spec.get("retry", retry),
                instance=name,
                pipeline=pipeline,
            )
            done = harness.run(feed)
        result.units[name] = done
        for port, stream in (spec.get("outputs") or {}).items():
            result.streams.setdefault(stream, []).extend(done.on(port))
    return result


def _as_input(item: Any, port: str, stream: str) -> Given:
    """A given message read by `port`; its data source is the pipeline stream, as in a run."""
    if isinstance(item, Given):
        return Given(**{**item.__dict__, "port": port, "data_source": item.data_source or stream})
    return Given(item, port=port, data_source=stream)


def _bytes(payload: bytes | memoryview | None) -> bytes | None:
    return None if payload is None else bytes(payload)


@contextlib.contextmanager
def _working_in(folder: str | Path | None) -> Iterator[None]:
    """In `folder` as the working directory (unchanged for None), back where it was after."""
    if folder is None:
        yield
        return
    with contextlib.chdir(folder):
        yield


class PipelineUnits(dict[str, dict[str, Any]]):
    """A pipeline file's `units:` mapping, knowing the folder its relative paths mean."""

    #: where a worker of the file works: relative paths in params are relative to it
    base_dir: Path


def units_of(path: Any) -> PipelineUnits:
    """The `units:` mapping of a pipeline file, for `run_chain` (parameters as written); the
    chain runs in the folder a worker of the file would, so relative paths mean the same."""
    from ruamel.yaml import YAML

    from asapo_pipelines.worker.launch import BASE_DIR_ENV

    doc = YAML(typ="safe").load(Path(path).read_text(encoding="utf-8"))
    units = PipelineUnits(doc["units"])
    # as `worker.launch` works out its folder: a compiled job names the original file's
    units.base_dir = Path(os.environ.get(BASE_DIR_ENV) or Path(path).resolve().parent)
    return units
