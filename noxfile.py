"""Test, lint and build sessions. `nox` runs the default set (what CI runs); `nox -l` lists all.

Each plugin under plugins/ is tested in its own fresh environment with only the core beside
it (found by reading plugins/*/pyproject.toml), then everything is installed and tested together.
That last session leaves out the tests that passed in the `tests` and `plugin-<name>` sessions
of the same `nox` run on the same tree, for CI's time (tools/passed_record.py says how, and what
that gives up). The plugins' sessions and `all` run their tests in two processes (pytest-xdist,
`PARALLEL`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYTHON = "3.11"

# The suite starts thousands of Python processes (`pipeline` commands, their workers), each of
# which reads its modules from bytecode caches when they exist. uv installs without writing
# them, and where PYTHONDONTWRITEBYTECODE is set (many container images set it) no process
# ever writes them: each one then compiled every module it imports from source, which took
# about half of the suite's time (`import larch.xafs` 7.8 s against 3.8 s from caches; a
# `pipeline validate` 0.7 s of CPU against 0.3 s). The sessions' processes write the caches
# (`__pycache__/` is ignored by git, so the tree's fingerprint, tools/passed_record.py, stays).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = False
nox.options.sessions = ["lint", "types", "tests", "plugin", "all", "schemas", "docs"]


def _plugins() -> dict[str, dict]:
    """Plugin packages: directory name -> their [project] table."""
    found = {}
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        found[pyproject.parent.name] = tomllib.loads(pyproject.read_text())["project"]
    return found


PLUGINS = _plugins()

#: the tests that passed in the `tests` and `plugin-<name>` sessions, one record per session,
#: which the `all` session then leaves out (tools/passed_record.py). They live for one `nox`
#: run: removed when nox reads this file, so `nox -s all` alone, or after an earlier run's
#: sessions, runs every test.
PASSED_RECORDS = ROOT / ".nox" / "passed"
shutil.rmtree(PASSED_RECORDS, ignore_errors=True)
#: pytest's options that load tools/passed_record.py (found through `_passed_record_env`)
PASSED_RECORD_PLUGIN = ("-p", "passed_record")
#: pytest-xdist options of the longer sessions (the core's `tests`, the plugins' and `all`):
#: their tests in two processes. Most tests wait
#: on the processes they start (`pipeline` commands, workers, servers): with one pytest
#: process CI's two cores were 48-70 % busy. `loadfile` keeps a file's tests in one process,
#: so what a module's fixtures make (a finished P65 run) is made once. A plugin's session runs
#: so when its pyproject says `test-processes = 2` under [tool.asapo-pipelines]: the XAS,
#: bluesky and Redis plugins' (each process starts its own queue or Redis server); not the
#: Slurm plugin's, whose session fixture starts a Slurm cluster (each process would start
#: one). Measured in CI: `all` 23 -> 13.4 min, XAS 12 -> 10.5 (the core's tests 29 -> 18.5).
#: `nox -- -n 0` runs in one process.
PARALLEL = ("-n", "2", "--dist", "loadfile")


def _passed_record(session_name: str) -> Path:
    """The record of the tests that passed in the session `session_name`."""
    return PASSED_RECORDS / f"{session_name}.json"


def _passed_record_env(variable: str, value: str) -> dict[str, str]:
    """pytest's environment for tools/passed_record.py: its folder on PYTHONPATH, and
    `variable` (ASAPO_PIPELINES_RECORD_PASSED or ASAPO_PIPELINES_SKIP_PASSED) set to `value`."""
    path = os.pathsep.join(filter(None, [str(ROOT / "tools"), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, variable: value}


def _recording(session_name: str) -> dict[str, str]:
    """pytest's environment for a session whose passed tests are recorded."""
    record = str(_passed_record(session_name))
    return _passed_record_env("ASAPO_PIPELINES_RECORD_PASSED", record)


def _has_test_extra(project: dict) -> bool:
    return "test" in project.get("optional-dependencies", {})


def _plugin_spec(name: str) -> str:
    project = PLUGINS[name]
    return f"./plugins/{name}[test]" if _has_test_extra(project) else f"./plugins/{name}"


def _test_settings(name: str) -> dict:
    """A plugin's `[tool.asapo-pipelines]` table: how its tests run."""
    data = tomllib.loads((ROOT / "plugins" / name / "pyproject.toml").read_text())
    return dict(data.get("tool", {}).get("asapo-pipelines", {}))


def _test_plugins(name: str) -> list[str]:
    """Sibling plugins whose units a plugin's tests run with (`[tool.asapo-pipelines]`)."""
    return list(_test_settings(name).get("test-plugins", []))


def _parallel(name: str) -> tuple[str, ...]:
    """`PARALLEL` when the plugin's tests may run in two processes (`test-processes = 2`)."""
    return PARALLEL if _test_settings(name).get("test-processes", 1) > 1 else ()


