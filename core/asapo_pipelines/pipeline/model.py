"""The pipeline file as pydantic models.

Every mapping forbids unknown keys (a typo must not pass silently), empty sections (`params:`
with nothing after it) count as empty, and the checks that span several fields raise errors
whose type is their stable code (``P105`` ...), which the validator turns into located problems;
most are a section's `section_rules` (checks.py), reported with the section's other problems
and written into the schema too. The models also give the JSON Schema of the fixed part of the
file (`asapo_pipelines.schema` adds one branch per unit). The validator reads the file through
them with JSON's types (`checks.validate_as_json`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema
from pydantic_core import PydanticCustomError

from asapo_pipelines.descriptor import PORT_NAME_PATTERN, UNIT_NAME_PATTERN, Resources
from asapo_pipelines.pipeline import DEFAULT_DATA_DIR
from asapo_pipelines.pipeline.checks import (
    CrossChecked,
    ExactlyOne,
    NeedsWhen,
    rules_schema,
    validate_as_json,
)

#: The Nomad task drivers a job may name. Spelled only here: `deploy.nomad.driver`, its
#: validation, the Nomad job compiler and the local executor (which runs the same jobs) use them.
Driver = Literal["raw_exec", "exec", "docker"]
DRIVERS: tuple[Driver, ...] = get_args(Driver)
DEFAULT_DRIVER: Driver = "raw_exec"

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.descriptor import UnitDescriptor

PIPELINE_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
INSTANCE_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
STREAM_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _name_check(pattern: str, what: str, rule: str) -> Any:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        # fullmatch: with `match`, the pattern's `$` also matches before a trailing newline
        if not compiled.fullmatch(value):
            # repr: a newline or tab in the name is shown, not printed (one problem, one line)
            raise PydanticCustomError(
                "P104", f"{what} {{value}} is not valid: {rule}", {"value": repr(value)}
            )
        return value

    return AfterValidator(check)


def _name_schema(pattern: str, what: str, rule: str) -> Any:
    """The same check in the editor schema, with the same sentence in yaml-language-server."""
    return Field(json_schema_extra={"pattern": pattern, "patternErrorMessage": f"{what}: {rule}"})


_PIPELINE_NAME = (
    PIPELINE_NAME_PATTERN,
    "pipeline name",
    "use lower case letters, digits and -, starting with a letter, at most 63 characters",
)
_INSTANCE_NAME = (
    INSTANCE_NAME_PATTERN,
    "unit instance name",
    "use lower case letters, digits, - and _, starting with a letter",
)
_STREAM_NAME = (
    STREAM_NAME_PATTERN,
    "stream name",
    "use letters, digits, '.', '_' and '-', starting with a letter or digit",
)
_PORT_NAME = (PORT_NAME_PATTERN, "port name", "use lower case letters, digits and _")


PipelineName = Annotated[str, _name_check(*_PIPELINE_NAME), _name_schema(*_PIPELINE_NAME)]
# no schema here: these are keys too, which pydantic would turn into patternProperties;
# `asapo_pipelines.schema` writes their rules where they are used (`name_rule`)
InstanceName = Annotated[str, _name_check(*_INSTANCE_NAME)]
StreamName = Annotated[str, _name_check(*_STREAM_NAME)]
PortName = Annotated[str, _name_check(*_PORT_NAME)]


def name_rule(kind: str) -> dict[str, str]:
    """The editor schema's check of an instance or stream name: pattern and sentence."""
    pattern, what, rule = {"instance": _INSTANCE_NAME, "stream": _STREAM_NAME}[kind]
    return {"pattern": pattern, "patternErrorMessage": f"{what}: {rule}"}


def _none_is_empty(value: Any) -> Any:
    return {} if value is None else value


