"""Slips an author makes in a first unit plugin, and what the `pipeline` command says of them:
real throwaway distributions installed with pip, the real command run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asapo_pipelines.testing.distributions import install

from helpers import run_pipeline
from plugin_dists import first_plugin_projects

UNMARKED = (
    "registers nothing: its function register_units is not marked @hookimpl, so it never "
    "runs; put `@hookimpl` (from asapo_pipelines.sdk) on the line above it"
)
MISNAMED = (
    "registers nothing: its function register_unit is named like no hook, so it never runs; "
    "did you mean register_units? (and mark it @hookimpl)"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("first-plugin-src")
    target = tmp_path_factory.mktemp("first-plugin-site")
    install([p.write(root) for p in first_plugin_projects()], target)
    return target


@pytest.fixture
def env(site: Path, tmp_path: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site), "ASAPO_PIPELINES_CACHE_DIR": str(tmp_path / "cache")}


def _plugins(env: dict[str, str], *args: str) -> dict[str, dict]:
    done = run_pipeline("plugins", "--json", *args, env=env)
    assert "Traceback" not in done.stderr
    return {p["name"]: p for p in json.loads(done.stdout)["plugins"]}


def test_a_plugin_that_registers_nothing_is_warned_of_and_fails_strict(env):
    for _ in ("built", "from the cache"):
        found = _plugins(env)
        assert found["beam"]["status"] == "ok"
        assert found["beam"]["warnings"] == [UNMARKED]
        assert found["gamma"]["warnings"] == [MISNAMED]
        assert found["acme"]["warnings"] == []
    text = run_pipeline("plugins", env=env)
    assert text.returncode == 0
    assert "beam  asapo-pipelines-beam 0.1.0  ok, 1 warning" in text.stdout
    assert f"? {UNMARKED}" in text.stdout

    strict = run_pipeline("plugins", "--strict", env=env)
    assert strict.returncode == 1
    assert "Traceback" not in strict.stderr
    assert f"! {UNMARKED}" in strict.stdout
    assert f"! {MISNAMED}" in strict.stdout


def test_marking_the_hook_clears_the_warning_through_the_cache(env, site, tmp_path):
    """The cached listing keeps the warning only while the plugin is unchanged."""
    module = site / "asapo_pipelines_beam" / "plugin.py"
    original = module.read_text()
    assert _plugins(env)["beam"]["warnings"] == [UNMARKED]
    try:
        module.write_text(
            original.replace("\ndef register_units", "\n@hookimpl\ndef register_units").replace(
                "import Port, UnitDescriptor", "import Port, UnitDescriptor, hookimpl"
            )
        )
        beam = _plugins(env)["beam"]
        assert beam["warnings"] == []
        assert beam["units"] == ["beam.peak-finder"]
    finally:
        module.write_text(original)


def _pipeline_file(tmp_path: Path, unit: str) -> Path:
    path = tmp_path / "f.yaml"
    path.write_text(
        "pipeline: first\n"
        "units:\n"
        "  numbers:\n"
        f"    unit: {unit}\n"
        "    outputs: {numbers: numbers}\n"
    )
    return path


def _p201(env: dict[str, str], tmp_path: Path, unit: str) -> str:
    path = _pipeline_file(tmp_path, unit)
    done = run_pipeline("validate", str(path), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    return next(line for line in done.stdout.splitlines() if "P201" in line)


def test_unknown_unit_of_a_plugin_registering_nothing_says_why(env, tmp_path):
    assert _p201(env, tmp_path, "beam.peak-finder").endswith(
        "error P201 unknown unit beam.peak-finder; plugin beam (asapo-pipelines-beam 0.1.0) is "
        f"installed but {UNMARKED}"
    )


def test_unknown_unit_of_a_disabled_plugin_names_the_variable(env, tmp_path):
    disabled = {**env, "ASAPO_PIPELINES_DISABLE_PLUGINS": "acme"}
    assert _p201(disabled, tmp_path, "acme.numbers").endswith(
        "error P201 unknown unit acme.numbers; the plugin acme (asapo-pipelines-acme 0.1.0) is "
        "installed but disabled by ASAPO_PIPELINES_DISABLE_PLUGINS=acme"
    )
    only = {**env, "ASAPO_PIPELINES_PLUGINS": "beam"}
    assert _p201(only, tmp_path, "acme.numbers").endswith(
        "error P201 unknown unit acme.numbers; the plugin acme (asapo-pipelines-acme 0.1.0) is "
        "installed but not loaded: ASAPO_PIPELINES_PLUGINS=beam does not name it"
    )


def test_a_plugin_list_naming_no_installed_plugin_is_warned_of(env):
    typo = {**env, "ASAPO_PIPELINES_PLUGINS": "acmee"}
    done = run_pipeline("plugins", env=typo)
    assert done.returncode == 0
    assert done.stderr.strip().splitlines() == [
        "warning: ASAPO_PIPELINES_PLUGINS=acmee names acmee, which is no installed plugin; did "
        "you mean acme?"
    ]
    strict = run_pipeline("plugins", "--strict", env=typo)
    assert strict.returncode == 1
    assert "Traceback" not in strict.stderr
    assert "ASAPO_PIPELINES_PLUGINS=acmee names acmee" in strict.stderr
    listed = run_pipeline("list-units", env={**env, "ASAPO_PIPELINES_DISABLE_PLUGINS": "gama"})
    assert listed.returncode == 0
    assert listed.stderr.strip().splitlines() == [
        "warning: ASAPO_PIPELINES_DISABLE_PLUGINS=gama names gama, which is no installed "
        "plugin; did you mean gamma?"
    ]
    # a name that is a plugin, by its entry point or its distribution, is no typo
    fine = run_pipeline(
        "plugins",
        env={**env, "ASAPO_PIPELINES_DISABLE_PLUGINS": "asapo-pipelines-beam,gamma"},
    )
    assert fine.returncode == 0
    assert fine.stderr == ""


def test_validate_warns_of_a_plugin_list_naming_no_installed_plugin_once(env, tmp_path):
    """`validate` said nothing of the typo `plugins` and `list-units` warn of: the file's
    units were only unknown (P201). Now the same warning, once however many files."""
    typo = {**env, "ASAPO_PIPELINES_PLUGINS": "acmee"}
    path = _pipeline_file(tmp_path, "acme.numbers")
    done = run_pipeline("validate", str(path), str(path), env=typo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: ASAPO_PIPELINES_PLUGINS=acmee names acmee, which is no installed plugin; did "
        "you mean acme?"
    ]
    assert "ASAPO_PIPELINES_PLUGINS=acmee does not name it" in done.stdout
    # JSON output stays JSON on stdout, as with a broken plugin: no warning is added
    as_json = run_pipeline("validate", "--format", "json", str(path), env=typo)
    assert "warning:" not in as_json.stderr


def test_show_unit_shows_outputs_as_optional_to_connect(env, tmp_path):
    """An output left unconnected is a warning (P308), so show-unit gives outputs no
    `required` column; an input's stays."""
    shown = run_pipeline("show-unit", "acme.peak-finder", env=env)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    inputs, outputs = out[out.index("Inputs") : out.index("Outputs")], out[out.index("Outputs") :]
    outputs = outputs[: outputs.index("Resources")]
    assert "required" in inputs
    assert "yes" in inputs
    assert "required" not in outputs
    assert "yes" not in outputs
    # nor does list-units mark one output optional (`debug?`) as if the others were not
    listed = run_pipeline("list-units", "--namespace", "acme", env={**env, "COLUMNS": "80"})
    assert "in: frames  out: peaks, debug\n" in listed.stdout
    path = tmp_path / "f.yaml"
    path.write_text(
        "pipeline: first\nunits:\n  numbers:\n    unit: acme.numbers\n"
        "    outputs: {numbers: numbers}\n  peaks:\n    unit: acme.peak-finder\n"
        "    inputs: {frames: numbers}\n"
    )
    done = run_pipeline("validate", str(path), env=env)
    assert done.returncode == 0, done.stdout
    assert "warning P308 output 'peaks' of peaks (acme.peak-finder) is not connected" in (
        done.stdout
    )
