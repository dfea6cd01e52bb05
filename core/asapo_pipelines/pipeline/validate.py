"""Staged validation of a pipeline file: every problem, each at its line and column.

Stages, each run even when an earlier one found problems (so one run shows everything):

0. reading: the YAML itself (loader.py);
1. shape: the file against the pydantic models (model.py);
2. units: each unit exists in the catalog, its params against the unit's own params model;
3. graph: ports exist, every input is fed, content types agree, one producer per stream, no
   loop that could never carry a message or never end;
4. deploy: driver and image, the Python environment (most of it is part of stage 1's models).

Later stages work from the raw data of the parts that are usable, so a typo in one unit does not
hide the problems of the others.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from asapo_pipelines.errors import ConfigurationError, PipelinesError
from asapo_pipelines.pipeline.checks import ABSENT, broken_defaults, validate_as_json, value_at
from asapo_pipelines.pipeline.loader import Document, LoadFailed, Pos, read_document
from asapo_pipelines.pipeline.model import (
    DEFAULT_DRIVER,
    DRIVERS,
    Pipeline,
    UnitConfig,
    pipeline_model,
)
from asapo_pipelines.pipeline.problems import CODES, Problem, Report, make

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.descriptor import ExecutorDescriptor, TransportDescriptor, UnitDescriptor
    from asapo_pipelines.import_strings import MissingModule

Loc = tuple[str | int, ...]


class PipelineInvalid(PipelinesError):
    """The pipeline file has errors; `.report` holds all of them."""

    def __init__(self, report: Report, what: str | None = None) -> None:
        errors = report.errors
        # `what`: what is not valid when it is more than the file (the file with a run's --set)
        head = f"{what or report.file + ' is not a valid pipeline file'} ({len(errors)} error"
        head += "s)" if len(errors) != 1 else ")"
        lines = [p.text() for p in report.sorted() if p.severity == "error"][:20]
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(head + ":\n" + "\n".join(lines) + more)
        self.report = report
        self.exit_code = report.exit_code or 1


def _suggest(word: str, choices: Iterable[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {near[0]}?" if near else ""


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the file"


# -- the model's fields at a location (for "did you mean" on unknown fields) -----------------
def _unwrap(tp: Any) -> list[Any]:
    """The concrete types inside Optional/Annotated/Union."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in _unwrap(a)]
    return [tp]


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items() if name != "token"]


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at `loc` below `root`, if any."""
    current: list[Any] = [root]
    for part in loc:
        following: list[Any] = []
        for tp in current:
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                for name, info in tp.model_fields.items():
                    if part in (name, info.alias):
                        following.extend(_unwrap(info.annotation))
            elif typing.get_origin(tp) is dict:
                following.extend(_unwrap(typing.get_args(tp)[1]))
            elif typing.get_origin(tp) is list and isinstance(part, int):
                following.extend(_unwrap(typing.get_args(tp)[0]))
        current = following
    for tp in current:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
    return None


def _value_at(data: Any, path: Loc) -> Any:
    """The value at `path` in the file's data (None when there is none)."""
    found = value_at(data, tuple(path))
    return None if found is ABSENT else found


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- pydantic errors -> problems ---------------------------------------------------------------
#: the file is validated as JSON (`validate_as_json`), whose sentences name JSON's types; these
#: keep the words the problems have always used
_PYTHON_WORDS = {
    "Input should be an object": "Input should be a valid dictionary",
    "Input should be a valid array": "Input should be a valid list",
}


def _problems_from(
    doc: Document,
    exc: ValidationError,
    *,
    base: Loc,
    root: type[BaseModel],
    codes: dict[str, str],
    what: str = "",
    skip: Callable[[Any], bool] | None = None,
    unknown_key: Callable[[Loc], str | None] | None = None,
) -> list[Problem]:
    """Translate pydantic's errors below `base` into located problems.

    `codes` maps pydantic error kinds "missing", "extra" and "value" to the code to use; errors
    `skip` accepts are left to another stage; `unknown_key` may say why the key at a path is
    unknown, said instead of the allowed ones.
    """
    file = str(doc.path)
    found = []
    for err in exc.errors(include_url=False):
        if skip is not None and skip(err):
            continue
        raw_loc: Loc = tuple(err["loc"])
        is_key = "[key]" in raw_loc
        loc = tuple(p for p in raw_loc if p != "[key]")
        path = (*base, *loc)
        kind = err["type"]
        if kind == "missing" and loc and isinstance(loc[-1], int):
            # a tuple with too few items
            parent = (*base, *loc[:-1])
            message = f"{_dotted(parent)}: too few items (item {loc[-1] + 1} is missing)"
            found.append(make(file, doc.locate(parent), codes["value"], message))
            continue
        if kind == "missing":
            parent, field = loc[:-1], loc[-1]
            where = _dotted((*base, *parent)) if (base or parent) else "the file"
            message = f"missing required {what or 'field'} {field!r} in {where}"
            found.append(
                make(file, doc.locate((*base, *parent), key=True), codes["missing"], message)
            )
            continue
        if kind == "extra_forbidden":
            parent, field = loc[:-1], loc[-1]
            model = _model_at(root, parent)
            allowed = _field_names(model) if model is not None else []
            where = _dotted((*base, *parent)) if (base or parent) else "the top level"
            message = f"unknown {what or 'field'} {field!r} in {where}"
            why = unknown_key(path) if unknown_key is not None else None
            if why is not None:
                message = f"{message}: {why}"
                found.append(make(file, doc.locate(path, key=True), codes["extra"], message))
                continue
            message += _suggest(str(field), allowed)
            if allowed:
                message += "" if "did you mean" in message else f" (allowed: {', '.join(allowed)})"
            found.append(make(file, doc.locate(path, key=True), codes["extra"], message))
            continue
        if kind.startswith("P") and kind[1:].isdigit():
            # our own checks: the code is the error's type, the location the field they are
            # about (`driver: docker` for a missing image), else the section's key (`asapo:`
            # lacking a token setting), where a missing field is reported too
            section = bool(path) and isinstance(path[-1], str)
            section = section and isinstance(_value_at(doc.data, path), dict)
            key = not loc or is_key or section
            found.append(make(file, doc.locate(path, key=key), kind, err["msg"]))
            continue
        code = codes["value"]
        message = _plain_words(err["msg"])
        if loc and loc[-1] == "driver" and kind == "literal_error":
            code = "P401"
            value = err.get("input")
            message = f"driver {value!r} is not one of {', '.join(DRIVERS)}" + _suggest(
                str(value), DRIVERS
            )
            found.append(make(file, doc.locate(path), code, message))
            continue
        value = err.get("input")
        shown = _got(kind, value)
        if isinstance(value, list) and kind in ("dict_type", "model_type"):
            # `- key: value` lines make a list: a newcomer's likeliest slip for a mapping
            shown = "; it is a list here, where `key: value` lines (no `- ` before them) belong"
        elif isinstance(value, str) and kind in ("dict_type", "model_type"):
            shown += _colon_missing_in(value)
        found.append(
            make(file, doc.locate(path, key=is_key), code, f"{_dotted(path)}: {message}{shown}")
        )
    return found


