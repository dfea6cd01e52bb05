"""The transport interface every backend implements, and the values it hands out.

The semantics follow ASAP::O: a data source holds streams; a message has an id (1-based per
stream), an optional payload and JSON metadata; a stream can be finished with a last id and a next
stream; consumer groups each see every message once, share the load between their consumers, and
get unacknowledged messages again after a lease runs out (a consumer died) or a nack's delay.
"""

from __future__ import annotations

import abc
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from asapo_pipelines.transport.errors import TransportConfigError

#: Data source names end up as directory names (embedded) and ASAP::O source names.
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: Group names: ASAP::O accepts letters, digits, '-' and '_' only.
GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
STREAM_MAX = 200

DEFAULT_LEASE_SECONDS = 30.0
#: the share of its lease a message still has at least when a consumer hands it out (a
#: prefetched one past that is left to the group), so a worker whose batch is younger than this
#: share of the lease holds every message of it
LEASE_MARGIN = 0.05


def check_source(name: str) -> str:
    if not isinstance(name, str) or not SOURCE_NAME.match(name):
        raise TransportConfigError(
            f"invalid data source name {name!r}: use letters, digits, '.', '_' or '-' "
            "(at most 128, starting with a letter or digit)"
        )
    return name


def check_group(name: str) -> str:
    if not isinstance(name, str) or not GROUP_NAME.match(name):
        raise TransportConfigError(
            f"invalid consumer group name {name!r}: use letters, digits, '_' or '-' "
            "(at most 128, starting with a letter or digit)"
        )
    return name


#: stream names already found valid: a worker checks the same few names once per message
_VALID_STREAMS: set[str] = set()


def check_stream(name: str) -> str:
    if name in _VALID_STREAMS:
        return name
    if (
        not isinstance(name, str)
        or not name
        or len(name) > STREAM_MAX
        or "/" in name
        or any(ord(c) < 32 for c in name)
    ):
        raise TransportConfigError(
            f"invalid stream name {name!r}: use 1 to {STREAM_MAX} printable characters without '/'"
        )
    if len(_VALID_STREAMS) < 10000:  # bounded: a run of many scans must not grow it forever
        _VALID_STREAMS.add(name)
    return name


def _metadata_encoder() -> Callable[[Any], str]:
    """The encoder of every message's metadata: compact, NaN refused, as `json.dumps` with
    `separators=(",", ":"), allow_nan=False` writes it.

    Metadata is encoded once per message, so the encoder is built once: `JSONEncoder.encode`
    builds a new C encoder on every call, which took about as long as encoding a worker's
    output metadata itself. Built without the cycle-detecting `markers` dict (`check_circular`
    off): that dict would be shared by every thread that sends (the status thread does); a
    cyclic object ends in RecursionError instead, which `encode_metadata` reports."""
    encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False)
    make = getattr(json.encoder, "c_make_encoder", None)  # not in the type stubs
    if make is None:  # no C accelerator (another interpreter): the pure-Python path
        return encoder.encode
    # the arguments `JSONEncoder.iterencode` passes, in its order
    chunks = make(
        None, encoder.default, json.encoder.encode_basestring_ascii, None, ":", ",",
        False, False, False,
    )  # fmt: skip
    return lambda obj: "".join(chunks(obj, 0))


_encode_json = _metadata_encoder()
#: a str as the metadata encoder writes it (quoted, escaped, ASCII): a runtime that puts parts of
#: metadata together from texts encoded at different times uses it for the strings
encode_json_string: Callable[[str], str] = (
    getattr(json.encoder, "c_encode_basestring_ascii", None)
    or json.encoder.py_encode_basestring_ascii
)


