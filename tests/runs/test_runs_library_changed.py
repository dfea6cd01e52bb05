"""A change of a unit's algorithm library, or of a data file in its package, is a changed
configuration, named.

Facilities keep their algorithms in a library distribution (pyFAI, an in-house `saxs-algos`)
and the thin unit in the plugin distribution that requires it. A re-run after the library was
upgraded (1.0.0 -> 1.1.0), or after its editable install's code was edited, said "(unchanged)"
and mixed the new numbers into the old run; so did one after a calibration file shipped in the
plugin package changed, since only its Python files were hashed. Here the plugin and the library
are real pip-installed distributions and the `pipeline` command runs them in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines.runs.fingerprint import (
    diff_configurations,
    fingerprint_of,
    own_configuration_changed,
)
from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

UNITS = """
import json
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import Source, describe, hookimpl, out

from {library} import SCALE

SCALED = describe(
    "lib.scaled",
    kind="connector",
    summary="Emits 1 to 3, scaled by the library and the calibration file.",
    runtime=f"{{__name__}}:Scaled",
    outputs=[out("numbers")],
)


class Scaled(Source):
    def run(self) -> None:
        calib = Path(__file__).with_name("calib.json")
        gain = json.loads(calib.read_text())["gain"] if calib.exists() else 1
        for n in range(1, 4):
            self.emit("numbers", {{"n": n * SCALE * gain}}, key=str(n))


@hookimpl
def register_units(register: Any) -> None:
    register(SCALED)
