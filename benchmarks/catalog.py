"""How fast `pipeline list-units` is with 600 installed units, against Python's own start-up.

Generates 50 plugin distributions with 12 units each whose runtime modules import numpy,
installs them with the core into a scratch virtual environment, and reports the median wall time
of `pipeline list-units --json` (listing cache warm, and disabled) and of `pipeline plugins
--json` (which also looks up every runtime's module), against `python -c pass`
and `python -c "import asapo_pipelines"` measured in the same run, plus the number of runtime
modules imported while listing (must be 0). Goal: list-units with 600 units under 0.3 s on a
2-core machine.

    python benchmarks/catalog.py [--json] [--runs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))

from asapo_pipelines.testing.distributions import PluginProject, install  # noqa: E402

PLUGINS = 50
UNITS_PER_PLUGIN = 12

REGISTRATION = """
from typing import Annotated, Literal
from pydantic import Field
from asapo_pipelines.sdk import Params, Port, Resources, UnitDescriptor, hookimpl

PKG = "{pkg}"
{param_classes}

@hookimpl
def register_units(register):
    for i, params in enumerate(PARAMS):
        register(UnitDescriptor(
            name=f"bench{index}.unit-{{i}}",
            kind="processor",
            status="beta",
            summary=f"Benchmark unit {{i}} of plugin {index}.",
            inputs=(Port(name="frames", content_type="image/frame", format="seedee"),),
            outputs=(Port(name="result", content_type="bench/result"),),
            params=params,
            resources=Resources(cpu=1000, memory=512),
            runtime=f"{{PKG}}.runtime_{{i}}:Unit",
        ))
"""

PARAMS_CLASS = """
class Params{i}(Params):
    threshold: Annotated[float, Field(description="Threshold.")] = 0.5
    mode: Annotated[Literal["fast", "exact"], Field(description="Mode.")] = "fast"
    files: Annotated[list[str], Field(description="Inputs.")] = []
"""

RUNTIME = """
import os
import numpy
with open(os.environ["BENCH_RUNTIME_MARK"], "a") as f:
    f.write(__name__ + "\\n")


class Unit:
    pass
"""


def make_projects(root: Path) -> list[Path]:
    paths = []
    for index in range(PLUGINS):
        dist = f"bench-plugin-{index:02d}"
        pkg = dist.replace("-", "_")
        classes = "".join(PARAMS_CLASS.format(i=i) for i in range(UNITS_PER_PLUGIN))
        classes += "\nPARAMS = [" + ", ".join(f"Params{i}" for i in range(UNITS_PER_PLUGIN)) + "]\n"
        modules = {"plugin.py": REGISTRATION.format(pkg=pkg, index=index, param_classes=classes)}
        modules.update({f"runtime_{i}.py": RUNTIME for i in range(UNITS_PER_PLUGIN)})
        project = PluginProject(dist, "1.0.0", modules, {dist: f"{pkg}.plugin"})
        paths.append(project.write(root))
    return paths


def median_time(argv: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--keep", type=Path, help="build the scratch environment here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as tmp:
        base = args.keep or Path(tmp)
        venv = base / "venv"
        python = venv / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    str(ROOT),
                    "numpy",
                    "setuptools>=69",
                    "wheel",
                ],
                check=True,
            )
            install(make_projects(base / "src"), python=str(python))
        mark = base / "runtime-imports.txt"
        mark.unlink(missing_ok=True)
        env = {**os.environ, "BENCH_RUNTIME_MARK": str(mark)}
        env = {k: v for k, v in env.items() if not k.startswith("ASAPO_PIPELINES_")}
        pipeline = str(venv / "bin" / "pipeline")

        listed = json.loads(
            subprocess.run(
                [pipeline, "list-units", "--json"],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            ).stdout
        )
        units = len(listed["units"])
        broken = len(listed["broken_plugins"])
        list_units = median_time([pipeline, "list-units", "--json"], args.runs, env)
        # plugins also looks up every runtime's module (never importing it) for its warnings
        plugins = median_time([pipeline, "plugins", "--json"], args.runs, env)
        cold_env = {**env, "ASAPO_PIPELINES_NO_CACHE": "1"}
        list_units_cold = median_time([pipeline, "list-units", "--json"], args.runs, cold_env)
        startup = median_time([str(python), "-c", "pass"], args.runs, env)
        import_core = median_time([str(python), "-c", "import asapo_pipelines"], args.runs, env)
        imported = len(mark.read_text().splitlines()) if mark.exists() else 0

    result = {
        "units": units,
        "broken_plugins": broken,
        "runs": args.runs,
        "list_units_s": round(list_units, 4),
        "list_units_uncached_s": round(list_units_cold, 4),
        "plugins_s": round(plugins, 4),
        "plugins_over_list_units": round(plugins / list_units, 2),
        "python_startup_s": round(startup, 4),
        "import_core_s": round(import_core, 4),
        "list_units_over_startup": round(list_units / startup, 2),
        "list_units_over_import_core": round(list_units / import_core, 2),
        "runtime_modules_imported": imported,
        "goal_list_units_s": 0.3,
        "goal_met": list_units < 0.3 and imported == 0,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{units} units, {PLUGINS} plugins ({broken} broken), median of {args.runs} runs")
        print(f"  pipeline list-units --json  {list_units:.3f} s (listing cache warm)")
        print(f"  same, cache disabled        {list_units_cold:.3f} s")
        ratio = result["plugins_over_list_units"]
        print(f"  pipeline plugins --json     {plugins:.3f} s  (x{ratio} of list-units)")
        ratio = result["list_units_over_startup"]
        print(f"  python -c pass              {startup:.3f} s  (list-units is x{ratio})")
        print(f"  import asapo_pipelines      {import_core:.3f} s")
        print(f"  runtime modules imported    {imported}")
    return 0 if units >= PLUGINS * UNITS_PER_PLUGIN and imported == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
