"""`pipeline new-unit`: the files of a new plugin package with one processor unit.

The package is complete as generated: it installs, registers its unit through the entry point,
and its tests (using the `asapo_pipelines` pytest fixtures) pass. Authors then replace the
example processing with their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from asapo_pipelines import __version__
from asapo_pipelines.descriptor import UNIT_NAME_PATTERN
from asapo_pipelines.errors import UsageError


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
        module = re.sub(r"[^a-z0-9_]", "_", short)
        if module[0].isdigit():
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
description = "asapo-pipelines units: $unit"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["asapo-pipelines>=$core_version"]

[project.optional-dependencies]
test = ["pytest>=8"]

# the catalog finds the units through this entry point; it names the light module
[project.entry-points.asapo_pipelines]
$namespace = "$package"

[tool.setuptools]
packages = ["$package"]
"""

INIT = '''\
"""$distribution: asapo-pipelines units.

This module is what the entry point names. It must stay light (no numpy, no heavy imports):
the catalog imports it to list units. The runtime classes live in their own modules, imported
only inside a worker.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from asapo_pipelines.sdk import Params, describe, hookimpl, inp, out


class ${cls}Params(Params):
    factor: Annotated[float, Field(description="What every value is multiplied by.")] = 2.0


${constant} = describe(
    "$unit",
    kind="processor",
    summary="Multiplies the value of each message by a factor.",
    description="Replace this example with what your unit does.",
    runtime="$package.$module:$cls",
    inputs=[inp("values", "application/json", description="{\\"value\\": number}")],
    outputs=[out("scaled", "application/json", description="{\\"value\\": number}")],
    params=${cls}Params,
)


@hookimpl
def register_units(register):
    register(${constant})
'''

RUNTIME = '''\
"""Runtime of $unit: imported only inside a worker, so heavy imports belong here."""

from __future__ import annotations

from typing import Any

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
'''

CONFTEST = '''\
"""The asapo_pipelines pytest plugin provides `run_unit`, `unit_harness` and `make_catalog`."""

pytest_plugins = ["asapo_pipelines.testing.fixtures"]
'''

TESTS = '''\
"""Tests of $unit, run in-process with the asapo_pipelines fixtures."""

from __future__ import annotations

import $package


def test_registered_with_its_ports(make_catalog):
    catalog = make_catalog($package)
    descriptor = catalog.get("$unit")
    assert [p.name for p in descriptor.inputs] == ["values"]
    assert [p.name for p in descriptor.outputs] == ["scaled"]


def test_scales_each_value(run_unit):
    result = run_unit("$unit", [{"value": 1}, {"value": 2.5}], params={"factor": 4})
    assert result.values("scaled") == [{"value": 4}, {"value": 10.0}]
    assert result.errors == []
    assert len(result.acknowledged) == 2


def test_a_bad_message_goes_to_the_error_stream(run_unit):
    result = run_unit("$unit", [{"value": 1}, {"no value": 2}, {"value": 3}])
    assert result.values("scaled") == [{"value": 2.0}, {"value": 6.0}]
    assert [e["message"]["id"] for e in result.errors] == [2]
    assert "KeyError" in result.errors[0]["traceback"]
'''

README = """\
# $distribution

asapo-pipelines units. Provides:

- `$unit` (processor): multiplies the value of each message by a factor.

## Install

    pip install .

Then `pipeline list-units -n $namespace` lists the unit, and a pipeline file uses it:

```yaml
units:
  scale:
    unit: $unit
    params: {factor: 2.0}
    inputs: {values: numbers}
    outputs: {scaled: scaled}
```

## Develop

    pip install -e '.[test]'
    pytest

The unit's descriptor (ports, params) is in `$package/__init__.py`, the processing in
`$package/$module.py`. See the unit author's guide of asapo-pipelines (docs/unit-authors.md).
"""


def scaffold(unit: str, directory: Path, *, distribution: str | None = None) -> Path:
    """Write the package for `unit` under `directory`; returns the project directory."""
    names = Names.of(unit, distribution)
    project = directory / names.distribution
    if project.exists():
        raise UsageError(f"{project} already exists; choose another directory or name")
    values = {
        "unit": names.unit,
        "namespace": names.namespace,
        "module": names.module,
        "cls": names.cls,
        "constant": names.module.upper(),
        "distribution": names.distribution,
        "package": names.package,
        "core_version": __version__,
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{names.package}/__init__.py": INIT,
        f"{names.package}/{names.module}.py": RUNTIME,
        "tests/conftest.py": CONFTEST,
        f"tests/test_{names.module}.py": TESTS,
    }
    for relative, template in files.items():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values), encoding="utf-8")
    return project
