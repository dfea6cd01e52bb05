"""What the viewer needs to know about a pipeline: its units, their wiring and its transport."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asapo_pipelines.descriptor import UnitDescriptor
from asapo_pipelines.errors import PipelinesError


@dataclass(frozen=True)
class UnitView:
    instance: str
    descriptor: UnitDescriptor
    inputs: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 1


@dataclass(frozen=True)
class PipelineView:
    """A pipeline as the viewer draws it (built from a pipeline file or by a test)."""

    name: str
    transport: Mapping[str, Any]
    units: tuple[UnitView, ...]
    path: Path | None = None

    def unit(self, instance: str) -> UnitView | None:
        return next((u for u in self.units if u.instance == instance), None)

    @property
    def streams(self) -> list[str]:
        """Every stream the units read or write, in order of first appearance."""
        seen: dict[str, None] = {}
        for unit in self.units:
            for name in (*unit.inputs.values(), *unit.outputs.values()):
                seen.setdefault(name, None)
        return list(seen)


def from_pipeline(pipeline: Any, catalog: Any) -> PipelineView:
    """Adapt a loaded `asapo_pipelines.pipeline.Pipeline`."""
    units = []
    for instance, config in pipeline.units.items():
        descriptor = catalog.get(config.unit)
        outputs = dict(config.outputs)
        for port in descriptor.outputs:
            # the worker's rule for an output nobody reads: it still goes somewhere predictable
            outputs.setdefault(port.name, f"{instance}-{port.name}".replace("_", "-"))
        units.append(
            UnitView(
                instance=instance,
                descriptor=descriptor,
                inputs=dict(config.inputs),
                outputs=outputs,
                replicas=int(getattr(config, "replicas", 1) or 1),
            )
        )
    path = getattr(pipeline, "path", None)
    return PipelineView(
        name=pipeline.name,
        transport=pipeline.transport.spec(),
        units=tuple(units),
        path=Path(path) if path is not None else None,
    )


def load_view(path: str | Path, catalog: Any = None) -> PipelineView:
    """Load a pipeline file (validated by `asapo_pipelines.pipeline`) for the viewer."""
    if catalog is None:
        from asapo_pipelines.catalog import Catalog

        catalog = Catalog.load()
    path = Path(path)
    if not path.is_file():
        raise PipelinesError(f"pipeline file {path} does not exist")
    try:
        from asapo_pipelines.pipeline import load_pipeline
    except ImportError:  # the pipeline file model is not in this build: read the few keys we use
        return _read_minimal(path, catalog)
    return from_pipeline(load_pipeline(path, catalog), catalog)


def _read_minimal(path: Path, catalog: Any) -> PipelineView:
    from ruamel.yaml import YAML, YAMLError

    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as exc:
        raise PipelinesError(f"cannot read pipeline file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("pipeline"), str):
        raise PipelinesError(f"{path} is not a pipeline file (no `pipeline:` name)")
    transport = data.get("transport") or {"embedded": {"path": ".pipeline-data"}}
    if "embedded" in transport:
        store = Path((transport["embedded"] or {}).get("path", ".pipeline-data"))
        if not store.is_absolute():
            store = path.parent / store
        transport = {"embedded": {"path": str(store.resolve())}}

    class _Config:
        def __init__(self, raw: dict[str, Any]) -> None:
            self.unit = raw.get("unit")
            self.inputs = raw.get("inputs") or {}
            self.outputs = raw.get("outputs") or {}
            self.replicas = raw.get("replicas", 1)

    class _Transport:
        def spec(self) -> Mapping[str, Any]:
            return transport

    class _Pipeline:
        name = data["pipeline"]
        units = {k: _Config(v or {}) for k, v in (data.get("units") or {}).items()}

    _Pipeline.transport = _Transport()  # type: ignore[attr-defined]
    _Pipeline.path = path  # type: ignore[attr-defined]
    for instance, config in _Pipeline.units.items():
        if config.unit not in catalog:
            raise PipelinesError(f"unit {instance} names unknown unit {config.unit}")
    return from_pipeline(_Pipeline, catalog)
