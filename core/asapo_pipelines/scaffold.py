"""`pipeline new-unit`: a new plugin package with one unit of any kind, or one more unit in a
package made this way.

The package is complete as generated: it installs, registers its units through the entry point,
and its tests (using the `asapo_pipelines` pytest fixtures) pass, also from the checkout before
it is installed. Authors then replace the example processing with their own.

Layout: `PACKAGE/__init__.py` is the light module the entry point names; it registers every
descriptor found in the modules of `PACKAGE/units/` (each once), so adding a unit is adding files (a
descriptor module, a runtime module, a test module), never editing generated code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from string import Template

from asapo_pipelines import CORE_DISTRIBUTION, __version__
from asapo_pipelines.catalog import BUILTIN_PLUGIN
from asapo_pipelines.descriptor import UNIT_NAME_PATTERN
from asapo_pipelines.errors import UsageError

#: names the package's layout takes beside the runtime modules of its units
LAYOUT_NAMES = frozenset({"units"})


@dataclass(frozen=True)
class Names:
    unit: str  # acme.peak-finder
    namespace: str  # acme
    short: str  # peak-finder
    module: str  # peak_finder
    cls: str  # PeakFinder
    distribution: str  # asapo-pipelines-acme
    package: str  # asapo_pipelines_acme

    @classmethod
    def of(cls, unit: str, distribution: str | None = None) -> Names:
        if not re.match(UNIT_NAME_PATTERN, unit):
            raise UsageError(
                f"{unit!r} is not a unit name; use <namespace>.<name> in lower case, "
                "e.g. acme.peak-finder"
            )
        namespace, short = unit.split(".", 1)
        if namespace == BUILTIN_PLUGIN:
            raise UsageError(
                f"the namespace {namespace} belongs to {CORE_DISTRIBUTION} (the catalog loads "
                f"no plugin's unit named {namespace}.<name>); name the unit after your own "
                f"package, e.g. acme.{short}"
            )
        module = re.sub(r"[^a-z0-9_]", "_", short)
        # a runtime module `units.py` would be hidden by the package's `units/` folder of
        # descriptors (the folder wins the import), and a leading digit is no module name
        if module[0].isdigit() or module in LAYOUT_NAMES:
            module = f"unit_{module}"
        class_name = "".join(part.capitalize() for part in re.split(r"[-_]", short) if part)
        if class_name[0].isdigit():
            class_name = f"Unit{class_name}"
        dist = distribution or f"asapo-pipelines-{namespace}".replace("_", "-")
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", dist):
            raise UsageError(f"{dist!r} is not a valid distribution name")
        package = re.sub(r"[^a-z0-9_]", "_", dist.lower())
        return cls(unit, namespace, short, module, class_name, dist, package)


PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "$distribution"
version = "0.1.0"
description = "asapo-pipelines units"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["asapo-pipelines>=$core_version"]

[project.optional-dependencies]
test = ["pytest>=8"]

# the catalog finds the units through this entry point; it names the light module
[project.entry-points.asapo_pipelines]
$namespace = "$package"

[tool.setuptools.packages.find]
include = ["$package*"]

[tool.pytest.ini_options]
# the tests import the package from this checkout, so they pass before it is installed
pythonpath = ["."]
testpaths = ["tests"]
"""

INIT = '''\
"""$distribution: asapo-pipelines units.

This module is what the entry point names. It must stay light (no numpy, no heavy imports):
the catalog imports it to list units. Each unit's descriptor is in `$package.units.<unit>`
(light too); its runtime class is in `$package.<unit>`, imported only inside a worker.
`pipeline new-unit NAME --kind KIND --add-to .` adds a unit: new files, no edits here.
"""

from __future__ import annotations

import importlib
import pkgutil

from asapo_pipelines.sdk import UnitDescriptor, hookimpl

from $package import units


def descriptors() -> list[UnitDescriptor]:
    """Every descriptor in the modules of `$package.units`, each once: a module that imports
    another unit's descriptor (to reuse its ports) does not register that unit again."""
    found: dict[int, UnitDescriptor] = {}
    for info in sorted(pkgutil.iter_modules(units.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{units.__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, UnitDescriptor):
                found.setdefault(id(value), value)
    return list(found.values())


@hookimpl
def register_units(register):
    for descriptor in descriptors():
        register(descriptor)
'''

UNITS_INIT = '''\
"""One module per unit, each defining the unit's descriptor (light: no heavy imports)."""
'''

CONFTEST = '''\
"""`catalog` holds this package's units as the installed catalog will see them, without
installing the package; `run_unit` and `unit_harness` come from the asapo_pipelines plugin."""

import pytest

import $package
from asapo_pipelines.testing import catalog_from_plugins

pytest_plugins = ["asapo_pipelines.testing.fixtures"]


@pytest.fixture(scope="session")
def catalog():
    return catalog_from_plugins($package)
'''