def _colon_missing_in(value: str) -> str:
    """For text where a mapping belongs that reads as keys written without their colons
    (`factor 5` under `params:`): the slip P002 names on a `unit xas.normalize` line, which
    YAML parses here, since a mapping's value may be text. Two words give the fix; more may be
    several lines YAML folded into one text, whose split only the file shows."""
    from asapo_pipelines.pipeline.syntax import colon_fix

    words = value.split()
    fix = colon_fix(" ".join(words)) if len(words) > 1 else None
    if fix is None:
        return ""
    said = f"; YAML reads `{' '.join(words)}` as text, not as a key (it has no `:`); "
    return said + (f"write `{fix}`" if len(words) == 2 else "write each key with `:` after it")


def _plain_words(msg: str) -> str:
    """pydantic's sentence in the user's words, lower case to follow a location."""
    # pydantic names its classes ("a valid dictionary or instance of Retry"): not the user's
    message = re.sub(r" or instance of \w+", "", _PYTHON_WORDS.get(msg, msg))
    return message[0].lower() + message[1:]


def _got(kind: str, value: Any) -> str:
    """` (got 'lots')` and, for text meant as a boolean or a number, how to write it; nothing
    for a mapping or a list, too long to repeat."""
    if isinstance(value, dict | list):
        return ""
    return f" (got {_short(value)}){_unquote(kind, value)}"


def value_sentence(err: Mapping[str, Any]) -> str:
    """A value a params model refuses, in `pipeline validate`'s words (P202, without the
    location): `input should be a valid number (got 'lots')`, for `--set` to say the same."""
    return _plain_words(str(err.get("msg", "invalid value"))) + _got(
        str(err.get("type", "")), err.get("input")
    )


def _unquote(kind: str, value: Any) -> str:
    """The fix for text where a boolean or a number belongs and its value was meant: `yes`
    (YAML 1.1's boolean) and `"2"` are text to YAML 1.2 and JSON, which "(got 'yes')" alone
    does not tell someone used to other YAML readers."""
    if not isinstance(value, str):
        return ""
    if kind == "bool_type" and value.lower() in {"true", "false"}:
        return f"; write {value.lower()} without quotes"
    if kind == "bool_type" and value.lower() in {"yes", "no", "on", "off"}:
        return "; write true or false (yes, no, on and off are text)"
    if kind in ("int_type", "float_type"):
        try:
            number = float(value)
        except ValueError:
            return ""
        if kind == "float_type" or number.is_integer():
            return "; write the number without quotes"
    return ""


# -- stages ----------------------------------------------------------------------------------
SHAPE_CODES = {"missing": "P101", "extra": "P102", "value": "P103"}
PARAM_CODES = {"missing": "P203", "extra": "P204", "value": "P202"}


def _stage_shape(
    doc: Document, data: dict[str, Any], catalog: Catalog
) -> tuple[Pipeline | None, list[Problem]]:
    # the model of the catalog: its `transport:` section has one branch per registered transport
    model = pipeline_model(catalog)
    try:
        return validate_as_json(model, data), []
    except ValidationError as exc:
        problems = _problems_from(
            doc,
            exc,
            base=(),
            root=model,
            codes=SHAPE_CODES,
            skip=_in_params_not_finite,
            unknown_key=lambda path: (
                _broken_backend(path, catalog)
                or _misplaced_in_unit(path, data, catalog)
                or _unit_outside_units(path, data)
            ),
        )
        return None, problems


#: the sections whose keys name a backend, and what the catalog calls it
BACKEND_SECTIONS = {"transport": "transport", "deploy": "executor"}


def _broken_backend(path: Loc, catalog: Catalog) -> str | None:
    """Why `transport: {filebus: ...}` (or a `deploy:` key) is unknown when an installed plugin
    registers that name broken: the allowed names alone read as if it were not installed.
    Mirrors a unit named by a broken plugin (P201's "plugins that could not be loaded")."""
    if len(path) != 2 or path[0] not in BACKEND_SECTIONS:
        return None
    what, name = BACKEND_SECTIONS[str(path[0])], str(path[1])
    invalid = f"invalid {what} descriptor for {name}: "
    for record in catalog.broken:
        for error in record.errors:
            # its descriptor is invalid, or it clashes with another plugin's
            if error.startswith(invalid) or error.startswith(f"{what} {name} "):
                reason = error.removeprefix(invalid)
                return (
                    f"the {what} {name} of {record.distribution} {record.version} is installed "
                    f"but broken: {reason}"
                )
    return None


def _misplaced_in_unit(path: Loc, data: dict[str, Any], catalog: Catalog) -> str | None:
    """Where an unknown key of a unit instance belongs when it is one of its unit's parameters
    or ports: a line indented one level too little (`settle_seconds:` beside `params:` rather
    than under it) is the likeliest cause, and the allowed fields alone do not say so."""
    if len(path) != 3 or path[0] != "units":
        return None
    units = data.get("units")
    raw = units.get(path[1]) if isinstance(units, dict) else None
    unit = raw.get("unit") if isinstance(raw, dict) else None
    descriptor = catalog.units.get(unit) if isinstance(unit, str) else None
    if descriptor is None:
        return None
    key = str(path[2])
    if key in _field_names(descriptor.params):
        return f"it is a parameter of {unit}; indent it under params:"
    for side, ports in (("input", descriptor.inputs), ("output", descriptor.outputs)):
        if any(port.name == key for port in ports):
            return f"it is an {side} port of {unit}; write it under {side}s:"
    return None


