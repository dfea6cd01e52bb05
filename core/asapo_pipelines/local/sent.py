"""What each unit sent in two runs, compared message by message (`pipeline reprocess`).

A unit's summary holds where it ended (the agent's last decision per group): a replay whose
earlier decisions changed and whose last one did not compares equal there. So the comparison
also reads each unit's output streams of both runs and pairs their messages in order (the
n-th message of each scan with the n-th), comparing payload bytes; only a JSON pair whose bytes
differ is decoded, to tell a suggestion's identity from its content (and one encoding of a
value from another) and to show the first difference.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.descriptor import Port
    from asapo_pipelines.pipeline.model import Pipeline
    from asapo_pipelines.transport import Consumer, Message, Transport

#: a stream holding more messages than this in either run is counted, not compared: reading
#: every payload of both runs would then take longer than the replay
MAX_COMPARED = 100_000

#: how many differing values of the first differing message are shown
SHOWN_VALUES = 2
#: a list of more numbers than this is a series, shown by how it changed
SHOWN_ITEMS = 4
#: formats whose messages decode to what JSON holds (`json_arrays` packs its number lists)
JSON_LIKE = ("json", "json_arrays")
#: a value longer than this is cut (a reason sentence, a long list)
VALUE_WIDTH = 40

#: a suggestion's uid and time are made anew on every send (the SDK's `Suggestion`), and an
#: agent's uids are per run by design (a queue server must not take a replay's suggestion for
#: the night's): they are its identity, not what was decided
IDENTITY_FIELDS = {"plan/suggestion": ("uid", "time")}


def show(value: Any) -> str:
    """A value as the comparison prints it: floats to 6 significant digits."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def compare_sent(
    pipeline: Pipeline, catalog: Catalog, old_id: str, new_id: str, skip: set[str]
) -> dict[str, list[str]]:
    """instance -> one line per output stream: how many of its messages differ between the
    two runs, the first shown. Units in `skip` (the sources, whose messages a replay copies)
    and streams made outside the pipeline (both runs read and write the same) are left out."""
    from asapo_pipelines.transport import open_transport

    out: dict[str, list[str]] = {}
    with open_transport(pipeline.transport.spec(), catalog) as transport:
        present = set(transport.data_sources())
        for instance, streams in _outputs(pipeline, catalog, skip).items():
            for stream, port in streams:
                pair = _Pair(transport, present, pipeline.name, stream, (old_id, new_id))
                with pair:
                    out.setdefault(instance, []).append(f"sent on {stream}: {pair.compare(port)}")
    return out


def _outputs(
    pipeline: Pipeline, catalog: Catalog, skip: set[str]
) -> dict[str, list[tuple[str, Port]]]:
    """instance -> (stream, port) of each output port, named as the worker names them."""
    external = {name for name, declared in pipeline.streams.items() if declared.external}
    out: dict[str, list[tuple[str, Port]]] = {}
    for instance, config in pipeline.units.items():
        if instance in skip:
            continue
        for port in pipeline.descriptor(instance, catalog).outputs:
            # the worker's rule for an output nobody reads: it still goes somewhere predictable
            default = f"{instance}-{port.name}".replace("_", "-")
            stream = config.outputs.get(port.name, default)
            if stream not in external:
                out.setdefault(instance, []).append((stream, port))
    return out


class _Pair:
    """One output stream in two runs: its consumers (none for a run that never wrote it: a
    read must not create a data source) and the comparison of their messages."""

    def __init__(
        self,
        transport: Transport,
        present: set[str],
        pipeline: str,
        stream: str,
        runs: tuple[str, str],
    ) -> None:
        from asapo_pipelines.worker.naming import data_source_for

        self.runs = runs
        self.consumers: list[Consumer | None] = []
        for run in runs:
            source = data_source_for(stream, pipeline, run)
            held = source in present
            self.consumers.append(transport.consumer(source, "reprocess-compare") if held else None)

    def __enter__(self) -> _Pair:
        return self

    def __exit__(self, *exc: object) -> None:
        for consumer in self.consumers:
            if consumer is not None:
                consumer.close()

    def lengths(self) -> list[dict[str, int]]:
        """scan -> last id, in each run."""
        return [
            {} if c is None else {i.name: i.last_id for i in c.streams()} for c in self.consumers
        ]

    def compare(self, port: Port) -> str:
        """How many messages differ, the first shown, as one clause."""
        old, new = self.lengths()
        (a, b), (r1, r2) = (sum(old.values()), sum(new.values())), self.runs
        if max(a, b) > MAX_COMPARED:
            return f"{a} -> {b} messages, not compared (more than {MAX_COMPARED} in a run)"
        total, differ, first = 0, 0, ""
        for label, x, y in self._pairs(old, new):
            total += 1
            if not _same(x, y, port):
                differ += 1
                first = first or _difference(label, x, y, port, self.runs)
        if not differ:
            return f"the same {total} message{'' if total == 1 else 's'}" if total else "nothing"
        counted = "" if a == b else f"; {r1} sent {a}, {r2} {b}"
        return f"{differ} of {total} messages differ{counted} (the first: {first})   (changed)"

    def _pairs(
        self, old: dict[str, int], new: dict[str, int]
    ) -> Iterator[tuple[str, Message | None, Message | None]]:
        """(label, old message, new message) for each position of each scan, in order."""
        for scan in dict.fromkeys([*old, *new]):
            for msg_id in range(1, max(old.get(scan, 0), new.get(scan, 0)) + 1):
                label = f"#{msg_id}" if scan == "default" else f"{scan}#{msg_id}"
                a, b = (_read(c, scan, msg_id) for c in self.consumers)
                yield label, a, b