DESCRIPTOR = '''\
"""Descriptor of $unit (light: the catalog imports this module to list units)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from asapo_pipelines.sdk import SUGGESTION_CONTENT_TYPE, Params, describe, inp, out

__all__ = ["$constant", "SUGGESTION_CONTENT_TYPE", "inp", "out"]


$descriptor'''

RUNTIME = '''\
"""Runtime of $unit: imported only inside a worker, so heavy imports belong here."""

from __future__ import annotations

from typing import Any

$runtime'''

TESTS = '''\
"""Tests of $unit, run in-process (no store, no worker) with the asapo_pipelines fixtures."""

from __future__ import annotations


$tests'''


@dataclass(frozen=True)
class KindTemplate:
    """What one kind of unit looks like as generated."""

    summary: str
    descriptor: str
    runtime: str
    tests: str
    yaml: str  # the unit's lines in the README's pipeline example


PROCESSOR = KindTemplate(
    summary="Multiplies the value of each message by a factor.",
    descriptor="""\
class ${cls}Params(Params):
    factor: Annotated[float, Field(description="What every value is multiplied by.")] = 2.0


$constant = describe(
    "$unit",
    kind="processor",
    summary="Multiplies the value of each message by a factor.",
    description="Replace this example with what your unit does.",
    runtime="$package.$module:$cls",
    inputs=[inp("values", "application/json", description='{"value": number}')],
    outputs=[out("scaled", "application/json", description='{"value": number}')],
    params=${cls}Params,
)
""",
    runtime="""\
from asapo_pipelines.sdk import Message, Processor


class $cls(Processor):
    def on_start(self) -> None:
        # load models, open files, check resources here; raising stops the worker with the
        # exception's message
        self.factor = self.params.factor

    def process(self, message: Message) -> Any:
        # an exception here sends the message and the traceback to the error stream
        value = message.value["value"]
        return {"value": value * self.factor}
""",
    tests="""\
def test_registered_with_its_ports(catalog):
    descriptor = catalog.get("$unit")
    assert [p.name for p in descriptor.inputs] == ["values"]
    assert [p.name for p in descriptor.outputs] == ["scaled"]


def test_scales_each_value(run_unit, catalog):
    result = run_unit(
        "$unit", [{"value": 1}, {"value": 2.5}], params={"factor": 4}, catalog=catalog
    )
    assert result.values("scaled") == [{"value": 4}, {"value": 10.0}]
    assert result.errors == []
    assert len(result.acknowledged) == 2


def test_a_bad_message_goes_to_the_error_stream(run_unit, catalog):
    result = run_unit("$unit", [{"value": 1}, {"no value": 2}, {"value": 3}], catalog=catalog)
    assert result.values("scaled") == [{"value": 2.0}, {"value": 6.0}]
    assert [e["message"]["id"] for e in result.errors] == [2]
    assert "KeyError" in result.errors[0]["traceback"]
""",
    yaml="params: {factor: 2.0}\n    inputs: {values: numbers}\n    outputs: {scaled: scaled}",
)

SOURCE = KindTemplate(
    summary="Sends a count of numbered messages.",
    descriptor="""\
class ${cls}Params(Params):
    count: Annotated[int, Field(ge=0, description="How many messages to send.")] = 3


$constant = describe(
    "$unit",
    kind="connector",
    summary="Sends a count of numbered messages.",
    description="Replace this example with what your source reads (files, a detector, ...).",
    runtime="$package.$module:$cls",
    outputs=[out("values", "application/json", description='{"value": number}')],
    params=${cls}Params,
)
""",
    runtime="""\
from asapo_pipelines.sdk import Source


class $cls(Source):
    def run(self) -> Any:
        for n in range(self.params.count):
            if self.stopping:  # SIGTERM: stop early; the worker ends cleanly
                return
            # `key` names the output: a restarted source does not send it twice
            self.emit("values", {"value": n}, key=str(n))
""",
    tests="""\
def test_registered_as_a_source(catalog):
    descriptor = catalog.get("$unit")
    assert descriptor.role == "source"
    assert [p.name for p in descriptor.outputs] == ["values"]


def test_sends_count_messages(run_unit, catalog):
    result = run_unit("$unit", params={"count": 3}, catalog=catalog)
    assert result.values("values") == [{"value": 0}, {"value": 1}, {"value": 2}]
    assert result.errors == []
""",
    yaml="params: {count: 3}\n    outputs: {values: numbers}",
)