def _unit_outside_units(path: Loc, data: dict[str, Any]) -> str | None:
    """A unit instance at the top level: `show-unit`'s snippet pasted under `units:` without
    indenting it, which leaves `units:` empty and makes each instance a key of its own."""
    value = data.get(str(path[0])) if len(path) == 1 else None
    if isinstance(value, dict) and "unit" in value:
        return "it is a unit instance (it has unit:); indent it under units:"
    return None


def _misplaced_in_params(path: Loc, unit: str) -> str | None:
    """Where an unknown parameter belongs when it is a field of the unit instance (`outputs:`
    indented under `params:`): the unit's parameter names alone would not say it."""
    if len(path) == 4 and path[3] in _field_names(UnitConfig):
        return (
            f"it is a field of the unit instance, not a parameter of {unit}; "
            "indent it as far as params:"
        )
    return None


def _in_params_not_finite(err: Any) -> bool:
    """An infinite or NaN number in a unit's params: the units stage reports it, as P202."""
    loc = tuple(err["loc"])
    return err["type"] == "finite_number" and loc[:1] == ("units",) and loc[2:3] == ("params",)


class _Node:
    """A unit instance as far as the later stages can use it."""

    def __init__(self, name: str, raw: dict[str, Any]) -> None:
        self.name = name
        self.raw = raw
        self.descriptor: UnitDescriptor | None = None
        unit = raw.get("unit")
        self.unit = unit if isinstance(unit, str) else None
        self.inputs = _port_map(raw.get("inputs"))
        self.outputs = _port_map(raw.get("outputs"))


def _port_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _stage_units(doc: Document, nodes: list[_Node], catalog: Catalog) -> list[Problem]:
    file = str(doc.path)
    found: list[Problem] = []
    broken = catalog.broken
    for node in nodes:
        if node.unit is None:
            continue
        at = ("units", node.name)
        if node.unit not in catalog:
            clash = catalog.clash(node.unit)
            if clash is not None:  # known, twice: "unknown unit" would send them looking
                found.append(make(file, doc.locate((*at, "unit")), "P201", clash))
                continue
            suggestion = catalog.suggest(node.unit)
            hint = f"; did you mean {suggestion}?" if suggestion else "; see `pipeline list-units`"
            # its plugin is installed, but kept out by an environment variable, or registers
            # nothing (a hook not marked @hookimpl): "unknown" alone sends them reinstalling
            why = catalog.why_not_provided(node.unit.partition(".")[0])
            if why is not None:
                hint = f"; {why}"
            if broken:
                names = ", ".join(r.name for r in broken)
                hint += f" (plugins that could not be loaded: {names}; see `pipeline plugins`)"
            found.append(
                make(file, doc.locate((*at, "unit")), "P201", f"unknown unit {node.unit}{hint}")
            )
            continue
        descriptor = catalog.units[node.unit]
        node.descriptor = descriptor
        if descriptor.status == "deprecated":
            found.append(
                make(file, doc.locate((*at, "unit")), "P205", f"unit {node.unit} is deprecated")
            )
        params = node.raw.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            continue  # the shape stage reported it
        found.extend(_empty_required(doc, at, params, descriptor))
        try:
            resolved = validate_as_json(descriptor.params, params)
            found.extend(_broken_defaults(doc, at, resolved, descriptor))
        except ValidationError as exc:
            found.extend(
                _problems_from(
                    doc,
                    exc,
                    base=(*at, "params"),
                    root=descriptor.params,
                    codes=PARAM_CODES,
                    what="parameter",
                    unknown_key=functools.partial(_misplaced_in_params, unit=descriptor.name),
                )
            )
        except Exception as exc:  # a params model's own validator may raise anything
            found.append(
                make(
                    file,
                    doc.locate((*at, "params"), key=True),
                    "P202",
                    f"parameters of {node.unit} rejected: {type(exc).__name__}: {exc}",
                )
            )
    return found


def _stage_runtimes(doc: Document, nodes: list[_Node]) -> list[Problem]:
    """Each known unit whose runtime module is not installed: the worker's import would fail
    at once (exit 78), so the run would stop at start-up. Found without importing the module
    (`missing_module`); each runtime is looked up once, and reported at every `unit:` that
    uses it, as P201 and P205 are."""
    from asapo_pipelines.import_strings import missing_module

    looked_up: dict[str, MissingModule | None] = {}
    found: list[Problem] = []
    for node in nodes:
        d = node.descriptor
        if d is None:
            continue  # unknown unit: P201's
        if d.runtime not in looked_up:
            looked_up[d.runtime] = missing_module(d.runtime)
        missing = looked_up[d.runtime]
        if missing is not None:
            pos = doc.locate(("units", node.name, "unit"))
            found.append(make(str(doc.path), pos, "P207", _runtime_sentence(d, missing)))
    return found


#: the JSON Schema `format` of a unit parameter naming a directory the unit reads
DIRECTORY_FORMAT = "directory-path"


def _stage_directories(doc: Document, nodes: list[_Node]) -> list[Problem]:
    """Each unit parameter naming a directory to read (`format: directory-path`) that does
    not exist here, relative to the pipeline file's folder as the workers take it (asked where
    the pipeline runs, as P109): `pipeline run` would stop at start-up (exit 78) after
    validate had called the file valid. A warning (P208), never an error: on a cluster the
    directory may exist only on the nodes, and a folder the acquisition has not made yet is
    the user's to make."""
    path = Path(doc.path)
    if not path.is_file():
        return []  # text validated in memory: no folder to look in
    found: list[Problem] = []
    for node in nodes:
        params = node.raw.get("params")
        for name, where, lacks in missing_directories(node.descriptor, params, path):
            at = ("units", node.name, "params", name)
            found.append(
                make(
                    str(doc.path),
                    doc.locate(at),
                    "P208",
                    f"{_dotted(at)}: {where} {lacks} here{_directory_meant(where)}, so "
                    "`pipeline run` here would refuse to start; make it, or ignore this if it "
                    "exists only on the nodes the pipeline deploys to",
                )
            )
    return found


