"""Unit descriptors: what a plugin tells the catalog about each unit it offers.

A descriptor is plain data. It names the unit's runtime class only as an import string, so the
catalog can list hundreds of units without importing the heavy libraries their runtimes need
(xraylarch, torch, ...): the runtime is imported only inside a worker, by `load_runtime()`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PydanticUndefinedAnnotation,
    PydanticUserError,
    field_validator,
    model_validator,
)

from asapo_pipelines.errors import PluginError
from asapo_pipelines.import_strings import import_runtime
from asapo_pipelines.kinds import KINDS, STATUSES, Kind, Status

__all__ = [
    "KINDS",
    "STATUSES",
    "ExecutorDescriptor",
    "FormatDescriptor",
    "Kind",
    "NoParams",
    "Params",
    "PlotHint",
    "Port",
    "Resources",
    "Status",
    "TransportDescriptor",
    "UnitDescriptor",
]

#: `<namespace>.<name>`: lower case, digits, `-` and `_`; the namespace is usually the plugin's.
UNIT_NAME_PATTERN = r"^[a-z][a-z0-9_-]*\.[a-z0-9][a-z0-9_-]*$"
PORT_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
#: A module's dotted name (`asapo_consumer`, `redis.asyncio`).
MODULE_PATTERN = r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$"
RUNTIME_PATTERN = r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$"
#: `type/subtype` as in media types; `*` wildcards accept anything (`*/*`) or one family.
CONTENT_TYPE_PATTERN = r"^([a-z0-9][a-z0-9.+_-]*|\*)/([a-z0-9][a-z0-9.+_-]*|\*)$"


def _require_model_class(field: str, value: Any) -> Any:
    if not (isinstance(value, type) and issubclass(value, BaseModel)):
        raise ValueError(f"{field} must be a pydantic model class, not {type(value).__name__}")
    return value


def _require_closed_model(field: str, value: Any) -> Any:
    """A model class that refuses unknown keys: it validates a section of a pipeline file, where
    a key pydantic ignores by default would be a typo passing silently. Reads only the class's
    config, so it builds no schema (the catalog checks hundreds of descriptors)."""
    _require_model_class(field, value)
    if value.model_config.get("extra") != "forbid":
        raise ValueError(
            f"{field} model {value.__name__} must refuse unknown keys "
            "(model_config = ConfigDict(extra='forbid')): a typo in a pipeline file would pass "
            "silently"
        )
    return value


def _require_params_class(value: Any) -> Any:
    """A subclass of `Params`, which refuses unknown keys and builds its schema lazily."""
    _require_model_class("params", value)
    if not issubclass(value, Params):
        raise ValueError(
            f"params model {value.__name__} must subclass asapo_pipelines.sdk.Params (which "
            "refuses unknown keys), not just pydantic.BaseModel: a typo in a pipeline file would "
            "pass silently"
        )
    return _require_closed_model("params", value)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _schema_failure(model: type[BaseModel], exc: BaseException, kind: str = "params") -> str:
    """Why `model` has no JSON Schema, naming the field at fault when one alone is (a field
    typed `Callable`: a pipeline file cannot hold its value, so no schema describes it)."""
    from pydantic import TypeAdapter
    from pydantic.errors import PydanticInvalidForJsonSchema

    for name, info in model.model_fields.items():
        if info.annotation is None:
            continue
        try:
            TypeAdapter(info.annotation).json_schema()
        except PydanticInvalidForJsonSchema as field_exc:
            return f"its {kind} field {name} has no JSON Schema ({_first_line(field_exc)})"
        except Exception:  # a field the probe cannot judge alone is not blamed
            continue
    return f"its {kind} model {model.__name__} has no JSON Schema ({_first_line(exc)})"


class Params(BaseModel):
    """Base class for a unit's parameters.

    Unknown keys are errors (a typo in a pipeline file must not pass silently), and the schema is
    built lazily (`defer_build`), so that defining hundreds of params models costs nothing until a
    pipeline actually uses one.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)


class NoParams(Params):
    """A unit without parameters."""