SINK = KindTemplate(
    summary="Appends the value of each message to a text file.",
    descriptor="""\
class ${cls}Params(Params):
    path: Annotated[str, Field(description="File to append to.", examples=["results/out.txt"])]


$constant = describe(
    "$unit",
    kind="connector",
    summary="Appends the value of each message to a text file.",
    description="Replace this example with where your sink writes (a file, a database, ...).",
    runtime="$package.$module:$cls",
    inputs=[inp("values", "application/json", description='{"value": number}')],
    params=${cls}Params,
)
""",
    runtime="""\
import json
import os
from pathlib import Path

from asapo_pipelines.sdk import Message, Sink


class $cls(Sink):
    def on_start(self) -> None:
        Path(self.params.path).parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.params.path, "a", encoding="utf-8")  # noqa: SIM115

    def process(self, message: Message) -> Any:
        # after a crash a message may come again: message.provenance tells them apart
        self.file.write(json.dumps(message.value) + "\\n")

    def flush(self) -> None:
        # inputs are acknowledged after this returns: make the writes durable first
        self.file.flush()
        os.fsync(self.file.fileno())

    def on_shutdown(self) -> None:
        self.file.close()
""",
    tests="""\
def test_registered_as_a_sink(catalog):
    assert catalog.get("$unit").role == "sink"


def test_writes_each_value(run_unit, catalog, tmp_path):
    out = tmp_path / "out.txt"
    result = run_unit(
        "$unit", [{"value": 1}, {"value": 2}], params={"path": str(out)}, catalog=catalog
    )
    assert result.errors == []
    assert out.read_text().splitlines() == ['{"value": 1}', '{"value": 2}']
""",
    yaml="params: {path: results/out.txt}\n    inputs: {values: numbers}",
)

AGENT = KindTemplate(
    summary="Asks for more scans while a value stays below a threshold.",
    descriptor="""\
class ${cls}Params(Params):
    threshold: Annotated[float, Field(description="Enough once a value reaches this.")] = 10.0


$constant = describe(
    "$unit",
    kind="agent",
    summary="Asks for more scans while a value stays below a threshold.",
    description="Replace this example with your agent's decision.",
    runtime="$package.$module:$cls",
    inputs=[inp("values", "application/json", description='{"value": number}')],
    outputs=[out("plans", SUGGESTION_CONTENT_TYPE, description="Suggestions.")],
    params=${cls}Params,
)
""",
    runtime="""\
from asapo_pipelines.sdk import Agent, Message


class $cls(Agent):
    def process(self, message: Message) -> Any:
        value = message.value["value"]
        enough = value >= self.params.threshold
        self.suggest(
            {
                "action": "stop" if enough else "more_scans",
                "target": message.stream,
                "reason": f"value {value} against threshold {self.params.threshold}",
                "confidence": 0.9,  # how sure the agent is, 0 to 1
            }
        )
""",
    tests="""\
def test_registered_as_an_agent(catalog):
    assert catalog.get("$unit").kind == "agent"


def test_asks_for_more_until_the_threshold(run_unit, catalog):
    result = run_unit(
        "$unit", [{"value": 1}, {"value": 20}], params={"threshold": 10}, catalog=catalog
    )
    assert [s["action"] for s in result.values("plans")] == ["more_scans", "stop"]
""",
    yaml="params: {threshold: 10.0}\n    inputs: {values: numbers}\n    outputs: {plans: plans}",
)

#: `--kind` values: the descriptor kinds, and a connector's two roles spelled out
TEMPLATES: dict[str, KindTemplate] = {
    "processor": PROCESSOR,
    "connector": SOURCE,
    "source": SOURCE,
    "sink": SINK,
    "agent": AGENT,
}

README = """\
# $distribution

asapo-pipelines units.

## Units

- `$unit` ($kind): $summary

## Install

    pip install .

Then `pipeline list-units -n $namespace` lists the units, and a pipeline file uses them:

```yaml
units:
  $instance:
    unit: $unit
    $yaml
```

## Develop

    pip install -e '.[test]'
    pytest

The tests also run from this checkout before the package is installed. Each unit's descriptor
(ports, params) is in `$package/units/`, its processing in `$package/<unit>.py`. Add a unit
with `pipeline new-unit NAME --kind KIND --add-to .`. See the unit author's guide of
asapo-pipelines (docs/unit-authors.md).
"""


def _values(names: Names, kind: str) -> dict[str, str]:
    template = TEMPLATES[kind]
    values = {
        "unit": names.unit,
        "namespace": names.namespace,
        "module": names.module,
        "cls": names.cls,
        "constant": names.module.upper(),
        "distribution": names.distribution,
        "package": names.package,
        "core_version": __version__,
        "kind": "connector" if kind == "source" else kind,
        "summary": template.summary,
        "instance": names.module,
        "yaml": template.yaml,
    }
    for part in ("descriptor", "runtime", "tests"):
        values[part] = Template(getattr(template, part)).substitute(values)
    return values


