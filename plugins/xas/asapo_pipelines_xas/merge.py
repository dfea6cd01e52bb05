"""Merging repeats of one measurement, incrementally, with outlier rejection.

`Merger.add(spectrum)` files a normalised scan under its group (sample, element, edge, mode by
default), re-screens the group and returns the merged result at once, so that the pipeline emits
a new merge after every scan. Screening, in order:

- beam loss: I0 below `beam_dump_fraction` x median(I0) at more than `beam_dump_max_points`;
- alignment (`align: reference`): each scan is shifted by E0_ref(first scan) - E0_ref(scan), the
  reference foil measured at the same time as the sample;
- outliers: E0 (after alignment) further than `max_e0_shift` eV, or an edge step further than
  `max_edge_step_deviation` (relative), from the group's reference values: the median over the
  scans without beam loss once there are three of them, the first such scan before.

The accepted scans' mu(E) are interpolated onto the first accepted scan's grid (clipped to the
common range) and averaged; the standard error is std(ddof=1)/sqrt(N). The mean is analysed
again with xraylarch (pre_edge, autobk, estimate_noise) with the spectra's own settings unless the
merge overrides them. The same scan delivered twice replaces itself: nothing is counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asapo_pipelines_xas.errors import SpectrumError
from asapo_pipelines_xas.normalize import Spectrum, _json_array, _json_float, analyse, program
from asapo_pipelines_xas.params import AutobkParams, MergeParams, NoiseParams, PreEdgeParams


@dataclass
class Merged:
    """One merge result (the `xas/merged` message body)."""

    group: dict[str, Any]
    n_merged: int
    accepted: list[str]
    rejected: list[dict[str, Any]]
    latest: str
    arrays: dict[str, np.ndarray]
    values: dict[str, float | None]
    scans: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def latest_accepted(self) -> bool:
        return self.latest in self.accepted

    def to_json(self) -> dict[str, Any]:
        return {
            "group": dict(self.group),
            "n_merged": self.n_merged,
            "n_scans": self.n_merged + len(self.rejected),
            "accepted": list(self.accepted),
            "rejected": [dict(r) for r in self.rejected],
            "latest": self.latest,
            "latest_accepted": self.latest_accepted,
            "scans": [
                {k: (_json_float(v) if isinstance(v, float) else v) for k, v in s.items()}
                for s in self.scans
            ],
            "values": {k: _json_float(v) for k, v in self.values.items()},
            "arrays": {k: _json_array(v) for k, v in self.arrays.items()},
            "settings": self.settings,
        }


@dataclass
class _Entry:
    scan_id: str
    spectrum: Spectrum
    shift: float = 0.0
    reasons: list[str] = field(default_factory=list)


def scan_id(spectrum: Spectrum) -> str:
    """Identity of a scan: the worker's provenance key if set, else the file name."""
    meta = spectrum.metadata
    for key in ("scan_id", "provenance_key", "file"):
        if meta.get(key):
            return str(meta[key])
    raise SpectrumError("a spectrum without scan_id or file cannot be merged")


