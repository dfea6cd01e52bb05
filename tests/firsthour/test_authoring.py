"""What a plugin author meets: formats checked against the catalog, numpy values on JSON ports,
errors naming unit and port, show-unit's constraints and snippets, PlotHint in the SDK."""

from __future__ import annotations

import json

import fh_units
import pytest
from ruamel.yaml import YAML

from asapo_pipelines.pipeline.validate import validate_text
from asapo_pipelines.testing import catalog_from_plugins
from asapo_pipelines.testing.harness import run_unit
from asapo_pipelines.unit_docs import example_snippet, param_rows

from helpers import run_pipeline


@pytest.fixture(scope="module")
def catalog():
    return catalog_from_plugins(fh_units)


def test_a_typo_in_a_port_format_is_a_broken_plugin_with_a_suggestion():
    # formats are plugins too, so the name is checked against the catalog's formats, when the
    # catalog is built: the unit is not loaded and `pipeline plugins` names it and the port
    from types import SimpleNamespace

    from asapo_pipelines.sdk import UnitDescriptor, hookimpl, inp, out

    @hookimpl
    def register_units(register):
        register(
            UnitDescriptor(
                name="fh.typo",
                kind="processor",
                summary="Emits on a port whose format is misspelt.",
                inputs=[inp("values", "fh/values")],
                outputs=[out("x", "a/b", format="jsn")],
                runtime="fh_units:Mean",
            )
        )

    catalog = catalog_from_plugins(SimpleNamespace(register_units=register_units), strict=False)
    assert "fh.typo" not in catalog
    (record,) = [r for r in catalog.broken]
    assert record.errors == [
        "unit fh.typo: output port x names payload format 'jsn', which no installed plugin "
        "registers (did you mean json?); known: json, json_arrays, bytes, seedee"
    ]


def test_numpy_scalars_and_arrays_on_a_json_port_are_encoded(catalog):
    result = run_unit("fh.mean", [{"values": [1, 2, 3]}], catalog=catalog)
    assert result.errors == []
    (value,) = result.values("mean")
    assert value == {"mean": 2.0, "doubled": [2.0, 4.0, 6.0]}
    assert isinstance(value["mean"], float)


def test_a_value_that_is_not_json_names_unit_port_and_type(catalog):
    result = run_unit("fh.bad", [{"values": [1]}], catalog=catalog, retry={"attempts": 2})
    (record,) = result.errors
    assert "fh.bad" in record["error"]
    assert "port 'tagged'" in record["error"]
    assert "type dict" in record["error"]
    assert "OutputEncodingError" in record["exception"]
    # not retried: the same value fails the same way on every attempt
    assert record["attempts"] == 1


def test_snippet_of_a_default_factory_param_validates(catalog):
    descriptor = catalog.get("fh.mean")
    snippet = example_snippet(descriptor)
    assert 'labels: ["a", "b"]' in snippet
    text = "pipeline: t\nstreams:\n  values: {external: true, content_type: fh/values}\nunits:\n"
    text += "\n".join("  " + line for line in snippet.splitlines())
    report = validate_text(text, catalog, "t.pipeline.yaml")
    assert not report.errors, report.text()


def test_show_unit_gives_constraints_and_nested_fields():
    from asapo_pipelines.catalog import Catalog

    rows = {r.name: r for r in param_rows(Catalog.load().get("xas.normalize"))}
    assert rows["pre_edge.npre"].constraints == "0 <= x <= 1"
    assert rows["autobk.rbkg"].constraints == "> 0"
    shown = run_pipeline("show-unit", "xas.normalize", env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    assert "npre: int = 1  [0 <= x <= 1]" in shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80
    data = json.loads(run_pipeline("show-unit", "xas.normalize", "--json").stdout)
    # within 80 columns and whole: the nested defaults as blocks, not a flow mapping cut at
    # the terminal's edge (which pasted as broken YAML)
    pasted = shown.stdout.split("Example (paste under `units:`):\n", 1)[1]
    assert YAML(typ="safe").load(pasted) == YAML(typ="safe").load(data["example"])
    by_name = {p["name"]: p for p in data["params"]}
    assert by_name["autobk.win"]["type"].startswith('"hanning"')
    assert by_name["pre_edge.npre"]["constraints"] == "0 <= x <= 1"


def test_every_installed_units_snippet_validates():
    from asapo_pipelines.catalog import Catalog

    catalog = Catalog.load()
    for descriptor in catalog.units.values():
        snippet = example_snippet(descriptor)
        # the streams of its required inputs only, as a pipeline that feeds those has them
        streams = "".join(
            f"  {p.name.replace('_', '-')}: {{external: true, content_type: '{p.content_type}'}}\n"
            for p in descriptor.inputs
            if p.required
        )
        text = f"pipeline: t\nstreams:\n{streams}units:\n" if streams else "pipeline: t\nunits:\n"
        text += "\n".join("  " + line for line in snippet.splitlines())
        report = validate_text(text, catalog, "t.pipeline.yaml")
        assert not report.errors, (descriptor.name, report.text())


def test_plot_hint_is_in_the_sdk_and_plots_an_array_port():
    from asapo_pipelines.sdk import PlotHint
    from asapo_pipelines.viewer.collector import get_field

    hint = PlotHint(port="frame", kind="xy")
    assert hint.y == "value"

    class Msg:
        id, timestamp, metadata = 1, 0.0, {}

    import numpy as np

    array = np.arange(4.0)
    assert get_field(Msg(), array, hint.y) is array
