"""Human-readable views of a unit: its parameters as rows and a YAML snippet to paste."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from asapo_pipelines.descriptor import UnitDescriptor

_NO_DEFAULT = object()


@dataclass(frozen=True)
class ParamRow:
    name: str
    type: str
    required: bool
    default: Any
    description: str

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


def param_rows(descriptor: UnitDescriptor) -> list[ParamRow]:
    schema = descriptor.params_schema()
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        resolved = _resolve(prop, schema)
        rows.append(
            ParamRow(
                name=name,
                type=type_text(prop, schema),
                required=name in required,
                default=prop.get("default", _NO_DEFAULT),
                description=prop.get("description") or resolved.get("description", ""),
            )
        )
    return rows


def _placeholder(row: ParamRow) -> str:
    if row.type.startswith("list"):
        return "[]"
    if row.type.startswith("dict"):
        return "{}"
    return {"int": "0", "float": "0.0", "bool": "false"}.get(row.type, '""')


def instance_name(descriptor: UnitDescriptor) -> str:
    return descriptor.name.split(".", 1)[1].replace("-", "_")


def example_snippet(descriptor: UnitDescriptor) -> str:
    """The YAML a user pastes under `units:` to use this unit, with every port and parameter."""
    lines = [f"{instance_name(descriptor)}:", f"  unit: {descriptor.name}"]
    rows = param_rows(descriptor)
    if rows:
        lines.append("  params:")
        for row in rows:
            if row.required:
                lines.append(f"    {row.name}: {_placeholder(row)}  # required: {row.type}")
            else:
                lines.append(f"    {row.name}: {row.default_text()}")
    for side, ports in (("inputs", descriptor.inputs), ("outputs", descriptor.outputs)):
        if ports:
            lines.append(f"  {side}:")
            for port in ports:
                lines.append(
                    f"    {port.name}: {port.name.replace('_', '-')}  # {port.content_type}"
                )
    return "\n".join(lines) + "\n"
