"""What the viewer needs to know about a pipeline: its units, their wiring and its transport."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines.descriptor import UnitDescriptor
from asapo_pipelines.errors import PipelinesError

if TYPE_CHECKING:  # pragma: no cover - the pipeline model is loaded only with a file
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import Pipeline


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
    #: streams declared external: read under their own names (asapo_pipelines.worker.naming)
    external: frozenset[str] = frozenset()

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


def from_pipeline(pipeline: Pipeline, catalog: Catalog) -> PipelineView:
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
                replicas=config.replicas,
            )
        )
    return PipelineView(
        name=pipeline.name,
        transport=pipeline.transport.spec(),
        units=tuple(units),
        path=pipeline.path,
        external=frozenset(s for s, d in pipeline.streams.items() if d.external),
    )


def load_view(path: str | Path, catalog: Catalog | None = None) -> PipelineView:
    """Load a pipeline file (validated by `asapo_pipelines.pipeline`) for the viewer."""
    if catalog is None:
        from asapo_pipelines.catalog import Catalog

        catalog = Catalog.load()
    path = Path(path)
    if not path.is_file():
        raise PipelinesError(f"pipeline file {path} does not exist")
    from asapo_pipelines.pipeline import load_pipeline

    return from_pipeline(load_pipeline(path, catalog), catalog)