class Port(BaseModel):
    """One named input or output of a unit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=PORT_NAME_PATTERN, description="Port name, snake_case.")]
    content_type: Annotated[
        str,
        Field(
            pattern=CONTENT_TYPE_PATTERN,
            description="What flows through the port, as `type/subtype` (e.g. `xas/scan`); "
            "`*/*` on an input accepts anything.",
        ),
    ] = "*/*"
    format: Annotated[
        str,
        Field(
            pattern=r"^[a-z][a-z0-9_-]*$",
            description="Payload serialization on the wire: `json`, `bytes`, `seedee` (arrays) "
            "or a format a plugin registers (`register_formats`); the catalog checks the name.",
        ),
    ] = "json"
    required: bool = True
    description: str = ""


class Resources(BaseModel):
    """Default resources a unit asks for when it is scheduled (Nomad's units)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu: Annotated[int, Field(ge=1, description="CPU in MHz, as Nomad counts it.")] = 500
    memory: Annotated[int, Field(ge=1, description="Memory in MB.")] = 256
    gpus: Annotated[int, Field(ge=0, description="Number of NVIDIA GPUs.")] = 0


#: a field of a message: a dotted path into its decoded payload (`arrays.energy`), else into its
#: metadata (a leading `metadata.` dropped); `id` and `time` are the message's id and time stamp.
FIELD_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$"


class PlotHint(BaseModel):
    """How the live viewer plots what a unit writes to one of its output ports.

    `kind` is `xy` (each message holds two arrays: one line per message, the newest `keep` shown
    overlaid), `scalar` (each message gives one point: `y` against `x`, which defaults to the
    message's time, so a number over time; a `y` holding text gives a timeline of events) or
    `image` (`y` holds a 2-D array; the newest is shown) or `hline` (`y` holds a level, a
    target or a limit, drawn as a horizontal line across the figure it shares; the newest).
    Fields are dotted paths into the decoded payload (`value`, the default of `y`, is the
    payload itself: an array port's array), or, when the payload has no such field, into the
    message's metadata (`metadata.scan` or just `scan`). Hints of several units with the same
    `figure` share one plot (a merged spectrum over its scans). `series` (a field, looked up as
    `label` is) splits a `scalar` or `xy` hint's messages into one trace per distinct value,
    named by it (a mapping by its values joined with ", ": a merge's group `{sample, element,
    edge, mode}` gives `goethite, Fe, K, transmission`), each keeping its own newest `keep`; so
    the merges of two samples are two noise curves, not one that jumps between them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    port: Annotated[str, Field(pattern=PORT_NAME_PATTERN, description="Output port plotted.")]
    kind: Literal["xy", "scalar", "image", "hline"]
    y: Annotated[
        str,
        Field(
            pattern=FIELD_PATTERN,
            description="Field of the values (y, image); `value` is the whole payload, so an "
            "array port (format seedee) plots with the default.",
        ),
    ] = "value"
    x: Annotated[
        str | None,
        Field(pattern=FIELD_PATTERN, description="Field of the x values; scalar default: time."),
    ] = None
    label: Annotated[
        str | None,
        Field(pattern=FIELD_PATTERN, description="Field naming each line or point (hover text)."),
    ] = None
    series: Annotated[
        str | None,
        Field(
            pattern=FIELD_PATTERN,
            description="Field splitting a scalar or xy hint into one trace per value (a sample, "
            "a group), named by the value.",
        ),
    ] = None
    title: str = ""
    x_title: Annotated[str | None, Field(description="Axis title of x, e.g. `Energy (eV)`.")] = None
    y_title: Annotated[str | None, Field(description="Axis title of y, e.g. `Normalized mu`.")] = (
        None
    )
    figure: Annotated[
        str | None,
        Field(pattern=r"^[a-z][a-z0-9_-]*$", description="Plots sharing this name are overlaid."),
    ] = None
    keep: Annotated[
        int, Field(ge=1, le=10_000, description="Lines or points kept (per series with `series`).")
    ] = 20
    label_format: Annotated[
        str | None,
        Field(
            description="How a number `label` reads: `{}` is the value, `{s}` an `s` unless it "
            "is 1 (`{} scan{s} merged`); default `<field> <value>`."
        ),
    ] = None
    x_focus: Annotated[
        str | None,
        Field(
            pattern=FIELD_PATTERN,
            description="Field of an xy message giving the x the view opens around (an edge's "
            "`values.e0`), with `x_window`; a double click shows all.",
        ),
    ] = None
    x_window: Annotated[
        tuple[float, float],
        Field(description="The x range shown around `x_focus`: (before, after), e.g. (-50, 150)."),
    ] = (-50.0, 150.0)

    @model_validator(mode="after")
    def _series_splits_lines_or_points(self) -> PlotHint:
        # an image or a level shows only its newest message: there is nothing to split
        if self.series is not None and self.kind not in ("scalar", "xy"):
            raise ValueError(f"series splits only scalar and xy plots, not {self.kind}")
        if self.x_focus is not None and self.kind != "xy":
            raise ValueError(f"x_focus opens an xy plot around a point, not a {self.kind} plot")
        if self.x_window[0] >= self.x_window[1]:
            raise ValueError(f"x_window {self.x_window} must run from lower to higher x")
        return self


class UnitDescriptor(BaseModel):
    """Everything the catalog, the validator and the scheduler need to know about a unit."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: Annotated[
        str, Field(pattern=UNIT_NAME_PATTERN, description="Qualified name `<namespace>.<name>`.")
    ]
    kind: Annotated[
        Kind,
        Field(
            description="What the unit does in a graph: a `connector` (a source with outputs "
            "only, or a sink with inputs only), a `processor` or an `agent`."
        ),
    ]
    summary: Annotated[
        str,
        Field(min_length=1, max_length=200, description="One line, for tables and listings."),
    ]
    runtime: Annotated[
        str,
        Field(
            pattern=RUNTIME_PATTERN,
            description="`package.module:Class` of the runtime, imported only inside a worker.",
        ),
    ]
    description: Annotated[str, Field(description="Any length, for `pipeline show-unit`.")] = ""
    status: Annotated[
        Status, Field(description="How far the unit can be relied on; `deprecated` is warned of.")
    ] = "experimental"
    inputs: Annotated[
        tuple[Port, ...],
        Field(
            description="`Port(name, content_type, format, required, description)` each; "
            "`*/*` as an input's content type accepts anything."
        ),
    ] = ()
    outputs: Annotated[tuple[Port, ...], Field(description="`Port`s, as `inputs`.")] = ()
    params: Annotated[
        type[BaseModel],
        Field(
            description="A subclass of `asapo_pipelines.sdk.Params`: its fields, defaults and "
            "descriptions are the JSON Schema that checks pipeline files and completes them in "
            "editors (see plugins.md)."
        ),
    ] = NoParams
    resources: Annotated[
        Resources,
        Field(description="What a task asks of a cluster by default; pipeline files override."),
    ] = Resources()
    plots: Annotated[
        tuple[PlotHint, ...],
        Field(description="How the viewer plots the unit's outputs; most units have none."),
    ] = ()
    version: Annotated[
        str | None,
        Field(description="Filled in by the catalog from the distribution that registered it."),
    ] = None
    distribution: Annotated[
        str | None, Field(description="Filled in by the catalog, as `version`.")
    ] = None

    @field_validator("summary")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value.strip():
            raise ValueError("summary must be one line; put details in description")
        return value.strip()

    @field_validator("params", mode="before")
    @classmethod
    def _params_is_model(cls, value: Any) -> Any:
        return _require_params_class(value)

    @model_validator(mode="after")
    def _check_ports(self) -> UnitDescriptor:
        for side, ports in (("input", self.inputs), ("output", self.outputs)):
            seen: set[str] = set()
            for port in ports:
                if port.name in seen:
                    raise ValueError(f"{side} port {port.name!r} is declared twice")
                seen.add(port.name)
        for hint in self.plots:
            if self.output(hint.port) is None:
                raise ValueError(f"plot hint names undeclared output port {hint.port!r}")
        if self.kind in ("processor", "agent") and not self.inputs:
            raise ValueError(f"a {self.kind} needs at least one input port")
        if self.kind == "connector" and self.inputs and self.outputs:
            raise ValueError(
                "a connector is either a source (outputs only) or a sink (inputs only)"
            )
        return self

    @property
    def namespace(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def role(self) -> str:
        """`source`, `sink`, `processor` or `agent`: what the unit does in a graph."""
        if self.kind == "connector":
            return "sink" if self.inputs else "source"
        return self.kind

    def input(self, name: str) -> Port | None:
        return next((p for p in self.inputs if p.name == name), None)

    def output(self, name: str) -> Port | None:
        return next((p for p in self.outputs if p.name == name), None)

    def params_schema(self) -> dict[str, Any]:
        """JSON Schema of the params (built on first use). A model that cannot give one (a
        field typed `Callable`) raises PluginError: one sentence naming the unit, its plugin and
        the field, instead of pydantic's error from deep inside a command."""
        schema, problem = self._params_schema_or_problem()
        if problem is not None:
            raise PluginError(
                f"unit {self.name}{self._origin()} is broken: {problem}, which editors, "
                "`pipeline show-unit` and `pipeline validate` need"
            )
        return schema

    def params_schema_problem(self) -> str | None:
        """Why the params have no JSON Schema (editors, `show-unit` and `validate` need one), or
        None. Builds the params model, so only whole-plugin checks call it (a strict catalog)."""
        return self._params_schema_or_problem()[1]

    def _params_schema_or_problem(self) -> tuple[dict[str, Any], str | None]:
        try:
            return self.params.model_json_schema(), None
        except (PydanticUserError, PydanticUndefinedAnnotation) as exc:
            return {}, _schema_failure(self.params, exc)

    def _origin(self) -> str:
        """` (from <distribution> <version>)`: the plugin to fix, when the catalog stamped it."""
        if self.distribution is None:
            return ""
        return f" (from {self.distribution} {self.version or '-'})"

    def params_default_problems(self) -> list[str]:
        """A sentence for each default of the params model that the model itself refuses
        (`factor: Annotated[int, Field(gt=0)] = -1`): pydantic does not validate defaults.
        Builds the params model, so only the places that check a plugin as a whole call it (a
        strict catalog, `pipeline schema --check`); validate and the worker check the defaults
        a file leaves unset."""
        from asapo_pipelines.pipeline.checks import model_broken_defaults

        return [broken.sentence(self.name) for broken in model_broken_defaults(self.params)]

    def load_runtime(self) -> Any:
        """Import and return the runtime class. Only workers call this."""
        return import_runtime(self.runtime)

    def summary_dict(self) -> dict[str, Any]:
        """JSON-ready description without the params schema (cheap: builds no schema)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "role": self.role,
            "version": self.version,
            "distribution": self.distribution,
            "status": self.status,
            "summary": self.summary,
            "inputs": [p.model_dump() for p in self.inputs],
            "outputs": [p.model_dump() for p in self.outputs],
            "resources": self.resources.model_dump(),
            "runtime": self.runtime,
        }


def is_unit_name(name: str) -> bool:
    return re.match(UNIT_NAME_PATTERN, name) is not None


#: A backend's name as it appears in a pipeline file (`transport: {embedded: ...}`,
#: `deploy: {slurm: ...}`): lower case, digits and `_`.
BACKEND_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


#: the name of the backend descriptor validated last: a plugin's hook that builds an invalid
#: one (`TransportDescriptor(...)` raising inside the hook) is told which, as a registered
#: mapping is, and a pipeline file naming it learns that it is installed but broken
VALIDATING_NAME: ContextVar[str | None] = ContextVar("VALIDATING_NAME", default=None)


class _BackendDescriptor(BaseModel):
    """What transports, executors, formats and commands share: a name, a config model, a runtime
    string.

    Like a unit's, the runtime is only an import string: listing the catalog imports no client
    library (asapo wheels, redis, the Slurm tools' wrappers).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: Annotated[
        str,
        Field(
            pattern=BACKEND_NAME_PATTERN,
            description="The key in a pipeline file (`transport: {name: ...}`), lower case.",
        ),
    ]
    summary: Annotated[
        str, Field(min_length=1, max_length=200, description="One line for listings.")
    ]
    runtime: Annotated[
        str,
        Field(
            pattern=RUNTIME_PATTERN,
            description="`package.module:object` of the runtime, imported only when used.",
        ),
    ]
    description: Annotated[str, Field(description="Details, for the editor's hover.")] = ""
    #: The pydantic model of the backend's section in a pipeline file; it must refuse unknown
    #: keys (``extra="forbid"``), as unit params do, or the descriptor is invalid. Its JSON Schema
    #: is the section's branch in the editor schema.
    config: Annotated[
        type[BaseModel],
        Field(
            description="Pydantic model of its section in a pipeline file (the section's editor "
            "schema); transports and executors only."
        ),
    ] = NoParams
    #: Filled in by the catalog from the distribution that registered the backend.
    version: Annotated[str | None, Field(description="Filled in by the catalog.")] = None
    distribution: Annotated[str | None, Field(description="Filled in by the catalog.")] = None

    @model_validator(mode="before")
    @classmethod
    def _remember_name(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("name"), str):
            VALIDATING_NAME.set(data["name"])
        return data

    @field_validator("config", mode="before")
    @classmethod
    def _config_is_model(cls, value: Any) -> Any:
        return _require_closed_model("config", value)

    def config_schema_problem(self) -> str | None:
        """Why the config model has no JSON Schema (the section's branch in the editor schema),
        or None: a field typed `Callable`. Builds the model's schema, so only whole-plugin
        checks (a strict catalog) and `pipeline schema` call it."""
        try:
            self.config.model_json_schema()
        except (PydanticUserError, PydanticUndefinedAnnotation) as exc:
            return _schema_failure(self.config, exc, "config")
        return None

    def config_default_problems(self, what: str) -> list[str]:
        """A sentence for each default of the config model that the model itself refuses
        (`poll: float = Field(0, gt=0)`), as for a unit's params; `what` is `transport` or
        `executor`. Builds the model, so only a strict catalog calls it."""
        from asapo_pipelines.pipeline.checks import model_broken_defaults

        model = f"{what} {self.name}'s config"
        return [b.sentence(self.name, model=model) for b in model_broken_defaults(self.config)]

    def load_runtime(self) -> Any:
        """Import and return the runtime object named by ``runtime``."""
        return import_runtime(self.runtime)

    def summary_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "runtime": self.runtime,
            "version": self.version,
            "distribution": self.distribution,
        }


