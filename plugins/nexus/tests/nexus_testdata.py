"""The bundled beamline data as xas/scan and result messages, built with numpy only (the NeXus
plugin's tests run without the XAS plugin installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


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

#: a pipeline file of scan files in `data/` written raw by the NeXus writer into
#: `results/scans.nxs` (format it with the pipeline's name)
SCANS_TO_WRITER = """\
pipeline: {name}
units:
  scans:
    unit: xas.scan-files
    params: {{directory: data/, pattern: "*.xdi"}}
    outputs: {{scans: raw-scans}}
  writer:
    unit: nexus.writer
    params: {{file: results/scans.nxs}}
    inputs: {{scans: raw-scans}}
"""


def p65_scan_message(name: str) -> dict[str, Any]:
    """An `xas/scan` body for a P65 file: columns as SOURCES.md names them, sorted by energy."""
    table = np.loadtxt(DATA / name, comments="#")
    table = table[np.argsort(table[:, 0], kind="stable")]
    roles = {"i0": 10, "it": 11, "iref": 12, "if": 13}
    return {
        "metadata": {
            "file": name,
            "sample": "20K_GOE_Fe_K_240",
            "element": "Fe",
            "edge": "K",
            "start_time": "2020-11-22T01:47:54",
            "count_time": float(np.median(table[:, 9])),  # time_pp
            "beamline": "P65",
            "facility": "PETRA III",
        },
        "energy": table[:, 0].tolist(),
        "channels": {role: table[:, col].tolist() for role, col in roles.items()},
    }


def xdi_mu_message(name: str) -> dict[str, Any]:
    """An `xas/scan` body for an XDI file whose columns are energy, mu, i0 (fe_metal_rt)."""
    table = np.loadtxt(DATA / name)
    return {
        "metadata": {"file": name, "sample": "Fe metal foil", "element": "Fe", "edge": "K"},
        "energy": table[:, 0].tolist(),
        "channels": {"mu": table[:, 1].tolist(), "i0": table[:, 2].tolist()},
    }


def result_message(scan: dict[str, Any], *, merged: bool = False) -> dict[str, Any]:
    """A processed-result body shaped like xas/spectrum (or xas/merged) from a scan."""
    energy = np.asarray(scan["energy"])
    mu = np.log(np.asarray(scan["channels"]["i0"]) / np.asarray(scan["channels"]["it"]))
    k = np.arange(0, 15, 0.05)
    body: dict[str, Any] = {
        "metadata": dict(scan["metadata"]),
        "values": {"e0": 7126.9, "edge_step": 0.797, "epsilon_k": 1.4e-4, "kmax_suggest": None},
        "arrays": {
            "energy": energy.tolist(),
            "mu": mu.tolist(),
            "norm": ((mu - mu[:50].mean()) / 0.797).tolist(),
            "k": k.tolist(),
            "chi": np.sin(2 * k).tolist(),
        },
        "settings": {"program": "xraylarch", "version": "2026.3.1", "autobk": {"kweight": 2}},
    }
    if merged:
        body["group"] = {"sample": "20K_GOE_Fe_K_240", "element": "Fe", "edge": "K"}
        body["n_merged"] = 2
        body["accepted"] = list(P65_SCANS)
        body["rejected"] = []
        body["arrays"]["mu_stderr"] = (np.abs(mu) * 1e-3).tolist()
    return body
