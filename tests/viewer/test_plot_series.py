"""A plot hint's `series` splits its points by a field: the P65 merges of two samples are two
noise curves (and two rows of decisions), each named by its group, not one line jumping between
them. The merges are the xas units' own, on the bundled P65 goethite repeats and a Cu foil scan
that arrives between them (examples/data/SOURCES.md)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from pydantic import ValidationError
from test_browser import wait_for
from test_xas_browser import xas_data, xas_unavailable

from asapo_pipelines.catalog import Catalog
from asapo_pipelines.descriptor import PlotHint
from asapo_pipelines.transport.embedded import EmbeddedTransport
from asapo_pipelines.viewer.collector import Collector
from asapo_pipelines.viewer.model import PipelineView, UnitView

#: a foil scan measured among the goethite repeats, as at the beamline
ARRIVALS = ("20K_GOE_Fe_K_240.00000.xdi", "cu_metal_rt.xdi", "20K_GOE_Fe_K_240.00001.xdi")
#: the settings of SOURCES.md's known values
NORMALIZE = {
    "mode": "transmission",
    "autobk": {"rbkg": 1, "kweight": 2},
    "noise": {"rmin": 15, "rmax": 25, "kweight": 2, "kmin": 2},
}


def _forward(outputs: list[Any], port: str | None = None) -> list[Any]:
    from asapo_pipelines.testing.harness import message

    return [message(o.value, metadata=o.metadata, stream=o.stream, port=port) for o in outputs]


@pytest.fixture(scope="module")
def results() -> dict[str, list[Any]]:
    """The outputs of xas.merge and xas.convergence-agent on the three scans, in order."""
    why = xas_unavailable()
    data = xas_data()
    if why or data is None or not (data / "cu_metal_rt.xdi").is_file():
        pytest.skip(why or "the Cu foil scan is not in this checkout")
    from asapo_pipelines.testing.harness import run_unit

    scans = []
    for name in ARRIVALS:
        scans += run_unit(
            "xas.scan-files", params={"directory": str(data), "pattern": name}
        ).outputs
    spectra = run_unit("xas.normalize", _forward(scans), params=NORMALIZE)
    merged = run_unit("xas.merge", _forward(spectra.outputs))
    plans = run_unit(
        "xas.convergence-agent",
        _forward(merged.outputs, port="merged"),
        params={"target_noise": 1.0e-9, "max_scans": 40},
    )
    assert merged.errors == plans.errors == []
    return {"merged": merged.outputs, "plans": plans.on("plans")}


def group_name(group: dict[str, Any]) -> str:
    """A group as the docs say a split trace is named: its values joined with ", "."""
    return ", ".join(str(v) for v in group.values())


def expected_noise(merged: list[Any]) -> dict[str, list[tuple[int, float]]]:
    """Each group's (scans merged, noise) points, in the order the merges were sent."""
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for output in merged:
        value = output.value
        curves[group_name(value["group"])].append((value["n_merged"], value["values"]["epsilon_k"]))
    return dict(curves)


@pytest.fixture
def store(tmp_path, results):
    """An embedded store holding the units' messages as their workers wrote them."""
    with EmbeddedTransport(tmp_path / "store") as transport:
        for source, outputs in results.items():
            with transport.producer(source) as producer:
                for output in outputs:
                    producer.send(output.stream, output.payload, output.metadata)
        yield transport


def view_of(transport: EmbeddedTransport) -> PipelineView:
    from asapo_pipelines.catalog import Catalog

    catalog = Catalog.load()
    return PipelineView(
        name="p65-series",
        transport={"embedded": {"path": str(transport.root)}},
        units=(
            UnitView(
                "merge",
                catalog.get("xas.merge"),
                inputs={"spectra": "spectra"},
                outputs={"merged": "merged"},
            ),
            UnitView(
                "advisor",
                catalog.get("xas.convergence-agent"),
                inputs={"merged": "merged"},
                outputs={"plans": "plans"},
            ),
        ),
    )


def plot_of(plots: list[dict[str, Any]], plot_id: str, unit: str) -> dict[str, Any]:
    (plot,) = [p for p in plots if p["id"] == plot_id]
    (series,) = [s for s in plot["series"] if s["unit"] == unit and s["kind"] != "hline"]
    return series


