"""Pipeline files: the model, a position-keeping YAML loader and staged validation.

    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline import load_pipeline, validate_file

    pipeline = load_pipeline("p65.pipeline.yaml", Catalog.load())   # raises PipelineInvalid
    report = validate_file("p65.pipeline.yaml", Catalog.load())     # never raises for bad input

Names are resolved on first access so that importing the package costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

#: A pipeline's data directory, next to its file unless the file says otherwise: the embedded
#: transport's default store and where local runs live (`runs/<job>/`). Defined in this light
#: package root so that commands which never load the pydantic model can import it.
DEFAULT_DATA_DIR = ".pipeline-data"

_LAZY = {
    "Pipeline": "asapo_pipelines.pipeline.model",
    "UnitConfig": "asapo_pipelines.pipeline.model",
    "TransportConfig": "asapo_pipelines.pipeline.model",
    "StreamDecl": "asapo_pipelines.pipeline.model",
    "DeployConfig": "asapo_pipelines.pipeline.model",
    "ResourcesOverride": "asapo_pipelines.pipeline.model",
    "Retry": "asapo_pipelines.pipeline.model",
    "PipelineInvalid": "asapo_pipelines.pipeline.validate",
    "load_pipeline": "asapo_pipelines.pipeline.validate",
    "validate_file": "asapo_pipelines.pipeline.validate",
    "validate_text": "asapo_pipelines.pipeline.validate",
    "Report": "asapo_pipelines.pipeline.problems",
    "Problem": "asapo_pipelines.pipeline.problems",
    "CODES": "asapo_pipelines.pipeline.problems",
}

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.pipeline.model import (
        DeployConfig,
        Pipeline,
        ResourcesOverride,
        Retry,
        StreamDecl,
        TransportConfig,
        UnitConfig,
    )
    from asapo_pipelines.pipeline.problems import CODES, Problem, Report
    from asapo_pipelines.pipeline.validate import (
        PipelineInvalid,
        load_pipeline,
        validate_file,
        validate_text,
    )

__all__ = [
    "CODES",
    "DEFAULT_DATA_DIR",
    "DeployConfig",
    "Pipeline",
    "PipelineInvalid",
    "Problem",
    "Report",
    "ResourcesOverride",
    "Retry",
    "StreamDecl",
    "TransportConfig",
    "UnitConfig",
    "load_pipeline",
    "validate_file",
    "validate_text",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asapo_pipelines.pipeline' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
