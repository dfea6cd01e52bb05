"""`--set UNIT.PARAM=VALUE`: one run's overrides of the file's params, validated like the file.

UNIT is a unit instance of the pipeline, PARAM a parameter of its unit (nested ones with dots:
`normalize.autobk.rbkg=1.2`), VALUE a YAML scalar or flow value (`1.0e-4`, `true`, `[1, 2]`)
or text YAML cannot read (a glob, `*.xdi`). An unknown instance or parameter gets a
did-you-mean (`UnknownName`, exit code 2); a value the unit's params model refuses gets that
model's reason, in one sentence naming the `--set`.
"""

from __future__ import annotations

import copy
import difflib
import typing
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from asapo_pipelines.errors import UsageError
from asapo_pipelines.pipeline.checks import validate_as_json
from asapo_pipelines.pipeline.validate import value_sentence

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import Pipeline


class UnknownName(UsageError):
    """A `--set` naming a unit the pipeline has not, or a parameter its unit has not: a name
    given wrong, exit code 2 as an unknown stream, run or unit is (`run` and `reprocess` say
    a value the unit refuses with exit code 1, as `validate` says one in the file)."""


def _near(word: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {near[0]}?" if near else f"; it has {', '.join(sorted(choices))}"


def _param_hint(part: str, fields: list[str], parent: list[str]) -> str:
    """The parameters there are instead of `part`; a unit (or a nested parameter) without any
    is said to take none, not listed as an empty list."""
    if fields:
        return _near(part, fields)
    return f"; {'.'.join(parent)} has no fields" if parent else "; it takes no parameters"


def _parse_value(text: str, where: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe", pure=True).load(text) if text.strip() else ""
    except YAMLError:
        # a glob (`*.xdi`: an alias in YAML) or other text YAML reserves a first character
        # for is meant as text; a list, mapping or quoted text left open is a mistake
        if text.lstrip().startswith(("[", "{", '"', "'")):
            raise UsageError(f"{where}: the value {text!r} is not a YAML value") from None
        return text


def parse(items: tuple[str, ...] | list[str]) -> dict[str, dict[str, Any]]:
    """`("normalize.autobk.rbkg=1.2", ...)` -> {"normalize": {"autobk.rbkg": 1.2}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        where = f"--set {item}"
        target, eq, value = item.partition("=")
        instance, dot, param = target.strip().partition(".")
        if not eq or not dot or not instance or not param:
            raise UsageError(
                f"{where}: write it as UNIT.PARAM=VALUE, e.g. normalize.autobk.rbkg=1.2"
            )
        out.setdefault(instance, {})[param] = _parse_value(value, where)
    return out


def _sub_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    info = model.model_fields.get(name)
    if info is None:
        return None
    candidates = [info.annotation, *typing.get_args(info.annotation)]
    for tp in candidates:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
    return None


def _refuse_empty_required(
    where: str, dotted: str, value: Any, required: set[str], unit: str
) -> None:
    """An empty value for a required parameter, refused as the file's P206 refuses it: the
    params model accepts `""`, and the unit would fail only once the run started."""
    if dotted in required and isinstance(value, str) and not value.strip():
        raise UsageError(
            f"{where}: a value is required and this one is empty; see `pipeline show-unit {unit}`"
        )


def apply(pipeline: Pipeline, catalog: Catalog, overrides: dict[str, dict[str, Any]]) -> None:
    """Check every override and write it into the pipeline's params (in place)."""
    for instance, params in overrides.items():
        if instance not in pipeline.units:
            first = next(iter(params))
            raise UnknownName(
                f"--set {instance}.{first}: pipeline {pipeline.name} has no unit {instance}"
                + _near(instance, list(pipeline.units))
            )
        config = pipeline.units[instance]
        descriptor = pipeline.descriptor(instance, catalog)
        merged = copy.deepcopy(dict(config.params))
        required = set(descriptor.params_schema().get("required", []))
        for dotted, value in params.items():
            where = f"--set {instance}.{dotted}"
            _refuse_empty_required(where, dotted, value, required, descriptor.name)
            model: type[BaseModel] | None = descriptor.params
            node = merged
            parts = dotted.split(".")
            for depth, part in enumerate(parts):
                if model is not None and part not in model.model_fields:
                    raise UnknownName(
                        f"{where}: unit {descriptor.name} has no parameter "
                        f"{'.'.join(parts[: depth + 1])}"
                        + _param_hint(part, list(model.model_fields), parts[:depth])
                    )
                if depth == len(parts) - 1:
                    node[part] = value
                else:
                    child = node.get(part)
                    if not isinstance(child, dict):
                        child = node[part] = {} if child is None else dict(child)
                    node = child
                    model = _sub_model(model, part) if model is not None else None
            try:
                # JSON's types, as the file's own params are validated: `yes` stays text
                validate_as_json(descriptor.params, merged)
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                loc = ".".join(str(p) for p in err.get("loc", ()))
                # in validate's words, with the value given (a typo is then seen at once);
                # where in it, when the fault is deeper than the parameter set
                at = "" if loc in ("", dotted) else f" (at {loc})"
                raise UsageError(f"{where}: {value_sentence(err)}{at}") from None
        config.params = merged


def flat(overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{"normalize.autobk.rbkg": 1.2, ...}: how a run records them."""
    return {f"{i}.{p}": v for i, ps in sorted(overrides.items()) for p, v in sorted(ps.items())}


def unflat(recorded: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in recorded.items():
        instance, _, param = key.partition(".")
        out.setdefault(instance, {})[param] = value
    return out