class TransportDescriptor(_BackendDescriptor):
    """A transport: how units exchange messages (`transport: {<name>: {...}}`).

    ``runtime`` names a callable ``open(options: dict) -> Transport`` (the interface of
    `asapo_pipelines.sdk.transports`).
    ``options`` is the validated section as JSON-ready data with paths made absolute against the
    pipeline file's folder: the config model's ``open_options(base_dir)`` when it defines one,
    else ``model_dump(mode="json", exclude_none=True)``. Workers receive the same dict, so it
    must hold no secrets' values, only where to find them (a file, an environment variable).
    """

    #: A transport's runtime module is the plugin's own, but it may open its service through
    #: client libraries of an optional extra (the asapo wheels): naming them lets `pipeline
    #: validate` say at the `transport:` section that they are missing, without importing them.
    requires: Annotated[
        tuple[Annotated[str, Field(pattern=MODULE_PATTERN)], ...],
        Field(
            description="Modules the runtime imports when it opens the transport (client "
            "libraries); `pipeline validate` reports those not installed (P109, P110)."
        ),
    ] = ()
    install: Annotated[
        str,
        Field(
            max_length=200,
            description="How to install `requires`, said with P109 and P110 "
            "(`pip install -e '.[asapo]'` in the checkout).",
        ),
    ] = ""


