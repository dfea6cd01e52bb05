"""Per-scan cost of the XAS units' numerics against the same xraylarch calls made directly.

For each bundled P65 repeat, as `xas.normalize` and `xas.merge` do after every scan: through the
units' core functions (`normalize_scan`, then `Merger.add`), against a plain xraylarch script
doing the same work (mu = ln(I0/It); pre_edge, autobk and estimate_noise of the scan; pre_edge
of the reference foil; energy_align of its foil onto the first scan's; merge_groups of the scans
so far; pre_edge, autobk and estimate_noise of the merge). Same settings on both sides (the
example's, noise window kmax = max(k) - 0.5). Reading the files is outside both timings.
Goal: the units under 1.2x the direct calls.

    python benchmarks/xas.py [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANS = ("20K_GOE_Fe_K_240.00000.xdi", "20K_GOE_Fe_K_240.00001.xdi")
AUTOBK = {"rbkg": 1, "kweight": 2}
NOISE = {"rmin": 15, "rmax": 25, "kweight": 2, "kmin": 2}
GOAL = 1.2


def _data_dir() -> Path:
    for candidate in (ROOT / "examples" / "data", ROOT.parent / "shared" / "data" / "xas"):
        if (candidate / SCANS[0]).is_file():
            return candidate
    raise SystemExit("the bundled P65 scans (examples/data) are not in this checkout")


def units_path(scans: list) -> float:
    """The units' core functions: what one normalize and one merge worker do per scan."""
    from asapo_pipelines_xas.merge import Merger
    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.params import NormalizeParams

    params = NormalizeParams.model_validate({"autobk": AUTOBK, "noise": NOISE})
    merger = Merger()
    start = time.perf_counter()
    for scan in scans:
        spectrum = normalize_scan(scan, params)
        merger.add(spectrum)
    return time.perf_counter() - start


def larch_path(scans: list) -> float:
    """The same work as a plain xraylarch script."""
    import numpy as np
    from larch import Group
    from larch.io import merge_groups
    from larch.xafs import autobk, energy_align, estimate_noise, pre_edge

    def analyse(group: Group) -> None:
        pre_edge(group)
        autobk(group, **AUTOBK)
        estimate_noise(group.k, group.chi, group=group, **NOISE, kmax=float(group.k.max()) - 0.5)

    start = time.perf_counter()
    done: list[Group] = []
    foils: list[Group] = []
    for scan in scans:
        ch = scan.channels
        sample = Group(energy=scan.energy, mu=np.log(ch["i0"] / ch["it"]))
        analyse(sample)
        foil = Group(energy=scan.energy, mu=np.log(ch["it"] / ch["iref"]))
        pre_edge(foil)
        if foils:
            shift = energy_align(foil, foils[0], emin=15, emax=35)
            sample.energy = sample.energy + shift
        foils.append(foil)
        done.append(sample)
        merged = merge_groups(done)
        analyse(merged)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    from asapo_pipelines_xas.readers import read_scan

    data = _data_dir()
    scans = [read_scan(data / name) for name in SCANS]
    units_path(scans)  # warm up: imports, xraydb tables, first-call caches
    larch_path(scans)
    units, direct = [], []
    for _ in range(args.repeat):  # interleaved, so both see the same machine load
        units.append(units_path(scans))
        direct.append(larch_path(scans))
    u, d = statistics.median(units) / len(scans), statistics.median(direct) / len(scans)
    result = {
        "benchmark": "xas",
        "scans": len(scans),
        "repeat": args.repeat,
        "units_per_scan_s": round(u, 4),
        "larch_direct_per_scan_s": round(d, 4),
        "ratio_units_to_larch": round(u / d, 3),
        "goal_ratio": GOAL,
        "goal_met": u / d < GOAL,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{len(scans)} P65 scans, normalise + merge after each, median of {args.repeat}:")
        print(f"  xraylarch called directly:     {d * 1000:8.1f} ms per scan")
        print(f"  the units' core functions:     {u * 1000:8.1f} ms per scan  ({u / d:.2f}x)")
        print(f"  goal < {GOAL}x: {'met' if u / d < GOAL else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
