"""Payload formats: bytes, JSON and seedee arrays (bit-exact), with clear errors."""

from __future__ import annotations

import json

import pytest
from asapo_pipelines.transport import CorruptPayload, TransportConfigError
from asapo_pipelines.transport.formats import decode, encode

np = pytest.importorskip("numpy")
seedee = pytest.importorskip("seedee")

ARRAYS = [
    np.arange(24, dtype="<u2").reshape(2, 3, 4),
    np.arange(-50, 50, dtype=np.int8),
    np.array([[1.5, -2.25], [np.inf, -0.0]], dtype=np.float64),
    np.array([np.nan, 1e-30, 3.0], dtype=np.float32),
    (np.arange(60, dtype=np.int64) * -(2**40)).reshape(3, 4, 5),
    np.arange(1000, dtype=">i4"),
    np.array([True, False, True]),
    np.array(7.5),  # zero-dimensional
    np.arange(12, dtype=np.uint32).reshape(3, 4)[:, ::2],  # not contiguous
    np.zeros((0, 4), dtype=np.float32),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype.str}{list(a.shape)}")
def test_arrays_round_trip_bit_exact(array) -> None:
    payload, meta = encode(array, "seedee")
    assert meta["format"] == "seedee"
    out = decode(payload, json.loads(json.dumps(meta)))  # metadata travels as JSON
    assert out.shape == array.shape
    assert out.dtype == array.dtype  # including byte order
    assert out.tobytes() == np.ascontiguousarray(array).tobytes()


def test_other_seedee_tools_read_our_arrays() -> None:
    array = np.arange(30, dtype=np.float32).reshape(5, 6)
    payload, meta = encode(array, "seedee")
    # what any ASAP::O tool knowing seedee does with a message: payload + metadata string
    assert np.array_equal(seedee.deserialize(payload, meta["_seedee"]), array)


@pytest.mark.parametrize("compression", ["lz4", "deflate"])
def test_compressed_arrays_round_trip(compression: str) -> None:
    array = np.tile(np.arange(256, dtype=np.uint16), 64)
    payload, meta = encode(array, "seedee", compression=compression)
    assert len(payload) < array.nbytes
    assert np.array_equal(decode(payload, meta), array)


def test_json_and_bytes_formats() -> None:
    payload, meta = encode({"energy": [1.0, 2.5], "ok": True}, "json")
    assert decode(payload, meta) == {"energy": [1.0, 2.5], "ok": True}
    payload, meta = encode(b"\x00\x01", "bytes")
    assert decode(payload, meta) == b"\x00\x01"
    assert decode(b"raw", {}) == b"raw"  # no format recorded: raw bytes


def test_format_errors_are_clear() -> None:
    with pytest.raises(TransportConfigError, match="unknown payload format 'xml'"):
        encode(1, "xml")
    with pytest.raises(TransportConfigError, match="needs a numpy array"):
        encode([1, 2], "seedee")
    with pytest.raises(TransportConfigError, match=r"cannot be written as JSON"):
        encode({"x": {1, 2}}, "json")
    with pytest.raises(TransportConfigError, match="cannot hold arrays of dtype"):
        encode(np.array(["a"]), "seedee")
    payload, meta = encode(np.arange(10), "seedee")
    with pytest.raises(CorruptPayload, match=r"message 5 of stream 's'.*corrupt seedee"):
        decode(payload[:-3], meta, where="message 5 of stream 's'")
    with pytest.raises(CorruptPayload, match="no seedee metadata"):
        decode(payload, {"format": "seedee"})
    with pytest.raises(CorruptPayload, match="unknown payload format"):
        decode(b"", {"format": "pickle"})
