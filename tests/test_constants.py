"""Each constant that two processes (or two layers) must agree on is spelled once in the core.

The worker reads the variable the compiler sets, the viewer reads the file the local executor
writes, the local executor runs the drivers the job spec allows: when such a value is written
down twice, one copy gets changed and the other does not, and nothing fails until a run does.
So each is defined in the module that owns its contract and imported everywhere else; this
test reads the core's source with `ast` and fails on a second definition (a module- or
class-level assignment, which includes a pydantic field's default) of any of these values.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import asapo_pipelines

CORE = Path(asapo_pipelines.__file__).resolve().parent


@dataclass(frozen=True)
class Contract:
    value: str
    owner: str  # path under core/asapo_pipelines
    name: str  # its name there
    #: only assignments to names matching this count (for values common in other meanings:
    #: "default" is also Nomad's namespace, "raw_exec" a word in many messages)
    names: str = ".*"


CONTRACTS = (
    Contract("ASAPO_PIPELINES_BASE_DIR", "worker/launch.py", "BASE_DIR_ENV"),
    Contract("asapo-pipelines", "__init__.py", "CORE_DISTRIBUTION"),
    Contract("state.json", "launchplan/rundir.py", "STATE_FILE"),
    Contract(".pipeline-data", "pipeline/__init__.py", "DEFAULT_DATA_DIR"),
    Contract("default", "worker/naming.py", "FIRST_STREAM", names=r"(?i)stream"),
    Contract("raw_exec", "pipeline/model.py", "DEFAULT_DRIVER", names=r"(?i)driver"),
)
#: the Nomad task drivers: as a tuple or a `Literal[...]`, only in the job spec
DRIVER_NAMES = frozenset({"raw_exec", "exec", "docker"})
DRIVERS_OWNER = "pipeline/model.py"


def _strings(node: ast.AST | None) -> list[str] | None:
    """The strings of a tuple/list/set of string constants (or of one constant), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set) and node.elts:
        values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        if len(values) == len(node.elts) and all(isinstance(v, str) for v in values):
            return values
    return None


def _definitions(tree: ast.Module) -> list[tuple[str, ast.expr, int]]:
    """(name, value, line) of every assignment at module or class level (not in functions):
    `X = v`, `X: T = v`, `x: T = Field(v)` / `Field(default=v)`."""
    found: list[tuple[str, ast.expr, int]] = []

    def visit(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.ClassDef):
                visit(stmt.body)
            elif isinstance(stmt, ast.If | ast.Try):
                visit(stmt.body)
                visit(stmt.orelse)
            elif isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                value = stmt.value
                if isinstance(value, ast.Call):  # a pydantic/dataclass field's default
                    given = [k.value for k in value.keywords if k.arg == "default"]
                    value = (given or value.args[:1] or [value])[0]
                for target in targets:
                    if isinstance(target, ast.Name):
                        found.append((target.id, value, stmt.lineno))

    visit(tree.body)
    return found


def _driver_literals(tree: ast.Module) -> list[int]:
    """Lines of a `Literal[...]` anywhere whose members are two or more driver names."""
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name | ast.Attribute)
            and (getattr(node.value, "id", None) or getattr(node.value, "attr", None)) == "Literal"
        ):
            values = _strings(node.slice)
            if values and len(values) > 1 and set(values) <= DRIVER_NAMES:
                lines.append(node.lineno)
    return lines


def duplicates(source: str, where: str) -> list[str]:
    """Every second definition in one module's source, as `where:line: what`."""
    tree = ast.parse(source)
    problems = []
    for name, value, line in _definitions(tree):
        values = _strings(value)
        if not values:
            continue
        for contract in CONTRACTS:
            is_owner = where == contract.owner and name == contract.name
            if values == [contract.value] and re.search(contract.names, name) and not is_owner:
                problems.append(
                    f"{where}:{line}: {name} = {contract.value!r} again; import "
                    f"{contract.name} from asapo_pipelines/{contract.owner}"
                )
        if where != DRIVERS_OWNER and len(values) > 1 and set(values) <= DRIVER_NAMES:
            problems.append(
                f"{where}:{line}: {name} lists Nomad drivers again; import DRIVERS from "
                f"asapo_pipelines/{DRIVERS_OWNER}"
            )
    if where != DRIVERS_OWNER:
        problems += [
            f"{where}:{line}: a Literal of Nomad drivers again; use the pipeline model's Driver"
            for line in _driver_literals(tree)
        ]
    return problems


def test_no_cross_process_constant_is_defined_twice_in_the_core() -> None:
    problems = []
    for path in sorted(CORE.rglob("*.py")):
        where = path.relative_to(CORE).as_posix()
        problems += duplicates(path.read_text(encoding="utf-8"), where)
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.name)
def test_each_owner_defines_its_constant(contract: Contract) -> None:
    """The owner still holds the one definition (so moving it means updating this test)."""
    tree = ast.parse((CORE / contract.owner).read_text(encoding="utf-8"))
    defined = {name: _strings(value) for name, value, _ in _definitions(tree)}
    assert defined.get(contract.name) == [contract.value]


def test_the_job_spec_owns_the_drivers() -> None:
    from typing import get_args

    from asapo_pipelines.launchplan.jobspec import DEFAULT_DRIVER, DRIVERS, Driver
    from asapo_pipelines.pipeline.model import NomadConfig

    assert set(DRIVERS) == DRIVER_NAMES == set(get_args(Driver))
    assert DEFAULT_DRIVER in DRIVERS
    # the pipeline file's field is the job spec's type, so a new driver reaches the file's
    # validation and the editor schema without a second edit
    assert NomadConfig.model_fields["driver"].annotation == Driver
    assert NomadConfig().driver == DEFAULT_DRIVER


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ('STATE = "state.json"\n', 1),
        ('class M:\n    path: str = Field(default=".pipeline-data")\n', 1),
        ('class Nomad:\n    driver: Literal["raw_exec", "exec"] = "raw_exec"\n', 2),
        ('LOCAL = ("raw_exec", "exec", "docker")\n', 1),
        ('if True:\n    ENV = "ASAPO_PIPELINES_BASE_DIR"\n', 1),
        ('DEFAULT_STREAM = "default"\nNAMESPACE = "default"\n', 1),
        # uses inside functions and other meanings are fine
        ('def f():\n    STATE = "state.json"\n', 0),
        ('PROGRAM = {"program": "asapo-pipelines"}\nNAMESPACE = "default"\n', 0),
    ],
)
def test_the_scan_finds_a_second_definition(source: str, found: int) -> None:
    """The meta-test can fail: each shape of a second definition is caught."""
    assert len(duplicates(source, "somewhere.py")) == found
