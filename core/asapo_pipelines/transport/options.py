"""A transport's options as its runtime opens them, apart from `asapo_pipelines.transport` so
that the pipeline model can make them without importing the transports (which import it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel


class OpenOptions(dict[str, Any]):
    """A transport's options as its config model gives them (`open_options(base_dir)`, else its
    JSON dump): what its runtime opens with. `TransportSection.spec()` hands these out, and
    `open_transport` opens them as they are; any other mapping is a pipeline file's section."""


def resolved_options(config: BaseModel, base_dir: Path) -> OpenOptions:
    """The options a transport's validated config model gives its runtime, relative paths made
    absolute against `base_dir` (the pipeline file's folder)."""
    open_options = getattr(config, "open_options", None)
    if callable(open_options):
        return OpenOptions(open_options(base_dir))
    return OpenOptions(config.model_dump(mode="json", exclude_none=True))
