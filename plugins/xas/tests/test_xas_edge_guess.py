"""Element and edge from E0, for a file that names neither: xraydb's `guess_edge` took the
nearest tabulated edge with a preference for K edges, and an oxidised iron's E0 (goethite,
Fe(III), 14 eV above the Fe K edge) that falls within 1 eV of the Nd L1 edge was labelled Nd L1:
two repeats of one goethite sample 0.9 eV apart went into two groups, and the agent's plan
asked the beamline for the Nd L1 edge. Now an edge is taken among those E0 may belong to
(chemical shifts and calibration: 5 eV below to 25 eV above), K and L3 before L2, L1 and M5,
and the other edges that fit are recorded with the guess.

Real P65 goethite scans (SOURCES.md), renamed so that nothing names the element, one moved by
-0.9 eV; E0 and the edges' energies come from xraylarch and xraydb at test time."""

from __future__ import annotations

import numpy as np
import pytest
from xas_testdata import DATA, P65_SCANS

from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import compute_mu, normalize_scan
from asapo_pipelines_xas.params import MergeParams
from asapo_pipelines_xas.readers import read_scan

SHIFT = -0.9  # eV: a calibration drift between two repeats


def _nameless_copy(tmp_path, source: str, name: str, shift: float = 0.0):
    """The P65 file in its own format (header and `#` column line), energies moved by
    `shift`, saved under a name that says no element: nor does a P65 header."""
    header = []
    for line in (DATA / source).read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    scan = read_scan(DATA / source)
    rows = np.column_stack([scan.energy + shift, scan.channels["i0"], scan.channels["it"]])
    path = tmp_path / name
    lines = [*header[:-1], "# enc_energy VFC01 VFC02"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _larch_e0(path) -> float:
    from larch import Group
    from larch.xafs import pre_edge

    scan = read_scan(path)
    group = Group()
    pre_edge(np.asarray(scan.energy), compute_mu(scan, "transmission"), group=group)
    return float(group.e0)


def test_an_oxidised_iron_e0_on_the_nd_l1_edge_is_fe_k_and_repeats_stay_one_group(tmp_path):
    from xraydb import guess_edge, xray_edge

    paths = [
        _nameless_copy(tmp_path, P65_SCANS[0], "goethite_001.xdi", SHIFT),
        _nameless_copy(tmp_path, P65_SCANS[1], "goethite_002.xdi"),
    ]
    e0 = _larch_e0(paths[0])
    # the trap: the moved repeat's E0 lies on Nd L1, 14 eV above Fe K, and xraydb's own
    # guess (xraylarch's) takes Nd L1 there
    assert abs(e0 - xray_edge("Nd", "L1").energy) < 1.0
    assert 10 < e0 - xray_edge("Fe", "K").energy < 20
    assert guess_edge(e0) == ("Nd", "L1")

    spectra = [normalize_scan(read_scan(path)) for path in paths]
    for spectrum in spectra:
        assert not read_scan(DATA / P65_SCANS[0]).metadata.get("identity")
        assert (spectrum.metadata["element"], spectrum.metadata["edge"]) == ("Fe", "K")
        assert spectrum.metadata["identity"]["inferred"] == ["element", "edge"]
    assert spectra[0].values["e0"] == pytest.approx(e0, abs=0.1)
    assert "Nd L1" in spectra[0].metadata["identity"]["also_fits"]

    # one group of two repeats (within 1 eV when aligned; these copies carry no foil)
    merger = Merger(MergeParams(max_e0_shift=2.0))
    merger.add(spectra[0])
    merged = merger.add(spectra[1])
    assert (merged.group["element"], merged.group["edge"]) == ("Fe", "K")
    assert merged.n_merged == 2, merged.rejected


@pytest.mark.parametrize(
    ("element", "edge"), [("Cu", "K"), ("Fe", "K"), ("Pt", "L3"), ("La", "L3"), ("S", "K")]
)
def test_an_e0_at_a_tabulated_edge_is_that_edge(element, edge):
    """At the tabulated energy itself, and a chemical shift above it, the edge is found (S(VI)
    lies 10 eV above S K and 2 eV below Pb M5)."""
    from xraydb import xray_edge

    from asapo_pipelines_xas.normalize import identify_edge

    tabulated = float(xray_edge(element, edge).energy)
    assert identify_edge(tabulated)[:2] == (element, edge)
    if edge == "K":
        assert identify_edge(tabulated + 10.0)[:2] == (element, edge)
        # a calibration error beyond a chemical shift: still the K edge, never a rare edge
        # nearer (Fe K + 27 eV lies 13 eV above Nd L1)
        assert identify_edge(tabulated + 27.0)[:2] == (element, edge)