def missing_directories(
    descriptor: UnitDescriptor | None, params: Any, path: Path
) -> list[tuple[str, Path, str]]:
    """(param, folder, "does not exist" / "is not a directory") of each of a unit's params
    naming a directory to read (`format: directory-path`) that is not one here, relative to
    the folder of the pipeline file at `path`. P208 asks it of the file; `pipeline run`
    (`refuse_missing_directories`) of the pipeline as it will run, `--set` applied."""
    if descriptor is None or not isinstance(params, Mapping):
        return []
    properties = descriptor.params_schema().get("properties", {})
    found = []
    for name, value in params.items():
        spec = properties.get(name)
        if not isinstance(value, str) or not value.strip() or not isinstance(spec, dict):
            continue  # an empty one is P206's, a wrong type P202's
        if spec.get("format") != DIRECTORY_FORMAT:
            continue
        where = path.parent / Path(value).expanduser()
        if not where.is_dir():
            lacks = "is not a directory" if where.exists() else "does not exist"
            found.append((name, where, lacks))
    return found


def refuse_missing_directories(
    pipeline: Pipeline,
    catalog: Catalog,
    path: Path,
    overrides: Mapping[str, Mapping[str, Any]],
) -> None:
    """Before a local `pipeline run` records or resumes anything: a directory param of the
    pipeline as it will run (`overrides`: its `--set`, already applied) that is no directory
    here is refused (ConfigurationError, exit 78, as its worker would exit), in one sentence
    naming the param and the folder. The worker found it only after every other one started,
    and the run was recorded `failed` under that configuration. Not asked by `deploy`: on a
    cluster the folder may exist only on the nodes (P208 is a warning for that reason)."""
    for instance in pipeline.units:
        descriptor = pipeline.descriptor(instance, catalog)
        params = pipeline.units[instance].params
        for name, where, lacks in missing_directories(descriptor, params, path):
            given = "--set " if name in (overrides.get(instance) or {}) else ""
            raise ConfigurationError(
                f"{given}{instance}.{name}: the folder {where} {lacks} here"
                f"{_directory_meant(where)}, so unit {instance} could not start; nothing was "
                "started or recorded"
            )


def _directory_meant(where: Path) -> str:
    """` (did you mean data?)` for a mistyped directory beside it; empty when none is near."""
    try:
        beside = [p.name for p in where.parent.iterdir() if p.is_dir()]
    except OSError:
        return ""
    near = difflib.get_close_matches(where.name, beside, n=1, cutoff=0.6)
    return f" (did you mean {near[0]}?)" if near else ""


def _stage_transport_libraries(
    doc: Document, data: dict[str, Any], catalog: Catalog
) -> list[Problem]:
    """The client libraries the file's transport needs (its descriptor's `requires`) that are
    not installed here, found without importing them (as P207's runtimes are), at the
    transport's key. An error when the pipeline runs here (`pipeline run` would refuse to
    start); a warning when `deploy:` sends it to another executor's machines (Nomad, Slurm):
    a file checked on a laptop for a cluster that has the libraries is not wrong, but whoever
    deploys it should know its nodes need them."""
    from asapo_pipelines.import_strings import missing_module

    given = data.get("transport")
    found: list[Problem] = []
    for name in given if isinstance(given, dict) else ():
        descriptor = catalog.transports.get(name) if isinstance(name, str) else None
        if descriptor is None:
            continue  # an unknown transport is the shape stage's
        missing = [m for m in descriptor.requires if missing_module(m) is not None]
        if not missing:
            continue
        here = _runs_here(data.get("deploy"))
        modules = " and ".join(missing)
        install = f": {descriptor.install}" if descriptor.install else ""
        where = "here" if here else "here, and the machines the pipeline deploys to need them"
        message = (
            f"transport {name} needs {modules}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed {where}{install}"
        )
        pos = doc.locate(("transport", name), key=True)
        found.append(make(str(doc.path), pos, "P109" if here else "P110", message))
    return found


def _runs_here(deploy: Any) -> bool:
    """Whether the file's units run on this machine: no `deploy:` (`pipeline run`), or only
    the local executor's."""
    return not isinstance(deploy, dict) or all(key == "local" for key in deploy)


def _runtime_sentence(
    descriptor: UnitDescriptor | TransportDescriptor | ExecutorDescriptor,
    missing: MissingModule,
    what: str = "unit",
) -> str:
    """Names the culprit (the plugin and its version), the module not found and the fix: the
    file is right, the plugin's descriptor or the environment is not."""
    plugin = (
        f"plugin {descriptor.distribution} {descriptor.version or '-'}"
        if descriptor.distribution
        else "its plugin"
    )
    near = f" (did you mean {missing.near}?)" if missing.near else ""
    return (
        f"{what} {descriptor.name} cannot run: {plugin} names its runtime {descriptor.runtime}, "
        f"but there is no module {missing.module}{near}; fix the runtime in the plugin's {what} "
        f"descriptor, or install the package that provides {missing.module}"
    )


def _stage_backend_runtimes(doc: Document, data: dict[str, Any], catalog: Catalog) -> list[Problem]:
    """The file's transport, and each executor its `deploy:` section names, whose runtime
    module is not installed, at its key (P207, as a unit's): `pipeline run` opens the
    transport first and `pipeline deploy` loads the executor first, so either would stop at
    once, after validate had called the file valid."""
    from asapo_pipelines.import_strings import missing_module

    found: list[Problem] = []
    for section, backends in (("transport", catalog.transports), ("deploy", catalog.executors)):
        given = data.get(section)
        for name in given if isinstance(given, dict) else ():
            descriptor = backends.get(name) if isinstance(name, str) else None
            missing = None if descriptor is None else missing_module(descriptor.runtime)
            if descriptor is not None and missing is not None:
                what = "transport" if section == "transport" else "executor"
                pos = doc.locate((section, name), key=True)
                sentence = _runtime_sentence(descriptor, missing, what)
                found.append(make(str(doc.path), pos, "P207", sentence))
    return found