class ExecutorDescriptor(_BackendDescriptor):
    """An executor: where a pipeline's units run as tasks (`deploy: {<name>: {...}}`).

    ``runtime`` names a subclass of `asapo_pipelines.sdk.Executor`. ``local`` is the
    executor of `pipeline run`; the others are chosen by `pipeline deploy` from the file's
    ``deploy:`` section.
    """

    name: Annotated[
        str,
        Field(
            pattern=BACKEND_NAME_PATTERN,
            description="The key in a pipeline file (`deploy: {name: ...}`), lower case.",
        ),
    ]


#: A command's name on the command line (`pipeline acme-hello`): lower case, digits and `-`.
COMMAND_NAME_PATTERN = r"^[a-z][a-z0-9-]*$"


class CommandDescriptor(_BackendDescriptor):
    """A command of the `pipeline` command line (`pipeline <name> ...`).

    ``runtime`` names a `click.Command`, imported only when the command runs or its own
    ``--help`` is asked for; ``summary`` is its line in `pipeline --help`, shown without
    importing anything. ``config`` is unused for commands.
    """

    name: Annotated[
        str,
        Field(
            pattern=COMMAND_NAME_PATTERN,
            description="The command's name (`pipeline <name>`), lower case, words joined by -.",
        ),
    ]


class FormatDescriptor(_BackendDescriptor):
    """A payload format (`Port.format`): how a message's payload is serialised on the wire.

    ``runtime`` names an object (or a class, made once per process) with ``encode(value) ->
    bytes | (bytes, metadata)`` and ``decode(payload, metadata) -> value``: see
    `asapo_pipelines.sdk.PayloadFormat`. ``config`` is unused for formats.
    """

    name: Annotated[
        str,
        Field(
            pattern=BACKEND_NAME_PATTERN,
            description='The name ports give as their `format` (`out("image", format=name)`).',
        ),
    ]
