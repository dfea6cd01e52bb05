"""`identity.method` of an inferred element and edge says the rule that chose them.

An outside tester's spectra all said "xraydb edges within -5 to +25 eV of E0, K and L3 first":
also those labelled from the reference foil (whose rule is the nearest K or L3 edge within 10 eV
of the foil's E0) and one whose E0 lay 25.9 eV above Fe K, out of that window, labelled by
xraydb's `guess_edge`; and the window read reversed against the docs ("between 5 eV above E0 and
25 eV below it").

Real P65 goethite scans (SOURCES.md) under names that say no element; E0s by xraylarch and edges
by xraydb at test time."""

from __future__ import annotations

import numpy as np
from xas_testdata import (
    DATA,
    P65_ENERGY,
    P65_I0,
    P65_IT,
    P65_SCANS,
    REFERENCE_SETTINGS,
    p65_variant,
)

NORMALIZE = {**REFERENCE_SETTINGS, "mode": "transmission"}
#: eV: the tester's move of every energy, the foil's too: its E0 10.5 to 11 eV above Fe K
#: (beyond the foil's 10 eV), the sample's 25.9 above it (beyond the E0 rule's 25)
BEYOND_BOTH = 11.0


def identity(tmp_path, run_unit, unit_message, *, shift: float = 0.0, foil: bool = True):
    """The `identity` of scan 0 under the name `goe.00000.xdi`, normalised."""
    p65_variant(P65_SCANS[0], tmp_path / "goe.00000.xdi", seed=0, noise=0.0, shift=shift)
    params = {"directory": str(tmp_path), "pattern": "*.xdi"}
    if not foil:
        params["columns"] = {"iref": None}
    scans = run_unit("xas.scan-files", params=params)
    inputs = [unit_message(o.value, metadata=o.metadata) for o in scans.outputs]
    result = run_unit("xas.normalize", inputs, params=NORMALIZE)
    assert result.errors == []
    (spectrum,) = result.values("spectra")
    return spectrum["metadata"]["identity"]


def sample_e0(shift: float) -> float:
    from larch import Group
    from larch.xafs import pre_edge

    table = np.loadtxt(DATA / P65_SCANS[0], comments="#")
    group = Group(
        energy=table[:, P65_ENERGY] + shift, mu=np.log(table[:, P65_I0] / table[:, P65_IT])
    )
    pre_edge(group)
    return float(group.e0)


def test_a_label_from_the_foil_says_the_foil_rule(tmp_path, run_unit, unit_message):
    found = identity(tmp_path, run_unit, unit_message)
    assert (found["from"], found["method"]) == (
        "reference foil E0",
        "the nearest K or L3 edge tabulated (xraydb) within 10 eV of the reference foil E0",
    )


def test_a_label_from_the_sample_e0_says_the_window_as_the_docs_do(
    tmp_path, run_unit, unit_message
):
    found = identity(tmp_path, run_unit, unit_message, foil=False)
    assert (found["from"], found["method"]) == (
        "E0",
        "the nearest K or L3 edge tabulated (xraydb) between 5 eV above the E0 and 25 eV below it",
    )


def test_a_label_from_guess_edge_says_so(tmp_path, run_unit, unit_message):
    from xraydb import guess_edge, xray_edge

    e0 = sample_e0(BEYOND_BOTH)
    assert e0 - xray_edge("Fe", "K").energy > 25  # out of the E0 rule's window
    assert guess_edge(e0) == ("Fe", "K")
    found = identity(tmp_path, run_unit, unit_message, shift=BEYOND_BOTH)
    assert (found["from"], found["method"]) == (
        "E0",
        "xraydb's guess_edge of the E0: no K or L3 edge is tabulated between 5 eV above it and "
        "25 eV below it",
    )
    assert found["tabulated_edge_energy"] == xray_edge("Fe", "K").energy
