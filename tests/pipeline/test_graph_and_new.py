"""`pipeline graph` and `pipeline new`."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from asapo_pipelines.graph import to_dot, to_mermaid
from asapo_pipelines.pipeline import load_pipeline

from helpers import run_pipeline

HERE = Path(__file__).parent
P65 = HERE / "valid" / "p65.pipeline.yaml"


def test_mermaid_has_units_as_nodes_and_streams_as_edges(catalog) -> None:
    text = to_mermaid(load_pipeline(P65, catalog), catalog)
    assert text.startswith("flowchart LR\n")
    for unit in ("normalize", "merge", "advisor", "writer"):
        assert f'unit_{unit}["{unit}<br/>' in text
    edges = set(re.findall(r"(\w+) -- \"([^\"]+)\" --> (\w+)", text))
    assert edges == {
        ("ext_raw_2d_scans", "raw-scans", "unit_normalize"),
        ("unit_normalize", "spectra", "unit_merge"),
        ("unit_normalize", "spectra", "unit_writer"),
        ("unit_merge", "merged", "unit_advisor"),
        ("unit_merge", "merged", "unit_writer"),
        ("unit_advisor", "plans", "out_plans"),
    }
    assert "xas.normalize (processor) x2" in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_dot_renders_with_graphviz(catalog, tmp_path: Path, plugin_env) -> None:
    dot = to_dot(load_pipeline(P65, catalog), catalog)
    assert dot.startswith('digraph "p65-xas" {')
    result = run_pipeline(
        "graph", str(P65), "--format", "svg", "-o", str(tmp_path / "g.svg"), env=plugin_env
    )
    assert result.returncode == 0, result.stderr
    svg = (tmp_path / "g.svg").read_text()
    assert svg.lstrip().startswith("<?xml")
    assert "<svg" in svg
    for name in ("normalize", "advisor", "raw&#45;scans", "merged", "plans"):
        assert f">{name}<" in svg


def test_svg_without_graphviz_is_one_sentence(tmp_path: Path, plugin_env) -> None:
    env = {**plugin_env, "PATH": str(tmp_path)}  # no `dot` on it
    result = run_pipeline("graph", str(P65), "--format", "svg", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: SVG needs Graphviz's `dot` program")
    assert result.stderr.count("\n") == 1


def test_graph_of_an_invalid_file_lists_its_problems(plugin_env) -> None:
    broken = HERE / "broken" / "P304-content-types.pipeline.yaml"
    result = run_pipeline("graph", str(broken), env=plugin_env)
    assert result.returncode == 1
    assert "error P304" in result.stderr
    assert "Traceback" not in result.stderr


def test_new_writes_a_valid_starter_with_both_schema_comments(tmp_path: Path) -> None:
    result = run_pipeline("new", "beamline-demo", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    path = tmp_path / "beamline-demo.pipeline.yaml"
    lines = path.read_text().splitlines()
    assert lines[0] == "# yaml-language-server: $schema=./pipeline.schema.json"
    assert lines[1] == "# $schema: ./pipeline.schema.json"  # JetBrains IDEs
    assert (tmp_path / "pipeline.schema.json").is_file()
    check = run_pipeline("validate", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout == ""  # not even a warning


def test_new_refers_to_a_committed_schema_above(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    shutil.copy(HERE.parents[1] / "schemas" / "pipeline.schema.json", tmp_path / "schemas")
    where = tmp_path / "pipelines" / "p65"
    result = run_pipeline(
        "new", "p65", "--dir", str(where), "-u", "core.file", "-u", "core.identity"
    )
    # an unknown unit: one sentence with a suggestion, and no file
    assert result.returncode == 1
    assert result.stderr == "error: unknown unit core.file; did you mean core.files?\n"
    assert not where.exists()
    result = run_pipeline(
        "new", "p65", "--dir", str(where), "-u", "core.files", "-u", "core.jsonl-sink"
    )
    assert result.returncode == 0, result.stderr
    text = (where / "p65.pipeline.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=../../schemas/pipeline.schema.json\n")
    assert not (where / "pipeline.schema.json").exists()
    assert "      messages: files\n" in text  # chained: files -> sink
    again = run_pipeline("new", "p65", "--dir", str(where))
    assert again.returncode == 2
    assert "--force" in again.stderr


def test_new_with_plugin_units_chains_them(tmp_path: Path, plugin_env) -> None:
    result = run_pipeline(
        "new",
        "p65",
        "--dir",
        str(tmp_path),
        "-u",
        "xas.scan-files",
        "-u",
        "xas.normalize",
        "-u",
        "xas.merge",
        env=plugin_env,
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "p65.pipeline.yaml"
    check = run_pipeline("validate", str(path), env=plugin_env)
    # the only problems are the required params left to fill in (this fake plugin gives no
    # example values: they are written empty, marked REQUIRED, and reported); the last
    # stream, the result, is declared for the user to read, not warned of (P307)
    codes = set(re.findall(r" (P\d{3}) ", check.stdout))
    assert codes == {"P206"}, check.stdout
    assert "REQUIRED" in path.read_text()
    assert "scans: scans" in path.read_text()
    assert "spectra: spectra" in path.read_text()


def test_new_rejects_a_bad_name(tmp_path: Path) -> None:
    result = run_pipeline("new", "P65 XAS", "--dir", str(tmp_path))
    assert result.returncode == 2
    assert "pipeline name 'P65 XAS' is not valid" in result.stderr


def test_a_graphviz_that_hangs_is_stopped_with_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a real program named `dot` that never answers (a broken install, a wrapper waiting for
    # input): the command stops it and says so, instead of "internal error (TimeoutExpired)"
    from asapo_pipelines import graph
    from asapo_pipelines.cli import main

    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(graph, "DOT_TIMEOUT", 0.5)
    files = Path(__file__).parents[2] / "examples" / "files-to-jsonl.pipeline.yaml"
    with pytest.raises(SystemExit) as exited:
        main(["graph", str(files), "--format", "svg"])
    err = capsys.readouterr().err
    assert exited.value.code not in (0, None)
    assert err == (
        f"error: Graphviz's {fake} did not finish rendering the graph in 0.5 s and was stopped; "
        "--format dot prints the graph for rendering elsewhere\n"
    )
