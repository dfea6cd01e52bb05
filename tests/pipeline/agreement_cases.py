"""Pipeline files on which `pipeline validate` and the editor schema must agree: each case says
which problems validate reports (none for a valid file), and the editor must reject exactly the
files validate rejects. Shared by tests/pipeline (Python `jsonschema`) and tests/lsp (the real
yaml-language-server)."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field

from asapo_pipelines.descriptor import Params, Port, UnitDescriptor
from asapo_pipelines.hookspecs import RegisterUnit, hookimpl


class Mode(enum.StrEnum):
    fast = "fast"
    careful = "careful"


class TypedParams(Params):
    """Types JSON carries as text: a path, an enum member, a date."""

    out: Annotated[Path, Field(description="Where to write.")] = Path("out")
    mode: Annotated[Mode, Field(description="How.")] = Mode.fast
    day: Annotated[datetime.date | None, Field(description="Which day.")] = None
    level: Annotated[Mode | None, Field(description="How, if not the unit's choice.")] = None
    retries: Annotated[int | None, Field(ge=0, description="Retries; null: no limit.")] = 3


TYPED = UnitDescriptor(
    name="agree.typed",
    kind="connector",
    summary="A sink with parameters that JSON gives as text.",
    inputs=(Port(name="messages", content_type="*/*"),),
    params=TypedParams,
    runtime="asapo_pipelines.units.jsonl:JsonLinesSink",
)


class _Plugin:
    @hookimpl
    def register_units(self, register: RegisterUnit) -> None:
        register(TYPED)


def agreement_catalog():  # type: ignore[no-untyped-def]
    """The core's units and backends, the unit above, and the redis transport when its plugin
    is installed."""
    from asapo_pipelines.testing import catalog_from_plugins

    plugins: list[object] = [_Plugin()]
    if redis_available():
        plugins.append("asapo_pipelines_redis.plugin")
    return catalog_from_plugins(*plugins, distribution="agree", version="1.0.0")


def redis_available() -> bool:
    try:
        import asapo_pipelines_redis.plugin  # noqa: F401
    except ImportError:
        return False
    return True


def pipeline_text(
    *,
    transport: str = "",
    params: str = "{directory: data}",
    typed: str = "{}",
    stream: str = "files",
    unit_extra: str = "",
    deploy: str = "",
) -> str:
    text = "pipeline: agree\n"
    if transport:
        text += f"transport:\n  {transport}\n"
    text += (
        "units:\n"
        "  files:\n"
        "    unit: core.files\n"
        f"    params: {params}\n"
        f"    outputs: {{files: {stream}}}\n"
        f"{unit_extra}"
        "  sink:\n"
        "    unit: core.jsonl-sink\n"
        "    params: {path: out.jsonl}\n"
        f"    inputs: {{messages: {stream}}}\n"
        "  typed:\n"
        "    unit: agree.typed\n"
        f"    params: {typed}\n"
        f"    inputs: {{messages: {stream}}}\n"
    )
    if deploy:
        text += f"deploy:\n  nomad: {deploy}\n"
    return text


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    #: the error codes validate reports, sorted; empty: the file is valid
    codes: tuple[str, ...] = ()
    #: where the editor's error must be (a prefix of its path)
    where: tuple[str, ...] = ()
    needs_redis: bool = field(default=False)


def _redis(section: str, codes: tuple[str, ...], name: str) -> Case:
    return Case(
        name,
        pipeline_text(transport=f"redis: {section}"),
        codes,
        ("transport", "redis"),
        needs_redis=True,
    )


_ASAPO = 'endpoint: "asapo:8400", token_file: token.txt'
_HEX = "0123456789abcdef" * 4

#: the shape errors the editor schema let through, and the file's own checks next to them
SHAPE_CASES = [
    _redis('{url: "redis://:secret@127.0.0.1:6379/0"}', ("P106",), "redis-url-with-password"),
    _redis("{password_file: pw.txt, password_env: PW}", ("P103",), "redis-both-passwords"),
    _redis('{url: "http://127.0.0.1:6379"}', ("P103",), "redis-url-not-redis"),
    _redis('{url: "redis://127.0.0.1:99999/0"}', ("P103",), "redis-port-out-of-range"),
    _redis('{url: "redis://reader@[::1]:6379/2", password_env: PW}', (), "redis-valid"),
    _redis("", (), "redis-empty-means-defaults"),
    Case(
        "asapo-beamtime-and-beamline",
        pipeline_text(transport=f'asapo: {{{_ASAPO}, beamtime: "11012345", beamline: p65}}'),
        ("P107",),
        ("transport", "asapo"),
    ),
    Case(
        "asapo-neither-beamtime-nor-beamline",
        pipeline_text(transport=f"asapo: {{{_ASAPO}}}"),
        ("P107",),
        ("transport", "asapo"),
    ),
    Case(
        "asapo-valid",
        pipeline_text(transport=f"asapo: {{{_ASAPO}, beamline: p65}}"),
    ),
    Case(
        "docker-without-image",
        pipeline_text(deploy="{driver: docker}"),
        ("P402",),
        ("deploy", "nomad"),
    ),
    Case(
        "docker-with-an-empty-image",
        pipeline_text(deploy='{driver: docker, image: ""}'),
        ("P402",),
        ("deploy", "nomad"),
    ),
    Case("docker-with-image", pipeline_text(deploy="{driver: docker, image: python:3.12}")),
    Case(
        "stream-name-with-a-space",
        pipeline_text(stream='"my stream"'),
        ("P104", "P104", "P104"),
        ("units",),
    ),
    Case(
        "venv-relative",
        pipeline_text(deploy="{python: {venv: relative/path}}"),
        ("P406",),
        ("deploy", "nomad", "python", "venv"),
    ),
    Case(
        "python-venv-and-install",
        pipeline_text(deploy="{python: {venv: /env, install: {}}}"),
        ("P404",),
        ("deploy", "nomad", "python"),
    ),
    Case(
        "python-neither-venv-nor-install",
        pipeline_text(deploy="{python: {}}"),
        ("P404",),
        ("deploy", "nomad", "python"),
    ),
    Case("python-venv", pipeline_text(deploy="{python: {venv: /shared/env}}")),
    Case(
        "wheel-url-without-checksum",
        pipeline_text(deploy="{python: {install: {wheels: [https://w.example/a.whl]}}}"),
        ("P405",),
        ("deploy", "nomad", "python", "install", "wheels", 0),
    ),
    Case(
        "wheel-with-an-empty-checksum",
        pipeline_text(deploy='{python: {install: {wheels: ["/w/a.whl#sha256="]}}}'),
        ("P405",),
        ("deploy", "nomad", "python", "install", "wheels", 0),
    ),
    Case(
        "wheel-relative-path",
        pipeline_text(deploy="{python: {install: {wheels: [wheels/a.whl]}}}"),
        ("P406",),
        ("deploy", "nomad", "python", "install", "wheels", 0),
    ),
    Case(
        "wheel-mapping-relative-url",
        pipeline_text(
            deploy=f"{{python: {{install: {{wheels: [{{url: a.whl, sha256: {_HEX}}}]}}}}}}"
        ),
        ("P406",),
        ("deploy", "nomad", "python", "install", "wheels", 0),
    ),
    Case(
        "wheels-valid",
        pipeline_text(
            deploy=f'{{python: {{install: {{wheels: ["https://w.example/a.whl#sha256={_HEX}", '
            f"/shared/b.whl, {{url: /shared/c.whl, sha256: {_HEX}}}]}}}}}}"
        ),
    ),
    Case(
        "index-url-with-credentials",
        pipeline_text(deploy='{python: {install: {index_url: "https://u:p@pypi.example/simple"}}}'),
        ("P106",),
        ("deploy", "nomad", "python", "install", "index_url"),
    ),
]

#: unit parameters with the types the file gives them (YAML 1.2, as JSON)
PARAM_CASES = [
    Case(
        "quoted-boolean-and-number",
        pipeline_text(params='{directory: data, watch: "true", settle_seconds: "0.5"}'),
        ("P202", "P202"),
        ("units", "files", "params"),
    ),
    Case(
        "yaml-1.1-booleans-are-text",
        pipeline_text(params="{directory: data, watch: on, recursive: yes}"),
        ("P202", "P202"),
        ("units", "files", "params"),
    ),
    Case(
        "booleans-and-numbers",
        pipeline_text(params="{directory: data, watch: false, recursive: true, settle_seconds: 1}"),
    ),
    Case(
        "an-integral-number-is-an-integer",
        pipeline_text(params="{directory: data}", unit_extra="    replicas: 2.0\n"),
    ),
    Case(
        "text-as-path-enum-and-date",
        pipeline_text(typed="{out: results/a.h5, mode: careful, day: 2024-05-01}"),
    ),
    Case(
        "an-enum-is-not-any-text",
        pipeline_text(typed="{mode: quick}"),
        ("P202",),
        ("units", "typed", "params", "mode"),
    ),
]

#: an explicit null on an optional setting: not set, for validate as for a YAML `key:` with
#: nothing after it, so the editor schema keeps null acceptable where it writes Optional[X]; the
#: rules across fields take it as not set too. A transport's or an executor's own section is the
#: exception: null there names it with its defaults (`embedded:`).
NULL_CASES = [
    Case(
        "asapo-beamtime-null-beside-a-beamline",
        pipeline_text(transport=f"asapo: {{{_ASAPO}, beamline: p65, beamtime: null}}"),
    ),
    Case(
        "asapo-both-null-is-neither",
        pipeline_text(transport=f"asapo: {{{_ASAPO}, beamline: null, beamtime: null}}"),
        ("P107",),
        ("transport", "asapo"),
    ),
    Case(
        "asapo-token-file-null-beside-a-token-variable",
        pipeline_text(
            transport='asapo: {endpoint: "asapo:8400", beamline: p65, token_file: null, '
            "token_env: ASAPO_TOKEN}"
        ),
    ),
    Case(
        "asapo-null-is-its-defaults-which-lack-the-endpoint",
        pipeline_text(transport="asapo: null"),
        ("P101", "P107", "P107"),
        ("transport", "asapo"),
    ),
    Case("embedded-retention-null", pipeline_text(transport="embedded: {retention: null}")),
    Case(
        "embedded-retention-max-age-null",
        pipeline_text(transport="embedded: {retention: {max_age: null, max_streams: 3}}"),
    ),
    _redis("{password_file: null, password_env: PW}", (), "redis-password-file-null"),
    Case("nomad-image-null", pipeline_text(deploy="{image: null}")),
    Case(
        "docker-with-a-null-image",
        pipeline_text(deploy="{driver: docker, image: null}"),
        ("P402",),
        ("deploy", "nomad"),
    ),
    Case("python-null", pipeline_text(deploy="{python: null}")),
    Case(
        "python-venv-null-beside-install",
        pipeline_text(deploy="{python: {venv: null, install: {}}}"),
    ),
    Case(
        "python-both-null-is-neither",
        pipeline_text(deploy="{python: {venv: null, install: null}}"),
        ("P404",),
        ("deploy", "nomad", "python"),
    ),
    Case(
        "resources-cpu-null",
        pipeline_text(unit_extra="    resources: {cpu: null}\n"),
    ),
    Case("resources-null", pipeline_text(unit_extra="    resources: null\n")),
    Case("optional-param-null", pipeline_text(typed="{day: null}")),
    Case("optional-enum-param-null", pipeline_text(typed="{level: null}")),
    Case(
        "an-optional-enum-still-has-its-values",
        pipeline_text(typed="{level: quick}"),
        ("P202",),
        ("units", "typed", "params", "level"),
    ),
    Case("optional-param-with-a-default-null", pipeline_text(typed="{retries: null}")),
    Case(
        "an-optional-param-still-has-its-bounds",
        pipeline_text(typed="{retries: -1}"),
        ("P202",),
        ("units", "typed", "params", "retries"),
    ),
]

CASES = [*SHAPE_CASES, *PARAM_CASES, *NULL_CASES]