#: any JSON value as the metadata encoder writes it, without `encode_metadata`'s checks around
#: it: TypeError or ValueError (RecursionError: a cycle) when JSON cannot hold it
encode_json_value: Callable[[Any], str] = _encode_json
#: the C scanner `json.loads` ends in, without its checks around it (type, BOM, whitespace);
#: JSONDecoder's __init__ sets `scan_once`, which the type stubs do not show
_scan_json: Callable[[str, int], tuple[Any, int]]
_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def decode_metadata(text: str) -> Any:
    """Metadata as the store holds it; raises ValueError when it is not JSON."""
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):
        # not as `encode_metadata` writes it (space around, or not JSON): the full parser decides
        return json.loads(text)
    return value


class EncodedMetadata(dict[str, Any]):
    """A message's metadata together with the JSON text it is stored as.

    The runner checks every output's metadata where it is made (an unstorable value is that
    message's error, not the batch's), so it encodes it then and hands the text on: the
    transport stores it without encoding the same dict a second time, a few microseconds of
    each message on a busy hop. Any change to the dict drops the text, which is encoded anew."""

    __slots__ = ("text",)

    def __init__(self, meta: Mapping[str, Any], text: str | None) -> None:
        super().__init__(meta)
        self.text = text

    def __setitem__(self, key: str, value: Any) -> None:
        self.text = None
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.text = None
        super().__delitem__(key)

    def __ior__(self, other: Any) -> EncodedMetadata:  # type: ignore[override,misc]
        self.text = None
        return super().__ior__(other)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.text = None
        super().update(*args, **kwargs)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.text = None
        return super().setdefault(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        self.text = None
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self.text = None
        return super().popitem()

    def clear(self) -> None:
        self.text = None
        super().clear()

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))  # a copy sent elsewhere is plain metadata


def encode_metadata(meta: Mapping[str, Any] | None, what: str | Callable[[], str]) -> str:
    """`meta` as the JSON text a transport stores; a TransportConfigError sentence starting with
    `what` when JSON cannot hold it (NaN, a set, a cycle...). `what` may be a function giving
    that text: a busy hop then builds the sentence's subject only for the rare refusal."""
    if meta is None:
        return "{}"
    if type(meta) is EncodedMetadata and meta.text is not None:
        return meta.text
    if type(meta) is not dict and not isinstance(meta, Mapping):  # the ABC check is slow
        raise TransportConfigError(f"{_said(what)} must be a mapping, not {type(meta).__name__}")
    try:
        return _encode_json(meta)
    except (TypeError, ValueError) as exc:
        raise TransportConfigError(f"{_said(what)} is not JSON-serializable: {exc}") from None
    except RecursionError:
        raise TransportConfigError(
            f"{_said(what)} is not JSON-serializable: it contains itself or is nested too deeply"
        ) from None


def payload_checksum(payload: bytes | bytearray | memoryview) -> str:
    """A payload's checksum as `Message.checksum` gives it: xxh3_64, hashed in place."""
    import xxhash

    return f"xxh3_64:{xxhash.xxh3_64_intdigest(payload):016x}"


