"""`pipeline graph` keeps apart names that differ only in `-`, `_` or `.`: each unit and each
stream end gets a node id of its own, and its label stays the name as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from asapo_pipelines.graph import to_dot, to_mermaid
from asapo_pipelines.pipeline import load_pipeline

from helpers import run_pipeline

TEXT = """\
pipeline: names
streams:
  x-y: {external: true}
  x_y: {external: true}
units:
  a-b: {unit: core.identity, inputs: {input: x-y}, outputs: {output: s}}
  a_b: {unit: core.identity, inputs: {input: s}, outputs: {output: o-1}}
  c: {unit: core.identity, inputs: {input: x_y}, outputs: {output: o_1}}
"""

MERMAID = """\
flowchart LR
    unit_a_2d_b["a-b<br/><small>core.identity (processor)</small>"]
    unit_a_5f_b["a_b<br/><small>core.identity (processor)</small>"]
    unit_c["c<br/><small>core.identity (processor)</small>"]
    ext_x_2d_y(["x-y<br/><small>external */*</small>"])
    ext_x_5f_y(["x_y<br/><small>external */*</small>"])
    out_o_2d_1[/"o-1"/]
    out_o_5f_1[/"o_1"/]
    ext_x_2d_y -- "x-y" --> unit_a_2d_b
    ext_x_5f_y -- "x_y" --> unit_c
    unit_a_2d_b -- "s" --> unit_a_5f_b
    unit_a_5f_b -- "o-1" --> out_o_2d_1
    unit_c -- "o_1" --> out_o_5f_1
"""

DOT = """\
digraph "names" {
    rankdir=LR;
    node [fontname="Helvetica", fontsize=11];
    edge [fontname="Helvetica", fontsize=10];
    unit_a_2d_b [shape=box, style="rounded", label="a-b\\ncore.identity (processor)"];
    unit_a_5f_b [shape=box, style="rounded", label="a_b\\ncore.identity (processor)"];
    unit_c [shape=box, style="rounded", label="c\\ncore.identity (processor)"];
    ext_x_2d_y [shape=cds, label="x-y"];
    ext_x_5f_y [shape=cds, label="x_y"];
    out_o_2d_1 [shape=note, style=dashed, label="o-1"];
    out_o_5f_1 [shape=note, style=dashed, label="o_1"];
    ext_x_2d_y -> unit_a_2d_b [label="x-y"];
    ext_x_5f_y -> unit_c [label="x_y"];
    unit_a_2d_b -> unit_a_5f_b [label="s"];
    unit_a_5f_b -> out_o_2d_1 [label="o-1"];
    unit_c -> out_o_5f_1 [label="o_1"];
}
"""


@pytest.fixture
def names_file(tmp_path: Path) -> Path:
    path = tmp_path / "names.pipeline.yaml"
    path.write_text(TEXT)
    return path


def test_mermaid_draws_a_b_and_a_underscore_b_as_two_nodes(names_file: Path, catalog) -> None:
    assert to_mermaid(load_pipeline(names_file, catalog), catalog) == MERMAID


def test_dot_draws_a_b_and_a_underscore_b_as_two_nodes(names_file: Path, catalog) -> None:
    assert to_dot(load_pipeline(names_file, catalog), catalog) == DOT


def test_cli_graph_prints_both_formats(names_file: Path, core_env: dict[str, str]) -> None:
    for fmt, expected in (("mermaid", MERMAID), ("dot", DOT)):
        result = run_pipeline(
            "graph", names_file.name, "--format", fmt, env=core_env, cwd=names_file.parent
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected
