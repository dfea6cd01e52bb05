"""The pipeline graph as SVG: units and streams in layers, data flowing left to right.

A small layered layout (longest-path layers, barycentre ordering) is enough for pipelines of a
few dozen nodes and needs no Graphviz on the machine. Every name is escaped here, on the server:
the page inserts this SVG as a parsed XML document and only ever sets text afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from asapo_pipelines.viewer.model import PipelineView

UNIT_W, UNIT_H = 210, 78
STREAM_W, STREAM_H = 150, 40
GAP_X, GAP_Y, MARGIN = 50, 26, 16
NAME_CHARS = 26


@dataclass
class Node:
    key: str  # "u:<instance>" or "s:<stream>"
    label: str
    sub: str
    is_unit: bool
    layer: int = 0
    order: float = 0.0
    x: float = 0.0
    y: float = 0.0

    @property
    def w(self) -> int:
        return UNIT_W if self.is_unit else STREAM_W

    @property
    def h(self) -> int:
        return UNIT_H if self.is_unit else STREAM_H


def build_graph(view: PipelineView) -> tuple[dict[str, Node], list[tuple[str, str]]]:
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str]] = []
    for unit in view.units:
        key = f"u:{unit.instance}"
        nodes[key] = Node(key, unit.instance, unit.descriptor.name, True)
    for stream in view.streams:
        nodes[f"s:{stream}"] = Node(f"s:{stream}", stream, "stream", False)
    for unit in view.units:
        for stream in unit.inputs.values():
            edges.append((f"s:{stream}", f"u:{unit.instance}"))
        for stream in unit.outputs.values():
            edges.append((f"u:{unit.instance}", f"s:{stream}"))
    return nodes, edges


def _layers(nodes: dict[str, Node], edges: list[tuple[str, str]]) -> None:
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        succ[a].append(b)
    # depth-first order; edges closing a cycle (an agent feeding back) are ignored for layering
    state: dict[str, int] = {}
    order: list[str] = []
    forward: dict[str, list[str]] = {k: [] for k in nodes}

    def visit(root: str) -> None:
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            key, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[key] = 2
                order.append(key)
                stack.pop()
            elif state.get(nxt) is None:
                forward[key].append(nxt)
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
            elif state[nxt] == 2:
                forward[key].append(nxt)

    indegree = {k: 0 for k in nodes}
    for _a, b in edges:
        indegree[b] += 1
    for key in [k for k in nodes if indegree[k] == 0] + list(nodes):
        if key not in state:
            visit(key)
    for key in reversed(order):  # topological order of the forward edges
        for nxt in forward[key]:
            nodes[nxt].layer = max(nodes[nxt].layer, nodes[key].layer + 1)


def _order(nodes: dict[str, Node], edges: list[tuple[str, str]]) -> list[list[Node]]:
    depth = max((n.layer for n in nodes.values()), default=0)
    layers: list[list[Node]] = [[] for _ in range(depth + 1)]
    for node in nodes.values():
        layers[node.layer].append(node)
    for layer in layers:
        for i, node in enumerate(layer):
            node.order = i
    neighbours: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    for sweep in range(6):  # barycentre sweeps, alternately forwards and backwards
        seq = layers[1:] if sweep % 2 == 0 else layers[-2::-1]
        for layer in seq:
            for node in layer:
                near = [
                    nodes[k].order for k in neighbours[node.key] if nodes[k].layer != node.layer
                ]
                node.order = sum(near) / len(near) if near else node.order
            layer.sort(key=lambda n: n.order)
            for i, node in enumerate(layer):
                node.order = i
    return layers


def layout(view: PipelineView) -> tuple[dict[str, Node], list[tuple[str, str]], int, int]:
    nodes, edges = build_graph(view)
    _layers(nodes, edges)
    layers = _order(nodes, edges)
    heights = [sum(n.h for n in layer) + GAP_Y * (len(layer) - 1) for layer in layers]
    height = max(heights, default=0) + 2 * MARGIN
    x = MARGIN
    for layer, h in zip(layers, heights, strict=True):
        y = MARGIN + (height - 2 * MARGIN - h) / 2
        width = max((n.w for n in layer), default=0)
        for node in layer:
            node.x, node.y = x + (width - node.w) / 2, y
            y += node.h + GAP_Y
        x += width + GAP_X
    return nodes, edges, int(x - GAP_X + MARGIN), int(height)


def _short(text: str, chars: int = NAME_CHARS) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "\u2026"


def _text(x: float, y: float, text: str, cls: str, field: str | None = None) -> str:
    data = f" data-field={quoteattr(field)}" if field else ""
    return f'<text x="{x:.0f}" y="{y:.0f}" class="{cls}"{data}>{escape(text)}</text>'


def render_svg(view: PipelineView) -> str:
    """The graph as an SVG document; nodes carry `data-node` keys the page updates live."""
    nodes, edges, width, height = layout(view)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead"/></marker></defs>',
    ]
    for a, b in edges:
        na, nb = nodes[a], nodes[b]
        x1, y1 = na.x + na.w, na.y + na.h / 2
        x2, y2 = nb.x, nb.y + nb.h / 2
        if x2 <= x1:  # a feedback edge: leave to the right and come back round below
            bottom = max(na.y + na.h, nb.y + nb.h) + GAP_Y
            d = (
                f"M {x1:.0f} {y1:.0f} C {x1 + 60:.0f} {y1:.0f}, {x1 + 60:.0f} {bottom:.0f}, "
                f"{(x1 + x2) / 2:.0f} {bottom:.0f} S {x2 - 60:.0f} {y2:.0f}, {x2:.0f} {y2:.0f}"
            )
        else:
            mid = (x1 + x2) / 2
            d = f"M {x1:.0f} {y1:.0f} C {mid:.0f} {y1:.0f}, {mid:.0f} {y2:.0f}, {x2:.0f} {y2:.0f}"
        out.append(
            f'<path class="edge" d="{d}" marker-end="url(#arrow)" '
            f"data-from={quoteattr(a)} data-to={quoteattr(b)}/>"
        )
    for node in nodes.values():
        cls = "unit waiting" if node.is_unit else "stream"
        out.append(f'<g class="{cls}" data-node={quoteattr(node.key)}>')
        out.append(f"<title>{escape(node.label)} ({escape(node.sub)})</title>")
        if node.is_unit:
            out.append(
                f'<rect x="{node.x:.0f}" y="{node.y:.0f}" width="{node.w}" height="{node.h}" '
                'rx="8"/>'
            )
            tx = node.x + 10
            out.append(_text(tx, node.y + 19, _short(node.label), "name"))
            out.append(_text(tx + node.w - 20, node.y + 19, "waiting", "state end", "state"))
            out.append(_text(tx, node.y + 35, _short(node.sub), "sub"))
            out.append(_text(tx, node.y + 53, "processed 0 \u00b7 0.0/s", "counters", "line1"))
            out.append(
                _text(
                    tx, node.y + 69, "lag 0 \u00b7 errors 0 \u00b7 restarts 0", "counters", "line2"
                )
            )
        else:
            out.append(
                f'<rect x="{node.x:.0f}" y="{node.y:.0f}" width="{node.w}" height="{node.h}" '
                f'rx="{node.h / 2:.0f}"/>'
            )
            cx = node.x + node.w / 2
            out.append(_text(cx, node.y + 17, _short(node.label, 20), "name middle"))
            out.append(_text(cx, node.y + 32, "0 messages", "counters middle", "line1"))
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)
