"""`pipeline new-unit`: the scaffolded package installs, passes its own tests and lists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from asapo_pipelines.testing.distributions import install

from helpers import run_pipeline


def _pytest(project, env):
    env = {k: v for k, v in env.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_scaffold_of_every_kind_passes_its_tests_from_source_installs_and_lists(tmp_path):
    made = run_pipeline("new-unit", "acme.peak-finder", "--directory", str(tmp_path))
    assert made.returncode == 0, made.stderr
    project = tmp_path / "asapo-pipelines-acme"
    assert str(project) in made.stdout
    for name, kind in (
        ("acme.reader", "connector"),
        ("acme.writer", "sink"),
        ("acme.advisor", "agent"),
    ):
        added = run_pipeline("new-unit", name, "--kind", kind, "--add-to", str(project), "--json")
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["added"] is True
    for relative in (
        "pyproject.toml",
        "README.md",
        "asapo_pipelines_acme/__init__.py",
        "asapo_pipelines_acme/peak_finder.py",
        "asapo_pipelines_acme/units/peak_finder.py",
        "asapo_pipelines_acme/units/advisor.py",
        "tests/test_peak_finder.py",
        "tests/test_writer.py",
    ):
        assert (project / relative).is_file(), relative
    # from the checkout, before anything is installed
    from_source = _pytest(project, dict(os.environ))
    assert from_source.returncode == 0, from_source.stdout + from_source.stderr
    assert "9 passed" in from_source.stdout
    target = tmp_path / "site"
    install([project], target)
    installed = _pytest(project, {**os.environ, "PYTHONPATH": str(target)})
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = run_pipeline("list-units", "--json", env={"PYTHONPATH": str(target)})
    assert listed.returncode == 0, listed.stderr
    units = {u["name"]: u for u in json.loads(listed.stdout)["units"]}
    assert units["acme.peak-finder"]["kind"] == "processor"
    assert units["acme.peak-finder"]["distribution"] == "asapo-pipelines-acme"
    assert (units["acme.reader"]["role"], units["acme.writer"]["role"]) == ("source", "sink")
    assert units["acme.advisor"]["kind"] == "agent"


def test_add_to_refuses_a_package_it_did_not_make(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.entry-points.asapo_pipelines]\nx = "xpkg"\n'
    )
    added = run_pipeline("new-unit", "x.one", "--add-to", str(tmp_path))
    assert added.returncode == 2
    assert "was not made by `pipeline new-unit`" in added.stderr


def test_scaffold_refuses_bad_names_and_existing_directories(tmp_path):
    bad = run_pipeline("new-unit", "PeakFinder", "-d", str(tmp_path))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: 'PeakFinder' is not a unit name; use <namespace>.<name> in lower case, "
        "e.g. acme.peak-finder"
    ]
    assert run_pipeline("new-unit", "acme.one", "-d", str(tmp_path)).returncode == 0
    again = run_pipeline("new-unit", "acme.two", "-d", str(tmp_path))
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*"))


def test_the_namespace_or_distribution_of_an_installed_plugin_is_refused(tmp_path):
    # `pip install -e .` of a package named like an installed plugin uninstalls that plugin
    from asapo_pipelines.testing.distributions import PluginProject

    site = tmp_path / "site"
    install(
        [
            PluginProject(
                "asapo-pipelines-zeta", modules={"plugin.py": ""}, entry_points={"zeta": "x"}
            ).write(tmp_path / "src"),
            PluginProject(
                "asapo-pipelines-omega", modules={"plugin.py": ""}, entry_points={"om": "x"}
            ).write(tmp_path / "src"),
        ],
        site,
    )
    work = tmp_path / "work"
    work.mkdir()
    env = {"PYTHONPATH": str(site)}
    extend = "to add the unit to your own package, use --add-to with its directory, or choose"
    for unit, expected in (
        (
            "zeta.thing",
            "the namespace zeta belongs to the installed plugin zeta (asapo-pipelines-zeta "
            f"1.0.0); {extend} another namespace",
        ),
        (  # a free namespace, but the distribution name it makes is installed
            "omega.thing",
            "the distribution asapo-pipelines-omega is installed already (asapo-pipelines-omega "
            f"1.0.0), and installing the new package would replace it; {extend} another "
            "namespace or --distribution",
        ),
    ):
        refused = run_pipeline("new-unit", unit, "-d", str(work), env=env)
        assert refused.returncode == 2
        assert refused.stderr == f"error: {expected}\n"
    named = run_pipeline(
        "new-unit",
        "mine.thing",
        "--distribution",
        "asapo_pipelines_Zeta",
        "-d",
        str(work),
        env=env,
    )
    assert named.returncode == 2
    assert "the distribution asapo_pipelines_Zeta is installed already" in named.stderr
    assert _files(work) == []


def test_a_unit_outside_the_packages_own_namespace_is_refused(tmp_path):
    core = run_pipeline("new-unit", "core.thing", "-d", str(tmp_path))
    assert core.returncode == 2
    assert core.stderr == (
        "error: the namespace core belongs to asapo-pipelines (the catalog loads no plugin's "
        "unit named core.<name>); name the unit after your own package, e.g. acme.thing\n"
    )
    assert _files(tmp_path) == []
    assert run_pipeline("new-unit", "acme.numbers", "-d", str(tmp_path)).returncode == 0
    project = tmp_path / "asapo-pipelines-acme"
    before = _files(project)
    for unit, short in (("xas.merge", "merge"), ("other.thing", "thing")):
        added = run_pipeline("new-unit", unit, "--add-to", str(project))
        assert added.returncode == 2
        assert added.stderr == (
            f"error: {unit} is not in the namespace acme of the package in {project}; name the "
            f"unit acme.{short}, or make a package of its own with `pipeline new-unit {unit}`\n"
        )
    assert _files(project) == before


def test_a_unit_named_like_the_package_layout_passes_its_tests(tmp_path):
    # a runtime module `units.py` would be hidden by the package's `units/` descriptors
    assert run_pipeline("new-unit", "acme.units", "-d", str(tmp_path)).returncode == 0
    assert run_pipeline("new-unit", "beta.first", "-d", str(tmp_path)).returncode == 0
    beta = tmp_path / "asapo-pipelines-beta"
    added = run_pipeline("new-unit", "beta.units", "--kind", "sink", "--add-to", str(beta))
    assert added.returncode == 0, added.stderr
    for project, passed in ((tmp_path / "asapo-pipelines-acme", 3), (beta, 5)):
        result = _pytest(project, dict(os.environ))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{passed} passed" in result.stdout


def test_a_descriptor_imported_to_reuse_its_ports_registers_once(tmp_path):
    made = run_pipeline("new-unit", "acme.numbers", "--kind", "source", "-d", str(tmp_path))
    assert made.returncode == 0, made.stderr
    project = tmp_path / "asapo-pipelines-acme"
    assert run_pipeline("new-unit", "acme.scaled", "--add-to", str(project)).returncode == 0
    scaled = project / "asapo_pipelines_acme" / "units" / "scaled.py"
    source = scaled.read_text()
    source = source.replace(
        "from asapo_pipelines.sdk import",
        "from asapo_pipelines_acme.units.numbers import NUMBERS\nfrom asapo_pipelines.sdk import",
    ).replace(
        'inputs=[inp("values", "application/json", ',
        'inputs=[inp("values", NUMBERS.outputs[0].content_type, ',
    )
    assert "NUMBERS.outputs" in source
    scaled.write_text(source)
    site = tmp_path / "site"
    install([project], site)
    shown = run_pipeline("plugins", "--json", env={"PYTHONPATH": str(site)})
    assert shown.returncode == 0, shown.stderr
    (acme,) = [p for p in json.loads(shown.stdout)["plugins"] if p["name"] == "acme"]
    assert (acme["status"], acme["errors"]) == ("ok", [])
    assert sorted(acme["units"]) == ["acme.numbers", "acme.scaled"]
    from_source = _pytest(project, dict(os.environ))
    assert from_source.returncode == 0, from_source.stdout + from_source.stderr


def test_add_to_a_hand_made_plugin_names_the_folder_it_looked_for(tmp_path):
    minimal = Path(__file__).parents[2] / "docs" / "examples" / "minimal-plugin"
    added = run_pipeline("new-unit", "acme-xrd.x", "--add-to", str(minimal))
    assert added.returncode == 2
    assert added.stderr == (
        f"error: {minimal} was not made by `pipeline new-unit` (it has no "
        "acme_xrd/plugin/units/); register the new unit in its register_units hook by hand\n"
    )
