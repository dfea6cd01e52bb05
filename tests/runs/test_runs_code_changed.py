"""A unit whose code changed under the same version is a changed configuration.

A unit's author edits the code of an editable install (or reinstalls an unreleased package
under the same version) and runs the pipeline again. Under the version alone the re-run said
"(unchanged)", processed nothing and kept every result of the old code. Here the package is a
real pip-installed distribution whose helper module (not the module of the runtime) is edited
in place, as an editable install's source is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from asapo_pipelines.runs.fingerprint import code_digest
from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

UNITS = """
from typing import Any

from asapo_pipelines.sdk import Source, describe, hookimpl, out

from asapo_code_units.scale import FACTOR

SCALED = describe(
    "code.scaled",
    kind="connector",
    summary="Emits 1 to 3, scaled.",
    runtime=f"{__name__}:Scaled",
    outputs=[out("numbers")],
)


class Scaled(Source):
    def run(self) -> None:
        for n in range(1, 4):
            self.emit("numbers", {"n": n * FACTOR}, key=str(n))


@hookimpl
def register_units(register: Any) -> None:
    register(SCALED)
"""


def _pipeline(work: Path) -> str:
    doc = {
        "pipeline": "scaled",
        "transport": {"embedded": {"path": "store"}},
        "units": {
            "counter": {"unit": "code.scaled", "outputs": {"numbers": "numbers"}},
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": str(work / "out.jsonl")},
                "inputs": {"messages": "numbers"},
            },
        },
    }
    (work / "scaled.pipeline.yaml").write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return "scaled.pipeline.yaml"


def _values(work: Path, file: str, env: dict[str, str]) -> list[int]:
    done = run_pipeline("tail", file, "numbers", "--json", env=env, cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    return sorted(json.loads(line)["value"]["n"] for line in done.stdout.splitlines())


def test_a_rerun_after_the_units_code_changed_says_so_and_fresh_gives_the_new_results(
    tmp_path: Path,
) -> None:
    project = PluginProject(
        "asapo-code-units",
        "1.0.0",
        {"units.py": UNITS, "scale.py": "FACTOR = 1\n"},
        {"code": "asapo_code_units.units"},
    ).write(tmp_path / "src")
    site = tmp_path / "site"
    install([project], site)
    env = {"PYTHONPATH": str(site), "ASAPO_PIPELINES_CACHE_DIR": str(tmp_path / "cache")}
    file = _pipeline(tmp_path)

    first = run_pipeline("run", file, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert _values(tmp_path, file, env) == [1, 2, 3]
    same = run_pipeline("run", file, env=env, cwd=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "(unchanged)" in same.stdout + same.stderr

    # the author edits a helper of the unit; the version stays 1.0.0
    (site / "asapo_code_units" / "scale.py").write_text("FACTOR = 1000\n")
    edited = run_pipeline("run", file, env=env, cwd=tmp_path)
    assert edited.returncode != 0, edited.stdout + edited.stderr
    said = edited.stdout + edited.stderr
    assert "the configuration changed since run r1" in said, said
    # the file is named: the other units of a package whose code changed can be told apart
    assert "counter (the code of asapo-code-units 1.0.0 changed (scale.py))" in said, said
    assert "sink (upstream configuration changed)" in said, said
    assert "Traceback" not in said
    # a worker of run r1 started under the edited code (a restart) is refused, saying why
    worker = run_pipeline(
        "worker", file, "counter", env={**env, "ASAPO_PIPELINES_RUN": "r1"}, cwd=tmp_path
    )
    assert worker.returncode != 0, worker.stdout + worker.stderr
    assert "configured differently from what run r1 recorded (the code of" in worker.stderr
    assert "Traceback" not in worker.stderr

    fresh = run_pipeline("run", file, "--fresh", env=env, cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert _values(tmp_path, file, env) == [1000, 2000, 3000]


def test_the_same_code_elsewhere_has_the_same_digest_and_an_edit_changes_it(
    tmp_path: Path, monkeypatch
) -> None:
    """A cluster node's environment holds the same package at another path: its units must
    join the run the submitting host recorded."""
    for where in ("a", "b"):
        package = tmp_path / where / f"pkg_{where}"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "units.py").write_text("X = 1\n")
        (package / "sub").mkdir()
        (package / "sub" / "__init__.py").write_text("Y = 2\n")
        monkeypatch.syspath_prepend(str(tmp_path / where))
    a, b = code_digest("pkg_a.units:Unit"), code_digest("pkg_b.units:Unit")
    assert a is not None
    assert a == b
    code_digest.cache_clear()
    (tmp_path / "b" / "pkg_b" / "sub" / "__init__.py").write_text("Y = 3\n")
    assert code_digest("pkg_b.units:Unit") != a
    shutil.rmtree(tmp_path / "b" / "pkg_b")
    code_digest.cache_clear()
    assert code_digest("pkg_b.units:Unit") is None
