from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fake_nomad import FakeNomad

TOKEN = "3f1c2b9e-secret-token-0000-aaaabbbbcccc"


@pytest.fixture
def fake_nomad() -> Iterator[FakeNomad]:
    fake = FakeNomad().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def clean_nomad_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NOMAD_* or proxy settings leak in from the machine running the tests."""
    for key in list(os.environ):
        if key.startswith("NOMAD_") or key.lower() in {"http_proxy", "https_proxy", "all_proxy"}:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def nomad_env(
    monkeypatch: pytest.MonkeyPatch, fake_nomad: FakeNomad, clean_nomad_env: None
) -> FakeNomad:
    monkeypatch.setenv("NOMAD_ADDR", fake_nomad.address)
    monkeypatch.setenv("NOMAD_TOKEN", TOKEN)
    monkeypatch.setenv("NOMAD_NAMESPACE", "beamline")
    monkeypatch.setenv("NOMAD_REGION", "europe")
    return fake_nomad