def _may_be_empty(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """In the editor schema, a section without required keys may be null: `retry:` with nothing
    after it is what YAML makes of an empty section, which the validator takes as the defaults,
    so an editor must not mark it as an error. The section's rules are part of it too."""
    if not schema.get("required"):
        schema["type"] = ["object", "null"]
    rules_schema(schema, cls)


class _Section(CrossChecked):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, json_schema_extra=_may_be_empty
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        # a section with nothing after it (`retry:`, a stream `plans:`) means its defaults,
        # like `params:` or `local:`
        return {} if value is None else value


# -- transport -------------------------------------------------------------------------------
class RetentionConfig(_Section):
    """What the embedded store keeps of streams that are done (see docs/transports.md)."""

    max_age: Annotated[
        float | None,
        Field(ge=0, description="Seconds a done stream is kept after its last acknowledgement."),
    ] = None
    max_bytes: Annotated[
        int | None,
        Field(ge=0, description="Payload bytes of done streams kept per data source."),
    ] = None
    max_streams: Annotated[
        int | None, Field(ge=0, description="Done streams kept per data source.")
    ] = None


class EmbeddedTransportConfig(_Section):
    """The on-disk store of one machine (the default)."""

    path: Annotated[
        str,
        Field(
            min_length=1,
            description="Directory of the store; a relative path is relative to the pipeline file.",
        ),
    ] = DEFAULT_DATA_DIR
    retention: Annotated[
        RetentionConfig | None,
        Field(
            description="Remove streams that are finished and acknowledged by every reader "
            "(with their payloads), oldest first, past any of these limits; long runs keep "
            "their disk use bounded. Unset: everything is kept."
        ),
    ] = None

    def open_options(self, base_dir: Path) -> dict[str, Any]:
        options: dict[str, Any] = {"path": _resolve(self.path, base_dir)}
        if self.retention is not None:
            options["retention"] = self.retention.model_dump(exclude_none=True)
        return options


class AsapoTransportConfig(_Section):
    """A facility's ASAP::O. The token is read from a file or an environment variable."""

    section_rules = (
        ExactlyOne(
            "beamtime",
            "beamline",
            "P107",
            "the asapo transport needs exactly one of beamtime or beamline",
        ),
        ExactlyOne(
            "token_file",
            "token_env",
            "P107",
            "the asapo transport needs exactly one of token_file or token_env",
        ),
    )

    endpoint: Annotated[
        str,
        Field(
            pattern=r"^[^\s:/]+:[0-9]{1,5}$",
            description="ASAP::O endpoint, `host:port` (the authorizer/discovery service).",
        ),
    ]
    beamtime: Annotated[
        str | None, Field(description="Beamtime id (e.g. `11012345`); or give `beamline`.")
    ] = None
    beamline: Annotated[
        str | None,
        Field(description="Beamline (e.g. `p65`) for the beamline's current beamtime."),
    ] = None
    data_source_prefix: Annotated[
        str,
        Field(
            description="Prefix of the data sources this pipeline writes, so several pipelines "
            "can share a beamtime."
        ),
    ] = ""
    token_file: Annotated[
        str | None,
        Field(
            description="File holding the ASAP::O token; relative to the pipeline file.",
        ),
    ] = None
    token_env: Annotated[
        str | None,
        Field(
            pattern=ENV_NAME_PATTERN,
            description="Environment variable holding the ASAP::O token.",
        ),
    ] = None
    request_timeout: Annotated[
        float,
        Field(
            gt=0,
            le=3600,
            description="Seconds: the deadline of every ASAP::O call, also given to the client "
            "libraries as their own timeout.",
        ),
    ] = 10.0
    max_in_flight: Annotated[
        int,
        Field(
            ge=1,
            le=1_000_000,
            description="Producer messages queued and not yet confirmed by the receiver (the "
            "producer library's request queue limit); `send` waits beyond it.",
        ),
    ] = 1000
    source_type: Annotated[
        Literal["processed", "raw"],
        Field(
            description="ASAP::O source type the producers authorize with: `processed` (the "
            "beamtime's processed folder, default) or `raw` (detector data).",
        ),
    ] = "processed"
    token: SkipJsonSchema[Any] = Field(default=None, exclude=True)

    @field_validator("token", mode="before")
    @classmethod
    def _no_inline_token(cls, value: Any) -> Any:
        if value is not None:
            raise PydanticCustomError(
                "P106",
                "an ASAP::O token must not be written in the pipeline file (it would end up in "
                "plans, logs and version control); put it in a file and set token_file, or in an "
                "environment variable and set token_env",
            )
        return None

    def open_options(self, base_dir: Path) -> dict[str, Any]:
        data = self.model_dump(exclude={"token"}, exclude_none=True)
        if self.token_file is not None:
            data["token_file"] = _resolve(self.token_file, base_dir)
        return data


def _resolve(path: str, base: Path | None) -> str:
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (base or Path.cwd()) / p
    try:
        return str(p.resolve())
    except (RuntimeError, OSError) as exc:  # a symlink loop: RuntimeError before Python 3.13
        from asapo_pipelines.errors import ConfigurationError

        raise ConfigurationError(
            f"the path {path} in the pipeline file cannot be used: {exc}"
        ) from None


def _one_of(names: list[str]) -> str:
    """`embedded or asapo`, `embedded, asapo or redis`."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


class TransportSection(_Section):
    """Base of the `transport:` section: one optional field per registered transport (its
    config model), exactly one of them given.

    `TransportConfig` below has the core's two; `pipeline_model(catalog)` builds the section with
    one field per transport of the catalog, so a third-party `transport: {redis: {...}}`
    validates, with located problems, exactly like the built-in ones.
    """

    _base: Path | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, value: Any) -> Any:
        names = list(cls.model_fields)
        if value is None:
            return {names[0]: {}}
        if isinstance(value, dict):
            chosen = [k for k in names if k in value]
            if len(chosen) > 1:
                extra = "not both" if len(chosen) == 2 else f"not {len(chosen)}"
                raise PydanticCustomError(
                    "P105", f"transport must name exactly one of {_one_of(names)}, {extra}"
                )
            if not chosen and not set(value) - set(names):
                raise PydanticCustomError(
                    "P105", f"transport must name exactly one of {_one_of(names)}"
                )
            # `embedded:` with nothing after it means its defaults
            value = {k: ({} if v is None and k in names else v) for k, v in value.items()}
        return value

    @property
    def kind(self) -> str:
        """The name of the transport the section gives."""
        names = list(type(self).model_fields)
        return next((n for n in names if getattr(self, n) is not None), names[0])

    @property
    def config(self) -> BaseModel:
        """The chosen transport's validated config model."""
        config: BaseModel = getattr(self, self.kind)
        return config

    def options(self) -> dict[str, Any]:
        """The options its runtime opens with: JSON-ready, paths absolute against the pipeline
        file's folder (what workers receive too)."""
        from asapo_pipelines.transport.options import resolved_options

        # marked as resolved: `open_transport` opens them without validating them again
        return resolved_options(self.config, self._base or Path.cwd())

    def spec(self) -> dict[str, dict[str, Any]]:
        """What `asapo_pipelines.transport.open_transport` takes, with absolute paths."""
        return {self.kind: self.options()}


class TransportConfig(TransportSection):
    """Where messages travel: exactly one of `embedded` or `asapo`."""

    embedded: EmbeddedTransportConfig | None = None
    asapo: AsapoTransportConfig | None = None


# -- streams ---------------------------------------------------------------------------------
class StreamDecl(_Section):
    """A stream named in advance: fed from outside the pipeline, or just documented."""

    external: Annotated[
        bool,
        Field(
            strict=True, description="Fed from outside the pipeline (another program writes it)."
        ),
    ] = False
    content_type: Annotated[
        str,
        Field(
            pattern=r"^([a-z0-9][a-z0-9.+_-]*|\*)/([a-z0-9][a-z0-9.+_-]*|\*)$",
            description="What the stream carries, `type/subtype` (e.g. `xas/scan`).",
        ),
    ] = "*/*"
    format: Annotated[
        str | None,
        Field(
            pattern=r"^[a-z][a-z0-9_-]*$",
            description="Payload format on the wire: json, json_arrays, bytes, seedee, a plugin's.",
        ),
    ] = None
    description: str = ""


# -- units -----------------------------------------------------------------------------------
class ResourcesOverride(_Section):
    """Overrides of the unit's default resources; fields left out keep the unit's defaults."""

    cpu: Annotated[int | None, Field(ge=1, strict=True, description="CPU in MHz.")] = None
    memory: Annotated[int | None, Field(ge=1, strict=True, description="Memory in MB.")] = None
    gpus: Annotated[int | None, Field(ge=0, strict=True, description="Number of NVIDIA GPUs.")] = (
        None
    )

    def apply(self, defaults: Resources) -> Resources:
        return defaults.model_copy(update=self.model_dump(exclude_none=True))


class Retry(_Section):
    """What happens when the unit raises on a message."""

    attempts: Annotated[
        int,
        Field(
            ge=0,
            le=100,
            strict=True,
            description="Retries of one message before it goes to the error stream.",
        ),
    ] = 3
    delay: Annotated[
        float, Field(ge=0, le=3600, strict=True, description="Seconds between retries.")
    ] = 1.0


class Batch(_Section):
    """How many messages a worker takes at once: their outputs are written and made durable,
    then the inputs acknowledged, once per batch instead of once per message."""

    messages: Annotated[
        int,
        Field(
            ge=1,
            le=10000,
            strict=True,
            description="Most messages in one batch (1: write and acknowledge each on its own).",
        ),
    ] = 128
    wait: Annotated[
        float,
        Field(
            ge=0,
            le=60,
            strict=True,
            description="Most seconds a processed message waits for its batch to be committed "
            "(a batch is also committed as soon as the input runs dry).",
        ),
    ] = 0.2


class UnitConfig(_Section):
    """One unit instance in the pipeline."""

    unit: Annotated[
        str,
        Field(
            pattern=UNIT_NAME_PATTERN,
            description="Qualified unit name `<namespace>.<name>` (see `pipeline list-units`).",
        ),
    ]
    description: Annotated[str, Field(description="What this instance is for.")] = ""
    params: Annotated[
        dict[str, Any], Field(description="The unit's parameters (see `pipeline show-unit`).")
    ] = {}
    inputs: Annotated[
        dict[PortName, StreamName],
        Field(description="Input port -> the stream it reads."),
    ] = {}
    outputs: Annotated[
        dict[PortName, StreamName],
        Field(description="Output port -> the stream it writes."),
    ] = {}
    replicas: Annotated[
        int, Field(ge=1, le=1000, strict=True, description="Parallel copies sharing the inputs.")
    ] = 1
    resources: Annotated[
        ResourcesOverride | None, Field(description="Override of the unit's default resources.")
    ] = None
    retry: Annotated[Retry, Field(description="Per-message retries before the error stream.")] = (
        Retry()
    )
    batch: Annotated[
        Batch, Field(description="Messages taken, written and acknowledged together.")
    ] = Batch()

    _none_to_empty = field_validator("params", "inputs", "outputs", mode="before")(
        classmethod(lambda cls, v: _none_is_empty(v))
    )


# -- deploy ----------------------------------------------------------------------------------
#: the start of a URL, `scheme://`
_SCHEME = r"[a-z][a-z0-9+.-]*://"
_CREDENTIALS = _SCHEME + r"[^/@\s]+@"
_CREDENTIALS_MESSAGE = (
    "the index URL carries credentials, which would be written into the job; configure "
    "them on the nodes (pip.conf, .netrc) instead"
)
#: ends the sentences about paths the nodes read (and the editor's, which has no value to show)
_NODE_PATH = "is a path on the cluster's nodes and must be absolute"


def _no_credentials(url: str) -> str:
    if re.match(_CREDENTIALS, url):
        raise PydanticCustomError("P106", _CREDENTIALS_MESSAGE)
    return url


IndexUrl = Annotated[
    str,
    AfterValidator(_no_credentials),
    Field(
        json_schema_extra={
            "pattern": f"^(?!{_CREDENTIALS})",
            "patternErrorMessage": _CREDENTIALS_MESSAGE,
        }
    ),
]


_HEX64 = "[0-9a-fA-F]{64}"
_SHA256 = re.compile(f"^{_HEX64}$")
#: `_check_wheel` as a pattern, for the editor: a URL with its checksum, or an absolute path
#: with or without one (`[\s\S]`: any character, in JavaScript's regular expressions too)
_NO_MARK = r"(?:(?!#sha256=)[\s\S])*"
WHEEL_PATTERN = f"^(?:{_SCHEME}{_NO_MARK}#sha256={_HEX64}|/{_NO_MARK}(?:#sha256={_HEX64})?)$"


def _check_wheel(value: Any) -> Any:
    """`URL#sha256=<hex>`, an absolute path on the nodes, or `{url: ..., sha256: <hex>}`."""
    if isinstance(value, dict):
        if set(value) != {"url", "sha256"} or not all(isinstance(v, str) for v in value.values()):
            raise PydanticCustomError(
                "P103", "a wheel given as a mapping has exactly two text fields: url and sha256"
            )
        url, digest, given = value["url"], value["sha256"], True
    elif isinstance(value, str):
        url, mark, digest = value.partition("#sha256=")
        given = bool(mark)
    else:
        raise PydanticCustomError(
            "P103", "a wheel is a URL or an absolute path, or a mapping {url, sha256}"
        )
    # a checksum that is given is checked even when empty: `/w.whl#sha256=` is a mistake
    if given and not _SHA256.fullmatch(digest):
        raise PydanticCustomError(
            "P405", "the checksum of wheel '{url}' is not a sha256 (64 hex digits)", {"url": url}
        )
    if re.match(_SCHEME, url):
        if not digest:
            raise PydanticCustomError(
                "P405",
                "wheel URL '{url}' needs its checksum: write it as {url}#sha256=<hex> so that "
                "the nodes install exactly that file",
                {"url": url},
            )
    elif not url.startswith("/"):
        raise PydanticCustomError("P406", f"wheel '{{url}}' {_NODE_PATH}", {"url": url})
    return value


#: a requirement every node installs alike: `name==version`, extras allowed
PIN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9_,.-]+\])?==[A-Za-z0-9.+!_-]+$"
_PINNED = re.compile(PIN_PATTERN)


