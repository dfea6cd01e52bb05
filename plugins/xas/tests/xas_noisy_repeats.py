"""Repeats of the bundled goethite measurement with a known floor, as the outside tester built
them (/work/qa-s49x-work/gen2.py): "truth" is the real merge of the two P65 scans (scan 1 moved
by the merge's alignment shift and cubic-interpolated onto scan 0's grid, as xas.merge does), and
each repeat is truth plus its own white noise in mu, seeded, written back as It in the P65 file
format. What the two real scans share stays in every repeat: the merged noise flattens at a floor.

The merges are those the plugin (xas.normalize, xas.merge with xraylarch) sends after each file,
made at test time; nothing here is an expected value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from xas_agent_procs import merges_of
from xas_testdata import DATA, P65_I0, P65_IT, P65_SCANS

#: the shift (eV) the merge of the two real scans gives scan 1 (its foil alignment), which the
#: tester's generator applies before averaging
ALIGNMENT_SHIFT = 0.026


def _read(name: str) -> tuple[list[str], np.ndarray]:
    lines = (DATA / name).read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    rows = np.array(
        [[float(v) for v in line.split()] for line in lines if line.strip() and line[0] != "#"]
    )
    # sorted, duplicate energies dropped (as xas.normalize reads them)
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    _, first = np.unique(rows[:, 0], return_index=True)
    return header, rows[first]


def noisy_repeats(directory: Path, count: int, sigma: float, seed: int = 42) -> list[Path]:
    """`count` P65 files of the goethite truth plus white noise of `sigma` in mu (seeded)."""
    from larch.math import interp

    header, scan0 = _read(P65_SCANS[0])
    _, scan1 = _read(P65_SCANS[1])
    energy = scan0[:, 0]
    mu0 = np.log(scan0[:, P65_I0] / scan0[:, P65_IT])
    mu1 = np.log(scan1[:, P65_I0] / scan1[:, P65_IT])
    truth = mu0.copy()
    truth[1:] = 0.5 * (
        mu0[1:] + interp(scan1[:, 0] + ALIGNMENT_SHIFT, mu1, energy[1:], kind="cubic")
    )
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        mu = truth + rng.normal(0.0, sigma, len(truth))
        rows = scan0.copy()
        rows[:, P65_IT] = rows[:, P65_I0] * np.exp(-mu)
        # each repeat measured 10 minutes after the one before (the header's start time)
        stamp = f"{2 + index // 6:02d}:{(index * 10) % 60:02d}:00"
        lines = [line.replace("01:47:54", stamp) for line in header]
        lines += [" ".join(repr(float(v)) for v in row) for row in rows]
        path = directory / f"SYN_Fe_K_240.{index:05d}.xdi"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def noisy_merges(directory: Path, count: int = 10, sigma: float = 1.5e-4) -> list[dict[str, Any]]:
    """The merge the plugin sends after each of the repeats (the tester's `syn2` set)."""
    return merges_of(noisy_repeats(directory, count, sigma))


def fit_points(merges: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(1/N, eps²) of the points the agent's documented fit takes after the last of `merges`:
    each accepted scan's own noise at N = 1 and each merge of two or more scans."""
    last = merges[-1]
    singles = [s["epsilon_k"] for s in last["scans"] if s["accepted"]]
    n = [1.0] * len(singles) + [float(m["n_merged"]) for m in merges if m["n_merged"] >= 2]
    eps = [*singles, *(m["values"]["epsilon_k"] for m in merges if m["n_merged"] >= 2)]
    return 1.0 / np.array(n), np.array(eps) ** 2