def _broken_defaults(
    doc: Document, at: tuple[str, ...], resolved: BaseModel, descriptor: UnitDescriptor
) -> list[Problem]:
    """The unit's defaults that its own params model refuses, for settings the file leaves
    unset: the unit would run with them (pydantic does not validate defaults). Each is where
    the setting would go (the `params:` key, else the unit's)."""
    return [
        make(
            str(doc.path),
            doc.locate((*at, "params", *broken.loc), key=True),
            "P202",
            f"{_dotted((*at, 'params', *broken.loc))}: {broken.sentence(descriptor.name)}",
        )
        for broken in broken_defaults(resolved)
    ]


def _stage_backend_defaults(doc: Document, data: dict[str, Any], catalog: Catalog) -> list[Problem]:
    """As `_broken_defaults` for a unit's params: the defaults a transport's or executor's
    config model refuses, for settings the file leaves unset in its `transport:` or `deploy:`
    section. The backend would open with them (pydantic does not validate defaults), so
    the run failed later or ran with the invalid value. Each is where the setting would go
    (the backend's key); P103, the section's code for a value its model refuses (P202 is a
    unit parameter's)."""
    found: list[Problem] = []
    for section, what in BACKEND_SECTIONS.items():
        given = data.get(section)
        backends = catalog.transports if what == "transport" else catalog.executors
        for name, raw in given.items() if isinstance(given, dict) else ():
            if name not in backends:
                continue  # the shape stage says the name is unknown
            try:
                resolved = validate_as_json(backends[name].config, {} if raw is None else raw)
            except Exception:  # a config model's own validator may raise anything: the shape
                continue  # stage reports what the section says wrong
            model = f"{what} {name}'s config"
            for broken in broken_defaults(resolved):
                at = (section, name, *broken.loc)
                message = f"{_dotted(at)}: {broken.sentence(name, model=model)}"
                found.append(make(str(doc.path), doc.locate(at, key=True), "P103", message))
    return found


def _empty_required(
    doc: Document, at: tuple[str, ...], params: dict[str, Any], descriptor: UnitDescriptor
) -> list[Problem]:
    """A required parameter given as an empty string: the placeholder `pipeline new` writes for
    a value only the user knows. The type check accepts `""`; the unit would fail at run."""
    found = []
    for name in descriptor.params_schema().get("required", []):
        value = params.get(name)
        if isinstance(value, str) and not value.strip():
            found.append(
                make(
                    str(doc.path),
                    doc.locate((*at, "params", name)),
                    "P206",
                    f"{_dotted((*at, 'params', name))}: a value is required and this one is "
                    f"empty; see `pipeline show-unit {descriptor.name}`",
                )
            )
    return found


def _compatible(produced: str, accepted: str) -> bool:
    """Whether a producer's content type can feed a consumer's.

    `*/*` on either side matches anything; `type/*` matches that family.
    """
    if "*/*" in (produced, accepted):
        return True
    p_type, _, p_sub = produced.partition("/")
    a_type, _, a_sub = accepted.partition("/")
    if p_type != a_type:
        return False
    return "*" in (p_sub, a_sub) or p_sub == a_sub


def _stage_graph(doc: Document, nodes: list[_Node], streams: dict[str, Any]) -> list[Problem]:
    file = str(doc.path)
    found: list[Problem] = []
    declared = {k: v for k, v in streams.items() if isinstance(k, str)}

    def decl_field(stream: str, key: str, default: Any) -> Any:
        entry = declared.get(stream)
        return entry.get(key, default) if isinstance(entry, dict) else default

    external = {s for s in declared if decl_field(s, "external", False) is True}

    # producers: stream -> [(instance, port, content type, position)]
    producers: dict[str, list[tuple[str, str, str, Pos]]] = {}
    consumed: set[str] = set()
    for node in nodes:
        at = ("units", node.name)
        d = node.descriptor
        for port, stream in node.outputs.items():
            pos = doc.locate((*at, "outputs", port), key=True)
            ctype = "*/*"
            if d is not None:
                spec = d.output(port)
                if spec is None:
                    names = [p.name for p in d.outputs]
                    has = f"its outputs are {', '.join(names)}" if names else "it has no outputs"
                    found.append(
                        make(
                            file,
                            pos,
                            "P302",
                            f"unit {d.name} has no output port {port!r}{_suggest(port, names)}"
                            + ("" if _suggest(port, names) else f"; {has}"),
                        )
                    )
                    continue
                ctype = spec.content_type
            producers.setdefault(stream, []).append((node.name, port, ctype, pos))
        for stream in node.inputs.values():
            consumed.add(stream)

    for stream, makers in producers.items():
        first = makers[0]
        for other in makers[1:]:
            found.append(
                make(
                    file,
                    other[3],
                    "P305",
                    f"stream {stream!r} is already produced by {first[0]}.{first[1]} (line "
                    f"{first[3].line}); each stream has one producer, so give this output its own "
                    "stream and read both",
                )
            )
        if stream in external:
            found.append(
                make(
                    file,
                    first[3],
                    "P309",
                    f"stream {stream!r} is declared external (fed from outside) but "
                    f"{first[0]}.{first[1]} also produces it",
                )
            )

    known_streams = sorted({*producers, *external})
    for node in nodes:
        at = ("units", node.name)
        d = node.descriptor
        for port, stream in node.inputs.items():
            key_pos = doc.locate((*at, "inputs", port), key=True)
            accepted = "*/*"
            if d is not None:
                spec = d.input(port)
                if spec is None:
                    names = [p.name for p in d.inputs]
                    hint = _suggest(port, names) or (
                        f"; its inputs are {', '.join(names)}" if names else "; it has no inputs"
                    )
                    found.append(
                        make(
                            file, key_pos, "P301", f"unit {d.name} has no input port {port!r}{hint}"
                        )
                    )
                    continue
                accepted = spec.content_type
            value_pos = doc.locate((*at, "inputs", port))
            if stream in producers:
                for maker, out_port, ctype, _ in producers[stream][:1]:
                    if not _compatible(ctype, accepted):
                        found.append(
                            make(
                                file,
                                value_pos,
                                "P304",
                                f"input {node.name}.{port} accepts {accepted} but stream "
                                f"{stream!r} carries {ctype} (from {maker}.{out_port})",
                            )
                        )
            elif stream in external:
                ctype = decl_field(stream, "content_type", "*/*")
                if isinstance(ctype, str) and not _compatible(ctype, accepted):
                    found.append(
                        make(
                            file,
                            value_pos,
                            "P304",
                            f"input {node.name}.{port} accepts {accepted} but external stream "
                            f"{stream!r} is declared as {ctype}",
                        )
                    )
            else:
                hint = _suggest(stream, known_streams)
                found.append(
                    make(
                        file,
                        value_pos,
                        "P303",
                        f"input {node.name}.{port} reads stream {stream!r}, which no unit produces "
                        f"and which is not declared external in streams{hint}",
                    )
                )
        if d is not None:
            missing = [p.name for p in d.inputs if p.required and p.name not in node.inputs]
            for port in missing:
                where = (*at, "inputs") if (*at, "inputs") in doc.keys else at
                found.append(
                    make(
                        file,
                        doc.locate(where, key=True),
                        "P306",
                        f"required input {port!r} of {node.name} ({d.name}) is not connected; add "
                        f"`{port}: <stream>` under inputs",
                    )
                )
            for spec in d.outputs:
                if spec.name not in node.outputs:
                    where = (*at, "outputs") if (*at, "outputs") in doc.keys else at
                    found.append(
                        make(
                            file,
                            doc.locate(where, key=True),
                            "P308",
                            f"output {spec.name!r} of {node.name} ({d.name}) is not connected; its "
                            "messages are dropped",
                        )
                    )

    for stream, makers in producers.items():
        if stream not in consumed and stream not in declared:
            writer, out_port = makers[0][0], makers[0][1]
            found.append(
                make(
                    file,
                    doc.locate(("units", writer, "outputs", out_port)),
                    "P307",
                    f"stream {stream!r} written by {writer}.{out_port} is not read by any unit; "
                    "declare it under streams: if another program reads it",
                )
            )
    for stream in declared:
        if stream not in consumed and stream not in producers:
            found.append(
                make(
                    file,
                    doc.locate(("streams", stream), key=True),
                    "P310",
                    f"stream {stream!r} is declared but no unit reads or writes it",
                )
            )
    writers = {stream: [m[0] for m in makers] for stream, makers in producers.items()}
    found.extend(_stage_cycles(doc, nodes, writers, _runs_until_stopped(nodes, external)))
    return found