def _unit_files(names: Names) -> dict[str, str]:
    return {
        f"{names.package}/units/{names.module}.py": DESCRIPTOR,
        f"{names.package}/{names.module}.py": RUNTIME,
        f"tests/test_{names.module}.py": TESTS,
    }


def _write(project: Path, files: dict[str, str], values: dict[str, str]) -> list[Path]:
    written = []
    for relative, template in files.items():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values), encoding="utf-8")
        written.append(path)
    return written


def scaffold(
    unit: str, directory: Path, *, distribution: str | None = None, kind: str = "processor"
) -> Path:
    """Write a new package for `unit` under `directory`; returns the project directory."""
    names = Names.of(unit, distribution)
    project = directory / names.distribution
    if project.exists():
        raise UsageError(
            f"{project} already exists; add the unit to it with --add-to {project}, or choose "
            "another directory or name"
        )
    _refuse_installed(names)
    values = _values(names, kind)
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{names.package}/__init__.py": INIT,
        f"{names.package}/units/__init__.py": UNITS_INIT,
        "tests/conftest.py": CONFTEST,
        **_unit_files(names),
    }
    _write(project, files, values)
    return project


def _refuse_installed(names: Names) -> None:
    """A new package must not be an installed plugin's: `pip install -e .` of a package with
    the same distribution name uninstalls that plugin, and one with the same namespace has its
    units refused by the catalog, while every pipeline using the installed units breaks."""
    from importlib.metadata import PackageNotFoundError, distribution

    from asapo_pipelines.catalog import entry_point_sources

    extend = "to add the unit to your own package, use --add-to with its directory"
    # every installed plugin, also those the allow and block lists leave out of the catalog
    for source in entry_point_sources({}):
        if source.name == names.namespace:
            raise UsageError(
                f"the namespace {names.namespace} belongs to the installed plugin "
                f"{source.name} ({source.distribution} {source.version}); {extend}, or choose "
                "another namespace"
            )
    try:
        taken = distribution(names.distribution)
    except PackageNotFoundError:
        return
    raise UsageError(
        f"the distribution {names.distribution} is installed already ({taken.metadata['Name']} "
        f"{taken.version}), and installing the new package would replace it; {extend}, or "
        "choose another namespace or --distribution"
    )


def _not_a_package(project: Path) -> str:
    """Why --add-to refuses a directory without a pyproject.toml, and the directory meant: most
    often the one `pipeline new-unit` was run in, which holds the package's directory."""
    inside = sorted(p.parent for p in project.glob("*/pyproject.toml"))
    if len(inside) == 1:
        where = f"; did you mean --add-to {inside[0]}?"
    else:
        where = ", the directory `pipeline new-unit` created (asapo-pipelines-<namespace>)"
    return (
        f"{project} is not a plugin package (it has no pyproject.toml): --add-to names the "
        f"package's own directory{where}"
    )


def package_of(project: Path) -> tuple[str, str]:
    """The namespace (its entry point's name) and import package (the entry point's value) of
    a project made by `pipeline new-unit`."""
    import tomllib

    if not (project / "pyproject.toml").is_file():
        raise UsageError(_not_a_package(project))
    try:
        data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {project / 'pyproject.toml'}: {exc}") from None
    points = data.get("project", {}).get("entry-points", {}).get("asapo_pipelines", {})
    if len(points) != 1:
        raise UsageError(
            f"{project} declares {len(points)} asapo_pipelines entry points; --add-to needs "
            "a package with exactly one"
        )
    ((namespace, value),) = points.items()
    package = str(value).partition(":")[0]
    # the entry point names a module; its folder is the dotted name as a path
    units = Path(*package.split(".")) / "units"
    if "." in package or not (project / units / "__init__.py").is_file():
        raise UsageError(
            f"{project} was not made by `pipeline new-unit` (it has no {units.as_posix()}/); "
            "register the new unit in its register_units hook by hand"
        )
    return str(namespace), package


def add_unit(unit: str, project: Path, *, kind: str = "processor") -> list[Path]:
    """Add `unit` to the package in `project`: a descriptor module (which the package's
    registration finds), a runtime module and its tests. Returns the files written."""
    namespace, package = package_of(project)
    names = replace(Names.of(unit), distribution=project.resolve().name, package=package)
    if names.namespace != namespace:
        # the catalog gives a unit to the plugin its namespace names: in another namespace it
        # is broken or lost as soon as that plugin is installed
        raise UsageError(
            f"{unit} is not in the namespace {namespace} of the package in {project}; name the "
            f"unit {namespace}.{names.short}, or make a package of its own with "
            f"`pipeline new-unit {unit}`"
        )
    files = _unit_files(names)
    taken = [relative for relative in files if (project / relative).exists()]
    if taken:
        raise UsageError(f"{project / taken[0]} exists; the package has a unit named so already")
    return _write(project, files, _values(names, kind))
