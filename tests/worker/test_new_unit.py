"""`pipeline new-unit`: the scaffolded package installs, passes its own tests and lists."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from asapo_pipelines.testing.distributions import install

from helpers import run_pipeline


def test_scaffold_installs_passes_its_tests_and_lists(tmp_path):
    made = run_pipeline("new-unit", "acme.peak-finder", "--directory", str(tmp_path))
    assert made.returncode == 0, made.stderr
    project = tmp_path / "asapo-pipelines-acme"
    assert str(project) in made.stdout
    for relative in (
        "pyproject.toml",
        "README.md",
        "asapo_pipelines_acme/__init__.py",
        "asapo_pipelines_acme/peak_finder.py",
        "tests/test_peak_finder.py",
    ):
        assert (project / relative).is_file(), relative
    target = tmp_path / "site"
    install([project], target)
    env = {**os.environ, "PYTHONPATH": str(target)}
    env = {k: v for k, v in env.items() if not k.startswith("PYTEST_")}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout
    listed = run_pipeline("list-units", "--json", env={"PYTHONPATH": str(target)})
    assert listed.returncode == 0, listed.stderr
    units = {u["name"]: u for u in json.loads(listed.stdout)["units"]}
    assert units["acme.peak-finder"]["kind"] == "processor"
    assert units["acme.peak-finder"]["distribution"] == "asapo-pipelines-acme"


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
