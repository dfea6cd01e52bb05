"""Payload formats: raw bytes, JSON (`json_formats`: text, and JSON with packed numbers), and
numpy arrays in DESY's seedee format.

The format is recorded in the message metadata (key ``format``) so a consumer decodes without
knowing the producer. For seedee, the seedee metadata string travels in the message metadata
(key ``_seedee``) exactly as `seedee.serialize` returns it, so other ASAP::O tools that know
seedee read our arrays with `seedee.deserialize(payload, meta["_seedee"])`.

numpy and seedee are imported only when an array is encoded or decoded, so the core stays light.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from asapo_pipelines.transport.errors import CorruptPayload, TransportConfigError
from asapo_pipelines.transport.json_formats import JSON, JSON_ARRAYS

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.descriptor import FormatDescriptor
    from asapo_pipelines.transport.base import Message

FORMAT_KEY = "format"
SEEDEE_KEY = "_seedee"

Payload = bytes | bytearray | memoryview


def encode(value: Any, fmt: str = "bytes", *, compression: str = "none") -> tuple[bytes, dict]:
    """Serialize ``value`` as ``fmt``; returns the payload and the metadata to merge in."""
    if fmt == "seedee" and compression != "none":
        # compression is an option of seedee's writer alone, not of the format protocol
        return _encode_seedee(value, compression)
    runtime = format_runtime(fmt)
    try:
        result = runtime.encode(value)
    except TransportConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise TransportConfigError(f"format {fmt!r} cannot encode this value: {exc}") from None
    payload, extra = result if isinstance(result, tuple) else (result, {})
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TransportConfigError(
            f"format {fmt!r} ({_provider(fmt)}) encoded a value as {type(payload).__name__}, "
            "not bytes"
        )
    return bytes(payload), {**extra, FORMAT_KEY: fmt}


def decode(payload: Payload | None, meta: dict, *, where: str = "message") -> Any:
    """Decode a payload written by `encode`; ``where`` names the message in errors."""
    fmt = meta.get(FORMAT_KEY, "bytes")
    if fmt == "bytes":
        return payload
    if payload is None:
        raise CorruptPayload(f"{where} has no payload although its format is {fmt!r}")
    try:
        runtime = format_runtime(fmt)
    except UnknownFormat:
        # only a name nobody registers is the message's fault; a registered format that
        # cannot be loaded here (a library missing) propagates as what it is
        known = ", ".join(known_formats())
        raise CorruptPayload(
            f"{where} has unknown payload format {fmt!r}; known: {known}"
        ) from None
    try:
        return runtime.decode(payload, meta)
    except CorruptPayload as exc:
        raise CorruptPayload(f"{where} {exc}") from None
    except TransportConfigError:
        raise
    except Exception as exc:  # a plugin's decoder: the message is what is broken
        raise CorruptPayload(f"{where} cannot be decoded as {fmt}: {exc}") from None


# -- the registry ------------------------------------------------------------------------------
class PayloadFormat(Protocol):
    """What a format's runtime (`FormatDescriptor.runtime`) provides: an object, or a class
    made once per process without arguments."""

    def encode(self, value: Any) -> bytes | tuple[bytes, dict[str, Any]]:
        """The value as bytes, and optionally metadata (JSON-ready) the decoder needs; raise
        TypeError or ValueError for a value the format cannot hold."""

    def decode(self, payload: bytes | memoryview, metadata: dict[str, Any]) -> Any:
        """The value back from its bytes and the message's metadata; raise ValueError for
        bytes that are not this format."""


class UnknownFormat(TransportConfigError):
    """A format name no core format and no loaded catalog's plugin registers."""


#: the core's formats by name, known in every process without a catalog: the runtime's own
#: records (status, runs, errors) are JSON whatever is installed. `default_backends` registers
#: them through `register_formats` like a plugin's, with these objects as runtimes.
_CORE: dict[str, PayloadFormat] = {}
#: formats of the plugins a loaded catalog holds (`use_formats`), imported on first use
_REGISTERED: dict[str, FormatDescriptor] = {}
_LOADED: dict[str, PayloadFormat] = {}


def use_formats(descriptors: Mapping[str, FormatDescriptor]) -> None:
    """Make a catalog's formats usable in this process (the catalog calls this when built)."""
    for name, descriptor in descriptors.items():
        if name not in _CORE and _REGISTERED.get(name) != descriptor:
            _REGISTERED[name] = descriptor
            _LOADED.pop(name, None)


def known_formats() -> list[str]:
    return [*_CORE, *(n for n in _REGISTERED if n not in _CORE)]


def format_runtime(fmt: str) -> PayloadFormat:
    """The runtime of format `fmt`: a core one, or a loaded catalog's (imported once)."""
    found = _CORE.get(fmt) or _LOADED.get(fmt)
    if found is not None:
        return found
    descriptor = _REGISTERED.get(fmt)
    if descriptor is None:
        known = ", ".join(known_formats())
        raise UnknownFormat(f"unknown payload format {fmt!r}; choose one of {known}")
    try:
        runtime = descriptor.load_runtime()
        if isinstance(runtime, type):
            runtime = runtime()
    except Exception as exc:
        from asapo_pipelines.plugin_manager import describe_exception

        raise TransportConfigError(
            f"the payload format {fmt} ({_provider(fmt)}) cannot be loaded from "
            f"{descriptor.runtime}: {describe_exception(exc)}"
        ) from None
    if not (
        callable(getattr(runtime, "encode", None)) and callable(getattr(runtime, "decode", None))
    ):
        raise TransportConfigError(
            f"the payload format {fmt} ({_provider(fmt)}): {descriptor.runtime} has no encode() "
            "and decode()"
        )
    _LOADED[fmt] = runtime
    return runtime


