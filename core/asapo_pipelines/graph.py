"""A pipeline as a picture: units are nodes, streams are edges.

Mermaid (renders in GitHub, GitLab and mkdocs pages) and Graphviz DOT; SVG comes from
Graphviz's `dot` program when it is installed. A stream read by several units gives one edge per
reader; a stream fed from outside the pipeline (`streams: {x: {external: true}}`) starts at a
node of its own, and a stream nobody in the pipeline reads ends at one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asapo_pipelines.errors import PipelinesError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import Pipeline

FORMATS = ("mermaid", "dot", "svg")


@dataclass(frozen=True)
class Edge:
    source: str  # node id
    target: str
    stream: str


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    detail: str
    shape: str  # "unit" | "external" | "stream-end"


def build(pipeline: Pipeline, catalog: Catalog | None = None) -> tuple[list[Node], list[Edge]]:
    """Nodes and edges of the pipeline, in file order."""
    nodes: list[Node] = []
    for name, unit in pipeline.units.items():
        role = ""
        if catalog is not None and unit.unit in catalog:
            role = catalog.units[unit.unit].role
        detail = unit.unit + (f" ({role})" if role else "")
        if unit.replicas > 1:
            detail += f" x{unit.replicas}"
        nodes.append(Node(f"unit_{_ident(name)}", name, detail, "unit"))
    producers = pipeline.producers()
    consumers = pipeline.consumers()
    edges: list[Edge] = []
    for stream, decl in pipeline.streams.items():
        if decl.external:
            sid = f"ext_{_ident(stream)}"
            nodes.append(Node(sid, stream, f"external {decl.content_type}", "external"))
            for consumer, _port in consumers.get(stream, []):
                edges.append(Edge(sid, f"unit_{_ident(consumer)}", stream))
    for stream, makers in producers.items():
        readers = consumers.get(stream, [])
        for maker, _ in makers:
            if readers:
                for reader, _ in readers:
                    edges.append(Edge(f"unit_{_ident(maker)}", f"unit_{_ident(reader)}", stream))
            else:
                sid = f"out_{_ident(stream)}"
                if all(n.id != sid for n in nodes):
                    nodes.append(Node(sid, stream, "not read in this pipeline", "stream-end"))
                edges.append(Edge(f"unit_{_ident(maker)}", sid, stream))
    return nodes, edges


def _ident(name: str) -> str:
    """A node id that Mermaid and DOT take bare, one for each name: ASCII letters and digits
    stay, any other character becomes `_<hex code>_` (`a-b` is `a_2d_b`, `a_b` is `a_5f_b`).
    Replacing them all by `_` would draw units `a-b` and `a_b` as one node."""
    return "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):x}_" for c in name)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(pipeline: Pipeline, catalog: Catalog | None = None) -> str:
    nodes, edges = build(pipeline, catalog)
    lines = ["flowchart LR"]
    for node in nodes:
        label = _mermaid_text(f"{node.label}<br/><small>{node.detail}</small>")
        if node.shape == "unit":
            lines.append(f'    {node.id}["{label}"]')
        elif node.shape == "external":
            lines.append(f'    {node.id}(["{label}"])')
        else:
            lines.append(f'    {node.id}[/"{_mermaid_text(node.label)}"/]')
    for edge in edges:
        lines.append(f'    {edge.source} -- "{_mermaid_text(edge.stream)}" --> {edge.target}')
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return json.dumps(text)  # a double-quoted string with \" and \\ escaped, as DOT reads it


def to_dot(pipeline: Pipeline, catalog: Catalog | None = None) -> str:
    nodes, edges = build(pipeline, catalog)
    lines = [
        f"digraph {_dot_text(pipeline.name)} {{",
        "    rankdir=LR;",
        '    node [fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    for node in nodes:
        if node.shape == "unit":
            attrs = (
                f'shape=box, style="rounded", label={_dot_text(node.label + chr(10) + node.detail)}'
            )
        elif node.shape == "external":
            attrs = f"shape=cds, label={_dot_text(node.label)}"
        else:
            attrs = f"shape=note, style=dashed, label={_dot_text(node.label)}"
        lines.append(f"    {node.id} [{attrs}];")
    for edge in edges:
        lines.append(f"    {edge.source} -> {edge.target} [label={_dot_text(edge.stream)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


#: how long `dot` may take: a pipeline's graph renders in well under a second, so a `dot` still
#: busy after this is stuck (a broken install, a wrapper waiting for input), not working
DOT_TIMEOUT = 60.0


def to_svg(pipeline: Pipeline, catalog: Catalog | None = None) -> str:
    """SVG rendered by Graphviz's `dot`; UsageError when Graphviz is not installed,
    PipelinesError when it fails, cannot be started or does not finish."""
    dot = shutil.which("dot")
    if dot is None:
        raise UsageError(
            "SVG needs Graphviz's `dot` program, which is not installed (e.g. apt-get install "
            "graphviz); --format dot prints the graph for rendering elsewhere"
        )
    try:
        result = subprocess.run(
            [dot, "-Tsvg"],
            input=to_dot(pipeline, catalog),
            capture_output=True,
            text=True,
            timeout=DOT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PipelinesError(
            f"Graphviz's {dot} did not finish rendering the graph in {DOT_TIMEOUT:g} s and was "
            "stopped; --format dot prints the graph for rendering elsewhere"
        ) from None
    except OSError as exc:
        raise PipelinesError(f"cannot start Graphviz's {dot}: {exc.strerror or exc}") from None
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no message"])[0]
        raise PipelinesError(f"Graphviz could not render the graph: {reason}")
    return result.stdout


def render(pipeline: Pipeline, fmt: str, catalog: Catalog | None = None) -> str:
    if fmt == "mermaid":
        return to_mermaid(pipeline, catalog)
    if fmt == "dot":
        return to_dot(pipeline, catalog)
    if fmt == "svg":
        return to_svg(pipeline, catalog)
    raise UsageError(f"unknown graph format {fmt}; use one of {', '.join(FORMATS)}")
