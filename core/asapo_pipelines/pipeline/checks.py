"""Checks that span several fields of a section, and validation with the file's own types.

Both exist so that `pipeline validate` and the editor schema agree on every file:

- A rule (`ExactlyOne`, `NotBoth`, `NeedsWhen`) is written once on a config model and does two
  things: it checks the data as written, in a validator that reports its problem together with
  the problems of the section's fields, and it adds the same condition to the model's JSON
  Schema. pydantic runs an "after" model validator only when every field validated, and a
  "before" one that raises hides the fields' problems, so a section with a bad value and two
  settings that exclude each other would show one problem, then the next after its fix.
- `validate_as_json` validates data read from a pipeline file with the types JSON and YAML 1.2
  give it, as the editor does: `"true"` is text, never a boolean, and `"0.5"` never a number.
- `broken_defaults` finds a params model's defaults that break its own rules, which pydantic
  never validates: a file that leaves them unset must fail as one that writes them does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

M = TypeVar("M", bound=BaseModel)
#: a rule's finding: where in the section (empty: the section itself), code, sentence
Found = tuple[tuple[str, ...], str, str]


def _given(data: Mapping[str, Any], name: str) -> bool:
    # null means "not set", as the validated model sees it
    return data.get(name) is not None


def _given_schema(name: str) -> dict[str, Any]:
    """`_given` in JSON Schema: the key is there and its value is not null."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


@dataclass(frozen=True)
class NotBoth:
    """At most one of two fields; the problem is at the second."""

    first: str
    second: str
    code: str
    message: str

    def problems(self, data: Mapping[str, Any], known: frozenset[str]) -> list[Found]:
        if _given(data, self.first) and _given(data, self.second):
            return [((self.second,), self.code, self.message)]
        return []

    def schema(self) -> list[dict[str, Any]]:
        # `errorMessage`: yaml-language-server shows validate's sentence instead of its own
        return [
            {
                "if": _given_schema(self.first),
                "then": {
                    "properties": {self.second: {"type": "null", "errorMessage": self.message}}
                },
            }
        ]


@dataclass(frozen=True)
class ExactlyOne:
    """Exactly one of two fields. With `unless_unknown`, none given is not reported when the
    section has keys its model does not know: one of them is likely a misspelt choice, which
    the unknown-field problem names."""

    first: str
    second: str
    code: str
    message: str
    unless_unknown: bool = False

    def problems(self, data: Mapping[str, Any], known: frozenset[str]) -> list[Found]:
        both = NotBoth(self.first, self.second, self.code, self.message).problems(data, known)
        if both:
            return both
        if _given(data, self.first) or _given(data, self.second):
            return []
        if self.unless_unknown and set(data) - known:
            return []
        return [((), self.code, self.message)]

    def schema(self) -> list[dict[str, Any]]:
        either = [
            {**_given_schema(name), "errorMessage": self.message}
            for name in (self.first, self.second)
        ]
        return [
            {"anyOf": either},
            *NotBoth(self.first, self.second, self.code, self.message).schema(),
        ]


@dataclass(frozen=True)
class NeedsWhen:
    """`needed` must be given (and not empty) when `field` is `value`; the problem is at
    `field` (`driver: docker` without an image)."""

    field: str
    value: str
    needed: str
    code: str
    message: str

    def problems(self, data: Mapping[str, Any], known: frozenset[str]) -> list[Found]:
        if data.get(self.field) == self.value and data.get(self.needed) in (None, ""):
            return [((self.field,), self.code, self.message)]
        return []

    def schema(self) -> list[dict[str, Any]]:
        return [
            {
                "if": {"properties": {self.field: {"const": self.value}}, "required": [self.field]},
                "then": {
                    "required": [self.needed],
                    # neither null (which the field's own type takes, as "not set") nor
                    # empty text, for a field of any type: null by a type null cannot have,
                    # as yaml-language-server words a refused type or pattern as told (a
                    # `not` it words its own way)
                    "properties": {
                        self.needed: {
                            "if": {"type": "null"},
                            "then": {"type": "string", "errorMessage": self.message},
                            "pattern": r"[\s\S]",
                            "patternErrorMessage": self.message,
                        }
                    },
                    "errorMessage": self.message,
                },
            }
        ]


Rule = NotBoth | ExactlyOne | NeedsWhen


def _details(exc: ValidationError) -> list[InitErrorDetails]:
    """The errors of `exc` as they can be raised again: each keeps its type (the code our
    checks give, or pydantic's kind), its location, input and sentence."""
    return [
        {
            "type": PydanticCustomError(err["type"], err["msg"]),
            "loc": err["loc"],
            "input": err["input"],
        }
        for err in exc.errors(include_url=False)
    ]


