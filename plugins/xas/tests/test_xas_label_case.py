"""An element and edge written in lower case (`fe`, `k`) are the element and edge of the tables
(`Fe`, `K`): before, such a scan passed the edge-label check but formed a merge group of its own,
apart from the same sample's `Fe/K` scans, so the merge averaged fewer scans and the agent judged
two groups.

The goethite repeats of the bundled data (SOURCES.md): the first as the beamline wrote it (Fe K
from its file name), the second labelled `fe` `k` by its header or by the xas.scan-files params.
Run through the SDK's harness as `pipeline worker` runs the units; the expected label comes from
xraylarch's tables and the reference E0 from its pre_edge, at test time."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.normalize import compute_mu
from asapo_pipelines_xas.readers import read_scan

FIRST, SECOND = P65_SCANS


def table_label(element: str, edge: str) -> tuple[str, str]:
    """The element and edge as xraylarch's tables write them."""
    from larch.xray import atomic_number, atomic_symbol, xray_edges

    symbol = atomic_symbol(atomic_number(element))
    return symbol, next(name for name in xray_edges(symbol) if name.lower() == edge.lower())


def larch_merged_e0(paths) -> float:
    """E0 by xraylarch's pre_edge of the mean mu of the scans, on the first scan's grid."""
    from larch import Group
    from larch.xafs import pre_edge

    scans = [read_scan(path) for path in paths]
    grid = np.asarray(scans[0].energy)
    mus = [np.interp(grid, s.energy, compute_mu(s, "transmission")) for s in scans]
    group = Group(energy=grid, mu=np.mean(mus, axis=0))
    pre_edge(group)
    return float(group.e0)


def as_xdi(path, element: str, edge: str) -> str:
    """A P65 scan as XDI 1.0 whose header names the element and edge: its P65 header follows
    as comments, the column line last."""
    text = path.read_text(encoding="latin-1")
    assert "Element.symbol" not in text
    return f"# XDI/1.0\n# Element.symbol: {element}\n# Element.edge: {edge}\n# ///\n{text}"


@pytest.fixture
def beamline(tmp_path):
    """The first repeat, labelled Fe K by its file name."""
    folder = tmp_path / "beamline"
    folder.mkdir()
    shutil.copy(DATA / FIRST, folder / FIRST)
    return folder


@pytest.fixture
def lower_case_header(tmp_path):
    """The second repeat with a header that says `fe` and `k`."""
    folder = tmp_path / "header"
    folder.mkdir()
    (folder / SECOND).write_text(as_xdi(DATA / SECOND, "fe", "k"), encoding="latin-1")
    return folder, {}


@pytest.fixture
def lower_case_params(tmp_path):
    """The second repeat as written, labelled `fe` `k` by the xas.scan-files params."""
    folder = tmp_path / "params"
    folder.mkdir()
    shutil.copy(DATA / SECOND, folder / SECOND)
    return folder, {"element": "fe", "edge": "k"}


def spectra(run_unit, unit_message, folder, **files):
    """xas.scan-files on the folder, its scans through xas.normalize: the spectra sent."""
    scans = run_unit(
        "xas.scan-files", params={"directory": str(folder), "pattern": "*.xdi", **files}
    )
    assert scans.errors == []
    inputs = [unit_message(o.value, metadata=o.metadata) for o in scans.outputs]
    normalized = run_unit("xas.normalize", inputs, params=REFERENCE_SETTINGS)
    assert normalized.errors == []
    return normalized.values("spectra")


@pytest.mark.parametrize("labelled", ["lower_case_header", "lower_case_params"])
def test_a_lower_case_label_merges_with_the_same_samples_scans(
    labelled, beamline, run_unit, unit_message, request
):
    folder, files = request.getfixturevalue(labelled)
    sent = spectra(run_unit, unit_message, beamline)
    sent += spectra(run_unit, unit_message, folder, **files)
    element, edge = table_label("fe", "k")

    merge = run_unit("xas.merge", [unit_message(s) for s in sent])
    assert merge.errors == []
    assert list(merge.summary["merges"]) == [f"20K_GOE_Fe_K_240/{element}/{edge}/transmission"]
    last = merge.values("merged")[-1]
    assert (last["n_scans"], last["n_merged"]) == (2, 2)
    reference = larch_merged_e0([beamline / FIRST, DATA / SECOND])
    assert last["values"]["e0"] == pytest.approx(reference, abs=0.5)

    merges = [unit_message(m, port="merged") for m in merge.values("merged")]
    agent = run_unit("xas.convergence-agent", merges, params={"target_noise": 1e-4})
    assert list(agent.summary["decisions"]) == [f"20K_GOE_Fe_K_240/{element}/{edge}/transmission"]
    # the spectra, as the NeXus writer stores them, name one element and edge
    labels = {(s["metadata"]["element"], s["metadata"]["edge"]) for s in sent}
    assert labels == {(element, edge)}


def test_an_unknown_element_is_still_refused_in_one_sentence(tmp_path, run_unit, unit_message):
    (tmp_path / SECOND).write_text(as_xdi(DATA / SECOND, "xx", "k"), encoding="latin-1")
    scans = run_unit("xas.scan-files", params={"directory": str(tmp_path), "pattern": "*.xdi"})
    inputs = [unit_message(o.value, metadata=o.metadata) for o in scans.outputs]
    result = run_unit("xas.normalize", inputs, params=REFERENCE_SETTINGS)
    (record,) = result.errors
    assert record["exception"].endswith("EdgeLabelError")
    assert "labelled xx k (from the header's Element.symbol and Element.edge)" in record["error"]
    assert "Traceback" not in record["error"]
