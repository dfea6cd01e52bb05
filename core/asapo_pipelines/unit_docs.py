"""Human-readable views of a unit: its parameters as rows and a YAML snippet to paste."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `pipeline new` imports this module to list commands: no pydantic then
    from asapo_pipelines.descriptor import UnitDescriptor

_NO_DEFAULT = object()
#: the default of a parameter that has none (a required one)
NO_DEFAULT = _NO_DEFAULT


@dataclass(frozen=True)
class ParamRow:
    name: str  # dotted for a field of a nested model: `pre_edge.e0`
    type: str
    required: bool
    default: Any
    description: str
    #: what the value must satisfy besides its type: `>= 0`, `0 <= x <= 1`, `length >= 1`
    constraints: str = ""
    #: a value the unit's author suggests (JSON Schema `examples`), used by `pipeline new`
    example: Any = _NO_DEFAULT
    #: JSON Schema `format` (e.g. `directory-path`)
    format: str = ""

    @property
    def nested(self) -> bool:
        return "." in self.name

    def default_text(self) -> str:
        return "" if self.default is _NO_DEFAULT else json.dumps(self.default)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "description": self.description,
        }
        if self.default is not _NO_DEFAULT:
            data["default"] = self.default
        if self.constraints:
            data["constraints"] = self.constraints
        if self.example is not _NO_DEFAULT:
            data["example"] = self.example
        return data


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return dict(root.get("$defs", {}).get(ref.rsplit("/", 1)[1], {}))
    return schema


def type_text(schema: dict[str, Any], root: dict[str, Any] | None = None) -> str:
    """A short type name for a JSON Schema node: `int`, `str | null`, `"a" | "b"`, `list[float]`."""
    root = root or schema
    schema = _resolve(schema, root)
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(type_text(s, root) for s in schema[key])
    kind = schema.get("type")
    names = {"integer": "int", "number": "float", "string": "str", "boolean": "bool"}
    if kind == "array":
        items = schema.get("items")
        return f"list[{type_text(items, root)}]" if isinstance(items, dict) else "list"
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return f"dict[str, {type_text(extra, root)}]"
        return schema.get("title", "object") if "properties" in schema else "dict"
    if isinstance(kind, list):
        return " | ".join(names.get(str(k), str(k)) for k in kind)
    if kind is None:
        return "any"
    return names.get(kind, kind)


def constraints_text(schema: dict[str, Any], root: dict[str, Any] | None = None) -> str:
    """The ranges and lengths a JSON Schema node sets, as a reader writes them: `0 <= x <= 1`,
    `> 0`, `length >= 1`; for a union (`float | null`) the constraints of its members."""
    root = root or schema
    schema = _resolve(schema, root)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [constraints_text(s, root) for s in schema[key]]
            return "; ".join(p for p in parts if p)
    low = ("x >= ", schema["minimum"]) if "minimum" in schema else None
    if "exclusiveMinimum" in schema:
        low = ("x > ", schema["exclusiveMinimum"])
    high = ("x <= ", schema["maximum"]) if "maximum" in schema else None
    if "exclusiveMaximum" in schema:
        high = ("x < ", schema["exclusiveMaximum"])
    parts = []
    if low and high:
        lo_op = "<=" if low[0] == "x >= " else "<"
        parts.append(f"{low[1]} {lo_op} {high[0]}{high[1]}")
    elif low or high:
        op, bound = low or high  # type: ignore[misc]
        parts.append(f"{op.removeprefix('x ')}{bound}")
    for lo_key, hi_key, what in (
        ("minLength", "maxLength", "length"),
        ("minItems", "maxItems", "items"),
    ):
        if lo_key in schema and hi_key in schema:
            parts.append(f"{schema[lo_key]} <= {what} <= {schema[hi_key]}")
        elif lo_key in schema:
            parts.append(f"{what} >= {schema[lo_key]}")
        elif hi_key in schema:
            parts.append(f"{what} <= {schema[hi_key]}")
    if "pattern" in schema:
        parts.append(f"matches {schema['pattern']}")
    return ", ".join(parts)


def _model_defaults(model: Any) -> dict[str, Any]:
    """Each optional field's default as JSON, default factories called: the JSON Schema leaves
    a factory's default out, and a snippet must not print `null` where a list is expected."""
    from pydantic_core import to_jsonable_python

    out: dict[str, Any] = {}
    for name, info in getattr(model, "model_fields", {}).items():
        if info.is_required():
            continue
        try:
            value = info.get_default(call_default_factory=True, validated_data={})
            out[info.alias or name] = to_jsonable_python(value)
        except Exception:  # a factory needing other fields' values: leave it to the schema
            continue
    return out