def by_series(items: list[dict[str, Any]], *fields: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        out[item.get("series", "")].append(tuple(item[f] for f in fields))
    return dict(out)


def test_the_merges_of_two_samples_are_two_noise_curves(store, results):
    expected = expected_noise(results["merged"])
    assert len(expected) == 2  # goethite and the Cu foil
    plots = Collector(view_of(store), store).poll()["plots"]

    noise = plot_of(plots, "noise", "merge")
    points = by_series(noise["items"], "x", "y")
    assert points.keys() == expected.keys()
    for name, curve in expected.items():
        assert [x for x, _ in points[name]] == [n for n, _ in curve]
        assert [y for _, y in points[name]] == pytest.approx([e for _, e in curve])

    # the newest merge of each group over the spectra, its legend saying whose it is
    lines = by_series(plot_of(plots, "spectra", "merge")["items"], "name")
    assert lines.keys() == expected.keys()
    for name, curve in expected.items():
        n = curve[-1][0]
        assert lines[name] == [(f"{n} scan{'' if n == 1 else 's'} merged ({name})",)]

    # the agent's decisions, one series per group named as the noise curves
    decisions = by_series(plot_of(plots, "advisor-0", "advisor")["items"], "y")
    assert decisions == {
        group_name(p.value["arguments"]["group"]): [
            (q.value["action"],)
            for q in results["plans"]
            if q.value["arguments"]["group"] == p.value["arguments"]["group"]
        ]
        for p in results["plans"]
    }


def test_series_names_a_missing_field_and_splits_only_lines_and_points():
    from asapo_pipelines.viewer.collector import series_name

    assert series_name({"sample": "Cu", "element": "Cu", "edge": "K"}, "group") == "Cu, Cu, K"
    assert series_name(None, "metadata.sample") == "(no sample)"
    with pytest.raises(ValidationError, match="series splits only scalar and xy plots"):
        PlotHint(port="frame", kind="image", series="metadata.sample")
    with pytest.raises(ValidationError, match="x_focus opens an xy plot around a point"):
        PlotHint(port="plans", kind="scalar", x_focus="values.e0")
    with pytest.raises(ValidationError, match="must run from lower to higher x"):
        PlotHint(port="spectra", kind="xy", x_focus="values.e0", x_window=(150, -50))


def test_the_page_draws_a_noise_curve_per_sample(page, serve, store, results):
    expected = expected_noise(results["merged"])
    page.goto(serve(view_of(store), store))
    plot = '[data-plot="noise"]'
    # the agent's predicted point shares the figure: not a curve of the merges
    (predicted,) = [
        h.title
        for h in Catalog.load().get("xas.convergence-agent").plots
        if h.kind == "scalar" and h.figure == "noise"
    ]

    def legend() -> list[str]:
        names = page.locator(f"{plot} .legendtext").all_text_contents()
        return [name for name in names if name != predicted]

    wait_for(
        page,
        lambda: page.locator(plot).count() == 1 and sorted(legend()) == sorted(expected),
        "a noise curve named by each group",
    )
    # each curve holds its own group's merges only
    drawn = page.evaluate(
        "([sel, other]) => document.querySelector(sel).data.filter(t => t.name !== other)"
        ".map(t => [t.name, t.x, t.y])",
        [plot, predicted],
    )
    assert sorted(name for name, _, _ in drawn) == sorted(expected)
    for name, xs, ys in drawn:
        assert xs == [n for n, _ in expected[name]]
        assert ys == pytest.approx([e for _, e in expected[name]])
    assert page.problems == []


#: the resume of the overnight finding: noise over 15-30 Å instead of 15-25 Å from here on
RESUMED = {**NORMALIZE, "noise": {**NORMALIZE["noise"], "rmax": 30}}


@pytest.fixture(scope="module")
def resumed(results) -> list[Any]:
    """xas.merge's outputs for the two goethite repeats normalised as before, then the same
    two normalised with RESUMED: a settings change between sessions, in one merge's life."""
    from asapo_pipelines.testing.harness import run_unit

    data = xas_data()
    assert data is not None  # `results` skipped otherwise
    scans = run_unit(
        "xas.scan-files", params={"directory": str(data), "pattern": "20K_GOE_Fe_K_240.*.xdi"}
    ).outputs
    spectra = []
    for params in (NORMALIZE, RESUMED):
        done = run_unit("xas.normalize", _forward(scans), params=params)
        assert done.errors == []
        spectra += done.outputs
    merged = run_unit("xas.merge", _forward(spectra))
    assert merged.errors == []
    return merged.outputs


def test_a_settings_change_starts_a_noise_curve_of_its_own(tmp_path, resumed):
    """The noise after `--resume --set normalize.noise.rmax=30` is over another R range, on
    another scale: drawn on the same curve it read as the noise jumping back at 1 scan merged.
    The new settings' merges are a curve of their own, named by what changed."""
    values = [output.value for output in resumed]
    (group,) = {group_name(v["group"]) for v in values}
    changed = f"{group}, noise.rmax 30, not 25"
    expected: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for v in values:  # the merges under RESUMED are those whose noise window ends at 30 Å
        name = changed if v["settings"]["noise"]["rmax"] == 30 else group
        expected[name].append((v["n_merged"], v["values"]["epsilon_k"]))
    assert [x for x, _ in expected[group]] == [1, 2]
    assert [x for x, _ in expected[changed]] == [1, 2]

    with EmbeddedTransport(tmp_path / "store") as transport:
        with transport.producer("merged") as producer:
            for output in resumed:
                producer.send(output.stream, output.payload, output.metadata)
        plots = Collector(view_of(transport), transport).poll()["plots"]
    points = by_series(plot_of(plots, "noise", "merge")["items"], "x", "y")
    assert points.keys() == expected.keys()
    for name, curve in expected.items():
        assert [x for x, _ in points[name]] == [n for n, _ in curve]
        assert [y for _, y in points[name]] == pytest.approx([e for _, e in curve])
