"""What an XAS scientist reads off the viewer's plots, in real chromium: before any data the page
says what it waits for (not that there is no plot); the toolbar covers no title; the spectra
open on the edge with the last scans under the merge, named in words; the agent's decisions run
against the scans merged; the noise plot carries the agent's target, fitted floor and predicted
number of scans. The numbers the plots must show are read back from the run with
`pipeline tail --json`, the user's own command."""

from __future__ import annotations

import json
import os

import pytest
from test_browser import wait_for
from test_xas_browser import PIPELINE, xas_unavailable
from viewer_support import start_view, stop_view

from helpers import run_pipeline

PLOTS = ("spectra", "noise", "advisor-0")


def _tail(file, stream):
    """Every message of a stream, as `pipeline tail FILE STREAM --all --json` prints them."""
    done = run_pipeline("tail", str(file), stream, "--all", "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _short(value):
    """A small number as a scientist writes it on a plot: 1.2e-4, 3.56e-5."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _plot_state(page, plot, expression):
    """A value of Plotly's own state of a plot (`div.data`, `div._fullLayout`)."""
    return page.eval_on_selector(f'[data-plot="{plot}"]', f"div => {expression}")


@pytest.fixture(scope="module")
def p65_run(finished_p65):
    """`pipeline view` on the finished P65 example run."""
    file = finished_p65
    proc, url = start_view(file, dict(os.environ))
    yield file, url
    stop_view(proc)


def test_before_any_data_the_page_says_what_it_waits_for(page, tmp_path):
    """Before the first update (as `chromium --screenshot` catches the page) and while no unit
    has written yet, the plots section names the units and streams it waits for."""
    why = xas_unavailable()
    if why:
        pytest.skip(why)
    (tmp_path / "data").mkdir()
    file = tmp_path / "p65-xas.pipeline.yaml"
    file.write_text(PIPELINE % {"data": tmp_path / "data"}, encoding="utf-8")
    proc, url = start_view(file, dict(os.environ))
    try:
        page.route("**/events", lambda route: route.abort())  # no update arrives
        page.goto(url)
        page.wait_for_selector("#graph svg [data-node]")
        expected = "waiting for the first result of normalize (stream spectra)"
        wait_for(page, lambda: expected in page.inner_text("#plots-section"), expected)
        text = page.inner_text("#plots-section")
        assert "No unit of this pipeline declares a plot" not in text
        assert "waiting for the first result of merge (stream merged)" in text
        assert "waiting for the first result of advisor (stream plans)" in text

        page.unroute("**/events")
        page.reload()  # updates arrive now, but the pipeline has not run: still no data
        wait_for(page, lambda: page.text_content("#units tbody") != "", "the first update")
        page.wait_for_timeout(1000)
        text = page.inner_text("#plots-section")
        assert expected in text
        assert "No unit of this pipeline declares a plot" not in text
        # no empty axes drawn while waiting
        assert page.locator("#plots .main-svg").count() == 0
    finally:
        stop_view(proc)


def test_the_toolbar_covers_no_plot_title(page, p65_run):
    _file, url = p65_run
    page.goto(url)
    for plot in PLOTS:
        wait_for(
            page, lambda p=plot: page.locator(f'[data-plot="{p}"] .modebar').count() == 1, plot
        )
    titles = page.evaluate(
        "() => Array.from(document.querySelectorAll('[data-plot]'), div =>"
        " [div.dataset.plot, div.closest('.plot-card') ?"
        " div.closest('.plot-card').querySelector('.plot-title').textContent :"
        " div.querySelector('.gtitle').textContent])"
    )
    for plot, title in titles:
        page.hover(f'[data-plot="{plot}"] .nsewdrag')  # the toolbar shows while hovered
        overlap = page.evaluate(
            """([plot, title]) => {
              const bar = document.querySelector(`[data-plot="${plot}"] .modebar`)
                .getBoundingClientRect();
              const words = Array.from(document.querySelectorAll('h3, text'))
                .filter(n => n.textContent === title)[0].getBoundingClientRect();
              return !(bar.right <= words.left || words.right <= bar.left ||
                       bar.bottom <= words.top || words.bottom <= bar.top);
            }""",
            [plot, title],
        )
        assert not overlap, f"the toolbar covers the title {title!r}"
        assert page.get_by_text(title, exact=True).is_visible()


def test_spectra_open_on_the_edge_with_the_scans_under_the_merge(page, p65_run):
    file, url = p65_run
    merges = [m["value"] for m in _tail(file, "merged")]
    e0 = merges[-1]["values"]["e0"]
    n_merged = merges[-1]["n_merged"]
    # the hint names each line by `metadata.file`, read from the payload first
    scans = [s["value"]["metadata"]["file"] for s in _tail(file, "spectra")]
    page.goto(url)
    spectra = "spectra"
    wait_for(
        page,
        lambda: page.locator(f'[data-plot="{spectra}"] .legendtext').count() >= 2,
        "the spectra legend",
    )
    low, high = _plot_state(page, spectra, "div._fullLayout.xaxis.range")
    # the edge readable: about 200 eV around the newest merge's E0, not the whole scan
    assert low < e0 < high
    assert high - low == pytest.approx(200, abs=1)
    assert low == pytest.approx(e0 - 50, abs=1)
    legend = page.locator(f'[data-plot="{spectra}"] .legendtext').all_text_contents()
    assert any(name.startswith(f"{n_merged} scans merged (") for name in legend), legend
    assert not any(name.startswith("n_merged") for name in legend)
    assert f"{len(scans) - 1} earlier line" in legend
    traces = _plot_state(
        page,
        spectra,
        "Array.from(div.data, t => ({name: t.name, width: t.line.width, color: t.line.color,"
        " dash: t.line.dash || null}))",
    )
    lines = [t for t in traces if t["dash"] is None]
    assert len(lines) == len(scans)  # every scan overlaid (fewer than the hint keeps)
    newest = lines[-1]
    assert newest["name"] == scans[-1]
    assert scans[-1] in legend
    # the newest scan stands out from the earlier ones
    assert all(t["width"] < newest["width"] and t["color"] != newest["color"] for t in lines[:-1])
    assert page.problems == []


def test_decisions_run_against_scans_merged_with_the_fitted_floor_and_prediction(page, p65_run):
    file, url = p65_run
    metrics = [p["value"]["arguments"]["metrics"] for p in _tail(file, "plans")]
    last = metrics[-1]
    # the run's last decision carries a fit and a prediction
    floor, floor_err = last["noise_model"]["floor"], last["noise_model"]["floor_err"]
    assert "predicted_scans_total" in last
    page.goto(url)
    decisions, noise = "advisor-0", "noise"
    wait_for(
        page,
        lambda: page.locator(f'[data-plot="{noise}"] .shapelayer path').count() >= 1,
        "the target",
    )
    assert page.locator(f'[data-plot="{decisions}"] .xtitle').text_content() == "scans merged"
    assert _plot_state(page, decisions, "div._fullLayout.xaxis.type") == "linear"
    xs = _plot_state(page, decisions, "div.data.flatMap(t => Array.from(t.x))")
    assert xs == [m["n_merged"] for m in metrics]

    levels = _plot_state(page, noise, "div._fullLayout.shapes.map(s => s.y0)")
    assert levels == pytest.approx([last["target_noise"], floor])
    notes = page.locator(f'[data-plot="{noise}"] .annotation-text').all_text_contents()
    assert notes == [
        f"target {_short(last['target_noise'])}",
        f"fitted floor {_short(floor)} ± {_short(floor_err)}",
    ]
    predicted = _plot_state(
        page,
        noise,
        "div.data.filter(t => t.name === 'predicted: target reached')"
        ".map(t => [Array.from(t.x), Array.from(t.y)])",
    )
    assert predicted == [[[last["predicted_scans_total"]], [last["target_noise"]]]]
    assert page.problems == []
