"""Editor support through the real yaml-language-server, over LSP stdio: what a config author
sees in VS Code (or any editor using the server) with the schema `pipeline schema` generates."""

from __future__ import annotations

import itertools
from pathlib import Path

from lsp_client import LspClient
from lsp_setup import ROOT

HEADER = "# yaml-language-server: $schema=./pipeline.schema.json\n"
_counter = itertools.count()


def _open(server: LspClient, workspace: Path, body: str, header: str = HEADER) -> tuple[str, str]:
    text = header + body
    path = workspace / f"doc{next(_counter)}.pipeline.yaml"
    path.write_text(text)
    return server.open(path, text), text


def _cursor(text: str, marker: str) -> tuple[int, int]:
    """Line and character just after the first occurrence of `marker`."""
    index = text.index(marker) + len(marker)
    line = text.count("\n", 0, index)
    return line, index - (text.rfind("\n", 0, index) + 1)


def _labels(items: list[dict]) -> set[str]:
    return {item["label"] for item in items}


VALID = """\
pipeline: p65-xas
streams:
  raw-scans: {external: true, content_type: xas/scan}
units:
  normalize:
    unit: xas.normalize
    params:
      rebin: 2
    inputs: {scans: raw-scans}
    outputs: {spectra: spectra}
  writer:
    unit: nexus.writer
    params:
      file: out.nxs
    inputs: {spectra: spectra}
"""


def test_a_valid_file_has_no_diagnostics(server, workspace):
    uri, _ = _open(server, workspace, VALID)
    assert server.wait_diagnostics(uri) == []


def test_completion_after_unit_offers_every_unit_of_the_catalog(server, workspace, catalog):
    body = VALID + "  advisor:\n    unit: \n"
    uri, text = _open(server, workspace, body)
    line, char = _cursor(text, "  advisor:\n    unit: ")
    offered = _labels(server.completion(uri, line, char))
    assert set(catalog.units) <= offered
    assert "xas.normalize" in offered
    assert "core.files" in offered


def test_completion_inside_params_offers_that_units_parameters(server, workspace):
    body = VALID.replace("      rebin: 2\n", "      rebin: 2\n      \n").replace(
        "      file: out.nxs\n", "      file: out.nxs\n      \n"
    )
    uri, text = _open(server, workspace, body)
    first = text.index("      rebin: 2\n      ") + len("      rebin: 2\n      ")
    line = text.count("\n", 0, first)
    normalize = _labels(server.completion(uri, line, 6))
    assert {"pre_edge", "e0", "method"} <= normalize
    assert "file" not in normalize
    assert "rebin" not in normalize

    second = text.index("      file: out.nxs\n      ") + len("      file: out.nxs\n      ")
    writer = _labels(server.completion(uri, text.count("\n", 0, second), 6))
    assert "compression" in writer
    assert not {"pre_edge", "method"} & writer


def test_a_wrong_typed_parameter_gets_a_diagnostic_on_its_own_line(server, workspace):
    body = VALID.replace("      rebin: 2\n", "      rebin: two\n      method: spline\n")
    uri, text = _open(server, workspace, body)
    diagnostics = server.wait_diagnostics(uri)
    rebin_line = _cursor(text, "rebin: ")[0]
    method_line = _cursor(text, "method: ")[0]
    lines = {d["range"]["start"]["line"] for d in diagnostics}
    assert lines == {rebin_line, method_line}, diagnostics
    by_line = {d["range"]["start"]["line"]: d["message"] for d in diagnostics}
    assert "integer" in by_line[rebin_line].lower()
    assert "larch" in by_line[method_line]


def test_an_unknown_unit_is_flagged_at_its_name(server, workspace):
    body = VALID.replace("unit: xas.normalize", "unit: xas.normalise")
    uri, text = _open(server, workspace, body)
    diagnostics = server.wait_diagnostics(uri)
    line = _cursor(text, "unit: xas.normalise")[0]
    assert any(d["range"]["start"]["line"] == line for d in diagnostics), diagnostics


def test_hover_on_a_parameter_shows_its_description(server, workspace):
    uri, text = _open(server, workspace, VALID)
    line, char = _cursor(text, "      reb")
    hover = server.hover(uri, line, char)
    contents = hover["contents"]
    value = contents["value"] if isinstance(contents, dict) else str(contents)
    assert "Points merged into one." in value


def test_the_committed_schema_completes_the_core_units(server, workspace):
    """schemas/pipeline.schema.json (what this repository ships) works as it is."""
    committed = (ROOT / "schemas" / "pipeline.schema.json").as_uri()
    body = "pipeline: demo\nunits:\n  files:\n    unit: \n"
    uri, text = _open(
        server, workspace, body, header=f"# yaml-language-server: $schema={committed}\n"
    )
    line, char = _cursor(text, "    unit: ")
    offered = _labels(server.completion(uri, line, char))
    assert {"core.files", "core.identity", "core.jsonl-sink"} <= offered


def test_a_new_instance_completes_to_a_unit_snippet_that_validates(server, workspace, catalog):
    """Completing under a new instance name offers one snippet per unit, with its required
    params as placeholders and its defaults; filled in, the snippet is a valid unit entry."""
    import re

    from asapo_pipelines.pipeline import validate_text

    body = "pipeline: demo\nunits:\n  files:\n    \n"
    uri, text = _open(server, workspace, body)
    line = text.count("\n", 0, text.index("  files:\n")) + 1
    items = {i["label"]: i for i in server.completion(uri, line, 4)}
    assert set(catalog.units) <= set(items)
    snippet = items["core.files"]["insertText"]
    assert "pattern: " in snippet  # a default that YAML would misread unquoted (`*`)
    filled = re.sub(r"\$\{\d+:([^}]*)\}", r"\1", snippet)
    entry = "\n".join("    " + line for line in filled.splitlines())
    document = (
        "pipeline: demo\nunits:\n  files:\n"
        + entry
        + "\n  sink: {unit: core.jsonl-sink, params: {path: out.jsonl},"
        + " inputs: {messages: files}}\n"
    )
    report = validate_text(document, catalog)
    assert report.problems == [], report.text()
