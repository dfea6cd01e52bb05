"""Write docs/hooks.md from `asapo_pipelines/hookspecs.py`, or check that it is current.

python docs/gen_hooks.py          # rewrite docs/hooks.md
python docs/gen_hooks.py --check  # exit 1 when docs/hooks.md is stale

Every hook is one section: its signature, its docstring, what its argument is (the comment of
the `Register...` alias it receives) and, for a registering hook, the descriptor it registers
with that descriptor's fields.
"""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

from asapo_pipelines import hookspecs
from asapo_pipelines.descriptor import (
    CommandDescriptor,
    ExecutorDescriptor,
    FormatDescriptor,
    TransportDescriptor,
    UnitDescriptor,
)
from asapo_pipelines.plugin_manager import PluginManager

TARGET = Path(__file__).with_name("hooks.md")

#: hook -> the descriptor its `register` takes
DESCRIPTORS: dict[str, type[Any]] = {
    "register_units": UnitDescriptor,
    "register_transports": TransportDescriptor,
    "register_executors": ExecutorDescriptor,
    "register_formats": FormatDescriptor,
    "register_commands": CommandDescriptor,
}


def hook_names() -> list[str]:
    """The hooks in the order the module defines them."""
    names = set(PluginManager().hook_names())
    source = inspect.getsource(hookspecs)
    return [n for n in re.findall(r"^def (\w+)\(", source, re.M) if n in names]


def _alias_comments() -> dict[str, str]:
    """`Register...` alias name -> the `#:` comment above it in hookspecs.py."""
    found: dict[str, str] = {}
    lines = inspect.getsource(hookspecs).splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\w+) = ", line)
        if not match:
            continue
        comment = []
        j = i - 1
        while j >= 0 and lines[j].startswith("#:"):
            comment.insert(0, lines[j][2:].strip())
            j -= 1
        if comment:
            found[match.group(1)] = " ".join(comment)
    return found


def _type_name(annotation: Any) -> str:
    """A field's type as a reader wants it: a Literal's allowed values, not just `Literal`."""
    if typing.get_origin(annotation) is typing.Literal:
        return " or ".join(repr(v) for v in typing.get_args(annotation))
    name = getattr(annotation, "__name__", None) or str(annotation)
    return name.replace("typing.", "").replace("|", "or")


def _fields(model: type[Any]) -> str:
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        annotation = _type_name(info.annotation)
        default = "required" if info.is_required() else f"`{info.default!r}`"
        if name in ("params", "config"):
            default = "`NoParams`"
        meaning = (info.description or "").replace("|", "or").replace("\n", " ")
        rows.append(f"| `{name}` | `{annotation}` | {default} | {meaning} |")
    return "\n".join(rows)


def render() -> str:
    aliases = _alias_comments()
    parts = [
        "# Plugin hooks\n",
        "Generated from `core/asapo_pipelines/hookspecs.py` by `docs/gen_hooks.py`; a test fails "
        "when it is stale, when a hook has no docstring, or when a hook is exercised by no "
        "test.\n",
        textwrap.dedent(hookspecs.__doc__ or "").strip() + "\n",
        "A plugin implements any of these hooks (each with `@hookimpl`); a misspelled hook name "
        "makes the plugin `broken` in `pipeline plugins`. How to package a plugin: "
        "[Publishing a plugin](plugins.md); transports: [Adding a transport]"
        "(transports.md#adding-a-transport); executors: [Adding an executor](executors.md).\n",
    ]
    for name in hook_names():
        function = getattr(hookspecs, name)
        signature = str(inspect.signature(function)).replace("'", "")
        doc = inspect.getdoc(function) or ""
        parts.append(f"## `{name}`\n\n```python\n@hookimpl\ndef {name}{signature}: ...\n```\n")
        parts.append(doc + "\n")
        hints = inspect.signature(function).parameters
        for parameter in hints.values():
            alias = str(parameter.annotation).strip("'\"")
            if alias in aliases:
                parts.append(f"`{parameter.name}` (`{alias}`): {aliases[alias]}\n")
        model = DESCRIPTORS.get(name)
        if model is not None:
            summary = (inspect.getdoc(model) or "").split("\n\n")[0].replace("\n", " ")
            parts.append(f"### `{model.__name__}`\n\n{summary}\n\n{_fields(model)}\n")
    return "\n".join(parts)


def main() -> int:
    # the CLI reference's generator holds the write-or-check both pages share
    from gen_cli_reference import write_or_check

    return write_or_check(TARGET, render(), Path(__file__).name)


if __name__ == "__main__":
    sys.exit(main())