def _rows(
    schema: dict[str, Any],
    root: dict[str, Any],
    prefix: str,
    defaults: dict[str, Any],
    parent_required: bool,
) -> list[ParamRow]:
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        resolved = _resolve(prop, root)
        default = prop.get("default", defaults.get(name, _NO_DEFAULT))
        examples = prop.get("examples") or resolved.get("examples")
        row = ParamRow(
            name=f"{prefix}{name}",
            type=type_text(prop, root),
            required=parent_required and name in required,
            default=default,
            description=prop.get("description") or resolved.get("description", ""),
            constraints=constraints_text(prop, root),
            example=examples[0] if isinstance(examples, list) and examples else _NO_DEFAULT,
            format=str(prop.get("format") or resolved.get("format") or ""),
        )
        rows.append(row)
        if resolved.get("type") == "object" and "properties" in resolved:
            # a nested model (`pre_edge: {e0: ..., step: ...}`): its fields as `pre_edge.e0`
            inner = default if isinstance(default, dict) else {}
            rows.extend(_rows(resolved, root, f"{row.name}.", inner, row.required))
    return rows


def param_rows(descriptor: UnitDescriptor, *, nested: bool = True) -> list[ParamRow]:
    """One row per parameter; with `nested`, also one per field of a nested model."""
    schema = descriptor.params_schema()
    rows = _rows(schema, schema, "", _model_defaults(descriptor.params), True)
    return rows if nested else [r for r in rows if not r.nested]


def _placeholder(row: ParamRow) -> str:
    if row.type.startswith("list"):
        return "[]"
    if row.type.startswith("dict"):
        return "{}"
    return {"int": "0", "float": "0.0", "bool": "false"}.get(row.type, '""')


def required_value(row: ParamRow) -> tuple[str, str]:
    """What a starter file or snippet writes for a required parameter, and its comment: the
    unit's own example when it gives one, else an empty placeholder that `pipeline validate`
    reports (P206) until the user fills it in; never a silently accepted empty value."""
    if row.example is not _NO_DEFAULT:
        return json.dumps(row.example), f"required: {row.type}; an example, change it"
    return _placeholder(row), f"REQUIRED: {row.type}, fill in"


def instance_name(descriptor: UnitDescriptor) -> str:
    return descriptor.name.split(".", 1)[1].replace("-", "_")


#: the width a snippet's lines keep to: a terminal's, where `show-unit` prints it
SNIPPET_WIDTH = 80


def _default_lines(name: str, value: Any, indent: str) -> list[str]:
    """`name: value` as YAML lines. A mapping too long for one line (a nested model's defaults,
    `pre_edge: {...}`) is written as a block, a key a line: a terminal would cut the one line,
    and a line cut mid-mapping pastes as broken YAML. JSON scalars and lists are YAML."""
    line = f"{indent}{name}: {json.dumps(value)}"
    if len(line) <= SNIPPET_WIDTH or not isinstance(value, dict) or not value:
        return [line]
    lines = [f"{indent}{name}:"]
    for key, item in value.items():
        lines.extend(_default_lines(_yaml_key(str(key)), item, indent + "  "))
    return lines


def _yaml_key(key: str) -> str:
    """A mapping key as YAML reads it back: plain when it is a plain name, else quoted (`on`
    and `yes` are booleans to YAML 1.1 readers, as some editors are)."""
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key) is not None
    if plain and key.lower() not in _YAML11_WORDS:
        return key
    return json.dumps(key)


_YAML11_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def example_snippet(descriptor: UnitDescriptor) -> str:
    """The YAML a user pastes under `units:` to use this unit, with every port and parameter;
    an optional input commented out: wired to a stream no unit writes, the pasted snippet
    failed validation (P303), where the docs say it validates as pasted."""
    lines = [f"{instance_name(descriptor)}:", f"  unit: {descriptor.name}"]
    rows = param_rows(descriptor, nested=False)
    if rows:
        lines.append("  params:")
        for row in rows:
            if row.required:
                value, comment = required_value(row)
                lines.append(f"    {row.name}: {value}  # {comment}")
            else:
                lines.extend(_default_lines(row.name, row.default, "    "))
    for side, ports in (("inputs", descriptor.inputs), ("outputs", descriptor.outputs)):
        if ports:
            lines.append(f"  {side}:")
            for port in ports:
                line = f"{port.name}: {port.name.replace('_', '-')}  # {port.content_type}"
                optional = side == "inputs" and not port.required
                lines.append(f"    # {line}, optional" if optional else f"    {line}")
    return "\n".join(lines) + "\n"