# -- cycles ------------------------------------------------------------------------------------
#: (reader, input port, stream, writer): one link of a cycle, read against the data's flow
_Step = tuple[str, str, str, str]


def _wired_inputs(node: _Node) -> dict[str, str]:
    """The inputs whose port exists (an unknown port is P301's, and carries nothing)."""
    d = node.descriptor
    return {p: s for p, s in node.inputs.items() if d is None or d.input(p) is not None}


def _runs_until_stopped(nodes: list[_Node], external: set[str]) -> bool:
    """Whether the pipeline is a service rather than a batch, as `launchplan.job.job_type`
    decides it from the validated model: an external stream, or a source set to keep running."""
    from asapo_pipelines.launchplan.job import keeps_running

    if external:
        return True
    for node in nodes:
        d = node.descriptor
        if d is None or d.role != "source":
            continue
        try:  # the params model, so that a default of `watch: true` counts too
            params = validate_as_json(d.params, node.raw.get("params") or {})
        except Exception:
            continue  # the units stage reported it
        if keeps_running(params):
            return True
    return False


def _cycle_through(start: str, feeds: dict[str, list[tuple[str, str, str]]]) -> list[_Step]:
    """The shortest cycle from `start`'s inputs back to its own outputs (breadth first, so
    the sentence names as few units as possible); empty when there is none."""
    came: dict[str, _Step] = {}
    queue = [start]
    for reader in queue:  # grows while it is walked
        for port, stream, writer in feeds.get(reader, ()):
            step = (reader, port, stream, writer)
            if writer == start:
                steps = [step]
                while steps[-1][0] != start:
                    steps.append(came[steps[-1][0]])
                return steps[::-1]
            if writer not in came:
                came[writer] = step
                queue.append(writer)
    return []