"""


def _library(root: Path, name: str, version: str, scale: int) -> Path:
    """A library distribution `name` holding `SCALE`, as a facility's algorithms package (no
    plugin: its entry points are none)."""
    return PluginProject(name, version, {"__init__.py": f"SCALE = {scale}\n"}).write(root)


def _plugin(root: Path, library: str) -> Path:
    return PluginProject(
        "asapo-lib-units",
        "1.0.0",
        {"units.py": UNITS.format(library=library.replace("-", "_"))},
        {"lib": "asapo_lib_units.units"},
        dependencies=(library,),
    ).write(root)


def _pipeline(work: Path) -> str:
    doc = {
        "pipeline": "libscaled",
        "transport": {"embedded": {"path": "store"}},
        "units": {
            "counter": {"unit": "lib.scaled", "outputs": {"numbers": "numbers"}},
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": str(work / "out.jsonl")},
                "inputs": {"messages": "numbers"},
            },
        },
    }
    (work / "libscaled.pipeline.yaml").write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return "libscaled.pipeline.yaml"


def _values(work: Path, file: str, env: dict[str, str]) -> list[int]:
    done = run_pipeline("tail", file, "numbers", "--json", env=env, cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    return sorted(json.loads(line)["value"]["n"] for line in done.stdout.splitlines())


def _refused(work: Path, file: str, env: dict[str, str]) -> str:
    done = run_pipeline("run", file, env=env, cwd=work)
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert "the configuration changed since run" in said, said
    assert "Traceback" not in said
    return said


def _worker_refusal(work: Path, file: str, env: dict[str, str], run: str) -> str:
    """What a worker of `run` started under the changed code (a restart, a node) says."""
    worker = run_pipeline(
        "worker", file, "counter", env={**env, "ASAPO_PIPELINES_RUN": run}, cwd=work
    )
    assert worker.returncode != 0, worker.stdout + worker.stderr
    assert "Traceback" not in worker.stderr
    return worker.stderr


def _ran(work: Path, file: str, env: dict[str, str], *args: str) -> None:
    done = run_pipeline("run", file, *args, env=env, cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr


def _installed(tmp_path: Path, library: str) -> tuple[Path, dict[str, str], str]:
    """The library at 1.0.0 and the plugin installed from their folders; a run r1 made."""
    site = tmp_path / "site"
    install(
        [_library(tmp_path / "src", library, "1.0.0", 1), _plugin(tmp_path / "src", library)], site
    )
    env = {"PYTHONPATH": str(site), "ASAPO_PIPELINES_CACHE_DIR": str(tmp_path / "cache")}
    file = _pipeline(tmp_path)
    _ran(tmp_path, file, env)
    assert _values(tmp_path, file, env) == [1, 2, 3]
    return site, env, file


def test_a_data_file_of_the_units_package_is_part_of_its_configuration(tmp_path: Path) -> None:
    site, env, file = _installed(tmp_path, "asapo-e46-algos")
    # a calibration file shipped in the package (package data, as a wheel installs it)
    calib = site / "asapo_lib_units" / "calib.json"
    calib.write_text('{"gain": 2}')
    said = _refused(tmp_path, file, env)
    assert "counter (the package data of asapo-lib-units 1.0.0 changed (calib.json))" in said
    assert "sink (upstream configuration changed)" in said, said
    _ran(tmp_path, file, env, "--fresh")
    assert _values(tmp_path, file, env) == [2, 4, 6]


def test_an_upgrade_of_the_library_the_unit_requires_is_a_named_change(tmp_path: Path) -> None:
    library = "asapo-e46-algos"
    site, env, file = _installed(tmp_path, library)
    # `pip install -U` of the library: the plugin's version and code stay as they were
    install([_library(tmp_path / "src", library, "1.1.0", 10)], site)
    said = _refused(tmp_path, file, env)
    assert "changed since run r1: counter (asapo-e46-algos 1.0.0 -> 1.1.0)" in said, said
    assert "asapo-e46-algos 1.0.0 -> 1.1.0" in _worker_refusal(tmp_path, file, env, "r1")
    _ran(tmp_path, file, env, "--fresh")
    assert _values(tmp_path, file, env) == [10, 20, 30]


@pytest.fixture
def editable_library(tmp_path: Path) -> Iterator[Path]:
    """A library installed with `pip install -e` into this environment (a `--target` folder
    on PYTHONPATH does not run the import hook an editable install leaves), uninstalled after."""
    library = "asapo-e46-edit-algos"
    project = _library(tmp_path / "src", library, "1.0.0", 1)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "install", "--no-build-isolation", "--no-deps", "--no-index", "-e", str(project)],
        check=True,
    )
    try:
        yield project
    finally:
        subprocess.run([*pip, "uninstall", "-y", library], check=True)


def test_an_edit_of_an_editable_librarys_code_is_a_named_change(
    tmp_path: Path, editable_library: Path
) -> None:
    site = tmp_path / "site"
    install([_plugin(tmp_path / "src", "asapo-e46-edit-algos")], site)
    env = {"PYTHONPATH": str(site), "ASAPO_PIPELINES_CACHE_DIR": str(tmp_path / "cache")}
    file = _pipeline(tmp_path)
    _ran(tmp_path, file, env)
    assert _values(tmp_path, file, env) == [1, 2, 3]
    _ran(tmp_path, file, env)  # nothing changed: resumed, not refused

    # the facility's algorithm is edited in place; its version says nothing of it
    (editable_library / "asapo_e46_edit_algos" / "__init__.py").write_text("SCALE = 3\n")
    said = _refused(tmp_path, file, env)
    assert "counter (the code of asapo-e46-edit-algos 1.0.0 changed)" in said, said
    refusal = _worker_refusal(tmp_path, file, env, "r1")
    assert "recorded (the code of asapo-e46-edit-algos 1.0.0 changed, after" in refusal, refusal
    _ran(tmp_path, file, env, "--fresh")
    assert _values(tmp_path, file, env) == [3, 6, 9]


def _config(**fields: object) -> dict[str, object]:
    config = {"unit": "lib.scaled", "distribution": "asapo-lib-units", "version": "1.0.0"}
    config.update(fields)  # type: ignore[arg-type]
    config["fingerprint"] = fingerprint_of(config)
    return config


def test_a_record_made_before_says_what_is_new_and_keeps_its_fingerprint_when_nothing_is() -> None:
    """A run recorded by an earlier version has `code` only. Resumed after the upgrade, a
    unit whose package has Python files alone and whose distribution requires no library
    is unchanged (its file map is not part of the fingerprint); one with a data file or a
    library says that these are now part of its configuration, not that they changed."""
    old = {"counter": _config(code="c0")}
    same = {"counter": _config(code="c0", files={"units.py": "12345678"})}
    assert same["counter"]["fingerprint"] == old["counter"]["fingerprint"]
    assert diff_configurations(old, same) == {}

    richer = {
        "counter": _config(
            code="c0",
            data="d0",
            requires={"saxs-algos": {"version": "1.0.0"}},
            files={"units.py": "12345678", "calib.json": "9abcdef0"},
        )
    }
    assert diff_configurations(old, richer) == {
        "counter": [
            "the package data of asapo-lib-units 1.0.0 is now part of its configuration",
            "the libraries it requires (saxs-algos 1.0.0) are now part of its configuration",
        ]
    }
    # its results were not made under other settings: no "reprocess" advice for them
    assert not own_configuration_changed(old["counter"], richer["counter"])
    assert own_configuration_changed(same["counter"], richer["counter"])
    edited = {"counter": _config(code="c1", data="d0", files={"units.py": "0"})}
    assert diff_configurations(old, edited)["counter"][0] == (
        "the code of asapo-lib-units 1.0.0 changed"
    )


def test_library_changes_are_named_by_library() -> None:
    def with_(**requires: dict[str, str]) -> dict[str, dict[str, object]]:
        return {"counter": _config(code="c0", files={"units.py": "1"}, requires=requires)}

    one = with_(a={"version": "1.0.0", "code": "x"}, b={"version": "2.0"})
    assert diff_configurations(
        one, with_(a={"version": "1.0.0", "code": "y"}, b={"version": "2.0"})
    ) == {"counter": ["the code of a 1.0.0 changed"]}
    assert diff_configurations(one, with_(a={"version": "1.0.0"}, c={"version": "3"})) == {
        "counter": [
            "a 1.0.0 is no longer installed from a directory",
            "no longer requires b",
            "now requires c 3",
        ]
    }


def test_the_same_package_elsewhere_has_the_same_data_hash_and_debris_does_not_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster node holds the same package at another path, with its own bytecode."""
    from asapo_pipelines.listing import module_files
    from asapo_pipelines.runs.code import package_record

    def record(name: str) -> dict[str, Any]:
        runtime = f"{name}.units:Unit"
        return package_record(runtime, tuple(module_files(runtime) or ()))

    for where in ("a", "b"):
        package = tmp_path / where / f"dat_{where}"
        (package / "masks").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "units.py").write_text("X = 1\n")
        (package / "masks" / "mask.json").write_text("[1, 0]")
        monkeypatch.syspath_prepend(str(tmp_path / where))
    (tmp_path / "b" / "dat_b" / "__pycache__").mkdir()
    (tmp_path / "b" / "dat_b" / "__pycache__" / "units.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "b" / "dat_b" / ".units.py.swp").write_bytes(b"\0")
    a, b = record("dat_a"), record("dat_b")
    assert a == b
    assert sorted(a["files"]) == ["__init__.py", "masks/mask.json", "units.py"]
    (tmp_path / "b" / "dat_b" / "masks" / "mask.json").write_text("[1, 1]")
    package_record.cache_clear()
    assert record("dat_b")["data"] != a["data"]