class Merger:
    """Incremental merge of repeats; one instance per running `xas.merge` unit."""

    def __init__(self, params: MergeParams | None = None) -> None:
        self.params = params or MergeParams()
        self._groups: dict[tuple[str, ...], list[_Entry]] = {}

    def group_key(self, spectrum: Spectrum) -> tuple[str, ...]:
        return tuple(str(spectrum.metadata.get(k, "")) for k in self.params.group_by)

    def add(self, spectrum: Spectrum | Mapping[str, Any]) -> Merged:
        if not isinstance(spectrum, Spectrum):
            spectrum = Spectrum.from_json(spectrum)
        key = self.group_key(spectrum)
        entries = self._groups.setdefault(key, [])
        ident = scan_id(spectrum)
        entry = _Entry(ident, spectrum)
        for i, old in enumerate(entries):
            if old.scan_id == ident:  # redelivery: replace, never count twice
                entries[i] = entry
                break
        else:
            entries.append(entry)
        self._screen(entries)
        return self._merge(key, entries, ident)

    # -- screening -----------------------------------------------------------------------------
    def _screen(self, entries: list[_Entry]) -> None:
        p = self.params
        for entry in entries:
            entry.reasons = []
            dumps = beam_loss_points(entry.spectrum, p.beam_dump_fraction)
            if dumps > p.beam_dump_max_points:
                entry.reasons.append(
                    f"beam loss: I0 below {p.beam_dump_fraction:g} x its median at {dumps} points"
                )
        usable = [e for e in entries if not e.reasons]
        anchor = next(
            (e.spectrum.values.get("e0_ref") for e in usable if e.spectrum.values.get("e0_ref")),
            None,
        )
        for entry in entries:
            ref = entry.spectrum.values.get("e0_ref")
            entry.shift = float(anchor - ref) if p.align == "reference" and anchor and ref else 0.0
        if not usable:
            return
        e0s = np.array([_e0(e) for e in usable])
        steps = np.array([float(e.spectrum.values["edge_step"] or 0.0) for e in usable])
        if len(usable) >= 3:
            e0_ref, step_ref = float(np.median(e0s)), float(np.median(steps))
        else:
            e0_ref, step_ref = float(e0s[0]), float(steps[0])
        for entry in usable:
            e0 = _e0(entry)
            step = float(entry.spectrum.values["edge_step"] or 0.0)
            if abs(e0 - e0_ref) > p.max_e0_shift:
                entry.reasons.append(
                    f"E0 {e0:.2f} eV is {e0 - e0_ref:+.2f} eV from the group's {e0_ref:.2f} eV "
                    f"(limit {p.max_e0_shift:g} eV)"
                )
            deviation = abs(step - step_ref) / abs(step_ref) if step_ref else math.inf
            if deviation > p.max_edge_step_deviation:
                entry.reasons.append(
                    f"edge step {step:.4g} differs by {deviation:.1%} from the group's "
                    f"{step_ref:.4g} (limit {p.max_edge_step_deviation:.0%})"
                )

    # -- merging -------------------------------------------------------------------------------
    def _settings(self, spectrum: Spectrum) -> tuple[PreEdgeParams, AutobkParams, NoiseParams]:
        own = spectrum.settings or {}
        pre = self.params.pre_edge or PreEdgeParams.model_validate(own.get("pre_edge", {}))
        bkg = self.params.autobk or AutobkParams.model_validate(own.get("autobk", {}))
        noise = self.params.noise or NoiseParams.model_validate(own.get("noise", {}))
        return pre, bkg, noise

    def _merge(self, key: tuple[str, ...], entries: list[_Entry], latest: str) -> Merged:
        group: dict[str, Any] = dict(zip(self.params.group_by, key, strict=True))
        accepted = [e for e in entries if not e.reasons]
        rejected = [{"scan": e.scan_id, "reasons": list(e.reasons)} for e in entries if e.reasons]
        scans = [
            {
                "scan": e.scan_id,
                "accepted": not e.reasons,
                "e0": _e0(e),
                "edge_step": e.spectrum.values.get("edge_step"),
                "epsilon_k": e.spectrum.values.get("epsilon_k"),
                "shift": e.shift,
            }
            for e in entries
        ]
        if not accepted:
            return Merged(group, 0, [], rejected, latest, {}, {}, scans)
        grids = [e.spectrum.arrays["energy"] + e.shift for e in accepted]
        lo = max(float(g[0]) for g in grids)
        hi = min(float(g[-1]) for g in grids)
        base = grids[0]
        grid = base[(base >= lo) & (base <= hi)]
        if len(grid) < 20:
            raise SpectrumError(
                f"the scans of {group} share only {len(grid)} energies; they cannot be merged"
            )
        stack = np.vstack(
            [
                np.interp(grid, g, e.spectrum.arrays["mu"])
                for g, e in zip(grids, accepted, strict=True)
            ]
        )
        n = len(accepted)
        mean = stack.mean(axis=0)
        stderr = stack.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.full_like(mean, np.nan)
        pre, bkg, noise = self._settings(accepted[0].spectrum)
        arrays, values = analyse(grid, mean, pre, bkg, noise)
        arrays["mu_stderr"] = stderr
        settings = {
            **program(),
            "align": self.params.align,
            "pre_edge": pre.model_dump(),
            "autobk": bkg.model_dump(),
            "noise": noise.model_dump(),
        }
        return Merged(
            group,
            n,
            [e.scan_id for e in accepted],
            rejected,
            latest,
            arrays,
            values,
            scans,
            settings,
        )


def _e0(entry: _Entry) -> float:
    return float(entry.spectrum.values["e0"] or math.nan) + entry.shift


def beam_loss_points(spectrum: Spectrum, fraction: float) -> int:
    """Points where I0 falls below `fraction` of its median (0 when the scan has no I0)."""
    i0 = spectrum.arrays.get("i0")
    if i0 is None or len(i0) == 0:
        return 0
    median = float(np.nanmedian(i0))
    if median <= 0:
        return len(i0)
    return int(np.sum(i0 < fraction * median))