def _said(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


@dataclass(slots=True)
class Message:
    """One message as a consumer receives it.

    ``payload`` may be a memoryview into a memory-mapped file (no copy); keep it only as long as
    you need it, or copy it with ``bytes(message.payload)``.
    """

    data_source: str
    stream: str
    id: int
    payload: memoryview | bytes | None
    metadata: dict[str, Any]
    delivery_count: int = 1
    timestamp: float = 0.0
    #: True when the backend cannot rule out that this message was delivered before to another
    #: consumer of the group that died (ASAP::O does not tell its clients; its delivery_count
    #: counts what this consumer saw). Workers then check their outputs before writing again.
    possibly_redelivered: bool = False
    #: the payload's checksum as the backend keeps it (`xxh3_64:<hex>`), in what
    #: `get_metadata_by_id` returns where the backend can tell it without reading the payload;
    #: None when it cannot. A resumed source compares it with `payload_checksum` of what it
    #: would send again under a key it sent before (see `payload_checksum`)
    checksum: str | None = None

    @property
    def size(self) -> int:
        return 0 if self.payload is None else len(self.payload)


@dataclass(slots=True)
class StreamInfo:
    """What is known about one stream."""

    name: str
    last_id: int = 0
    finished: bool = False
    next_stream: str | None = None
    created: float | None = None
    last_timestamp: float | None = None
    # filled by backends that know them cheaply (the embedded store); None otherwise
    message_count: int | None = None
    size_bytes: int | None = None
    group_lag: dict[str, int] = field(default_factory=dict)
    #: messages whose payload file is gone or shorter than recorded, so that they cannot be
    #: read; found from the files' sizes, no payload read (the embedded store's `describe`,
    #: what `pipeline streams` lists); None where not looked at
    damaged: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "last_id": self.last_id,
            "finished": self.finished,
            "next_stream": self.next_stream,
            "created": self.created,
            "last_timestamp": self.last_timestamp,
            "message_count": self.message_count,
            "size_bytes": self.size_bytes,
            "group_lag": dict(self.group_lag),
            "damaged": self.damaged,
        }


class _Closable(abc.ABC):
    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class PruneReport:
    """What `prune` removed: streams (data source, stream), messages and bytes freed. Backends
    that keep their own data (the embedded store, redis) offer `describe`, `drop_stream` and
    `prune(older_than, data_source=None) -> PruneReport`; ASAP::O manages its own retention."""

    dropped_streams: list[tuple[str, str]]
    deleted_messages: int
    freed_bytes: int


