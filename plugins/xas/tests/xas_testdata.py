"""Where the bundled beamline data is, and the settings of its known values (SOURCES.md)."""

from __future__ import annotations

from pathlib import Path


def find_data_dir() -> Path:
    """The project's own copy (examples/data), else the shared data set beside the clone."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples" / "data"
        if (candidate / "SOURCES.md").is_file():
            return candidate
    for parent in here.parents:
        candidate = parent / "shared" / "data" / "xas"
        if (candidate / "SOURCES.md").is_file():
            return candidate
    raise RuntimeError("the XAS test data (examples/data/SOURCES.md) is not in this checkout")


DATA = find_data_dir()
P65_SCANS = ("20K_GOE_Fe_K_240.00000.xdi", "20K_GOE_Fe_K_240.00001.xdi")

#: The settings SOURCES.md gives for its known values (pre_edge defaults).
REFERENCE_SETTINGS = {
    "autobk": {"rbkg": 1, "kweight": 2},
    "noise": {"rmin": 15, "rmax": 25, "kweight": 2, "kmin": 2},
}


def larch_analyse(group):
    """xraylarch called directly, as the units do by default: pre_edge and autobk with their
    defaults, estimate_noise with the units' window kmax = max(k) - 0.5. Returns the group."""
    from larch.xafs import autobk, estimate_noise, pre_edge

    pre_edge(group)
    autobk(group)
    estimate_noise(group.k, group.chi, group=group, kmax=float(group.k.max()) - 0.5)
    return group
