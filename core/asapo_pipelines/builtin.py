"""The core's own units, registered through the same hook as any third-party plugin.

They are small and general: reading a directory of files, writing JSON lines, passing messages
through unchanged. Tests, benchmarks and first pipelines use them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from asapo_pipelines.descriptor import Params, Port, Resources, UnitDescriptor
from asapo_pipelines.hookspecs import RegisterUnit, ReportFinding, hookimpl


class FilesParams(Params):
    directory: Annotated[
        str,
        Field(
            description="Directory to read files from.",
            examples=["data"],
            # `pipeline new` creates a directory-path example so the starter file runs
            json_schema_extra={"format": "directory-path"},
        ),
    ]
    pattern: Annotated[str, Field(description="Glob pattern of the files to read.")] = "*"
    recursive: Annotated[bool, Field(description="Also read files in subdirectories.")] = False
    watch: Annotated[
        bool,
        Field(description="Keep running and emit each new file once it is complete."),
    ] = False
    settle_seconds: Annotated[
        float,
        Field(
            ge=0,
            description="In watch mode, a file counts as complete once its size and "
            "modification time have not changed for this long.",
        ),
    ] = 1.0
    order: Annotated[
        Literal["name", "mtime"], Field(description="Order in which present files are sent.")
    ] = "name"


class JsonLinesParams(Params):
    path: Annotated[
        str,
        Field(
            description="File to append one JSON object per message to.",
            examples=["results/out.jsonl"],
        ),
    ]
    payload: Annotated[
        Literal["omit", "text", "base64", "value"],
        Field(
            description="How to write each message's payload: left out, as UTF-8 text "
            "(`payload`; a message that is not UTF-8 text goes to the error stream), "
            "base64-encoded (`payload`), or decoded with the message's format (`value`: JSON, "
            "arrays as lists, NaN as null; raw `bytes` messages go to the error stream)."
        ),
    ] = "omit"


class IdentityParams(Params):
    """The identity processor takes no parameters."""


FILES = UnitDescriptor(
    name="core.files",
    kind="connector",
    status="beta",
    summary="Reads the files of a directory, one message per file (optionally watching it).",
    description=(
        "A source that sends each file matching `pattern` in `directory` as one message: the "
        "file's bytes as payload, its name, size and modification time as metadata. In watch "
        "mode it keeps running and sends each new file once it has stopped changing."
    ),
    outputs=(
        Port(
            name="files",
            content_type="application/octet-stream",
            format="bytes",
            description="One message per file: payload is the file content.",
        ),
    ),
    params=FilesParams,
    resources=Resources(cpu=200, memory=128),
    runtime="asapo_pipelines.units.files:FilesSource",
)

JSONL_SINK = UnitDescriptor(
    name="core.jsonl-sink",
    kind="connector",
    status="beta",
    summary="Appends every message it receives to a JSON-lines file.",
    description=(
        "A sink that writes one JSON object per message: stream, id, metadata and provenance, "
        "the producing unit (unit, distribution, version, params, run: `producer`) and "
        "optionally the payload. A message delivered twice is written once."
    ),
    inputs=(Port(name="messages", content_type="*/*", description="Any messages."),),
    params=JsonLinesParams,
    resources=Resources(cpu=200, memory=128),
    runtime="asapo_pipelines.units.jsonl:JsonLinesSink",
)

IDENTITY = UnitDescriptor(
    name="core.identity",
    kind="processor",
    status="stable",
    summary="Passes each message through unchanged (for tests, benchmarks and fan-out).",
    inputs=(Port(name="input", content_type="*/*", format="bytes"),),
    outputs=(Port(name="output", content_type="*/*", format="bytes"),),
    params=IdentityParams,
    resources=Resources(cpu=100, memory=64),
    runtime="asapo_pipelines.units.identity:Identity",
)


@hookimpl
def register_units(register: RegisterUnit) -> None:
    for descriptor in (FILES, JSONL_SINK, IDENTITY):
        register(descriptor)


#: formats whose payloads are never UTF-8 text: `payload: text` would write none of their data
BINARY_FORMATS = frozenset({"json_arrays", "seedee"})


@hookimpl
def check_pipeline(pipeline: Any, catalog: Any, report: ReportFinding) -> None:
    """A `core.jsonl-sink` asked to write as text what a binary format carries, or to decode
    raw bytes: every message would go to the error stream, so the file is refused first."""
    for name, config in pipeline.units.items():
        if config.unit != JSONL_SINK.name:
            continue
        mode = pipeline.params_for(name, catalog).payload
        if mode not in ("text", "value"):
            continue
        for stream in config.inputs.values():
            for writer, port, fmt in _writers_of(pipeline, catalog, stream):
                if mode == "text" and fmt in BINARY_FORMATS:
                    why = (
                        f"{writer}.{port} writes {stream!r} as {fmt}, which is binary, not "
                        "UTF-8 text; use `payload: value` to write its decoded value"
                    )
                elif mode == "value" and fmt == "bytes":
                    why = (
                        f"{writer}.{port} writes {stream!r} as raw bytes, which have no "
                        "decoded value; use `payload: text` or `payload: base64`"
                    )
                else:
                    continue
                report(("units", name, "params", "payload"), "P314", why)


def _writers_of(pipeline: Any, catalog: Any, stream: str) -> list[tuple[str, str, str]]:
    """(instance, output port, format) of each unit writing `stream`."""
    found = []
    for name, config in pipeline.units.items():
        for port, written in config.outputs.items():
            spec = pipeline.descriptor(name, catalog).output(port) if written == stream else None
            if spec is not None:
                found.append((name, port, spec.format))
    return found


# The core's backends are a default plugin of their own module, registered under the core
# plugin's name (one record in `pipeline plugins`); each becomes its own distribution later.
from asapo_pipelines.default_backends import (  # noqa: E402
    check_online,
    register_commands,
    register_executors,
    register_formats,
    register_transports,
)

__all__ = [
    "check_online",
    "check_pipeline",
    "register_commands",
    "register_executors",
    "register_formats",
    "register_transports",
    "register_units",
]
