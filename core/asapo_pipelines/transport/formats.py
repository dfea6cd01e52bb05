"""Payload formats: raw bytes, JSON, and numpy arrays in DESY's seedee format.

The format is recorded in the message metadata (key ``format``) so a consumer decodes without
knowing the producer. For seedee, the seedee metadata string travels in the message metadata
(key ``_seedee``) exactly as `seedee.serialize` returns it, so other ASAP::O tools that know
seedee read our arrays with `seedee.deserialize(payload, meta["_seedee"])`.

numpy and seedee are imported only when an array is encoded or decoded, so the core stays light.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from asapo_pipelines.kinds import PAYLOAD_FORMATS
from asapo_pipelines.transport.errors import CorruptPayload, TransportConfigError

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.transport.base import Message

FORMAT_KEY = "format"
SEEDEE_KEY = "_seedee"
FORMATS = PAYLOAD_FORMATS

Payload = bytes | bytearray | memoryview


def encode(value: Any, fmt: str = "bytes", *, compression: str = "none") -> tuple[bytes, dict]:
    """Serialize ``value`` as ``fmt``; returns the payload and the metadata to merge in."""
    if fmt == "bytes":
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TransportConfigError(
                f"format 'bytes' needs bytes, bytearray or memoryview, not {type(value).__name__}"
            )
        return bytes(value), {FORMAT_KEY: "bytes"}
    if fmt == "json":
        try:
            text = _encode_json(value)
        except (TypeError, ValueError) as exc:
            raise TransportConfigError(f"value cannot be written as JSON: {exc}") from None
        return text.encode(), {FORMAT_KEY: "json"}
    if fmt == "seedee":
        return _encode_seedee(value, compression)
    raise TransportConfigError(
        f"unknown payload format {fmt!r}; choose one of {', '.join(FORMATS)}"
    )


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays as their Python equivalents (units compute with numpy and
    should not have to convert every number by hand); anything else is refused as before."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()  # np.float64 -> float, np.ndarray -> nested lists
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: built once: `json.dumps` with options builds a new encoder on every call
_encode_json = json.JSONEncoder(
    separators=(",", ":"), allow_nan=False, default=_json_default
).encode


def decode(payload: Payload | None, meta: dict, *, where: str = "message") -> Any:
    """Decode a payload written by `encode`; ``where`` names the message in errors."""
    fmt = meta.get(FORMAT_KEY, "bytes")
    if fmt == "bytes":
        return payload
    if payload is None:
        raise CorruptPayload(f"{where} has no payload although its format is {fmt!r}")
    if fmt == "json":
        try:
            return json.loads(bytes(payload))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CorruptPayload(f"{where} holds invalid JSON: {exc}") from None
    if fmt == "seedee":
        return _decode_seedee(payload, meta, where)
    raise CorruptPayload(f"{where} has unknown payload format {fmt!r}; known: {', '.join(FORMATS)}")


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


def _decode_seedee(payload: Payload, meta: dict, where: str) -> Any:
    np, seedee = _seedee()

    seedee_meta = meta.get(SEEDEE_KEY)
    if not isinstance(seedee_meta, str):
        raise CorruptPayload(f"{where} is marked seedee but carries no seedee metadata")
    restore = meta.get("_seedee_numpy")
    if isinstance(restore, dict) and 0 in (restore.get("shape") or [1]):
        try:
            return np.empty(restore["shape"], dtype=np.dtype(restore["dtype"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptPayload(f"{where} holds a corrupt seedee array: {exc}") from None
    try:
        info = json.loads(seedee_meta)["array"]
        expected = int(info["size"])
        if int(json.loads(seedee_meta).get("compression") or 0) == 0 and len(payload) != expected:
            # seedee does not check an uncompressed chunk's length itself
            raise ValueError(f"payload holds {len(payload)} bytes, the array needs {expected}")
        array = seedee.deserialize(payload, seedee_meta)
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptPayload(f"{where} holds a corrupt seedee array: {exc}") from None
    if isinstance(restore, dict):
        try:
            array = array.view(np.dtype(restore["dtype"])).reshape(restore["shape"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptPayload(f"{where} holds a corrupt seedee array: {exc}") from None
    return array