def _reach(start: str, links: dict[str, set[str]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for other in links.get(todo.pop(), ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def _fed_from_outside(loop: set[str], nodes: list[_Node], writers: dict[str, list[str]]) -> bool:
    """Whether a message can enter the units of `loop` (a strongly connected set): one of
    them reads a stream written elsewhere, or makes its own messages as a source does."""
    for node in nodes:
        if node.name not in loop:
            continue
        if node.descriptor is not None and node.descriptor.role == "source":
            return True
        for stream in _wired_inputs(node).values():
            # an external stream, one nobody writes (P303's), or one a unit outside writes
            makers = writers.get(stream, [])
            if not makers or not loop.issuperset(makers):
                return True
    return False


_Links = dict[str, set[str]]


def _links(
    nodes: list[_Node], writers: dict[str, list[str]]
) -> tuple[dict[str, list[tuple[str, str, str]]], _Links, _Links]:
    """Each unit's (port, stream, writer) inputs, and the units each one reads from and feeds."""
    feeds: dict[str, list[tuple[str, str, str]]] = {}
    upstream: _Links = {}
    downstream: _Links = {}
    for node in nodes:
        for port, stream in _wired_inputs(node).items():
            for writer in writers.get(stream, ()):
                feeds.setdefault(node.name, []).append((port, stream, writer))
                upstream.setdefault(node.name, set()).add(writer)
                downstream.setdefault(writer, set()).add(node.name)
    return feeds, upstream, downstream


_CLOSED = "nothing outside the cycle feeds it, so no message can ever reach its units"
_NEVER_ENDS = (
    "a batch run would never end, since each unit waits for its inputs to end (a loop suits "
    "only a pipeline that runs until stopped, e.g. a source with watch: true)"
)


def _stage_cycles(
    doc: Document, nodes: list[_Node], writers: dict[str, list[str]], service: bool
) -> list[Problem]:
    """Units whose inputs depend on their own outputs. Such a loop is refused when nothing
    from outside feeds it (no message could ever reach it), and in a batch pipeline, where
    each unit ends after its inputs end, so a loop never ends. A loop fed from outside in a
    pipeline that runs until stopped is allowed: an agent reading the status of the queue
    bridge it feeds (docs/bluesky.md) is one. One problem per loop, at the input of its first
    unit in the file that closes it."""
    feeds, upstream, downstream = _links(nodes, writers)
    found: list[Problem] = []
    reported: set[str] = set()
    for node in nodes:
        steps = [] if node.name in reported else _cycle_through(node.name, feeds)
        if not steps:
            continue
        loop = _reach(node.name, upstream) & _reach(node.name, downstream)
        reported |= loop
        fed = _fed_from_outside(loop, nodes, writers)
        if fed and service:
            continue
        chain = "; ".join(f"{r} reads {s}, which {w} writes" for r, _, s, w in steps)
        pos = doc.locate(("units", node.name, "inputs", steps[0][1]))
        message = f"streams form a cycle: {chain}; {_NEVER_ENDS if fed else _CLOSED}"
        found.append(make(str(doc.path), pos, "P313", message))
    return found


def _stage_namespace(
    doc: Document, name: Any, nodes: list[_Node], streams: dict[str, Any]
) -> list[Problem]:
    """Stream names against the namespace scheme (`asapo_pipelines.worker.naming`): none may
    sit inside the pipeline's own namespace, and an own stream's data source name must fit."""
    from asapo_pipelines.worker.naming import RUN_ID_ROOM

    if not isinstance(name, str) or not name:
        return []
    file = str(doc.path)
    found: list[Problem] = []
    prefix = f"{name}."
    external = {s for s, d in streams.items() if isinstance(d, dict) and d.get("external") is True}
    places: list[tuple[str, tuple[Any, ...]]] = [(s, ("streams", s)) for s in streams]
    for node in nodes:
        for kind in ("inputs", "outputs"):
            for port, stream in getattr(node, kind).items():
                places.append((stream, ("units", node.name, kind, port)))
    reported: set[str] = set()
    for stream, at in places:
        if not isinstance(stream, str) or stream in reported:
            continue
        if stream.startswith(prefix):
            reported.add(stream)
            found.append(
                make(
                    file,
                    doc.locate(at),
                    "P311",
                    f"stream {stream!r} is inside pipeline {name}'s own namespace "
                    f"({prefix}*), where its runs, errors and status live; name it without "
                    f"the {prefix!r} prefix (the pipeline's own streams are namespaced for you)",
                )
            )
        elif (
            stream not in external
            and len(name) + RUN_ID_ROOM + len(stream) + 2 > 128
            # no room at all: the pipeline name is too long, which P104 reports
            and 126 - len(name) - RUN_ID_ROOM > 0
        ):
            reported.add(stream)
            found.append(
                make(
                    file,
                    doc.locate(at),
                    "P312",
                    f"stream {stream!r} is too long: its data source "
                    f"{name}.<run>.{stream} must fit in 128 characters; use at most "
                    f"{126 - len(name) - RUN_ID_ROOM} characters",
                )
            )
    return found


def _stage_deploy(doc: Document, deploy: Any) -> list[Problem]:
    if not isinstance(deploy, dict):
        return []
    nomad = deploy.get("nomad")
    if not isinstance(nomad, dict):
        return []
    driver = nomad.get("driver", DEFAULT_DRIVER)
    # an unknown driver is P401's; the image is docker's alone (as `compile_job` checks)
    if nomad.get("image") and driver in DRIVERS and driver != "docker":
        return [
            make(
                str(doc.path),
                doc.locate(("deploy", "nomad", "image"), key=True),
                "P403",
                f"image is set but the driver is {driver}; the image is only used by the docker "
                "driver",
            )
        ]
    return []


def validate_document(
    doc: Document,
    catalog: Catalog,
    loaded: list[Problem] | None = None,
    *,
    runtimes: bool = False,
) -> tuple[Report, Pipeline | None]:
    """Run every stage on a loaded document; returns the report and, when valid, the model.

    `runtimes` also checks that each unit's runtime module is installed here (P207), and the
    transport's client libraries (P109, P110): what `pipeline validate` and `pipeline run`
    ask, since their workers run in this environment.
    Off by default: a worker needs only its own unit's runtime (and says so itself, exit 78),
    and a command reading a running pipeline (status, stop, the viewer) must not refuse it
    because another environment's plugin went missing."""
    file = str(doc.path)
    report = Report(file, list(loaded or []))
    data = doc.data
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}, not a mapping"
        report.problems.append(
            make(
                file,
                doc.locate(()),
                "P108",
                f"the file is {kind}; a pipeline file is a mapping with at least `pipeline:` and "
                "`units:`",
            )
        )
        return report, None
    # `x-...` keys hold anchors for reuse (as in compose files); they are not part of the model
    data = {k: v for k, v in data.items() if not k.startswith("x-")}
    pipeline, problems = _stage_shape(doc, data, catalog)
    report.problems.extend(problems)

    units = data.get("units")
    nodes = [
        _Node(name, raw)
        for name, raw in (units.items() if isinstance(units, dict) else ())
        if isinstance(raw, dict)
    ]
    report.problems.extend(_stage_units(doc, nodes, catalog))
    if runtimes:
        report.problems.extend(_stage_runtimes(doc, nodes))
        report.problems.extend(_stage_backend_runtimes(doc, data, catalog))
        report.problems.extend(_stage_transport_libraries(doc, data, catalog))
    streams = data.get("streams")
    report.problems.extend(_stage_graph(doc, nodes, streams if isinstance(streams, dict) else {}))
    report.problems.extend(
        _stage_namespace(
            doc, data.get("pipeline"), nodes, streams if isinstance(streams, dict) else {}
        )
    )
    report.problems.extend(_stage_deploy(doc, data.get("deploy")))
    report.problems.extend(_stage_backend_defaults(doc, data, catalog))
    # a value the loader already rejected (a bad tag, a duplicate) is not reported again
    loader_spots = {(p.line, p.column) for p in report.problems if p.code.startswith("P00")}
    report.problems = [
        p
        for p in report.problems
        if p.code.startswith("P00") or (p.line, p.column) not in loader_spots
    ]
    if pipeline is None or not report.ok:
        return report, None
    if runtimes:  # asked of a file valid otherwise: its errors are the ones to fix first
        report.problems.extend(_stage_directories(doc, nodes))
    pipeline.bind(doc.path)
    report.problems.extend(_stage_plugin_checks(doc, pipeline, catalog, transport=runtimes))
    if not report.ok:
        return report, None
    return report, pipeline


def _stage_plugin_checks(
    doc: Document,
    pipeline: Pipeline,
    catalog: Catalog,
    file: str | None = None,
    said: Callable[[Loc], str] = lambda where: "",
    *,
    transport: bool = False,
) -> list[Problem]:
    """The `check_pipeline` findings of the plugins whose units the file names (P314): params
    of units wired together that contradict each other, which neither unit's params model can
    see; with `transport`, also of the plugin of its transport (a password file that does not
    exist, P111): asked where the pipeline runs (`validate`, `run`, as P109), not by a command
    reading or stopping a running one, which a secret removed since must not refuse.
    Asked only of a file valid otherwise, whose params the plugins can then read. A check
    that raises is a warning (P315): a plugin's bug does not refuse a file.

    `file`: the file's name as shown (its document's path when None); `said`: the `--set`
    that put the value at a place there ("" for none), which a finding there names."""
    if catalog.manager is None:
        return []  # a catalog not built from plugins has none to ask
    file = file or str(doc.path)
    used = {catalog.get(config.unit).distribution for config in pipeline.units.values()}
    descriptor = catalog.transports.get(pipeline.transport.kind) if transport else None
    if descriptor is not None and descriptor.distribution is not None:
        used.add(descriptor.distribution)
    found: list[Problem] = []
    for record in catalog.plugins:
        if record.distribution not in used:
            continue
        findings, errors = catalog.manager.check_pipeline(record.name, pipeline, catalog)
        found.extend(
            _finding(doc, file, tuple(where), _plugin_code(code), text, said)
            for where, code, text in findings
        )
        found.extend(
            make(file, doc.locate(()), "P315", f"the check of {record.distribution} failed: {e}")
            for e in errors
        )
    return found


def _finding(
    doc: Document, file: str, where: Loc, code: str, text: str, said: Callable[[Loc], str]
) -> Problem:
    """A plugin's finding at `where`; one about a value only a `--set` gave (the file has no
    such key) is at that `--set`: the nearest line of the file would be another value's."""
    option = said(where)
    if option and where not in doc.values:
        return Problem(option, 0, 0, CODES[code][0], code, text)
    return make(file, doc.locate(where), code, f"{option}: {text}" if option else text)


#: the codes a plugin's `check_pipeline` may give besides P314, its default
PLUGIN_CODES = frozenset({"P111"})


def _plugin_code(code: str) -> str:
    return code if code in PLUGIN_CODES else "P314"


def _run(
    path: Path | str, catalog: Catalog, *, runtimes: bool = False
) -> tuple[Report, Pipeline | None]:
    path = Path(path)
    try:
        doc, loaded = read_document(path)
    except LoadFailed as exc:
        return Report(str(path), list(exc.problems)), None
    return validate_document(doc, catalog, loaded, runtimes=runtimes)


def validate_file(path: Path | str, catalog: Catalog, *, runtimes: bool = False) -> Report:
    """Validate one file; never raises for bad input (every problem is in the report).
    `runtimes`: as `validate_document`'s."""
    return _run(path, catalog, runtimes=runtimes)[0]


def validate_text(
    text: str, catalog: Catalog, file: str = "<string>", *, runtimes: bool = False
) -> Report:
    from asapo_pipelines.pipeline.loader import load_document

    try:
        doc, loaded = load_document(text, file)
    except LoadFailed as exc:
        return Report(file, list(exc.problems))
    return validate_document(doc, catalog, loaded, runtimes=runtimes)[0]


def check_overridden(pipeline: Pipeline, catalog: Catalog, file: str, sets: Iterable[str]) -> None:
    """Ask the plugins' `check_pipeline` (P314) again of a valid file's pipeline whose params a
    run's `--set`s changed (`sets`: as typed, `normalize.calibrate=true`, each already applied
    and valid for its unit): a contradiction made on the command line is refused as `pipeline
    validate` refuses it in the file, at the place the value would have in it, naming the
    `--set`; raises PipelineInvalid. `file`: the pipeline file as the user named it."""
    shown = {item.partition("=")[0].strip(): f"--set {item}" for item in sets}
    if not shown:
        return

    def said(where: Loc) -> str:
        # a finding at an overridden param (or inside one) is that --set's doing
        if len(where) >= 4 and where[0] == "units" and where[2] == "params":
            for depth in range(len(where), 3, -1):
                key = ".".join(str(part) for part in (where[1], *where[3:depth]))
                if key in shown:
                    return shown[key]
        return ""

    try:
        doc, _ = read_document(Path(pipeline.path or file))
    except LoadFailed as exc:  # the file changed since it was loaded: said as validate says it
        raise PipelineInvalid(Report(file, list(exc.problems))) from None
    problems = _stage_plugin_checks(doc, pipeline, catalog, file=file, said=said)
    report = Report(file, problems)
    if not report.ok:
        raise PipelineInvalid(report, what=f"{file} with {', '.join(shown.values())} is not valid")


def load_pipeline(path: Path | str, catalog: Catalog, *, runtimes: bool = False) -> Pipeline:
    """Load and validate a pipeline file; raises PipelineInvalid listing every error.
    `runtimes`: as `validate_document`'s."""
    report, pipeline = _run(path, catalog, runtimes=runtimes)
    if pipeline is None:
        raise PipelineInvalid(report)
    return pipeline


__all__ = [
    "PipelineInvalid",
    "UnitConfig",
    "check_overridden",
    "load_pipeline",
    "validate_document",
    "validate_file",
    "validate_text",
]
