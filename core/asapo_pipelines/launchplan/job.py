"""What every executor's job of a pipeline shares: its type and the file its workers read.

Typed against the pipeline file's model (`asapo_pipelines.pipeline.model.Pipeline`): callers
pass a validated model.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import Pipeline

JobType = Literal["batch", "service"]

#: A source whose params set one of these to true keeps running, so its pipeline is a service.
KEEPS_RUNNING = ("watch", "follow", "continuous", "forever")


def job_type(pipeline: Pipeline, catalog: Catalog) -> JobType:
    """`batch` when every source ends (and nothing is fed from outside), else `service`."""
    if any(stream.external for stream in pipeline.streams.values()):
        return "service"
    for instance in pipeline.units:
        descriptor = pipeline.descriptor(instance, catalog)
        if descriptor.role != "source":
            continue
        if keeps_running(pipeline.params_for(instance, catalog)):
            return "service"
    return "batch"


def keeps_running(params: Any) -> bool:
    """Whether a source's params make it run until stopped (each unit has its own params
    model: a source that keeps running names one of `KEEPS_RUNNING`)."""
    return any(bool(getattr(params, key, False)) for key in KEEPS_RUNNING)


def delivered_file(pipeline: Pipeline, text: str) -> str:
    """The pipeline file as workers get it (a copy beside them): the transport's paths,
    relative to the original file, are made absolute; everything else is left exactly as
    written."""
    from ruamel.yaml import YAML  # round-trip YAML is needed only when a plan is made

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # never fold a long line the user did not fold
    data = yaml.load(text)
    if not isinstance(data, dict) or not _absolute_transport(data, pipeline.transport.spec()):
        return text
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _absolute_transport(data: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Write the resolved transport paths into the loaded file; whether anything changed (an
    unchanged file is delivered byte for byte)."""
    section = data.get("transport")
    if "embedded" in spec:
        wanted = spec["embedded"]["path"]
        embedded = section.get("embedded") if isinstance(section, dict) else None
        if not isinstance(section, dict) or not isinstance(embedded, dict):
            data["transport"] = {"embedded": {"path": wanted}}
            return True
        if embedded.get("path") != wanted:
            embedded["path"] = wanted
            return True
    elif "asapo" in spec and spec["asapo"].get("token_file") and isinstance(section, dict):
        asapo = section.get("asapo")
        if isinstance(asapo, dict) and asapo.get("token_file") != spec["asapo"]["token_file"]:
            asapo["token_file"] = spec["asapo"]["token_file"]
            return True
    return False
