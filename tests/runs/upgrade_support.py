"""A pipeline run with a plugin unit at 1.0.0, then the plugin upgraded to 2.0.0, which renames
the unit's required param (`count` to `total`), so that the unchanged file no longer validates
(P203): the set-up of the tests that what ran stays readable after such an upgrade."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

UNIT = "upg.counter"

#: the unit in two versions: 2.0.0 renames its required param `count` to `total`
UNITS = """
from typing import Any

from asapo_pipelines.sdk import Params, Source, describe, hookimpl, out


class CounterParams(Params):
    {param}: int


COUNTER = describe(
    "upg.counter",
    kind="connector",
    summary="Emits the numbers 1 to {param}.",
    runtime=f"{{__name__}}:Counter",
    outputs=[out("numbers")],
    params=CounterParams,
)


class Counter(Source):
    def run(self) -> None:
        for n in range(1, self.params.{param} + 1):
            self.emit("numbers", {{"n": n}}, key=str(n))


@hookimpl
def register_units(register: Any) -> None:
    register(COUNTER)
"""


def _project(root: Path, version: str, param: str) -> Path:
    return PluginProject(
        "asapo-upg-units",
        version,
        {"units.py": UNITS.format(param=param)},
        {"upg": "asapo_upg_units.units"},
    ).write(root / f"src-{version}")


def ok(*args: str, env: dict[str, str], cwd: Path) -> Any:
    done = run_pipeline(*args, env=env, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def run_then_upgrade(
    work: Path,
    name: str,
    transport: dict[str, Any],
    count: int,
    before: Callable[[str, dict[str, str]], Any],
) -> dict[str, Any]:
    """Run pipeline `name` (the counter to `count`, into a JSONL sink) with the plugin at
    1.0.0, keep what `before(file, env)` read then, and upgrade the plugin to 2.0.0: the
    work directory, the environment, the file's name and `before`'s result."""
    site = work / "site"
    install([_project(work, "1.0.0", "count")], site)
    env = {"PYTHONPATH": str(site), "ASAPO_PIPELINES_CACHE_DIR": str(work / "cache")}
    doc = {
        "pipeline": name,
        "transport": transport,
        "units": {
            "counter": {
                "unit": UNIT,
                "params": {"count": count},
                "outputs": {"numbers": "numbers"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": str(work / "out.jsonl")},
                "inputs": {"messages": "numbers"},
            },
        },
    }
    file = work / f"{name}.pipeline.yaml"
    file.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    ok("run", file.name, env=env, cwd=work)
    seen = before(file.name, env)
    install([_project(work, "2.0.0", "total")], site)
    invalid = run_pipeline("validate", file.name, env=env, cwd=work)
    assert invalid.returncode != 0, invalid
    assert "P203" in invalid.stdout + invalid.stderr, invalid
    return {"work": work, "env": env, "file": file.name, "before": seen}
