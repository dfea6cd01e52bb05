"""`pipeline new-unit`: the scaffolded package installs, passes its own tests and lists."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
