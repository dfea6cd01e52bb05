"""`element` and `edge` of xas.scan-files are checked when the file is validated: `element: Xx`,
`edge: Q` passed `pipeline validate` and then failed every scan at run time, and `edge: K-edge`
(as beamline logbooks write it) was refused only then."""

from __future__ import annotations

from pathlib import Path

import pytest
from xas_procs import pipeline_command, write_pipeline

from asapo_pipelines_xas.params import EDGES, ELEMENTS


def test_the_symbols_and_edges_are_xraydbs() -> None:
    xraydb = pytest.importorskip("xraydb")
    symbols = [xraydb.atomic_symbol(z) for z in range(1, 119)]
    assert symbols == ELEMENTS
    edges = set().union(*(xraydb.xray_edges(s) for s in symbols[:98]))
    assert sorted(edges) == sorted(EDGES)


def _validate(tmp_path: Path, **label: str) -> tuple[int, str]:
    units = {
        "scans": {
            "unit": "xas.scan-files",
            "params": {"directory": ".", "pattern": "*.xdi", **label},
            "outputs": {"scans": "raw-scans"},
        }
    }
    done = pipeline_command(write_pipeline(tmp_path, "labels", units), "validate")
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("label", "said"),
    [
        ({"element": "Xx"}, "'Xx' is not an element symbol (Fe, Cu, ...); did you mean Xe?"),
        ({"edge": "Q"}, "'Q' is not an absorption edge (K, L1, L2, L3, M1, ...)"),
        ({"edge": "L4"}, "'L4' is not an absorption edge (K, L1, L2, L3, M1, ...); did you mean"),
    ],
)
def test_an_unknown_element_or_edge_is_a_located_problem(tmp_path, label, said) -> None:
    code, out = _validate(tmp_path, **label)
    assert code == 1, out
    (line,) = [x for x in out.splitlines() if "error P202" in x]
    assert f"units.scans.params.{next(iter(label))}" in line
    assert said in line
    assert "Traceback" not in out


@pytest.mark.parametrize("label", [{"element": "fe", "edge": "K-edge"}, {"edge": "l3"}])
def test_element_and_edge_are_taken_in_any_case_and_as_logbooks_write_them(tmp_path, label):
    code, out = _validate(tmp_path, **label)
    assert code == 0, out
