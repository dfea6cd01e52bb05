"""Payload formats: bytes, JSON, JSON with packed arrays (decoding to what JSON gives) and
seedee arrays (bit-exact), with clear errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# -- json_arrays: JSON whose long numeric lists travel packed -----------------------------------
_finite = st.floats(allow_nan=False, allow_infinity=False)
_scalars = st.none() | st.booleans() | st.integers() | _finite | st.text(max_size=5)
_numeric_lists = (
    st.lists(_finite | st.none(), min_size=14, max_size=60)
    | st.lists(st.integers(min_value=-(2**70), max_value=2**70), min_size=14, max_size=60)
    | st.lists(_finite | st.integers(-5, 5), min_size=14, max_size=40)  # mixed: stays JSON
)
_values = st.recursive(
    _scalars | _numeric_lists,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=30,
)


def _as_json(value):
    """What a consumer of the `json` format gets, written out so that 1 and 1.0 differ."""
    payload, meta = encode(value, "json")
    return json.dumps(decode(payload, meta))


@settings(max_examples=300, deadline=None)
@given(_values)
def test_json_arrays_decodes_to_exactly_what_json_decodes_to(value) -> None:
    payload, meta = encode(value, "json_arrays")
    assert meta["format"] == "json_arrays"
    assert json.dumps(decode(payload, meta)) == _as_json(value)


@pytest.mark.parametrize(
    "array",
    [a for a in ARRAYS if a.dtype.kind in "iuf"],
    ids=lambda a: f"{a.dtype.str}{list(a.shape)}",
)
def test_json_arrays_gives_numpy_arrays_back_as_the_lists_json_gives(array) -> None:
    value = {"frame": array, "n": [array, array.reshape(-1)[:1]]}
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        for fmt in ("json", "json_arrays"):  # JSON has no NaN or infinity: both refuse
            with pytest.raises(TransportConfigError, match="Out of range float"):
                encode(value, fmt)
        return
    payload, meta = encode(value, "json_arrays")
    assert json.dumps(decode(payload, meta)) == _as_json(value)


def test_json_arrays_packs_long_numeric_lists_at_eight_bytes_a_number() -> None:
    rng = np.random.default_rng(3)
    value = {"energy": rng.normal(7100, 50, 20_000).tolist(), "label": "goethite"}
    payload, _ = encode(value, "json_arrays")
    text, _ = encode(value, "json")
    assert 8 * 20_000 <= len(payload) < 8 * 20_000 + 200
    assert len(text) > 2 * len(payload)


def test_json_arrays_refuses_what_json_refuses() -> None:
    for bad in ([1.0] * 20 + [float("nan")], [0.5] * 20 + [float("inf")], {1, 2}):
        for fmt in ("json", "json_arrays"):
            with pytest.raises(TransportConfigError, match=f"(?i)cannot be written as {fmt}:"):
                encode({"x": bad}, fmt)


def test_a_damaged_json_arrays_payload_is_one_sentence_naming_the_message() -> None:
    payload, meta = encode({"mu": [float(i) for i in range(100)], "e0": 7112.0}, "json_arrays")
    n = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8 : 8 + n])
    damaged = {
        "cut short": payload[:-9],
        "too short for a header": payload[:5],
        "header longer than the payload": (10**9).to_bytes(8, "little") + payload[8:],
        "object dtype": _with_header(payload, {**header, "arrays": [[["mu"], "|O", [100]]]}),
        "path to a value": _with_header(payload, {**header, "arrays": [[["e0"], "<f8", [100]]]}),
        "path to nowhere": _with_header(payload, {**header, "arrays": [[["nu"], "<f8", [100]]]}),
    }
    for what, bad in damaged.items():
        start = r"^message 9 of stream 's' holds a damaged json_arrays payload: \S"
        with pytest.raises(CorruptPayload, match=start) as caught:
            decode(bad, meta, where="message 9 of stream 's'")
        assert "\n" not in str(caught.value), what


def _with_header(payload: bytes, header: dict) -> bytes:
    n = int.from_bytes(payload[:8], "little")
    body = payload[8 + n + (-(8 + n) % 8) :]
    new = json.dumps(header).encode()
    return len(new).to_bytes(8, "little") + new + bytes(-(8 + len(new)) % 8) + body