def _check_pinned(value: str) -> str:
    # checked here, not only when the job is planned: `validate` must not call valid a file
    # that `pipeline plan` and `deploy` then refuse
    if not _PINNED.fullmatch(value):
        raise PydanticCustomError(
            "P407",
            "requirement {value} must be pinned as name==version (e.g. numpy==2.1.0) so that "
            "every node installs the same code",
            {"value": repr(value)},
        )
    return value


Requirement = Annotated[
    str, AfterValidator(_check_pinned), Field(json_schema_extra={"pattern": PIN_PATTERN})
]

Wheel = Annotated[
    Any,
    AfterValidator(_check_wheel),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "description": "`URL#sha256=<hex>` or an absolute path.",
                    "pattern": WHEEL_PATTERN,
                    "patternErrorMessage": "a wheel is `URL#sha256=<64 hex digits>` or an "
                    "absolute path on the cluster's nodes",
                },
                {
                    "type": "object",
                    "properties": {
                        "url": {
                            "type": "string",
                            "pattern": f"^(?:{_SCHEME}|/)",
                            "patternErrorMessage": "url is a URL or an absolute path on the "
                            "cluster's nodes",
                        },
                        "sha256": {"type": "string", "pattern": _SHA256.pattern},
                    },
                    "required": ["url", "sha256"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]


class Install(_Section):
    """Install the core and the pipeline's plugin distributions (pinned to the catalog's
    versions), plus what is listed here, into a fresh environment before the tasks start."""

    index_url: Annotated[
        IndexUrl | None, Field(description="Package index to install from (no credentials).")
    ] = None
    extra_index_urls: Annotated[list[IndexUrl], Field(description="Further package indexes.")] = []
    packages: Annotated[
        list[Requirement],
        Field(description="Further requirements, pinned as `name==version`, e.g. `numpy==2.1.0`."),
    ] = []
    wheels: Annotated[
        list[Wheel],
        Field(
            description="Wheels: `URL#sha256=<hex>`, `{url, sha256}`, or absolute paths on a "
            "filesystem the nodes share."
        ),
    ] = []
    python: Annotated[
        str, Field(min_length=1, description="Interpreter that creates the environment.")
    ] = "python3"


class PythonEnvConfig(_Section):
    """Which Python the tasks run: an existing environment, or one installed on the node."""

    section_rules = (
        ExactlyOne(
            "venv",
            "install",
            "P404",
            "python must name exactly one of venv or install",
            unless_unknown=True,
        ),
    )

    venv: Annotated[
        str | None,
        Field(
            description="Absolute path of an existing virtual environment.",
            json_schema_extra={"pattern": "^/", "patternErrorMessage": f"venv {_NODE_PATH}"},
        ),
    ] = None
    install: Install | None = None

    @field_validator("venv")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise PydanticCustomError(
                "P406",
                f"venv '{{value}}' {_NODE_PATH}",
                {"value": value},
            )
        return value


#: The `deploy.nomad` keys whose values reach Nomad's API as written, and the NOMAD_* variable
#: that gives each from the environment instead (None: only the file gives it). Not `image`:
#: Nomad interpolates `${...}` in a task's config itself.
SENT_AS_WRITTEN = {"namespace": "NOMAD_NAMESPACE", "region": "NOMAD_REGION", "datacenters": None}
#: A variable as a shell or Nomad writes it: `${NOMAD_NS}`, `$NOMAD_NS` (`dc$1` is a name)
VARIABLE = r"\$[{A-Za-z_]"
#: The editor schema's rule for those values: no such variable anywhere.
NOT_INTERPOLATED_PATTERN = rf"^(?![\s\S]*{VARIABLE})"


def _not_interpolated(key: str) -> str:
    """What to do instead of a variable in `deploy.nomad.KEY`, said by validation and editor."""
    variable = SENT_AS_WRITTEN.get(key)
    instead = (
        f"set {variable} in the environment (leaving {key} out of the file) or " if variable else ""
    )
    return f"a pipeline file is not interpolated; {instead}write the value"


def _sent_as_written(key: str) -> dict[str, Any]:
    """The editor's rule for a value Nomad's API gets as written (`_refuse_interpolation`)."""
    return {
        "pattern": NOT_INTERPOLATED_PATTERN,
        "patternErrorMessage": f"{key} reaches Nomad as written: {_not_interpolated(key)}",
    }


def _refuse_interpolation(key: str, value: str) -> None:
    """P408 for a value holding a variable: `${NOMAD_NS}` went to Nomad as the namespace's
    name, as nothing interpolates the pipeline file."""
    # `$NOMAD_NS` as much as `${NOMAD_NS}`: a user who writes one expects the environment's
    if re.search(VARIABLE, value) is None:
        return
    why = f"{key} {value!r} would reach Nomad as written: {_not_interpolated(key)}"
    raise PydanticCustomError("P408", "{why}", {"why": why})


class NomadConfig(_Section):
    """How the pipeline's job is placed on Nomad (also used by the local executor)."""

    section_rules = (
        NeedsWhen("driver", "docker", "image", "P402", "the docker driver needs an image"),
    )

    datacenters: Annotated[
        list[Annotated[str, Field(json_schema_extra=_sent_as_written("datacenters"))]],
        Field(min_length=1, description="Datacenters the job may run in."),
    ] = ["*"]
    namespace: Annotated[
        str,
        Field(
            min_length=1,
            description="Nomad namespace.",
            json_schema_extra=_sent_as_written("namespace"),
        ),
    ] = "default"
    region: Annotated[
        str,
        Field(
            min_length=1,
            description="Nomad region.",
            json_schema_extra=_sent_as_written("region"),
        ),
    ] = "global"
    driver: Annotated[
        Driver,
        Field(
            description=f"Task driver: {', '.join(DRIVERS[:-1])}, or {DRIVERS[-1]} (needs `image`)."
        ),
    ] = DEFAULT_DRIVER
    image: Annotated[
        str | None, Field(description="Container image, for the docker driver only.")
    ] = None
    python: Annotated[
        PythonEnvConfig | None,
        Field(description="Python environment of the tasks: `venv` or `install`."),
    ] = None

    @field_validator("namespace", "region")
    @classmethod
    def _no_variable(cls, value: str, info: ValidationInfo) -> str:
        _refuse_interpolation(str(info.field_name), value)
        return value

    @field_validator("datacenters")
    @classmethod
    def _datacenters_no_variable(cls, value: list[str]) -> list[str]:
        for item in value:
            _refuse_interpolation("datacenters", item)
        return value


class LocalConfig(_Section):
    """Run on this machine (`pipeline run`, or `pipeline deploy` in the background): the local
    executor runs the pipeline's compiled Nomad job itself, so it takes no settings of its own."""


class DeployConfig(_Section):
    """Where and how the pipeline runs: one section per executor the file is meant for (the
    core's `local` and `nomad`, or a plugin's); `nomad` holds defaults even when absent."""

    nomad: NomadConfig = NomadConfig()
    local: Annotated[
        LocalConfig | None, Field(description="Run on this machine (the local executor).")
    ] = None

    @field_validator("*", mode="before")
    @classmethod
    def _none_is_defaults(cls, value: Any) -> Any:
        # `local:` with nothing after it names the executor with its defaults
        return {} if value is None else value

    def named(self) -> list[str]:
        """The executors the file names, in the section's order."""
        return [name for name in type(self).model_fields if name in self.model_fields_set]

    def config(self, name: str) -> BaseModel | None:
        """The executor's section (its config model), or None when the file has none."""
        value = getattr(self, name, None)
        return value if isinstance(value, BaseModel) else None


# -- the file --------------------------------------------------------------------------------
class Pipeline(_Section):
    """A whole pipeline file."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        title="asapo-pipelines pipeline file",
    )

    name: Annotated[
        PipelineName,
        Field(alias="pipeline", description="Name of the pipeline (the Nomad job's name)."),
    ]
    description: Annotated[str, Field(description="What the pipeline does.")] = ""
    transport: Annotated[
        TransportConfig,
        Field(description="Where messages travel: `embedded` (default) or `asapo`."),
    ] = TransportConfig(embedded=EmbeddedTransportConfig())
    streams: Annotated[
        dict[StreamName, StreamDecl],
        Field(description="Streams named in advance, e.g. fed from outside the pipeline."),
    ] = {}
    units: Annotated[
        dict[InstanceName, UnitConfig],
        Field(min_length=1, description="The unit instances, by instance name."),
    ]
    deploy: Annotated[DeployConfig, Field(description="How the pipeline is deployed.")] = (
        DeployConfig()
    )
    _path: Path | None = PrivateAttr(default=None)

    _none_to_empty = field_validator("streams", mode="before")(
        classmethod(lambda cls, v: _none_is_empty(v))
    )
    _none_to_default = field_validator("deploy", mode="before")(
        classmethod(lambda cls, v: {} if v is None else v)
    )

    @property
    def path(self) -> Path | None:
        """The pipeline file this was loaded from (None when built in memory)."""
        return self._path

    def bind(self, path: Path | None) -> Pipeline:
        """Remember the file this came from; relative paths in it are relative to its folder."""
        self._path = None if path is None else Path(path).resolve()
        self.transport._base = None if self._path is None else self._path.parent
        return self

    def descriptor(self, instance: str, catalog: Catalog) -> UnitDescriptor:
        return catalog.get(self.units[instance].unit)

    def params_for(self, instance: str, catalog: Catalog) -> BaseModel:
        """The instance's params as the unit's own params model, validated as `pipeline
        validate` validates them (with the file's own types), so a file that validates runs.

        Raises ConfigurationError when they are refused, which only params changed after the
        file was validated can be (a run's `--set`)."""
        from pydantic import ValidationError

        from asapo_pipelines.errors import ConfigurationError

        descriptor = self.descriptor(instance, catalog)
        try:
            return validate_as_json(descriptor.params, self.units[instance].params)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in ("params", *err["loc"]))
            value = err["input"]
            got = "" if isinstance(value, dict | list) else f" (got {value!r})"
            raise ConfigurationError(
                f"unit {instance} ({descriptor.name}): {where}: "
                f"{err['msg'][:1].lower()}{err['msg'][1:]}{got}"
            ) from None

    def resources_for(self, instance: str, catalog: Catalog) -> Resources:
        """The unit's default resources with the file's overrides applied."""
        defaults = self.descriptor(instance, catalog).resources
        override = self.units[instance].resources
        return override.apply(defaults) if override is not None else defaults

    def producers(self) -> dict[str, list[tuple[str, str]]]:
        """stream -> [(instance, output port)]"""
        found: dict[str, list[tuple[str, str]]] = {}
        for name, unit in self.units.items():
            for port, stream in unit.outputs.items():
                found.setdefault(stream, []).append((name, port))
        return found

    def consumers(self) -> dict[str, list[tuple[str, str]]]:
        """stream -> [(instance, input port)]"""
        found: dict[str, list[tuple[str, str]]] = {}
        for name, unit in self.units.items():
            for port, stream in unit.inputs.items():
                found.setdefault(stream, []).append((name, port))
        return found


# -- the file for a catalog ------------------------------------------------------------------
_Key = tuple[tuple[str, type[BaseModel], str], ...]
_MODELS: dict[tuple[_Key, _Key], type[Pipeline]] = {}


def _key(descriptors: Any) -> _Key:
    return tuple((d.name, d.config, d.summary) for d in descriptors)


def _same_fields(key: _Key, section: type[BaseModel]) -> bool:
    """The section already has exactly these names, with these config models."""
    wanted = {name: config for name, config, _ in key}
    return wanted == {n: _unwrap_optional(f.annotation) for n, f in section.model_fields.items()}


def pipeline_model(catalog: Catalog | None) -> type[Pipeline]:
    """The pipeline file's model for the transports and executors of `catalog`: `Pipeline`
    itself when they are the core's, else a subclass whose `transport:` and `deploy:` sections
    have one field per registered transport and executor (built once per set of them)."""
    if catalog is None:
        return Pipeline
    transports, executors = _key(catalog.transports.values()), _key(catalog.executors.values())
    if (not transports or _same_fields(transports, TransportConfig)) and (
        not executors or _same_fields(executors, DeployConfig)
    ):
        return Pipeline
    model = _MODELS.get((transports, executors))
    if model is None:
        model = _MODELS[(transports, executors)] = _build_pipeline_model(transports, executors)
    return model


def _unwrap_optional(annotation: Any) -> Any:
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    return args[0] if len(args) == 1 else annotation


def _build_pipeline_model(transports: _Key, executors: _Key) -> type[Pipeline]:
    from typing import Optional

    from pydantic import create_model

    fields: dict[str, Any] = {}
    if transports:
        names = [name for name, _, _ in transports]
        section = create_model(  # type: ignore[call-overload]
            "TransportConfig",
            __base__=TransportSection,
            __doc__=f"Where messages travel: exactly one of {_one_of(names)}.",
            **{
                name: (Optional[config], Field(default=None, description=summary))  # noqa: UP045
                for name, config, summary in transports
            },
        )
        fields["transport"] = (
            section,
            Field(
                default_factory=lambda: section.model_validate(None),
                description="Where messages travel: one of "
                + _one_of([f"`{n}`" for n in names])
                + f" (`{names[0]}` by default).",
            ),
        )
    if executors:
        # the core's executors keep their fields (`nomad` with its defaults); a plugin's
        # executor is a section the file may give
        extra = {
            name: (Optional[config], Field(default=None, description=summary))  # noqa: UP045
            for name, config, summary in executors
            if name not in DeployConfig.model_fields
        }
        deploy = create_model("DeployConfig", __base__=DeployConfig, **extra)  # type: ignore[call-overload]
        fields["deploy"] = (
            deploy,
            Field(default_factory=deploy, description="How the pipeline is deployed."),
        )
    model: type[Pipeline] = create_model("Pipeline", __base__=Pipeline, **fields)
    return model