def _read(consumer: Consumer | None, scan: str, msg_id: int) -> Message | None:
    from asapo_pipelines.transport import TransportError

    if consumer is None:
        return None
    try:
        return consumer.get_by_id(scan, msg_id)
    except TransportError:  # pruned, never written, or damaged: not a message to compare
        return None


def _payload(msg: Message) -> bytes | None:
    return None if msg.payload is None else bytes(msg.payload)


def _same(a: Message | None, b: Message | None, port: Port) -> bool:
    if a is None or b is None:
        return a is b
    if _payload(a) == _payload(b):
        return True
    if port.format not in JSON_LIKE:  # arrays, raw bytes: their bytes are their values
        return False
    ignored = IDENTITY_FIELDS.get(port.content_type, ())
    value = _content(a, ignored)
    return value is not None and value == _content(b, ignored)


def _content(msg: Message, ignored: tuple[str, ...] = ()) -> Any:
    """The decoded value, without its identity fields; None when it does not decode."""
    from asapo_pipelines.transport.formats import decode_message

    try:
        value = decode_message(msg)
    except Exception:  # a format's library missing, damaged bytes: compared as bytes only
        return None
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in ignored}
    return value


def _difference(
    label: str, a: Message | None, b: Message | None, port: Port, runs: tuple[str, str]
) -> str:
    """The first differing message, briefly: its first differing values (numbers first)."""
    if a is None or b is None:
        return f"{label} only in {runs[1] if a is None else runs[0]}"
    if port.format not in JSON_LIKE:  # arrays, bytes: their values are too many to show
        return f"{label} payload differs"
    from asapo_pipelines.runs.lifecycle import compare

    ignored = IDENTITY_FIELDS.get(port.content_type, ())
    rows = compare({"v": _content(a, ignored)}, {"v": _content(b, ignored)}).get("v", [])
    changed = [(what or "value", x, y) for what, x, y in rows if x != y]
    # single numbers first, then whole series of numbers (a spectrum's mu), then the rest
    changed.sort(key=lambda row: 0 if _number(row[1]) else 1 if _series(row[1]) else 2)
    shown = ", ".join(f"{w}: {_change(x, y)}" for w, x, y in changed[:SHOWN_VALUES])
    more = len(changed) - SHOWN_VALUES
    if not shown:  # a value that does not decode
        return f"{label} payload differs"
    return f"{label} {shown}" + (f" (+{more} more)" if more > 0 else "")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _series(value: Any) -> bool:
    """A list of numbers too long to show (`SHOWN_ITEMS`): an array of a spectrum."""
    return isinstance(value, list) and len(value) > SHOWN_ITEMS and all(map(_number, value))


def _change(old: Any, new: Any) -> str:
    """How a value changed: old -> new, or for two series of numbers their largest
    difference (or their lengths when those differ)."""
    if _series(old) and _series(new):
        if len(old) != len(new):
            return f"{len(old)} -> {len(new)} values"
        largest = max(abs(x - y) for x, y in zip(old, new, strict=True))
        return f"largest difference {largest:.3g} over {len(old)} values"
    return _both(old, new)


def _both(old: Any, new: Any) -> str:
    """Old -> new, long texts cut from a little before where they differ: two reasons that
    begin alike would otherwise be cut to the same words."""
    a, b = show(old), show(new)
    start = 0
    if max(len(a), len(b)) > VALUE_WIDTH:
        start = max(0, len(os.path.commonprefix([a, b])) - VALUE_WIDTH // 4)
    return f"{_cut(a, start)} -> {_cut(b, start)}"


def _cut(text: str, start: int) -> str:
    text = "..." + text[start:] if start else text
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 3] + "..."
