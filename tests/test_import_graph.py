"""The core's modules import each other without cycles (#14), lazy imports inside functions and
type-checking imports included: layers stay layers (the CLI on top, the transport below the
worker, the payload formats beside the transport), so a module can move or become a plugin
without dragging its callers along.

One shape is not a cycle: a package's `__init__` that re-exports names of its own submodules
on first access (`asapo_pipelines.pipeline`: `importlib` at run time, the names imported only
for type checkers), while those submodules import a constant from the package. A package's
type-checking imports of its own submodules are left out for that reason; every other import
counts.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core"


def _modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its source."""
    modules = _modules(root)

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [owner(f"{node.module}.{alias.name}") for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [owner(alias.name) for alias in node.names]
            else:
                continue
            for target in targets:
                if target is None or target == name or not target.startswith(package):
                    continue
                if is_package and id(node) in typing_only and target.startswith(name + "."):
                    continue  # the package's lazy facade over its own submodules
                graph[name].add(target)
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_the_core_has_no_import_cycles() -> None:
    graph = import_graph(CORE, "asapo_pipelines")
    assert len(graph) > 80, "the scan found too few modules: it is broken"
    assert cycle_in(graph) is None


def test_the_scan_finds_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    pkg = tmp_path / "demo"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from demo.sub.a import A\n"
    )
    (pkg / "sub" / "a.py").write_text("from demo import b\nA = 1\n")
    (pkg / "b.py").write_text("def f():\n    from demo.sub.a import A\n    return A\n")
    graph = import_graph(tmp_path, "demo")
    assert graph["demo.sub"] == set()  # a facade over its own submodule
    cycle = cycle_in(graph)
    assert cycle is not None
    assert set(cycle) == {"demo.sub.a", "demo.b"}


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("asapo_pipelines.transport.base", "asapo_pipelines.transport.formats"),
        ("asapo_pipelines.runs.lifecycle", "asapo_pipelines.cli.executors"),
        ("asapo_pipelines.runs.lifecycle", "asapo_pipelines.local.commands"),
        ("asapo_pipelines", "asapo_pipelines.hookspecs"),
    ],
)
def test_the_layers_named_in_issue_14_stay_apart(importer: str, imported: str) -> None:
    graph = import_graph(CORE, "asapo_pipelines")
    assert imported in graph  # a module that moved must be renamed here, not pass silently
    # the transport moves bytes (formats decode them); run records know no CLI; the package
    # root re-exports nothing (the SDK is the one door)
    assert imported not in graph[importer]


