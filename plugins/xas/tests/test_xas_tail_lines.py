"""`pipeline tail FILE spectra` printed each spectrum as its JSON cut at the terminal's width,
and a spectrum's JSON begins with its scan file's header: a scientist following the stream saw
`{"metadata": {"header": {"File format xdi, for information see": ...` and never E0. A line
now shows a message's short fields first (a spectrum's values: E0, edge step) and numbers to 6
digits; `--json` keeps every field and digit. A merge's line showed the internal keys of its
scans and its group before its noise, which was cut off at any width (an outside tester): its
figures (counts, the values table) now come before lists and names. Real P65 files through
real units."""

from __future__ import annotations

import json
import shutil

from xas_procs import pipeline_command, scan_chain, write_pipeline
from xas_testdata import DATA, P65_SCANS

WIDTH = 120  # a terminal as wide as many are


def test_a_spectrum_line_shows_its_e0_and_edge_step_within_the_terminal_width(tmp_path):
    (tmp_path / "data").mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, tmp_path / "data" / name)
    units = scan_chain("data", {"mode": "transmission"}, merge={})
    pipeline = write_pipeline(tmp_path, "tailed", units)
    run = pipeline_command(pipeline, "run")
    assert run.returncode == 0, run.stdout + run.stderr

    whole = pipeline_command(pipeline, "tail", "spectra", "--json")
    assert whole.returncode == 0, whole.stderr
    values = [json.loads(line)["value"]["values"] for line in whole.stdout.splitlines()]
    assert len(values) == len(P65_SCANS)
    # --json keeps every digit: the human line's rounding is not the data's
    assert any(len(repr(v["e0"])) > len(f"{v['e0']:.6g}") for v in values), values

    shown = pipeline_command(pipeline, "tail", "spectra", "--width", str(WIDTH))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == len(P65_SCANS), shown.stdout
    for line, value in zip(lines, values, strict=True):
        assert len(line) <= WIDTH
        assert '{"values": {' in line, line
        e0 = float(f"{value['e0']:.6g}")
        assert f'"e0": {e0}, "edge_step": ' in line, line
        assert "File format xdi" not in line, line

    merged = pipeline_command(pipeline, "tail", "merged", "--json")
    merges = [json.loads(line)["value"] for line in merged.stdout.splitlines()]
    assert [m["n_merged"] for m in merges] == [1, 2]
    shown = pipeline_command(pipeline, "tail", "merged", "--width", str(WIDTH))
    assert shown.returncode == 0, shown.stderr
    for line, merge in zip(shown.stdout.splitlines(), merges, strict=True):
        assert len(line) <= WIDTH
        noise = float(f"{merge['values']['epsilon_k']:.6g}")
        e0 = float(f"{merge['values']['e0']:.6g}")
        assert f'"values": {{"e0": {e0}, ' in line, line
        assert f'"epsilon_k": {noise}' in line, line
        assert "|scans|key:" not in line, line  # the scans' keys come after the figures


def test_a_spectrum_without_a_reference_shows_its_values_first(tmp_path):
    """A foil measured without a reference channel has `e0_ref: null` among its values; the
    values then went behind the file's header (about 1,500 characters in: an outside tester
    following `pipeline new`'s XAS pipeline)."""
    (tmp_path / "data").mkdir()
    shutil.copy(DATA / "cu_metal_rt.xdi", tmp_path / "data" / "cu_metal_rt.xdi")
    pipeline = write_pipeline(tmp_path, "foil", scan_chain("data", {"mode": "transmission"}))
    run = pipeline_command(pipeline, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    whole = pipeline_command(pipeline, "tail", "spectra", "--json")
    (value,) = [json.loads(line)["value"]["values"] for line in whole.stdout.splitlines()]
    assert value["e0_ref"] is None  # the case: no reference channel in this file
    shown = pipeline_command(pipeline, "tail", "spectra", "--width", str(WIDTH))
    (line,) = shown.stdout.splitlines()
    e0 = float(f"{value['e0']:.6g}")
    assert '{"values": {' in line, line
    assert f'"e0": {e0}, "edge_step": ' in line, line