def rules_schema(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """A model's `json_schema_extra`: its rules as JSON Schema, beside its properties."""
    rules: tuple[Rule, ...] = getattr(cls, "section_rules", ())
    for rule in rules:
        schema.setdefault("allOf", []).extend(rule.schema())


class CrossChecked(BaseModel):
    """Base of a config model with `section_rules`: each is checked on the data as written,
    and its problem is reported together with those of the fields (each located), whatever
    they are; the model's JSON Schema carries the same rules. A plugin's config model (a
    transport's, an executor's) may use it too."""

    section_rules: ClassVar[tuple[Rule, ...]] = ()

    model_config = ConfigDict(json_schema_extra=rules_schema)

    @model_validator(mode="wrap")
    @classmethod
    def _checked_together(cls, value: Any, handler: Any) -> Any:
        found: list[InitErrorDetails] = []
        if isinstance(value, Mapping):
            known = frozenset(
                key
                for name, info in cls.model_fields.items()
                for key in (name, info.alias)
                if key is not None
            )
            for rule in cls.section_rules:
                for loc, code, message in rule.problems(value, known):
                    error = PydanticCustomError(code, message)
                    found.append({"type": error, "loc": loc, "input": value})
        if not found:
            return handler(value)
        try:
            handler(value)
        except ValidationError as exc:
            found = [*_details(exc), *found]
        raise ValidationError.from_exception_data(cls.__name__, found)


# -- the file's own types ------------------------------------------------------------------
def _json_numbers(value: Any) -> Any:
    """2.0 as 2: JSON has one kind of number, and JSON Schema and the editor take 2.0 as an
    integer, so an integer field must accept it as they do."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_numbers(v) for v in value]
    return value


def _as_text(value: Any) -> str:
    # a date a `--set` value parsed into: JSON carries it as ISO text, which a date field takes
    isoformat = getattr(value, "isoformat", None)
    return str(isoformat() if callable(isoformat) else value)


#: what a value that is infinite or NaN is told, in a file (`1e400`, `.inf`, `.nan`), a `--set`
#: (`inf`, `nan`) or a params model that allows them: JSON, the editor's schema and the run's
#: recorded configuration have no such numbers
NOT_FINITE = "Input should be a finite number (JSON has no infinity or NaN)"
_NON_FINITE_TEXT = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan"})
_NUMBER_KINDS = frozenset({"float_type", "float_parsing", "int_type", "int_parsing"})


Loc = tuple[str | int, ...]


def _non_finite(value: Any, loc: Loc = ()) -> dict[Loc, float]:
    """Where in `value` a float is infinite or NaN (YAML reads `1e400` as infinity), and it."""
    if isinstance(value, float) and not math.isfinite(value):
        return {loc: value}
    if isinstance(value, dict):
        return {at: x for k, v in value.items() for at, x in _non_finite(v, (*loc, str(k))).items()}
    if isinstance(value, list | tuple):
        return {at: x for i, v in enumerate(value) for at, x in _non_finite(v, (*loc, i)).items()}
    return {}


def _is_non_finite_text(err: Any) -> bool:
    """A number field given `inf` or `nan` as text (a `--set`, or YAML 1.2's plain `inf`)."""
    value = err.get("input")
    return (
        err["type"] in _NUMBER_KINDS
        and isinstance(value, str)
        and value.strip().lower() in _NON_FINITE_TEXT
    )


def _refuse_non_finite(model: type[BaseModel], data: Any, exc: ValidationError | None) -> None:
    """Raise the model's problems with each infinite or NaN value among them, said as such
    (pydantic lets them through fields that allow them, and fields typed `Any`), unless there
    is none."""
    refused = {tuple(err["loc"]) for err in exc.errors()} if exc is not None else set()
    # inside a value refused as a whole (`[1e400]` for a number), only that is said
    found = {
        loc: value
        for loc, value in _non_finite(data).items()
        if not any(loc[:n] in refused for n in range(len(loc)))
    }
    spots = set(found)
    details: list[InitErrorDetails] = [
        {"type": PydanticCustomError("finite_number", NOT_FINITE), "loc": loc, "input": value}
        for loc, value in found.items()
    ]
    if exc is not None:
        for err, detail in zip(exc.errors(include_url=False), _details(exc), strict=True):
            if tuple(err["loc"]) in spots:
                continue  # said above
            if _is_non_finite_text(err):
                detail["type"] = PydanticCustomError("finite_number", NOT_FINITE)
                spots.add(tuple(err["loc"]))
            details.append(detail)
    if spots:
        raise ValidationError.from_exception_data(model.__name__, details)
    if exc is not None:
        raise exc


def validate_as_json(model: type[M], data: Any) -> M:
    """`data` (as a pipeline file or a `--set` gives it) validated by `model` with JSON's types:
    pydantic's strict mode on JSON input, so no text becomes a boolean or a number (YAML 1.2
    reads `yes`, `on` and `"0.5"` as text, and so does the editor), while text still becomes a
    path, an enum member or a date, as JSON allows. An infinite or NaN number is refused
    wherever it is, as JSON has none. Raises pydantic's ValidationError."""
    text = json.dumps(_json_numbers(data), default=_as_text)
    try:
        validated = model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        _refuse_non_finite(model, data, exc)
        raise  # not reached: given an error, _refuse_non_finite raises
    _refuse_non_finite(model, data, None)
    return validated


# -- a params model's own defaults -----------------------------------------------------------
@dataclass(frozen=True)
class BrokenDefault:
    """A field left unset whose default its own model refuses (`factor: int = Field(-1, gt=0)`):
    pydantic does not validate defaults, so without this check the unit would run with it."""

    #: where in the params, as pydantic locates it (`("factor",)`, `("limits", "low")`)
    loc: tuple[str | int, ...]
    #: the default as JSON (what a file would have to say)
    default: Any
    #: the rule it breaks, in pydantic's words (`input should be greater than 0`)
    rule: str

    @property
    def field(self) -> str:
        return ".".join(str(part) for part in self.loc)

    def sentence(self, unit: str, *, model: str = "") -> str:
        """One sentence naming the unit, the field, its default and the rule, the culprit and
        the workaround; every place that finds it says the same. `model` names another model
        than a unit's params (`transport filebus's config`)."""
        shown = json.dumps(self.default) if _is_json(self.default) else repr(self.default)
        model = model or f"unit {unit}'s params"
        kind = model.rsplit(" ", 1)[-1]
        return (
            f"the default of {self.field} in {model} is {shown}, which its own rule "
            f"refuses ({self.rule}): the plugin's {kind} model is wrong (tell its authors); "
            f"setting {self.field} in the pipeline file works around it"
        )


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


#: what `value_at` gives for a path the data does not hold
ABSENT: Any = object()


def value_at(data: Any, loc: tuple[str | int, ...]) -> Any:
    """The value at `loc` (keys and list indexes) in JSON-like data, or `ABSENT`."""
    for part in loc:
        in_mapping = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_mapping or in_list):
            return ABSENT
        data = data[part]
    return data


def _written(given: Any, loc: tuple[str | int, ...]) -> bool:
    """Whether `loc` was set, rather than left to a default, in `given` (the set fields)."""
    return value_at(given, loc) is not ABSENT


#: what a default cannot cause: a missing value is a required field's (no default), and an
#: unknown key comes from the data as written
_NOT_A_DEFAULTS = frozenset({"missing", "extra_forbidden"})


def broken_defaults(params: BaseModel) -> list[BrokenDefault]:
    """The defaults in `params` (a validated or constructed params model) that the model
    itself refuses, nested models' and default factories' results included.

    The whole model, defaults filled in, is validated again as a file would be
    (`validate_as_json`), and the problems at places the data did not set are the defaults'.
    This costs one more validation, so it runs where a unit's params are resolved (validate,
    the worker, the test harness), never while listing the catalog."""
    try:
        given = params.model_dump(mode="json", by_alias=True, exclude_unset=True, warnings=False)
        whole = params.model_dump(mode="json", by_alias=True, round_trip=True, warnings=False)
    except Exception:  # a default JSON cannot carry: nothing a file could compare it with
        return []
    try:
        validate_as_json(type(params), whole)
    except ValidationError as exc:
        found: dict[tuple[str | int, ...], BrokenDefault] = {}
        for err in exc.errors(include_url=False):
            loc = _setting(tuple(err["loc"]))
            if err["type"] in _NOT_A_DEFAULTS or not loc or _written(given, tuple(err["loc"])):
                continue
            rule = err["msg"][:1].lower() + err["msg"][1:]
            found.setdefault(loc, BrokenDefault(loc, _at(whole, loc), rule))
        return list(found.values())
    except Exception:  # a model's own validator may raise anything; validate reports it
        return []
    return []


def _setting(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The setting a problem is in: a list default's item is the list's (a file sets the
    list), a nested model's field is its own (`sub.b` sets just that)."""
    for n, part in enumerate(loc):
        if isinstance(part, int):
            return loc[:n]
    return loc


def _at(data: Any, loc: tuple[str | int, ...]) -> Any:
    """The value at `loc` in the dumped params (None where there is none)."""
    for part in loc:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def model_broken_defaults(model: type[BaseModel]) -> list[BrokenDefault]:
    """Every default of `model` that the model refuses, without any data: for the places that
    check a plugin as a whole and may build every params model (a strict catalog). Required
    fields stay unset and are not reported."""
    try:
        constructed = model.model_construct()  # calls the default factories
    except Exception:  # a failing default factory fails every use of the unit, loudly
        return []
    return broken_defaults(constructed)
