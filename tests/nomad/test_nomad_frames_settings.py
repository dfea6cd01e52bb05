"""Nomad's framed log stream decoding, and NOMAD_* settings."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from fake_nomad import log_frames
from hypothesis import given
from hypothesis import strategies as st

from asapo_pipelines.nomad.errors import NomadConfigError, NomadServerError
from asapo_pipelines.nomad.frames import FrameDecoder, decode_frames
from asapo_pipelines.nomad.settings import NomadSettings


def test_frames_decode_whatever_the_chunking() -> None:
    text = "ligne 1 é\nline 2\n".encode() * 5
    body = log_frames(text, size=11)
    for size in (1, 2, 3, 7, 64, len(body)):
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        frames = list(decode_frames(chunks))
        assert b"".join(f.data for f in frames) == text
        assert frames[-1].file_event == "file truncated"
        assert all(f.file == "alloc/logs/scans.stdout.0" for f in frames)


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40), st.data())
def test_frames_roundtrip_any_bytes(payload: bytes, frame_size: int, data: st.DataObject) -> None:
    body = log_frames(payload, size=frame_size)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(body)), max_size=10)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert b"".join(f.data for f in decode_frames(chunks)) == payload


def test_heartbeats_are_skipped_and_offsets_kept() -> None:
    body = b'{}{"File":"f","Offset":4,"Data":"YWJjZA=="}\n{}'
    [frame] = list(decode_frames([body]))
    assert (frame.data, frame.offset, frame.file) == (b"abcd", 4, "f")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"File":"f","Data":"not base64!!"}', "Data is not base64"),
        (b'{"File":"f","Data":"YW', "ended in the middle of a frame"),
        (b"[1, 2]", "something that is not a frame"),
        (b"\xff\xfe\xfd\xfc\xfb" + b"{}" * 3, "not valid UTF-8 JSON"),
    ],
)
def test_bad_streams_give_one_sentence(body: bytes, message: str) -> None:
    with pytest.raises(NomadServerError, match=message):
        list(decode_frames([body]))


def test_a_frame_split_inside_a_utf8_character_in_its_file_name() -> None:
    frame = json.dumps(
        {"File": "alloc/logs/é.stdout.0", "Data": base64.b64encode(b"x").decode()},
        ensure_ascii=False,
    ).encode()
    cut = frame.index("é".encode()) + 1
    decoder = FrameDecoder()
    assert decoder.feed(frame[:cut]) == []
    [decoded] = decoder.feed(frame[cut:])
    assert decoded.file == "alloc/logs/é.stdout.0"


def test_settings_from_the_standard_environment(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "client.pem", "client-key.pem"))
    for f in (ca, cert, key):
        f.write_text("pem")
    env = {
        "NOMAD_ADDR": "https://nomad.facility:4646/",
        "NOMAD_TOKEN": "secret-token",
        "NOMAD_NAMESPACE": "beamline",
        "NOMAD_REGION": "europe",
        "NOMAD_CACERT": str(ca),
        "NOMAD_CLIENT_CERT": str(cert),
        "NOMAD_CLIENT_KEY": str(key),
    }
    s = NomadSettings.from_env(env)
    assert s.address == "https://nomad.facility:4646"
    assert (s.token, s.namespace, s.region) == ("secret-token", "beamline", "europe")
    assert s.verify == str(ca)
    assert s.cert == (str(cert), str(key))
    assert "secret-token" not in json.dumps(s.describe())
    # verified by default with the system's CAs; skipping needs an explicit setting
    assert NomadSettings.from_env({}).verify is True
    assert NomadSettings.from_env({}).address == "http://127.0.0.1:4646"
    assert NomadSettings.from_env({"NOMAD_SKIP_VERIFY": "true"}).verify is False
    assert NomadSettings.from_env({"NOMAD_SKIP_VERIFY": "0"}).verify is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NOMAD_SKIP_VERIFY": "maybe"}, "NOMAD_SKIP_VERIFY='maybe' is not a boolean"),
        ({"NOMAD_ADDR": "nomad:4646"}, "NOMAD_ADDR='nomad:4646' must start with http://"),
        ({"NOMAD_CLIENT_CERT": "/x.pem"}, "must be set together for mutual TLS"),
        ({"NOMAD_CACERT": "/no/such/ca.pem"}, "NOMAD_CACERT names /no/such/ca.pem, which is not"),
    ],
)
def test_bad_settings_give_one_sentence(env: dict, message: str) -> None:
    with pytest.raises(NomadConfigError, match=message):
        NomadSettings.from_env(env)
