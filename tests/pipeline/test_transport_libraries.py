"""A file whose transport needs client libraries that are not installed (`transport: asapo`
without DESY's asapo wheels) is reported by `pipeline validate` at its `transport:` key: an
error (P109) when the pipeline runs here, as `pipeline run` would refuse it; a warning (P110)
when `deploy:` sends it to a cluster, whose nodes may have them.

The wheels may or may not be installed where the tests run, so each test decides: a
`sitecustomize` on PYTHONPATH blocks them the import system's way (`sys.modules[name] = None`,
which makes `import` refuse them), or stand-in packages on PYTHONPATH provide them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import run_pipeline

LIBRARIES = ("asapo_consumer", "asapo_producer")

TRANSPORT = """\
pipeline: files-asapo
transport:
  asapo:
    endpoint: "localhost:8400"
    beamtime: "11012345"
    token_file: token.txt
"""

UNITS = """\
units:
  files:
    unit: core.files
    params: {directory: files/, pattern: "*.txt"}
    outputs: {files: raw}
  sink:
    unit: core.jsonl-sink
    params: {path: results/files.jsonl, payload: text}
    inputs: {messages: raw}
"""

NOMAD = """\
deploy:
  nomad: {datacenters: ["*"], driver: raw_exec}
"""

NEEDS = "transport asapo needs asapo_consumer and asapo_producer, which are not installed here"
INSTALL = ": pip install -e '.[asapo]' in the asapo-pipelines checkout"


@pytest.fixture
def without_libraries(tmp_path: Path) -> dict[str, str]:
    """An environment where `import asapo_consumer` fails whether or not the wheels are in
    the venv."""
    site = tmp_path / "blocked-site"
    site.mkdir()
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in LIBRARIES)
    (site / "sitecustomize.py").write_text(f"import sys\n{blocked}")
    return {"PYTHONPATH": str(site)}


@pytest.fixture
def with_libraries(tmp_path: Path) -> dict[str, str]:
    """An environment where the libraries are found (stand-ins: validate never imports them)."""
    site = tmp_path / "asapo-site"
    for name in LIBRARIES:
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text("raise ImportError('never imported')\n")
    return {"PYTHONPATH": str(site)}


def _pipeline(tmp_path: Path, *sections: str) -> Path:
    (tmp_path / "token.txt").write_text("not-a-real-token\n")
    (tmp_path / "files").mkdir()  # the folder core.files reads: no P208, only what is tested
    file = tmp_path / "files-asapo.pipeline.yaml"
    file.write_text("".join(sections))
    return file


@pytest.mark.parametrize("deploy", ["", "deploy:\n  local: {}\n"], ids=["no-deploy", "local"])
def test_validate_says_the_libraries_are_missing_where_the_pipeline_runs(
    tmp_path, without_libraries, deploy
) -> None:
    file = _pipeline(tmp_path, TRANSPORT, deploy, UNITS)
    result = run_pipeline("validate", file.name, env=without_libraries, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    # at the transport's key, `asapo:` (line 3, column 3)
    assert result.stdout == f"{file.name}:3:3: error P109 {NEEDS}{INSTALL}\n"
    assert result.stderr.strip() == f"{file.name}: invalid (1 error)"


def test_run_refuses_in_the_same_sentence_before_anything_starts(
    tmp_path, without_libraries
) -> None:
    file = _pipeline(tmp_path, TRANSPORT, UNITS)
    result = run_pipeline("run", file.name, env=without_libraries, cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{file.name}:3:3: error P109 {NEEDS}{INSTALL}" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == sorted([file.name, "token.txt", "blocked-site", "files"])


def test_a_pipeline_deployed_to_a_cluster_gets_a_warning(tmp_path, without_libraries) -> None:
    file = _pipeline(tmp_path, TRANSPORT, NOMAD, UNITS)
    result = run_pipeline("validate", file.name, env=without_libraries, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == (
        f"{file.name}:3:3: warning P110 {NEEDS}, and the machines the pipeline deploys to need "
        f"them{INSTALL}\n"
    )
    strict = run_pipeline("validate", "--strict", file.name, env=without_libraries, cwd=tmp_path)
    assert strict.returncode == 1


def test_installed_libraries_are_found_without_importing_them(tmp_path, with_libraries) -> None:
    file = _pipeline(tmp_path, TRANSPORT, UNITS)
    result = run_pipeline("validate", file.name, env=with_libraries, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == f"{file.name}: valid"
