"""Two pipeline files claiming one pipeline name in one store are refused with a remedy: give
one of them another name, or a store of its own. The remedy named the embedded store's `path`
and Redis' `key_prefix` on every transport; on ASAP::O neither exists, its option is
`data_source_prefix`. Each transport now says its own option (`Transport.separate_store`).
Real RunStore on the real embedded store and, through the real asapo client wheels, on the
project's loopback ASAP::O (a protocol-level stand-in for the service, which cannot run here)."""

from __future__ import annotations

import pytest
from loopback import LoopbackAsapo

from asapo_pipelines.runs.store import RunsError, RunStore
from asapo_pipelines.transport import open_transport

pytest.importorskip("asapo_consumer", reason="the asapo extra is not installed")

TOKEN = "namespace-Tok3n"


def _refusal(transport, tmp_path) -> str:
    store = RunStore(transport, "demo")
    for name in ("a", "b"):  # both exist: the remedy is not the rename one
        (tmp_path / f"{name}.pipeline.yaml").write_text("pipeline: demo\n")
    store.claim(tmp_path / "a.pipeline.yaml")
    with pytest.raises(RunsError) as refused:
        store.claim(tmp_path / "b.pipeline.yaml")
    return str(refused.value)


def test_the_remedy_on_asapo_names_its_data_source_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("NAMESPACE_TOKEN", TOKEN)
    with LoopbackAsapo(TOKEN) as service:
        spec = {"endpoint": service.endpoint, "beamtime": service.beamtime}
        spec |= {"token_env": "NAMESPACE_TOKEN", "request_timeout": 5}
        with open_transport({"asapo": spec}) as transport:
            said = _refusal(transport, tmp_path)
    assert said.endswith(
        "a store of its own in its `transport:` section (another `data_source_prefix`)"
    ), said
    assert "key_prefix" not in said
    assert "`path`" not in said


def test_the_remedy_on_the_embedded_store_names_its_path(tmp_path):
    with open_transport({"embedded": {"path": str(tmp_path / "store")}}) as transport:
        said = _refusal(transport, tmp_path)
    assert said.endswith("its `transport:` section (another `path`)"), said