@pytest.mark.parametrize(
    "backend", ["asapo_pipelines.transport.embedded", "asapo_pipelines.transport.asapo"]
)
def test_no_module_imports_a_transport_backend_by_name(backend: str) -> None:
    # the core reaches its transports through the catalog (default_backends registers them by
    # import string), as it reaches a plugin's; the redis plugin needs nothing of the embedded
    graph = import_graph(CORE, "asapo_pipelines")
    assert sorted(module for module, deps in graph.items() if backend in deps) == []
    redis = CORE.parent / "plugins" / "redis"
    plugin_imports = {
        node.module
        for path in redis.glob("asapo_pipelines_redis/*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "asapo_pipelines.sdk.transports" in plugin_imports  # the scan read the plugin
    assert backend not in plugin_imports


#: the core's own backends: plugins registered through the hooks, reached by import string
BACKENDS = (
    "asapo_pipelines.local",
    "asapo_pipelines.nomad",
    "asapo_pipelines.viewer",
    "asapo_pipelines.transport.embedded",
    "asapo_pipelines.transport.asapo",
)
#: the small core of issue 14: the CLI shell, catalog, pipeline files, SDK, worker, transport
#: interface, the executor interface and what every executor launches workers with
SMALL_CORE = (
    "asapo_pipelines.launchplan",
    "asapo_pipelines.cli",
    "asapo_pipelines.catalog",
    "asapo_pipelines.pipeline",
    "asapo_pipelines.sdk",
    "asapo_pipelines.worker",
    "asapo_pipelines.transport.base",
    "asapo_pipelines.executor",
    "asapo_pipelines.counters",
)


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def backend_imports(
    graph: dict[str, set[str]], core: tuple[str, ...], backends: tuple[str, ...]
) -> list[str]:
    """Each `core module -> backend module` import, lazy and type-checking ones included."""
    return sorted(
        f"{module} -> {dep}"
        for module, deps in graph.items()
        if _within(module, core)
        for dep in deps
        if _within(dep, backends)
    )


def test_the_small_core_imports_no_backend_by_name() -> None:
    # `status`, `logs`, `stop`... reach the local and Nomad executors through the catalog, and
    # `run`, `reprocess` and `view` are known to the CLI shell by import string only
    graph = import_graph(CORE, "asapo_pipelines")
    assert "asapo_pipelines.cli.executors" in graph  # the scan sees the CLI
    assert backend_imports(graph, SMALL_CORE, BACKENDS) == []


def test_the_shared_launch_pieces_import_no_backend() -> None:
    # the local and Nomad executors and the Slurm plugin all build on launchplan (the delivered
    # file, the job type, the workers' Python, restarts): were it to import one backend, every
    # executor would drag that backend along
    graph = import_graph(CORE, "asapo_pipelines")
    shared = ("asapo_pipelines.launchplan", "asapo_pipelines.sdk.executors")
    assert all(module in graph for module in shared)  # renamed here if they move
    assert backend_imports(graph, shared, BACKENDS) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_backend_imports_another(backend: str) -> None:
    # the local executor runs the job the compiler writes (`launchplan.compile`, in Nomad's job
    # format) and the viewer reads the run layout of `launchplan.rundir`: both neutral, so any
    # backend can be left out or replaced without the others, lazy imports included
    graph = import_graph(CORE, "asapo_pipelines")
    assert backend in graph  # renamed here if it moves
    others = tuple(other for other in BACKENDS if other != backend)
    assert backend_imports(graph, (backend,), others) == []


def test_the_run_records_import_no_backend() -> None:
    # runs/ is below the executors: `pipeline status`, the viewer and every executor read run
    # records, so a lazy import of `local` from there (edits.py's `--data-dir` advice did)
    # made the local executor a part of every one of them; what a run directory and its data
    # directory are is `launchplan.rundir`'s, which any layer may import
    graph = import_graph(CORE, "asapo_pipelines")
    assert "asapo_pipelines.runs.edits" in graph  # renamed here if it moves
    runs = ("asapo_pipelines.runs",)
    assert backend_imports(graph, runs, BACKENDS) == []


def test_the_backend_scan_finds_a_lazy_import_in_the_cli(tmp_path: Path) -> None:
    pkg = tmp_path / "demo"
    for sub in ("cli", "local"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "local" / "control.py").write_text("def run_status(d):\n    return {}\n")
    (pkg / "cli" / "ok.py").write_text("COMMANDS = {'run': 'demo.local.control:run_status'}\n")
    (pkg / "cli" / "status.py").write_text(
        "def status(d):\n    from demo.local.control import run_status\n    return run_status(d)\n"
    )
    graph = import_graph(tmp_path, "demo")
    assert backend_imports(graph, ("demo.cli",), ("demo.local",)) == [
        "demo.cli.status -> demo.local.control"
    ]


def test_pipeline_help_lists_every_command_without_loading_pydantic() -> None:
    """`pipeline --help` is what a newcomer types first: it imports each core command's module
    for its short help, so those modules keep pydantic, jsonschema and the descriptors to the
    functions that need them (half a second of imports otherwise)."""
    from asapo_pipelines.core_commands import CORE_COMMANDS

    script = (
        "import sys\n"
        "from asapo_pipelines.cli import main\n"
        "sys.argv = ['pipeline', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('pydantic', 'jsonschema', 'asapo_pipelines.descriptor')\n"
        "print('LOADED', *[name for name in heavy if name in sys.modules])\n"
    )
    # the first command after an install or a change of a plugin's files rebuilds the listing
    # cache, which loads the catalog; every later `--help` reads the cache
    subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, check=True)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")}
    assert set(CORE_COMMANDS) <= listed
    assert done.stdout.splitlines()[-1] == "LOADED"
