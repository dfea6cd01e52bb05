"""The JSON payload formats: ``json`` (text) and ``json_arrays`` (JSON with packed numbers).

``json_arrays`` exists for messages that are mostly numbers: a normalised XAS spectrum holds
about 20,000 floats, which as JSON text take 340 KB and some 10 ms to write and 4-9 ms to read
on every hop (float formatting and parsing), longer than the hop itself. The same message in
``json_arrays`` packs each long list of numbers as little-endian binary (160 KB, well under a
millisecond each way). A consumer cannot tell the two apart: decoding gives exactly the value
`json.loads` gives for the ``json`` format (lists of Python numbers, ``None`` for gaps), so a
unit may switch an output port to ``json_arrays`` without any consumer changing.

Layout of a ``json_arrays`` payload::

    8 bytes     n, the header's length (little-endian unsigned)
    n bytes     UTF-8 JSON {"value": the value, each packed list replaced by null,
                            "arrays": [[path, dtype, shape], ...]}
    padding     zeros up to a multiple of 8
    per array   its bytes (dtype little-endian, C order), zero-padded to a multiple of 8

A path is the keys and indices leading to the list from the top of the value. Packed are: numpy
integer and float arrays of at least `MIN_PACKED` items, and lists of at least `MIN_PACKED`
items that are all Python floats (``None`` allowed, carried as NaN) or all Python ints that fit
in 64 bits. Everything else is written exactly as the ``json`` format writes it, and what JSON
refuses (NaN, infinity, a set) is refused here too.
"""

from __future__ import annotations

import json
from typing import Any

from asapo_pipelines.transport.errors import CorruptPayload, TransportConfigError

#: shorter lists cost more as a header entry than as JSON text
MIN_PACKED = 16
#: array dtypes packed (numpy's kind codes); bool, complex and objects stay JSON
_PACKED_KINDS = "iuf"
_HEADER_LEN = 8
_ALIGN = 8


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays as their Python equivalents (units compute with numpy and
    should not have to convert every number by hand); anything else is refused as before."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()  # np.float64 -> float, np.ndarray -> nested lists
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: built once: `json.dumps` with options builds a new encoder on every call
encode_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_json_default).encode


class JsonFormat:
    """JSON text (numpy numbers and arrays written as plain numbers and lists)."""

    def encode(self, value: Any) -> bytes:
        try:
            return encode_json(value).encode()
        except (TypeError, ValueError) as exc:
            raise TransportConfigError(f"value cannot be written as JSON: {exc}") from None

    def decode(self, payload: bytes | memoryview, metadata: dict[str, Any]) -> Any:
        try:
            return json.loads(bytes(payload))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CorruptPayload(f"holds invalid JSON: {exc}") from None


class JsonArraysFormat:
    """JSON whose long lists of numbers and numpy arrays travel packed (see the module)."""

    def encode(self, value: Any) -> bytes:
        import numpy as np

        arrays: list[np.ndarray] = []
        index: list[list[Any]] = []
        try:
            skeleton = _strip(value, [], arrays, index, np)
            header = encode_json({"value": skeleton, "arrays": index}).encode()
        except (TypeError, ValueError, OverflowError) as exc:
            raise TransportConfigError(f"value cannot be written as json_arrays: {exc}") from None
        parts = [
            len(header).to_bytes(_HEADER_LEN, "little"),
            header,
            _pad(_HEADER_LEN + len(header)),
        ]
        for array in arrays:
            data = array.tobytes()
            parts += [data, _pad(len(data))]
        return b"".join(parts)

    def decode(self, payload: bytes | memoryview, metadata: dict[str, Any]) -> Any:
        import numpy as np

        try:
            return _restore(memoryview(payload).cast("B"), np)
        except (UnicodeDecodeError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise CorruptPayload(f"holds a damaged json_arrays payload: {exc}") from None


def _pad(length: int) -> bytes:
    return bytes(-length % _ALIGN)


# -- encoding ----------------------------------------------------------------------------------
def _strip(value: Any, path: list[Any], arrays: list, index: list, np: Any) -> Any:
    """`value` with every packable list replaced by None; the lists go to `arrays`, their
    paths, dtypes and shapes to `index`."""
    packed = _packable(value, np)
    if packed is not None:
        index.append([path, packed.dtype.str, list(packed.shape)])
        arrays.append(packed)
        return None
    if isinstance(value, dict):
        if not all(type(k) is str for k in value):
            return value  # JSON turns other keys into strings: a path could not name them
        return {k: _strip(v, [*path, k], arrays, index, np) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strip(v, [*path, i], arrays, index, np) for i, v in enumerate(value)]
    return value


def _packable(value: Any, np: Any) -> Any:
    """`value` as a little-endian C-ordered array when it is packed, else None."""
    if isinstance(value, np.ndarray):
        if value.size < MIN_PACKED or value.dtype.kind not in _PACKED_KINDS:
            return None
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError("Out of range float values are not JSON compliant")
        return np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
    if not isinstance(value, list) or len(value) < MIN_PACKED:
        return None
    kinds = set(map(type, value))
    if kinds <= {float, type(None)} and float in kinds:
        return _float_list(value, np)
    if kinds == {int}:
        try:
            return np.array(value, dtype="<i8")
        except OverflowError:
            return None  # beyond 64 bits: JSON writes Python's big integers exactly
    return None


def _float_list(value: list, np: Any) -> Any:
    array = np.array(value, dtype="<f8")  # None becomes NaN
    gaps = int(np.isnan(array).sum())
    if gaps != value.count(None) or np.isinf(array).any():
        raise ValueError("Out of range float values are not JSON compliant")
    return array


# -- decoding ----------------------------------------------------------------------------------
def _restore(view: memoryview, np: Any) -> Any:
    if len(view) < _HEADER_LEN:
        raise ValueError(f"{len(view)} bytes are too few for its header")
    n = int.from_bytes(view[:_HEADER_LEN], "little")
    end = _HEADER_LEN + n
    if end > len(view):
        raise ValueError(f"its header claims {n} bytes, the payload holds {len(view)}")
    header = json.loads(bytes(view[_HEADER_LEN:end]))
    value = header["value"]
    offset = end + len(_pad(end))
    for path, dtype, shape in header["arrays"]:
        items, offset = _array_at(view, offset, np.dtype(dtype), shape, np)
        value = _place(value, path, items)
    return value


def _array_at(view: memoryview, offset: int, dtype: Any, shape: list, np: Any) -> tuple:
    """The items of the array at `offset` as lists (gaps as None), and the next offset."""
    if dtype.kind not in _PACKED_KINDS:
        raise ValueError(f"dtype {dtype} is not one json_arrays packs")
    count = int(np.prod(shape, dtype=np.int64))
    size = count * dtype.itemsize
    if count < 0 or offset + size > len(view):
        raise ValueError(f"an array of shape {shape} runs past the payload's end")
    array = np.frombuffer(view, dtype=dtype, count=count, offset=offset).reshape(shape)
    items = array.tolist()
    if dtype.kind == "f" and np.isnan(array).any():
        items = [None if x != x else x for x in items]  # only lists carry gaps, never arrays
    return items, offset + size + len(_pad(size))


def _place(value: Any, path: list, items: list) -> Any:
    if not path:
        return items
    holder = value
    for key in path[:-1]:
        holder = holder[key]
    if holder[path[-1]] is not None:
        raise ValueError(f"path {path} points at a value, not at a packed list's place")
    holder[path[-1]] = items
    return value


JSON, JSON_ARRAYS = JsonFormat(), JsonArraysFormat()
