"""The data source names two pipelines with the same stream names give the asapo transport.

There is no ASAP::O service here: this is a contract test at the level of the names the worker
hands to the real `AsapoTransport`, whose client libraries are replaced by recorders of the
data source each producer and consumer is created for (the names ASAP::O would see, with the
transport's `data_source_prefix`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines.catalog import Catalog
from asapo_pipelines.pipeline import load_pipeline
from asapo_pipelines.transport import open_transport
from asapo_pipelines.worker.launch import stream_sources
from asapo_pipelines.worker.runtime import Worker

PIPELINE = """
pipeline: {name}
transport:
  asapo: {{endpoint: "127.0.0.1:1", beamtime: "11012345", token_env: TEST_ASAPO_TOKEN,
          data_source_prefix: "{prefix}"}}
streams:
  detector: {{external: true}}
units:
  pass:
    unit: core.identity
    inputs: {{input: detector}}
    outputs: {{output: checked}}
  sink:
    unit: core.jsonl-sink
    params: {{path: out.jsonl}}
    inputs: {{messages: checked}}
"""


class _Anything:
    """Stands for a client library object: every method does nothing."""

    def __getattr__(self, _name: str) -> Any:
        return lambda *a, **k: None


class Recorder:
    def __init__(self, kind: str, seen: list[tuple[str, tuple[Any, ...]]]) -> None:
        self.kind = kind
        self.seen = seen

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("create_"):
            raise AttributeError(name)

        def create(*args: Any, **_kw: Any) -> _Anything:
            self.seen.append((self.kind, args))
            return _Anything()

        return create


def names_given(path: Path, catalog: Catalog, run: str) -> set[str]:
    """Every data source the pipeline's workers would create producers and consumers for."""
    pytest.importorskip("asapo_producer", reason="the asapo extra is not installed")
    pipeline = load_pipeline(path, catalog)
    sources = stream_sources(pipeline, catalog, run)
    transport = open_transport(pipeline.transport.spec())
    seen: list[tuple[str, tuple[Any, ...]]] = []
    transport.producer_lib = Recorder("producer", seen)
    transport.consumer_lib = Recorder("consumer", seen)
    for instance, config in pipeline.units.items():
        worker = Worker(
            transport,
            pipeline.descriptor(instance, catalog),
            pipeline.params_for(instance, catalog),
            pipeline=pipeline.name,
            instance=instance,
            inputs=dict(config.inputs),
            outputs=dict(config.outputs),
            data_sources=sources,
        )
        worker._open()
    prefix = pipeline.transport.asapo.data_source_prefix
    # the data source is the one argument that starts with the transport's prefix (the others
    # are the endpoint, beamtime, paths, the token and numbers)
    return {a for _kind, args in seen for a in args if isinstance(a, str) and a.startswith(prefix)}


def test_contract_asapo_two_pipelines_with_the_same_streams_get_different_data_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ASAPO_TOKEN", "not-a-real-token")
    catalog = Catalog.load()
    paths = {}
    for name in ("alpha", "beta"):
        paths[name] = tmp_path / f"{name}.pipeline.yaml"
        paths[name].write_text(PIPELINE.format(name=name, prefix="p65_"))
    alpha = names_given(paths["alpha"], catalog, "r1")
    beta = names_given(paths["beta"], catalog, "r1")
    assert alpha == {"p65_alpha.r1.checked", "p65_detector", "p65_alpha.errors"}
    assert beta == {"p65_beta.r1.checked", "p65_detector", "p65_beta.errors"}
    # their own streams never meet; only the declared external stream is shared (read only)
    assert alpha & beta == {"p65_detector"}
    # and two runs of one pipeline do not meet either
    assert names_given(paths["alpha"], catalog, "r2") - alpha == {"p65_alpha.r2.checked"}