def ensure_system_tools(session: nox.Session) -> None:
    """Install the Debian packages the tests drive for real when they are missing: Node.js for
    the YAML language server, Graphviz for SVG graphs, Chromium for the viewer's page, Redis for
    the bluesky plugin's queue server and the redis transport's tests (a server on loopback),
    and slurmctld, slurmd, slurm-client and munge for a one-node Slurm on loopback (the Slurm
    executor's tests start one). CI runs as root on a Debian machine; elsewhere, say what to
    install instead of failing later."""
    wanted = {
        "node": "nodejs",
        "npm": "npm",
        "dot": "graphviz",
        "chromium": "chromium",
        "redis-server": "redis-server",
        "slurmctld": "slurmctld",
        "slurmd": "slurmd",
        "sbatch": "slurm-client",
        "munged": "munge",
    }
    missing = sorted({pkg for tool, pkg in wanted.items() if shutil.which(tool) is None})
    if not missing:
        return
    if sys.platform == "linux" and shutil.which("apt-get") and os.geteuid() == 0:
        session.run("apt-get", "update", "-qq", external=True)
        session.run(
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            *missing,
            external=True,
            env={"DEBIAN_FRONTEND": "noninteractive"},
        )
    else:
        session.warn(f"missing system packages for some tests: {' '.join(missing)}")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff==0.15.*")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def types(session: nox.Session) -> None:
    """mypy on the core package."""
    session.install("-e", ".[test]", "mypy==1.19.*")
    session.run("mypy")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The core's test suite, with the real ASAP::O client wheels.

    Records the tests that pass, which the `all` session then leaves out (tools/passed_record.py).
    """
    ensure_system_tools(session)
    session.install("-e", ".[test,asapo,viewer]")
    session.run(
        "pytest",
        *PASSED_RECORD_PLUGIN,
        *PARALLEL,
        "tests",
        *session.posargs,
        env=_recording("tests"),
    )


@nox.session(python=PYTHON)
@nox.parametrize("name", sorted(PLUGINS) or ["none"])
def plugin(session: nox.Session, name: str) -> None:
    """One plugin package in its own environment, with only the core (and the sibling plugins
    its tests name) beside it. Records the tests that pass, which the `all` session then leaves
    out (tools/passed_record.py)."""
    if name not in PLUGINS:
        session.skip("no plugin packages under plugins/")
    ensure_system_tools(session)
    # sibling plugins a plugin's end-to-end tests run with (pyproject: tool.asapo-pipelines)
    siblings = _test_plugins(name)
    # the viewer extra: a plugin may test its part of the viewer (the bluesky inbox does)
    session.install(".[test,viewer]", _plugin_spec(name), *(f"./plugins/{s}" for s in siblings))
    session.chdir(ROOT / "plugins" / name)
    env = _recording(f"plugin-{name}")
    parallel = _parallel(name)
    session.run("pytest", *PASSED_RECORD_PLUGIN, *parallel, "tests", *session.posargs, env=env)


@nox.session(name="all", python=PYTHON)
def all_together(session: nox.Session) -> None:
    """Core and plugins together: the catalog; the tests that did not pass in their own session.

    Every core and plugin test runs except those that already passed in this run's `tests` or
    `plugin-<name>` session on the same tree (tools/passed_record.py): the tests that need
    another plugin (skipped in their own session), and those that failed or were skipped there
    for another reason, run here.

    What that gives up: a test that passed with its own package alone is not run again with
    every plugin installed, so a plugin that breaks another's tests just by being installed goes
    unnoticed here. The catalog with every plugin is still checked: by `pipeline plugins
    --strict` below, by the `schemas` and `docs` sessions and by the tests that need the other
    plugins. Why: CI's time; running the tests a second time took about 30 of CI's 90 minutes.

    Without the records (`nox -s all` alone), or for a session whose record is missing or whose
    tree changed, those tests run; pytest prints one line per record saying which.
    """
    ensure_system_tools(session)
    session.install("-e", ".[test,asapo,viewer]", *(_plugin_spec(n) for n in PLUGINS))
    session.run("pipeline", "plugins", "--strict")
    records = [_passed_record(s) for s in ["tests", *(f"plugin-{n}" for n in PLUGINS)]]
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        *PASSED_RECORD_PLUGIN,
        *PARALLEL,
        "tests",
        *(f"plugins/{n}/tests" for n in PLUGINS),
        *session.posargs,
        env=_passed_record_env("ASAPO_PIPELINES_SKIP_PASSED", os.pathsep.join(map(str, records))),
    )


@nox.session(python=PYTHON)
def schemas(session: nox.Session) -> None:
    """The committed schemas match what the installed catalog generates."""
    session.install(".", *(f"./plugins/{n}" for n in PLUGINS))
    session.run("pipeline", "schema", "--check", env={"ASAPO_PIPELINES_STRICT": "1"})


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The CLI reference is current and the documentation builds without warnings."""
    session.install(
        ".", *(f"./plugins/{n}" for n in PLUGINS), "mkdocs==1.6.*", "pymdown-extensions>=10.8"
    )
    session.run("python", "docs/gen_cli_reference.py", "--check")
    session.run("python", "docs/gen_hooks.py", "--check")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))


@nox.session(python=PYTHON)
def benchmarks(session: nox.Session) -> None:
    """Speed and memory, as ratios against peers measured in the same run (not run by CI)."""
    session.install("-e", ".[test,bench,viewer]", *(_plugin_spec(n) for n in PLUGINS))
    for script in sorted(ROOT.glob("benchmarks/*.py")):
        session.run("python", str(script), *session.posargs)