class Producer(_Closable):
    """Writes messages into the streams of one data source."""

    data_source: str

    @abc.abstractmethod
    def send(
        self,
        stream: str,
        payload: bytes | bytearray | memoryview | None,
        metadata: Mapping[str, Any] | None = None,
        *,
        id: int | None = None,
    ) -> int:
        """Write one message and return its id (the next free id when ``id`` is None)."""

    def send_many(
        self,
        stream: str,
        items: Iterable[tuple[bytes | bytearray | memoryview | None, Mapping[str, Any] | None]],
    ) -> list[int]:
        """Write several messages with automatic ids; backends may do this in one go."""
        return [self.send(stream, payload, meta) for payload, meta in items]

    @abc.abstractmethod
    def finish_stream(
        self, stream: str, *, last_id: int | None = None, next_stream: str | None = None
    ) -> None:
        """Mark ``stream`` finished at ``last_id`` (default: its last id), naming what follows."""

    @abc.abstractmethod
    def set_stream_metadata(self, stream: str, metadata: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    def set_source_metadata(self, metadata: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything sent is stored; raise `Unavailable` naming what failed."""


class Consumer(_Closable):
    """Reads the streams of one data source as one member of a consumer group."""

    data_source: str
    group: str

    @abc.abstractmethod
    def get_next(self, stream: str, *, timeout: float = 0.0) -> Message:
        """The next message for this group (any order), waiting up to ``timeout`` seconds.

        Raises `NoData` (nothing now), `StreamFinished` (finished and fully acknowledged).
        """

    @abc.abstractmethod
    def get_by_id(self, stream: str, id: int, *, timeout: float = 0.0) -> Message:
        """The message with this id, not touching the group's progress."""

    def get_metadata_by_id(self, stream: str, id: int, *, timeout: float = 0.0) -> Message:
        """`get_by_id` for a reader that needs the metadata alone (provenance, keys, names):
        the payload is None where the backend can leave it unread. A restarted worker reads
        every output it wrote for their provenance, and a resumed source every message it
        sent: with payloads of megabytes that would read the whole store again. A backend
        that stores payload and metadata together need not override this."""
        return self.get_by_id(stream, id, timeout=timeout)

    @abc.abstractmethod
    def get_last(self, stream: str, *, timeout: float = 0.0) -> Message:
        """The message with the largest id; raises `EndOfStream` when the stream is empty."""

    @abc.abstractmethod
    def acknowledge(self, stream: str, id: int) -> None:
        """Mark ``id`` done for this group (idempotent); it is never delivered to it again."""

    def acknowledge_many(self, stream: str, ids: Iterable[int]) -> None:
        for one in ids:
            self.acknowledge(stream, one)

    def lost_leases(self, stream: str, held: Mapping[int, int]) -> set[int] | None:
        """Of the messages this consumer was handed (`held`: id -> the delivery count it got
        each with), those it holds no more: handed to another consumer of the group after their
        lease ran out, or acknowledged by one. A worker paused past its leases (a stalled host,
        a call that kept the watch from renewing them) asks before it writes a batch's outputs:
        those are now another worker's to write. None when the backend cannot tell; the worker
        then writes them, and the key check of the one that got them again drops its copies."""
        return None

    def wake_fd(self) -> int | None:
        """A file descriptor that becomes readable when new data may have arrived (for
        `select`; spurious wake-ups allowed), or None when the backend cannot tell: then the
        caller polls. Reading with `get_next` clears it, so it must become readable only once
        what woke it can be read: a caller that looks, finds nothing and waits again would
        otherwise sleep through the data."""
        return None

    @abc.abstractmethod
    def nack(self, stream: str, id: int, delay: float = 0.0) -> None:
        """Give ``id`` back: it is delivered again (to any consumer) after ``delay`` seconds."""

    @abc.abstractmethod
    def streams(self) -> list[StreamInfo]: ...

    @abc.abstractmethod
    def stream_info(self, stream: str) -> StreamInfo: ...

    @abc.abstractmethod
    def get_stream_metadata(self, stream: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def get_source_metadata(self) -> dict[str, Any]: ...


class Transport(_Closable):
    """Hands out producers and consumers for the data sources of one store or service."""

    kind: str = ""
    #: the option of the transport's section that gives a pipeline a store, or a namespace, of
    #: its own (`path`); said when two pipeline files claim one pipeline name in one store
    #: (`RunStore.refusal`). Empty: the sentence names the section only
    separate_store: str = ""
    #: the folder the store's files live in, for a store kept in a folder of this machine (the
    #: embedded store); None for a service. A pipeline file owns its namespace in the store by
    #: its path relative to this folder too, so that a project folder moved or copied with its
    #: store keeps its runs (`RunStore.claim`)
    local_root: Path | None = None

    @abc.abstractmethod
    def producer(self, data_source: str) -> Producer: ...

    @abc.abstractmethod
    def consumer(
        self,
        data_source: str,
        group: str,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> Consumer: ...

    def data_sources(self) -> list[str]:
        """The data sources known to this transport (may be unsupported by a service)."""
        raise NotImplementedError


def lost_data_sources(transport: Any) -> list[str]:
    """The data sources the store lost while they held data (the embedded store's index
    emptied or deleted: `EmbeddedTransport.lost_data_sources`); none where the transport
    cannot tell. Not among `data_sources`: a command that lists or prunes the rest says each
    of these apart (docs/transports.md)."""
    lost = getattr(transport, "lost_data_sources", None)
    return list(lost()) if callable(lost) else []


def check_not_lost(transport: Any, data_source: str) -> None:
    """Raise `data_source`'s sentence (`IndexLost`, with what to do) when the store lost it
    (`lost_data_sources`); nothing where the transport cannot tell."""
    check = getattr(transport, "check_data_source", None)
    if callable(check):
        check(data_source)


def holds_data_source(transport: Any, data_source: str) -> bool:
    """Whether the store holds `data_source`. One it lost (`lost_data_sources`) raises its
    sentence, with what to do, instead: read as one never written, a lost run record said
    "no run recorded, start one" and a lost stream "holds no messages"."""
    if data_source in transport.data_sources():
        return True
    check_not_lost(transport, data_source)
    return False


def now() -> float:
    return time.time()