def _provider(fmt: str) -> str:
    descriptor = _REGISTERED.get(fmt)
    return (descriptor.distribution or "a plugin") if descriptor else "the core"


# -- the core's formats ------------------------------------------------------------------------
class BytesFormat:
    """Raw bytes, as the unit gave them."""

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TransportConfigError(
                f"format 'bytes' needs bytes, bytearray or memoryview, not {type(value).__name__}"
            )
        return bytes(value)

    def decode(self, payload: bytes | memoryview, metadata: dict[str, Any]) -> Any:
        return payload


class SeedeeFormat:
    """numpy arrays in DESY's seedee format (the seedee metadata travels in the message's)."""

    def encode(self, value: Any) -> tuple[bytes, dict[str, Any]]:
        return _encode_seedee(value, "none")

    def decode(self, payload: bytes | memoryview, metadata: dict[str, Any]) -> Any:
        return _decode_seedee(payload, metadata)


BYTES, SEEDEE = BytesFormat(), SeedeeFormat()
_CORE.update({"bytes": BYTES, "json": JSON, "json_arrays": JSON_ARRAYS, "seedee": SEEDEE})


def decode_message(message: Message) -> Any:
    """A transport message's payload decoded with the format its metadata records; a damaged
    payload is a `CorruptPayload` naming the message, its stream and data source."""
    where = f"message {message.id} of stream {message.stream!r} ({message.data_source})"
    return decode(message.payload, message.metadata, where=where)


_COMPRESSIONS = {
    "none": "COMPRESSION_NONE",
    "lz4": "COMPRESSION_LZ4",
    "bitshuffle": "COMPRESSION_BITSHUFFLE",
    "deflate": "COMPRESSION_DEFLATE",
}


def _seedee() -> tuple[Any, Any]:
    try:
        import numpy
        import seedee
    except ImportError as exc:
        raise TransportConfigError(
            f"the seedee payload format needs numpy and seedee ({exc.name} is missing): "
            "pip install numpy seedee"
        ) from None
    return numpy, seedee


def _encode_seedee(value: Any, compression: str) -> tuple[bytes, dict]:
    np, seedee = _seedee()

    if not isinstance(value, np.ndarray):
        raise TransportConfigError(
            f"format 'seedee' needs a numpy array, not {type(value).__name__}"
        )
    if compression not in _COMPRESSIONS:
        raise TransportConfigError(
            f"unknown seedee compression {compression!r}; choose one of {', '.join(_COMPRESSIONS)}"
        )
    if value.dtype.kind not in "biuf" or value.dtype.hasobject:
        raise TransportConfigError(
            f"seedee cannot hold arrays of dtype {value.dtype}; use bool, integer or float arrays"
        )
    array = value
    if value.dtype.kind == "b":
        # seedee knows no booleans: carry them as uint8 and restore the dtype on decode
        array = value.view(np.uint8)
    if array.ndim == 0:
        array = array.reshape(1)
    try:
        buf, meta = seedee.serialize(
            np.ascontiguousarray(array), getattr(seedee, _COMPRESSIONS[compression])
        )
    except ValueError as exc:
        raise TransportConfigError(f"seedee cannot serialize this array: {exc}") from None
    extra: dict[str, Any] = {FORMAT_KEY: "seedee", SEEDEE_KEY: meta}
    if value.dtype.kind == "b" or value.ndim == 0 or value.size == 0:
        # what seedee cannot say itself (booleans, 0-d and empty arrays), for our decoder
        extra["_seedee_numpy"] = {"dtype": value.dtype.str, "shape": list(value.shape)}
    return buf.tobytes(), extra


def _decode_seedee(payload: Payload, meta: dict) -> Any:
    np, seedee = _seedee()

    seedee_meta = meta.get(SEEDEE_KEY)
    if not isinstance(seedee_meta, str):
        raise CorruptPayload("is marked seedee but carries no seedee metadata")
    restore = meta.get("_seedee_numpy")
    if isinstance(restore, dict) and 0 in (restore.get("shape") or [1]):
        try:
            return np.empty(restore["shape"], dtype=np.dtype(restore["dtype"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptPayload(f"holds a corrupt seedee array: {exc}") from None
    try:
        info = json.loads(seedee_meta)["array"]
        expected = int(info["size"])
        if int(json.loads(seedee_meta).get("compression") or 0) == 0 and len(payload) != expected:
            # seedee does not check an uncompressed chunk's length itself
            raise ValueError(f"payload holds {len(payload)} bytes, the array needs {expected}")
        array = seedee.deserialize(payload, seedee_meta)
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptPayload(f"holds a corrupt seedee array: {exc}") from None
    if isinstance(restore, dict):
        try:
            array = array.view(np.dtype(restore["dtype"])).reshape(restore["shape"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptPayload(f"holds a corrupt seedee array: {exc}") from None
    return array
