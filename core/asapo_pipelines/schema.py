"""JSON Schemas (draft-07) of pipeline files, built from the installed catalog, for editors.

yaml-language-server (VS Code's YAML extension, Neovim, Helix, ...) and JetBrains IDEs read
draft-07. The whole-file schema lists every unit of the catalog under `unit:` (so the editor
completes unit names and shows each unit's summary), and has one branch per unit keyed by
``unit: {const: NAME}`` (``if``/``then`` inside an ``allOf``) that gives that unit's ``params``,
``inputs`` and ``outputs``: completion inside ``params:`` offers exactly that unit's parameters,
with their descriptions on hover and their defaults in snippets.

The schemas are self-contained (no external ``$ref``), so one file can be published as is.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines.errors import PluginError

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.descriptor import Port, UnitDescriptor

DRAFT = "http://json-schema.org/draft-07/schema#"
PIPELINE_SCHEMA = "pipeline.schema.json"
UNITS_DIR = "units"

_DROP_KEYS = ("title",)
_NULL = {"type": "null"}
#: an object, or null where the file may leave the mapping empty (`params:`): the validator
#: takes null as the defaults there, so an editor must accept it too
_OBJECT = ("object", ["object", "null"])


# -- from pydantic's output to a schema editors read well --------------------------------------
def _inline(schema: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Resolve `$ref`s into `$defs` in place of the reference; keep recursive ones as refs.

    draft-07 ignores every keyword beside a `$ref`, so `{"$ref": ..., "description": ...}` loses
    its description in editors; inlining keeps both.
    """
    if isinstance(schema, list):
        return [_inline(item, defs, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.rsplit("/", 1)[1]
        if name in seen or name not in defs:
            return {"type": "object"} if name in seen else schema
        resolved = _inline(copy.deepcopy(defs[name]), defs, (*seen, name))
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        resolved.update({k: _inline(v, defs, seen) for k, v in extra.items()})
        return resolved
    return {k: _inline(v, defs, seen) for k, v in schema.items() if k != "$defs"}


def _tidy(schema: Any, *, in_properties: bool = False) -> Any:
    """Draft-07 spellings and less noise: no generated titles, Optional[X] as X or null."""
    if isinstance(schema, list):
        return [_tidy(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if in_properties:
        return {k: _tidy(v) for k, v in schema.items()}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP_KEYS and isinstance(value, str):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = _tidy(value, in_properties=True)
        elif key == "prefixItems":  # 2020-12 tuples -> draft-07 positional items
            out["items"] = _tidy(value)
        else:
            out[key] = _tidy(value)
    any_of = out.get("anyOf")
    if isinstance(any_of, list):
        non_null = [s for s in any_of if s != _NULL]
        if len(non_null) == 1 and len(non_null) < len(any_of):
            del out["anyOf"]
            out = _or_null(non_null[0], out)
    if out.get("default", 0) is None:
        del out["default"]
    if isinstance(out.get("default"), dict) and out.get("type") in _OBJECT:
        del out["default"]
    return out


def _or_null(schema: dict[str, Any], outer: dict[str, Any]) -> dict[str, Any]:
    """Optional[X] (`schema` is X; `outer` its field's description, default, ...): X or null,
    as validate takes it (null is "not set", like `key:` with nothing after it). Written as X
    with "null" added to its type (and enum), so completion and hover show X's description,
    values and default as they are; as an anyOf where that would still refuse null (a `const`,
    a reference)."""
    types = schema.get("type")
    if isinstance(types, (str, list)):
        listed = [types] if isinstance(types, str) else list(types)
        merged = {**schema, "type": listed + ([] if "null" in listed else ["null"])}
        if isinstance(merged.get("enum"), list) and None not in merged["enum"]:
            merged["enum"] = [*merged["enum"], None]
        merged.update(outer)
        if _accepts_null(merged):
            return merged
    return {**outer, "anyOf": [schema, _NULL]}


def _accepts_null(schema: Any) -> bool:
    """Whether a draft-07 `schema` takes null. Only the keywords below can refuse it: the
    others check values of other types (`pattern`, `required`, ...) or say nothing."""
    if not isinstance(schema, dict):
        return schema is True
    types = schema.get("type", "null")
    enum = schema.get("enum", [None])
    if "$ref" in schema or "null" not in (types if isinstance(types, list) else [types]):
        return False
    if not isinstance(enum, list) or None not in enum or schema.get("const", None) is not None:
        return False
    if not all(_accepts_null(s) for s in schema.get("allOf", [])):
        return False
    if "anyOf" in schema and not any(_accepts_null(s) for s in schema["anyOf"]):
        return False
    if "oneOf" in schema and sum(_accepts_null(s) for s in schema["oneOf"]) != 1:
        return False
    if "not" in schema and _accepts_null(schema["not"]):
        return False
    branch = "then" if _accepts_null(schema.get("if", True)) else "else"
    return "if" not in schema or _accepts_null(schema.get(branch, True))


def editor_schema(model_schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON Schema made self-contained and draft-07 clean."""
    defs = model_schema.get("$defs", {})
    result: dict[str, Any] = _tidy(_inline(model_schema, defs))
    return result


# -- units ---------------------------------------------------------------------------------
def params_schema(descriptor: UnitDescriptor) -> dict[str, Any]:
    schema = editor_schema(descriptor.params_schema())
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    if not schema.get("required"):
        schema["type"] = ["object", "null"]  # `params:` left empty: the defaults
    schema["description"] = f"Parameters of {descriptor.name}."
    return schema


def described_params(catalog: Catalog) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """unit name -> the editor schema of its params, for every unit whose params have a JSON
    Schema; and one sentence for each unit left out (a params field typed `Callable`). One
    plugin's unit that cannot be described must not cost every other unit its editor schema."""
    schemas: dict[str, dict[str, Any]] = {}
    left_out = []
    for name, descriptor in catalog.units.items():
        try:
            schemas[name] = params_schema(descriptor)
        except PluginError as exc:
            left_out.append(f"{exc.message}; it is left out of the editor schema")
    return schemas, left_out


def described_backends(catalog: Catalog) -> tuple[Catalog, list[str]]:
    """`catalog` without the transports and executors whose config model has no JSON Schema (a
    field typed `Callable`), and one sentence for each left out: as for units, one plugin's
    section that cannot be described must not cost everyone `pipeline schema` and `new`."""
    from asapo_pipelines.catalog import Catalog

    left_out: list[str] = []
    kept: dict[str, dict[str, Any]] = {}
    for what, backends in (("transport", catalog.transports), ("executor", catalog.executors)):
        kept[what] = {}
        for name, backend in backends.items():
            problem = backend.config_schema_problem()
            if problem is None:
                kept[what][name] = backend
                continue
            origin = f" (from {backend.distribution} {backend.version})"
            left_out.append(
                f"{what} {name}{origin if backend.distribution else ''} is broken: {problem}, "
                "which editors need; it is left out of the editor schema"
            )
    if not left_out:
        return catalog, []
    described = Catalog(
        catalog.units,
        catalog.plugins,
        transports=kept["transport"],
        executors=kept["executor"],
        formats=catalog.formats,
        commands=catalog.commands,
    )
    return described, left_out


def _params_of(
    catalog: Catalog, params: Mapping[str, dict[str, Any]] | None
) -> Mapping[str, dict[str, Any]]:
    """`params` as `described_params` gives them, computed when the caller has none at hand."""
    return described_params(catalog)[0] if params is None else params


def _ports_schema(ports: tuple[Port, ...], side: str, unit: str) -> dict[str, Any]:
    from asapo_pipelines.pipeline.model import name_rule

    verb = "reads" if side == "inputs" else "writes"
    props = {}
    for port in ports:
        text = (
            f"{'Input' if side == 'inputs' else 'Output'} port `{port.name}` ({port.content_type}"
        )
        text += f", {port.format}" + (", optional" if not port.required else "") + ")"
        if port.description:
            text += f": {port.description.rstrip('.')}"
        props[port.name] = {
            "type": "string",
            "description": f"{text}. The stream it {verb}.",
            **name_rule("stream"),
        }
    required = [p.name for p in ports if p.required] if side == "inputs" else []
    schema: dict[str, Any] = {
        "type": "object" if required else ["object", "null"],
        "description": f"The {side} of {unit}: port -> stream name.",
        "properties": props,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


def _snippet_value(value: Any) -> Any:
    """A default as yaml-language-server must insert it: it writes strings of a snippet's body
    as they are, so a string YAML would read differently (`*`, `true`, `1`, `a: b`) is quoted."""
    if isinstance(value, dict):
        return {k: _snippet_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snippet_value(v) for v in value]
    if isinstance(value, str):
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError

        try:
            plain = YAML(typ="safe", pure=True).load(f"k: {value}\n") == {"k": value}
        except YAMLError:
            plain = False
        return value if plain and value.strip() == value and "$" not in value else json.dumps(value)
    return value


def _snippet_body(descriptor: UnitDescriptor, params: dict[str, Any]) -> dict[str, Any]:
    """What completing a unit inserts: the unit, its required params, its ports."""
    body: dict[str, Any] = {"unit": descriptor.name}
    required = set(params.get("required", []))
    values: dict[str, Any] = {}
    placeholder = 1
    for name, prop in params.get("properties", {}).items():
        if name in required:
            values[name] = f"${{{placeholder}:{name}}}"
            placeholder += 1
        elif "default" in prop:
            values[name] = _snippet_value(prop["default"])
    if values:
        body["params"] = values
    for side, ports in (("inputs", descriptor.inputs), ("outputs", descriptor.outputs)):
        if ports:
            body[side] = {}
            for port in ports:
                body[side][port.name] = f"${{{placeholder}:{port.name.replace('_', '-')}}}"
                placeholder += 1
    return body


def _unit_description(descriptor: UnitDescriptor) -> str:
    version = f" (from {descriptor.distribution})" if descriptor.distribution else ""
    text = f"{descriptor.summary}{version}"
    if descriptor.description:
        text += f"\n\n{descriptor.description}"
    return text


def unit_schema(descriptor: UnitDescriptor, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Schema of one unit entry under `units:` for this unit (standalone, draft-07); `params`
    is its params' editor schema when already built. PluginError when there is none."""
    from asapo_pipelines.pipeline.model import UnitConfig

    base = editor_schema(UnitConfig.model_json_schema(by_alias=True))
    params = params_schema(descriptor) if params is None else copy.deepcopy(params)
    base["properties"]["unit"] = {
        "const": descriptor.name,
        "description": _unit_description(descriptor),
    }
    base["properties"]["params"] = params
    base["properties"]["inputs"] = _ports_schema(descriptor.inputs, "inputs", descriptor.name)
    base["properties"]["outputs"] = _ports_schema(descriptor.outputs, "outputs", descriptor.name)
    base["description"] = f"An instance of {descriptor.name}: {descriptor.summary}"
    base["defaultSnippets"] = [
        {
            "label": descriptor.name,
            "description": descriptor.summary,
            "body": _snippet_body(descriptor, params),
        }
    ]
    return {"$schema": DRAFT, "$id": f"{descriptor.name}.schema.json", **base}


def _unit_entry(catalog: Catalog, params_of: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The schema of one entry under `units:`: shared fields plus one branch per unit (the
    units of `params_of`, whose params have a schema)."""
    from asapo_pipelines.pipeline.model import UnitConfig, name_rule

    entry = editor_schema(UnitConfig.model_json_schema(by_alias=True))
    entry["description"] = "A unit instance: which unit, its params and how its ports connect."
    names = [n for n in catalog.units if n in params_of]
    unit_prop = dict(entry["properties"]["unit"])
    if names:
        unit_prop["enum"] = names
        unit_prop["enumDescriptions"] = [catalog.units[n].summary for n in names]
        unit_prop["markdownEnumDescriptions"] = [_unit_description(catalog.units[n]) for n in names]
    unit_prop.pop("pattern", None)
    entry["properties"]["unit"] = unit_prop
    for section in ("params", "inputs", "outputs"):
        # left empty they are null; each unit's branch below says whether it may be
        entry["properties"][section]["type"] = ["object", "null"]
    for section in ("inputs", "outputs"):
        entry["properties"][section]["additionalProperties"].update(name_rule("stream"))
    branches = []
    snippets = []
    for name in names:
        descriptor, params = catalog.units[name], copy.deepcopy(params_of[name])
        branches.append(
            {
                "if": {"properties": {"unit": {"const": name}}, "required": ["unit"]},
                "then": {
                    "properties": {
                        "params": params,
                        "inputs": _ports_schema(descriptor.inputs, "inputs", name),
                        "outputs": _ports_schema(descriptor.outputs, "outputs", name),
                    },
                    **({"required": ["params"]} if params.get("required") else {}),
                },
            }
        )
        snippets.append(
            {
                "label": name,
                "description": descriptor.summary,
                "body": _snippet_body(descriptor, params),
            }
        )
    if branches:
        entry["allOf"] = branches
    entry["defaultSnippets"] = snippets
    return entry


def _empty_means_defaults(section: dict[str, Any]) -> None:
    """`redis:` or `slurm:` with nothing after it names that transport or executor with its
    defaults, as the validator takes it, where null elsewhere is "not set": so null is right
    for exactly the branches with no required field, whatever their config model says."""
    branches = section.get("properties", {})
    for name, branch in branches.items():
        any_of = branch.get("anyOf")
        if isinstance(any_of, list) and len(any_of) == 2 and any_of[1] == _NULL:
            # an Optional config model `_or_null` could not merge: the model itself
            branch = branches[name] = {
                **any_of[0],
                **{k: v for k, v in branch.items() if k != "anyOf"},
            }
        if branch.get("type") in ("object", ["object", "null"]):
            branch["type"] = "object" if branch.get("required") else ["object", "null"]


def _say_plugins(section: dict[str, Any], backends: Mapping[str, Any]) -> None:
    """A plugin's transport or executor branch under `section` says which distribution it
    comes from, as a unit's does: the key alone does not tell an editor's user what to install
    (or upgrade) where the file is used. The core's own say nothing."""
    from asapo_pipelines import CORE_DISTRIBUTION

    for name, branch in section.get("properties", {}).items():
        descriptor = backends.get(name)
        if descriptor is not None and descriptor.distribution not in (None, CORE_DISTRIBUTION):
            branch["description"] = f"{descriptor.summary} (from {descriptor.distribution})"


def pipeline_schema(
    catalog: Catalog, params: Mapping[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The draft-07 JSON Schema of a whole pipeline file for the units of `catalog` whose
    params have a schema (`params`, from `described_params`, computed when not given)."""
    from asapo_pipelines.pipeline.model import name_rule, pipeline_model

    # one branch (property) per registered transport under `transport:` that has a schema
    catalog = described_backends(catalog)[0]
    schema = editor_schema(pipeline_model(catalog).model_json_schema(by_alias=True))
    transport = schema["properties"]["transport"]
    transport.update(minProperties=1, maxProperties=1)
    _say_plugins(transport, catalog.transports)
    _say_plugins(schema["properties"]["deploy"], catalog.executors)
    _empty_means_defaults(transport)
    _empty_means_defaults(schema["properties"]["deploy"])
    schema["properties"]["units"] = {
        "type": "object",
        "description": schema["properties"]["units"].get("description", ""),
        "minProperties": 1,
        "propertyNames": name_rule("instance"),
        "additionalProperties": _unit_entry(catalog, _params_of(catalog, params)),
    }
    streams = schema["properties"]["streams"]
    streams["type"] = ["object", "null"]  # `streams:` left empty, as the validator allows
    streams["propertyNames"] = name_rule("stream")
    # `x-...` keys at the top level hold anchors for reuse
    schema["patternProperties"] = {
        "^x-": {"description": "Free-form: a place for YAML anchors to reuse below."}
    }
    schema["description"] = (
        "An asapo-pipelines pipeline file: units wired together by streams. Generated by "
        "`pipeline schema` from the installed units."
    )
    return {
        "$schema": DRAFT,
        "$id": PIPELINE_SCHEMA,
        "title": "asapo-pipelines pipeline file",
        **{k: v for k, v in schema.items() if k not in ("title",)},
    }


def dumps(schema: dict[str, Any]) -> str:
    """The committed text of a schema: stable key order, two-space indent, final newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def schema_files(
    catalog: Catalog, params: Mapping[str, dict[str, Any]] | None = None
) -> dict[str, str]:
    """relative path -> text of every file `pipeline schema --output DIR` writes: a unit
    whose params have no schema (not in `params`, see `described_params`) has no file."""
    params = _params_of(catalog, params)
    files = {PIPELINE_SCHEMA: dumps(pipeline_schema(catalog, params))}
    for name, descriptor in catalog.units.items():
        if name in params:
            files[f"{UNITS_DIR}/{name}.schema.json"] = dumps(unit_schema(descriptor, params[name]))
    return files


def stale_files(
    directory: Path, catalog: Catalog, params: Mapping[str, dict[str, Any]] | None = None
) -> list[str]:
    """Files under `directory` that differ from what the catalog generates (or are extra)."""
    wanted = schema_files(catalog, params)
    stale = []
    for relative, text in wanted.items():
        path = directory / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(relative)
    units_dir = directory / UNITS_DIR
    if units_dir.is_dir():
        for path in sorted(units_dir.glob("*.schema.json")):
            relative = f"{UNITS_DIR}/{path.name}"
            if relative not in wanted:
                stale.append(relative)
    return stale
