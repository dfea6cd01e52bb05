"""Merging repeats of one measurement, incrementally, with outlier rejection.

`Merger.add(spectrum)` files a normalised scan under its group (sample, element, edge, mode by
default), re-screens the group and returns the merged result at once, so that the pipeline emits
a new merge after every scan. Only scans normalised with the same settings by the same code are
merged: those normalised with the newest settings (a resumed or reprocessed run with changed
parameters, or with the plugin upgraded between sessions: each spectrum records the
`xas.normalize` version that made it, `settings.normalizer`). The newest are those of the
spectrum made last (`metadata.made_at`: its message's time in the transport, which the unit
adds), so a session going back to earlier settings makes them the newest again, and an old
spectrum redelivered or arriving late does not; the others are listed as
rejected, marked `superseded`, with the settings or the version that differ (`normalised_by`),
because their E0, edge step and noise were computed differently. Screening, in order:

- duplicates: a scan whose measured arrays (energy, mu, I0, foil) are bit for bit those of a scan
  measured earlier, or whose mu values are that scan's, point by point within far less than a
  real repeat's noise, at nearly all of the shorter scan's points whatever the energies (the
  file saved again with fewer digits, its counters rescaled, in keV, cut short by its last
  points, recalibrated, a few points deglitched), or on that scan's curve at nearly all of its
  points (interpolated onto another grid), or whose mu minus that scan's at the same points is
  a smooth curve without noise (a gain changed, a dark current subtracted) or its counters that
  scan's rounded (written with 5 digits), is a copy of it (`sameness`), not a repeat; so is a
  scan whose measured arrays are bit for bit those of a scan in another group (one buffer saved
  under another sample's name: `_screen_copies_elsewhere` says which of the two it takes for
  the measurement);
- beam loss: I0 below `beam_dump_fraction` x median(I0) at more than `beam_dump_max_points`;
- alignment (`align: reference`): each scan is shifted by the least-squares fit of its reference
  foil's derivative dmu_ref/dE (measured at the same time as the sample) onto the anchor's (the
  scan whose foil's E0 agrees within `max_e0_shift` with the most others': a majority, as for the
  outliers, so that one drifted scan cannot set the energy scale; of as many, the foil whose E0
  is nearest the edge's energy, tabulated for the group's element and edge or the calibration
  energy, since the foil is there to calibrate: the scan it shows miscalibrated is the one
  shifted, or rejected with how far its foil is off the edge; where that energy is not known,
  the first measured),
  over [E0_ref + align_emin, E0_ref + align_emax], with a free scale: the method of Athena and of
  xraylarch's `energy_align` (whose window sign this does not share: its `emin` is added, so the
  window starts above E0). The fitted shift and its standard error are recorded per scan;
- energy coverage (before alignment, so that a partial scan is never the anchor): the overlap of
  a scan's energy range with the group's, as a fraction of the group's, must be at least
  `min_range_coverage`. The group's range runs from the median start to the median end of the
  scans left; with an even number of them the wider of the two middle values, so that with two
  scans the longer one sets the range and a short scan cannot lower it by itself. A partial scan
  (interrupted, or a file read while still being written) would otherwise cut every scan in the
  merge down to its own range and shorten the k range of the merged noise;
- outliers: an edge position (after alignment) further than `max_e0_shift` eV, or an edge step
  further than `max_edge_step_deviation` (relative), from the group's reference values. The
  edge position is the half-step energy, where the normalised mu crosses half the edge step
  (E0 where a scan has none): E0, the maximum of dmu/dE, is what the merge reports, but noise
  moves it by eV in dilute fluorescence (`HALF_STEP` says by how much). These are those of
  the majority, whatever the scans' names or order: the scan that agrees (by these two limits)
  with the most others, ties by acquisition order, and the medians over it and the scans that
  agree with it. When another scan that disagrees with it has as many agreeing (two scans that
  disagree, two against two), no majority tells which is the measurement: nothing is merged,
  every such scan is rejected with the reason, and the merge says so (`no_majority`).

The accepted scans' mu(E) (shifted) are merged by xraylarch's `merge_groups` (cubic interpolation
onto the first accepted scan's grid), then clipped to the energies all scans cover, so nothing is
extrapolated (the coverage screening keeps that within `min_range_coverage` of the group's
range); the standard error is std(ddof=1)/sqrt(N). The mean is analysed again with xraylarch
(pre_edge, autobk, estimate_noise) with the merged spectra's own settings (all the same) unless
the merge overrides them. Where it does (its own `noise`, `pre_edge` or `autobk`), each scan's
noise in the merge is measured again with the merge's settings (from the scan's chi(k) when only
the noise settings differ), so that the merge's noise, the scans' beside it and the agent's fit
are on one scale, and the merge names the difference (`noise_by_merge`: `noise.kweight 3, not
2`). The same scan delivered twice replaces itself: nothing is counted twice.

Each merge also names the curve its noise belongs on (`noise_series`): its group, and, once the
settings that set the noise's scale changed since the group's first merge, what changed
(`{..., "settings": "noise.rmax 30, not 25"}`). The viewer draws one noise curve per value, so a
settings change starts a new curve at one scan merged instead of drawing the new scale on the
old one: where the convergence agent restarts its noise history.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asapo_pipelines_xas import normalize, temperature
from asapo_pipelines_xas.errors import SpectrumError
from asapo_pipelines_xas.normalize import Spectrum, _json_array, _json_float, analyse, program
from asapo_pipelines_xas.params import AutobkParams, MergeParams, NoiseParams, PreEdgeParams

#: a merge's settings that are the merge's own, not the normalisation's: they do not change the
#: scale its noise is measured on (the merge re-merges every scan when they change)
MERGE_ONLY_SETTINGS = frozenset({"align", "deglitch"})

#: a repeat's point is a glitch where it lies further than this many robust standard deviations
#: from the median of the repeats at that energy (see `find_glitches`). A mono glitch of 15 % of
#: the edge step is about 100 of them; the largest deviation of clean real repeats about 6.
GLITCH_THRESHOLD = 10.0
#: the robust spread is taken over this many grid points either side of each energy: the
#: repeats differ more near the edge (residual misalignment) and at high k (less flux)
GLITCH_WINDOW = 25
#: eV: the residual misalignment of repeats that alignment leaves (a fraction of the P65 scans'
#: 0.5 eV point spacing at the edge). On the steep edge it alone makes differences of
#: |dmu/dE| x 0.1 eV, far above the window's spread, which the flat data beside a sharp edge
#: dominates: without it clean repeats had points flagged and left out exactly where E0 is
#: found. Where mu is smooth the slope is small, and a glitch there is found as before.
GLITCH_E_TOL = 0.1
GLITCH_RULE = (
    "a point of a repeat is a glitch where |mu - median of the other repeats| exceeds "
    "threshold x sqrt(s^2 + (|dmu/dE| x energy_tolerance)^2), s = 1.4826 x the median of that "
    "difference's absolute value within window points either side, |dmu/dE| the smallest "
    "slope of the repeats there (on the merge's grid, after alignment, each repeat interpolated "
    "shape-preserving (PCHIP)): a difference a residual "
    "misalignment of energy_tolerance explains is no glitch; with 3 or more repeats the glitch "
    "at an energy is the repeat furthest from the median of all repeats there, if its own "
    "score exceeds threshold (then the rest again while 3 are left), and those "
    "points are left out of the mean (the rest of the scan is merged); with 2 the median "
    "cannot tell which repeat is wrong: the energies are reported, nothing is left out"
)


def deglitch_settings() -> dict[str, Any]:
    """The rule and threshold of the glitch screening, recorded with every merge."""
    return {
        "threshold": GLITCH_THRESHOLD,
        "window": GLITCH_WINDOW,
        "energy_tolerance": GLITCH_E_TOL,
        "rule": GLITCH_RULE,
    }


def find_glitches(grid: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flags, scores) of repeats (rows of mu on the energies `grid`): each point's deviation
    from the median of the other repeats at that energy, in units of the robust spread of that
    repeat's deviations around it widened by what a residual misalignment explains there
    (`GLITCH_RULE`), and which points are glitches. A glitch
    raises a scan's noise estimate by a few per cent only (it is at low k, the noise is
    measured at high R), so only a comparison with the other repeats finds it. The spread is
    each repeat's own: a noisier repeat is no glitch (the agent's noise test deals with it).
    A score above the threshold says there is a glitch at that energy, not whose it is (with 2
    repeats both are flagged: no median says which one is wrong); with 3 or more see
    `_glitched_repeats`."""
    n = len(rows)
    dev = np.vstack([rows[i] - np.median(np.delete(rows, i, 0), axis=0) for i in range(n)])
    # the gentlest repeat's slope: a glitch steepens its own repeat's slope, and with 2 repeats
    # their median too (it would excuse itself); on the edge all repeats are steep alike
    slack = np.abs(np.gradient(rows, grid, axis=1)).min(axis=0) * GLITCH_E_TOL
    spread = np.hypot(np.vstack([_local_spread(d) for d in dev]), slack)
    scores = np.abs(dev) / np.where(spread > 0, spread, np.inf)
    flags = np.zeros_like(scores, dtype=bool)
    for j in np.flatnonzero((scores > GLITCH_THRESHOLD).any(axis=0)):
        if n < 3:
            flags[:, j] = True
        else:
            flags[_glitched_repeats(rows[:, j], spread[:, j]), j] = True
    return flags, scores


def _glitched_repeats(values: np.ndarray, spread: np.ndarray) -> list[int]:
    """Which of 3 or more repeats' `values` at an energy where a score exceeds the threshold
    have the glitch: the repeat farthest from the median of all of them (which one outlier
    cannot move), if its own score (deviation from the median of the others over its own
    `spread`) exceeds the threshold; then again among the rest while 3 are left.

    Not the repeat with the highest score: with 3 repeats the median of the other two is
    their mean, which carries half of a glitch, and each score is over its own repeat's
    spread, so a clean repeat 3 times quieter than the glitched one scored higher. The
    glitch was named on a clean file, left in the merge, and a good point left out instead
    (4 of 5 seeded trials). All repeats' distances from one median are in one unit (mu)."""
    left = list(range(len(values)))
    found: list[int] = []
    while len(left) >= 3:
        here = values[left]
        far = int(np.argmax(np.abs(here - np.median(here))))
        own = abs(here[far] - np.median(np.delete(here, far))) / (spread[left[far]] or np.inf)
        if own <= GLITCH_THRESHOLD:
            break
        found.append(left.pop(far))
    return found


def _local_spread(dev: np.ndarray) -> np.ndarray:
    """1.4826 x the median of |dev| within `GLITCH_WINDOW` points of each point: a standard
    deviation that a few glitch points do not move, and that follows the noise along the
    scan (larger near the edge, from residual misalignment, and at high k, from less flux)."""
    padded = np.pad(np.abs(dev), GLITCH_WINDOW, constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * GLITCH_WINDOW + 1)
    return 1.4826 * np.nanmedian(windows, axis=1)


def interpolated(energies: list[np.ndarray], mus: list[np.ndarray], grid: np.ndarray) -> np.ndarray:
    """Each scan's mu on the merge's grid as the glitch screen compares them: a shape-preserving
    (PCHIP) interpolation, which stays between the measured values either side of each energy.

    Not merge_groups' cubic spline: the P65 scans end with the mono at rest, some 17 readings
    within 0.04 eV whose noise makes slopes of 0.1/eV; the spline carries that into the step
    before them, 20 times the noise there. Where a repeat shifted by 0.1 eV ends before the
    grid does not, its interpolated last point lay off the others by 10-13 spreads and was
    flagged as a glitch. A glitch is a deviation of measured points, and this finds it alike."""
    from larch.math import remove_dups, remove_nans
    from scipy.interpolate import PchipInterpolator

    return np.array(
        [
            PchipInterpolator(
                remove_nans(remove_dups(np.asarray(e, dtype=float), 1.0e-9), interp=True),
                remove_nans(np.asarray(m, dtype=float), interp=True),
                extrapolate=True,
            )(grid)
            for e, m in zip(energies, mus, strict=True)
        ]
    )


def glitch_record(
    grid: np.ndarray, flagged: np.ndarray, scores: np.ndarray, names: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The glitches found (`find_glitches` of the repeats `names`), one per repeat with any:
    its energies and largest deviation, and whether they are left out of the mean."""
    if len(names) < 3:
        # both repeats deviate alike from their mean: no median says which one is wrong
        at = flagged.any(axis=0)
        if not at.any():
            return []
        return [
            {
                "scans": [scan for scan, _ in names],
                "files": [file for _, file in names],
                "energies": [round(float(e), 2) for e in grid[at]],
                "deviation": round(float(scores[:, at].max()), 1),
                "excluded": False,
                "why": "with 2 repeats the median cannot tell which one is wrong",
            }
        ]
    return [
        {
            "scan": name[0],
            "file": name[1],
            "energies": [round(float(e), 2) for e in grid[flagged[i]]],
            "deviation": round(float(scores[i, flagged[i]].max()), 1),
            "excluded": True,
        }
        for i, name in enumerate(names)
        if flagged[i].any()
    ]


def noise_scale(settings: Mapping[str, Any]) -> dict[str, Any]:
    """What of a merge's settings sets the scale of its noise: the settings and code of the
    spectra it averages ({} when it records none: no scan merged, or an older message)."""
    return {k: v for k, v in settings.items() if k not in MERGE_ONLY_SETTINGS}


def load_larch() -> None:
    """Import the parts of xraylarch that merging calls (normalising's, and `larch.io` for
    `merge_groups`), in `on_start`: see `normalize.load_larch`."""
    import larch.io  # noqa: F401

    normalize.load_larch()


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
    #: the noise curve this merge belongs on (see the module's docstring); its group by default
    noise_series: dict[str, Any] = field(default_factory=dict)
    #: the scans disagree and no majority tells which is the measurement: nothing is merged
    #: (`{"scans": [...], "reason": ...}`), else None
    no_majority: dict[str, Any] | None = None
    #: the merge's own analysis settings where they differ from the scans' (`merge.noise`
    #: kweight 3, the scans' 2): every noise of this merge, each scan's too, is on its scale
    noise_by_merge: str | None = None
    #: points of repeats that deviate from the other repeats (`glitch_record`), else empty
    glitches: list[dict[str, Any]] = field(default_factory=list)

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
            "noise_series": dict(self.noise_series or self.group),
            # only when set: a merge's key is its content, which this must not change otherwise
            **({"no_majority": dict(self.no_majority)} if self.no_majority else {}),
            **({"noise_by_merge": self.noise_by_merge} if self.noise_by_merge else {}),
            **({"glitches": [dict(g) for g in self.glitches]} if self.glitches else {}),
        }


@dataclass
class _Entry:
    scan_id: str
    spectrum: Spectrum
    shift: float = 0.0
    shift_err: float | None = None
    reasons: list[str] = field(default_factory=list)
    #: the last alignment fit and the anchor spectrum it was fitted against; a redelivered scan
    #: gets a new entry and a new anchor a new fit, so nothing else invalidates it
    fit: tuple[Spectrum, Alignment] | None = None
    #: normalised with other settings than the newest: left out of the merge and its screening
    superseded: bool = False
    #: a copy of an earlier scan's data: says nothing of the beam or the sample
    duplicate: bool = False
    #: an earlier read of a file that a later version replaces: no measurement of its own
    replaced: bool = False
    #: fingerprint of the measured arrays, to recognise the same data under another scan number
    digest: str = ""
    #: the scan's noise under the merge's analysis settings, by those settings (`_scan_noise`)
    noise_under: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.digest = data_digest(self.spectrum)


@dataclass(frozen=True)
class Alignment:
    """A fitted energy shift (eV, to add to the scan's energies) and its standard error."""

    shift: float
    stderr: float
    scale: float
    points: int


def fit_alignment(
    energy: np.ndarray,
    mu_ref: np.ndarray,
    anchor_energy: np.ndarray,
    anchor_mu_ref: np.ndarray,
    anchor_e0: float,
    emin: float = -15.0,
    emax: float = 35.0,
    start: float = 0.0,
) -> Alignment:
    """Least-squares shift of a foil's dmu/dE onto the anchor's over [E0+emin, E0+emax].

    The model is xraylarch's `energy_align`: the scan's derivative, cubic-interpolated at the
    anchor's energies minus the shift and multiplied by a free scale, against the anchor's
    derivative. The standard error is from the Jacobian at the optimum, scaled by the residual
    variance (as lmfit reports it).
    """
    from scipy.interpolate import CubicSpline
    from scipy.optimize import least_squares

    energy = np.asarray(energy, dtype=float)
    anchor_energy = np.asarray(anchor_energy, dtype=float)
    deriv = np.gradient(np.asarray(mu_ref, dtype=float), energy)
    anchor_deriv = np.gradient(np.asarray(anchor_mu_ref, dtype=float), anchor_energy)
    window = (anchor_energy >= anchor_e0 + emin) & (anchor_energy <= anchor_e0 + emax)
    x, y = anchor_energy[window], anchor_deriv[window]
    if len(x) < 5:
        raise SpectrumError(
            f"the alignment window [{emin:g}, {emax:g}] eV around the foil's E0 holds "
            f"{len(x)} points"
        )
    spline = CubicSpline(energy, deriv)

    def residual(p: np.ndarray) -> np.ndarray:
        return np.asarray(p[1] * spline(x - p[0]) - y)

    fit = least_squares(residual, np.array([start, 1.0]), x_scale=np.array([0.1, 0.1]))
    dof = max(1, len(x) - 2)
    variance = float(fit.fun @ fit.fun) / dof
    try:
        cov = np.linalg.inv(fit.jac.T @ fit.jac) * variance
        err = math.sqrt(max(0.0, float(cov[0, 0])))
    except np.linalg.LinAlgError:
        err = math.inf
    return Alignment(float(fit.x[0]), err, float(fit.x[1]), len(x))


def scan_id(spectrum: Spectrum) -> str:
    """Identity of a scan: the worker's provenance key if set, else the file name."""
    meta = spectrum.metadata
    for key in ("scan_id", "provenance_key", "file"):
        if meta.get(key):
            return str(meta[key])
    raise SpectrumError("a spectrum without scan_id or file cannot be merged")


#: the measured arrays of a spectrum (the normalisation settings do not change them)
MEASURED = ("energy", "mu", "i0", "mu_ref")


def data_digest(spectrum: Spectrum) -> str:
    """SHA-256 of the measured arrays: equal only for the same data, bit for bit (two real
    repeats never are, their counts differ)."""
    digest = hashlib.sha256()
    for name in MEASURED:
        values = spectrum.arrays.get(name)
        if values is not None:
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(values, dtype=float).tobytes())
    return digest.hexdigest()


#: Two scans are one measurement when nearly all of their points hold the same mu: a copy of a
#: file under a new scan number, re-saved (fewer digits, counters rescaled, keV), cut short,
#: recalibrated (its energies shifted), a few points deglitched, or interpolated onto another
#: grid. The noise of a real repeat is in every one of its points: the two P65 goethite repeats
#: differ by 1e-3 in mu (median; 4e-4 at the 10th percentile), and about 1 % of their points
#: agree within SAME_MU by chance, as does any mu value of one with some value of the other.
#: A copy re-saved at 7 significant digits differs by at most 7e-7 in mu (median 2e-16).
SAME_MU = 1e-5
#: ...and at most this part of the noise of the difference of two repeats (sqrt 2 times a
#: scan's own, see `_noise`): repeats measured with less noise than SAME_MU (3e-6 in mu: a
#: strong sample, long counting) agree within SAME_MU at 98 % of their points, but within half
#: their difference's noise at 38 % (a normal variable within half its deviation)
SAME_NOISE = 0.5
#: the fraction of the shorter scan's points (of those within the other's energy range, for an
#: interpolated copy) whose mu must be the other's: a copy with 3 % of its points deglitched is
#: still a copy, and re-saving may drop a few points (energies equal after rounding: 2 of 1942
#: at 7 digits); no mu value of one P65 repeat is found at its place in the other (5 % of them
#: are some value of the other's, 0.2 % on its curve), and repeats made to differ by far less
#: than real noise (1e-5 relative in It: about 70 %) stay well below it. The shorter scan must
#: hold as large a part of the other's points: a part of a scan (interrupted, cut at half) is
#: the coverage screening's to reject, which says what it covers
SAME_POINTS = 0.9
#: points an identical mu value may sit away from its place in the other scan (its index plus
#: the copy's offset, e.g. a scan cut at its start), as a fraction of the points: a copy that
#: lost points (merged duplicate energies) moves the later ones by as many
SAME_PLACE = 0.05


@dataclass(frozen=True)
class Sameness:
    """How a scan's data are an earlier scan's (see `sameness`)."""

    #: "identical" (bit for bit), "values" (the same mu values point by point) or
    #: "interpolated" (mu on the earlier scan's curve at its own energies)
    kind: str
    #: how near mu values must be to be the same (SAME_MU, or less for scans of less noise)
    within: float = SAME_MU
    #: the fraction of the compared points that agree, and how many were compared
    fraction: float = 1.0
    points: int = 0
    #: the copy's points and the earlier scan's
    own: int = 0
    other: int = 0
    #: the copy's energies minus the earlier scan's at the same mu values (eV, median)
    shift: float = 0.0
    #: the rows of the copy's file and of the earlier scan's (before equal energies were dropped)
    rows: int = 0
    rows_other: int = 0
    #: how a re-exported copy ("re-exported") is the same data, in words (see `_re_exported`)
    how: str = ""

    def reason(self) -> str:
        """In words, for the duplicate's reason."""
        if self.kind == "identical":
            return "the same measured data (energy, mu, I0)"
        if self.kind == "re-exported":
            return (
                f"{self.how}, at {self.points} matching points; a real repeat differs from "
                "it by its own noise at every point"
            )
        if self.kind == "values":
            what = (
                f"the same mu values point by point (within {self.within:.2g}) at "
                f"{_percent(self.fraction)} of the {self.points} points compared"
            )
            if self.own != self.other and self.rows == self.rows_other:
                # nothing is missing from the file: rewriting it with fewer digits made some
                # energies equal, and the reader keeps one point per energy
                what += (
                    f" (its file has all {self.rows} rows; {self.rows - self.own} were dropped "
                    "because rounding made their energies equal)"
                )
            elif self.own != self.other:
                what += f" (cut short or longer: {self.own} points, that scan {self.other})"
            if abs(self.shift) > SAME_ENERGY_EV:
                what += f", its energies shifted by {self.shift:+.2f} eV (recalibrated)"
            return what + "; a real repeat's noise makes almost none of its points agree"
        return (
            f"mu on that scan's curve (linearly interpolated, within {self.within:.2g}) at "
            f"{_percent(self.fraction)} of its {self.points} points in that scan's range: "
            "the same data interpolated onto another energy grid; a real repeat's noise "
            "makes almost none of its points agree"
        )


#: energies closer than this (eV) are the same: a copy re-saved at 7 digits moves them by 0.0005
SAME_ENERGY_EV = 0.005


def _percent(fraction: float) -> str:
    """A fraction as a percentage that does not round 99.6 % up to 100 %."""
    return f"{math.floor(fraction * 1000) / 10:g} %"


#: significant digits of a relative limit or deviation in a reason: a limit of 0.001 printed
#: as a whole percent read `limit 0%` beside a deviation of 0.2 %
RELATIVE_DIGITS = 3


def _relative(fraction: float) -> str:
    """A relative limit or deviation as a percentage with its significant digits: 0.1%,
    0.05%, 10%, 12.3%."""
    return f"{fraction * 100:.{RELATIVE_DIGITS}g}%"


def sameness(a: _Entry, b: _Entry) -> Sameness | None:
    """How `b`'s data are `a`'s, None when they are two measurements: bit for bit the same;
    the same mu values point by point (each at its place in the other scan, give or take
    SAME_PLACE) at SAME_POINTS of the shorter scan's points or more, whatever the energies
    (a copy recalibrated, cut short, a few points deglitched or dropped); or mu on the other's
    curve, linearly interpolated at its energies, at SAME_POINTS of its points within the
    other's energy range (interpolated onto another grid); or exported again with its numbers
    changed: rounded, a gain, a dark current (`_re_exported`)."""
    if a.digest == b.digest:
        return Sameness("identical")
    ea, eb = (np.asarray(e.spectrum.arrays["energy"], dtype=float) for e in (a, b))
    mu_a, mu_b = (np.asarray(e.spectrum.arrays["mu"], dtype=float) for e in (a, b))
    if min(len(mu_a), len(mu_b)) < 20:
        return None
    within = min(SAME_MU, SAME_NOISE * math.sqrt(2) * min(_noise(mu_a), _noise(mu_b)))
    found = _same_values(ea, mu_a, eb, mu_b, within)
    if found is not None:
        rows = (_rows(b, len(mu_b)), _rows(a, len(mu_a)))
        return dataclasses.replace(found, rows=rows[0], rows_other=rows[1])
    # interpolated onto another grid: either scan may be the copy (both have the same start)
    for (e1, m1), (e2, m2) in (((ea, mu_a), (eb, mu_b)), ((eb, mu_b), (ea, mu_a))):
        inside = (e2 >= e1[0]) & (e2 <= e1[-1])
        points = int(np.sum(inside))
        if points < SAME_POINTS * max(len(m1), len(m2)):
            continue  # a part of a scan: see _same_values
        agree = np.abs(np.interp(e2[inside], e1, m1) - m2[inside]) <= within
        fraction = float(np.mean(agree))
        if fraction >= SAME_POINTS:
            return Sameness("interpolated", within, fraction, points, len(mu_b), len(mu_a))
    mode = str(b.spectrum.settings.get("mode") or "")
    return _re_exported(a.spectrum.arrays, b.spectrum.arrays, mode)


def _rows(entry: _Entry, points: int) -> int:
    """The data rows of the scan's file: its points and those dropped as equal energies."""
    read = entry.spectrum.metadata.get("points_read")
    return int(read) if isinstance(read, int | float) and read >= points else points


def _same_values(
    ea: np.ndarray, mu_a: np.ndarray, eb: np.ndarray, mu_b: np.ndarray, within: float
) -> Sameness | None:
    """The same mu values (within `within`) at the same places (see `sameness`), compared over
    the shorter."""
    copy, earlier = len(mu_b), len(mu_a)
    if min(copy, earlier) < SAME_POINTS * max(copy, earlier):
        # a part of a scan (interrupted) is left to the coverage screening, which says so
        return None
    swapped = len(mu_a) < len(mu_b)
    if swapped:
        ea, mu_a, eb, mu_b = eb, mu_b, ea, mu_a
    # mu_b is the shorter: for each of its values the nearest of mu_a's, and where that is
    order = np.argsort(mu_a, kind="stable")
    ranked = mu_a[order]
    right = np.clip(np.searchsorted(ranked, mu_b), 1, len(ranked) - 1)
    left = right - 1
    nearer = np.where(np.abs(mu_b - ranked[left]) <= np.abs(mu_b - ranked[right]), left, right)
    at = order[nearer]
    equal = np.abs(mu_a[at] - mu_b) <= within
    if np.sum(equal) < SAME_POINTS * len(mu_b):
        return None  # the cheap test that tells real repeats apart
    offset = at - np.arange(len(mu_b))
    place = float(np.median(offset[equal]))
    agree = equal & (np.abs(offset - place) <= max(5.0, SAME_PLACE * len(mu_b)))
    fraction = float(np.mean(agree))
    if fraction < SAME_POINTS:
        return None
    shift = float(np.median(eb[agree] - ea[at[agree]]))
    shift = -shift if swapped else shift
    return Sameness("values", within, fraction, len(mu_b), copy, earlier, shift)


#: A copy re-exported with its numbers changed (rewritten with fewer digits, a counter's gain
#: changed, a dark current subtracted) holds none of the earlier scan's mu values, but the same
#: noise: at the same points (the nearest energy) the difference of the two is a smooth curve,
#: known from the counters, plus rounding, whereas a real repeat differs by both scans' noise.
#: The score: the point-to-point scatter (MAD of second differences) of mu_b minus the fit of
#: a + b mu_a + c/I0 + d/It + e mu_a/I0 (a constant: a gain; the rest: a dark current taken from
#: I0, It or If, to first order, with the earlier scan's own noisy counters), over that of the
#: less noisy scan's mu (the constant and the scale alone first, to say which it is). Measured
#: on the bundled P65 goethite repeats and copies of them: the two real repeats 1.37 to 1.46 in
#: transmission and fluorescence (sqrt 2: two noises); I0 x 10 (mu + ln 10) 2e-12; 0.001
#: subtracted from every counter 2e-3 by a constant and a scale, 1e-6 with the counters' terms
#: (0.01: 0.02 and 7e-5: the first-order terms leave its square); the test suite's stand-ins
#: for other measurements, a copy with 1e-5 relative noise put on It (a tenth of the real
#: noise), 0.08 to 0.09, which must stay merged. The limit is 4 times below those and 70 times
#: below real repeats. Rounding is not smooth: a copy at 5 digits scores 0.21, at 4 digits 4.3
#: (rounding to 4 digits is larger than the noise), and is told by its counters (SAME_DIGITS)
SAME_SCATTER = 0.02
#: the second differences measure a scan's noise only where they are not its curve: their
#: scatter over that of the fourth differences (scaled to be 1 for white noise) is 0.92 to 0.96
#: for the P65 scans, 0.54 for the coarse (408 points) Cu foil, whose curve it then is
NOISE_DOMINATED = 0.75
#: A copy written with fewer significant digits: its I0 is the earlier scan's rounded to as many
#: digits (and mu within what that rounding can change) at SAME_POINTS of the points. By chance
#: the two real P65 repeats' I0 agree so rounded at 0.05 % of the points at 5 digits, 0.2 % at
#: 4, 2 % at 3, 76 % at 2: copies with 4 digits or more are told; at 3 the rounding is 20 times
#: the noise and the copy mostly rounding
SAME_DIGITS = 4


def _mad(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _scatter(values: np.ndarray) -> float:
    """Point-to-point scatter: the MAD of the second differences (a smooth curve has none)."""
    return _mad(np.diff(values, 2)) if len(values) > 4 else 0.0


def _noise(mu: np.ndarray) -> float:
    """A scan's white noise per point: the MAD of its fourth differences over sqrt(70) (their
    deviation for white noise). A measured curve has almost none: on a noise-free P65 goethite
    curve (smoothed) with noise of 1e-7 to 1e-4 added, this gives the noise within 5 %, where
    the second differences give 2.2e-6 for the curve alone."""
    return _mad(np.diff(mu, 4)) / math.sqrt(70) if len(mu) > 8 else 0.0


def _unit(values: np.ndarray, digits: int) -> np.ndarray:
    """The last digit's unit of positive `values` written with `digits` significant digits."""
    return 10.0 ** (np.floor(np.log10(values)) + 1 - digits)


def _rounded_to(i0_a: np.ndarray, i0_b: np.ndarray) -> tuple[int, float] | None:
    """The significant digits positive `i0_b` is `i0_a` rounded to, and at what fraction of
    the points; None when it is not (or they are the same numbers: no rounding)."""
    for digits in range(SAME_DIGITS, 16):
        unit = _unit(i0_b, digits)
        steps = i0_b / unit
        if np.mean(np.abs(steps - np.round(steps)) <= 1e-6) < 0.99:
            continue  # i0_b has more digits
        # within half a unit (and a hair, for ties written either way): i0_a so rounded
        same = float(np.mean(np.abs(i0_a - i0_b) <= 0.5 * unit * (1 + 1e-6)))
        changed = float(np.mean(i0_a != i0_b))
        return (digits, same) if changed >= 0.1 and same >= SAME_POINTS else None
    return None


def _re_exported(a: Mapping[str, Any], b: Mapping[str, Any], mode: str) -> Sameness | None:
    """`b` (arrays) is `a` re-exported with its numbers changed (see SAME_SCATTER and
    SAME_DIGITS), with how in words; None when it is another measurement."""
    ea, eb = (np.asarray(x["energy"], dtype=float) for x in (a, b))
    mu_a, mu_b = (np.asarray(x["mu"], dtype=float) for x in (a, b))
    # each of b's points at a's nearest energy: a re-export keeps the points (rounded energies
    # move them by far less than a step); a part of a scan or another grid is not this
    right = np.clip(np.searchsorted(ea, eb), 1, len(ea) - 1)
    at = np.where(np.abs(eb - ea[right - 1]) <= np.abs(eb - ea[right]), right - 1, right)
    if len(np.unique(at)) < SAME_POINTS * max(len(mu_a), len(mu_b)):
        return None
    noise = min(_scatter(mu_a), _scatter(mu_b))
    for mu in (mu_a, mu_b):
        curve = _noise(mu) * math.sqrt(6)  # white noise: as the 2nd differences
        if noise <= 0 or curve < NOISE_DOMINATED * _scatter(mu):
            return None  # no noise measured to compare with
    m = mu_a[at]
    i0_a, i0_b = (x.get("i0") for x in (a, b))
    if i0_a is not None and i0_b is not None:
        i0_a, i0_b = np.asarray(i0_a, dtype=float)[at], np.asarray(i0_b, dtype=float)
        positive = np.all(i0_a > 0) and np.all(i0_b > 0)
        rounded = _rounded_to(i0_a, i0_b) if positive else None
        if rounded is not None:
            digits, fraction = rounded
            # a counter rounded to n digits moves by at most 5e-n relative, mu (two of them)
            # by 1e-(n-1) (relative to mu itself for a ratio If/I0)
            bound = 10.0 ** (1 - digits) * np.maximum(1.0, np.abs(m))
            if np.mean(np.abs(mu_b - m) <= bound) >= SAME_POINTS:
                how = (
                    f"the same counts rounded to {digits} significant digits (its I0 is that "
                    f"scan's so rounded at {_percent(fraction)} of the points)"
                )
                return Sameness(
                    "re-exported", SAME_MU, fraction, len(mu_b), len(mu_b), len(mu_a), how=how
                )
    # a constant (a gain: ln of its factor in transmission) or a scale, then the dark currents
    columns = [np.ones_like(m), m]
    if i0_a is not None and np.all(i0_a > 0):
        columns += [1 / i0_a, np.exp(np.clip(m, -50, 50)) / i0_a, m / i0_a]
    for used in (2, len(columns)):
        design = np.column_stack(columns[:used])
        design = design / np.maximum(np.abs(design).max(axis=0), 1e-300)
        coef, *_ = np.linalg.lstsq(design, mu_b, rcond=None)
        fitted = design @ coef
        score = _scatter(mu_b - fitted) / noise
        if score <= SAME_SCATTER:
            break
    else:
        return None
    change = fitted - m
    offset = float(np.median(change))
    slope, intercept = np.polyfit(m, mu_b, 1)
    scatter = f"the difference's point-to-point scatter {score:.2g} times the scans' own noise"
    if np.ptp(change) <= 10 * score * noise + 1e-9 * (1 + abs(offset)):
        how = f"mu offset by a constant {offset:+.4g}"
        if mode == "transmission" and abs(offset) > 10 * noise:
            how += f" (a gain change: a counter rescaled by a factor {math.exp(abs(offset)):.4g})"
    elif used == 2 and abs(slope - 1) > 0.01:
        how = f"mu scaled by {slope:.4g}"
        if abs(intercept) > 10 * noise:
            how += f" and offset by {intercept:+.4g}"
        # If/I0 scales with a counter's gain; ln(I0/It) does not (a gain adds a constant)
        how += (
            " (a gain change)"
            if mode == "fluorescence"
            else " (the same data scaled, noise and all)"
        )
    else:
        how = (
            f"mu differs from it by a smooth curve without noise ({float(change.min()):+.2g} "
            f"to {float(change.max()):+.2g}, as a dark current subtracted from a counter makes)"
        )
    how += f", {scatter}"
    return Sameness("re-exported", SAME_MU, 1.0, len(mu_b), len(mu_b), len(mu_a), how=how)


def same_measurement(a: _Entry, b: _Entry) -> bool:
    """`b`'s data are `a`'s (see `sameness`)."""
    return sameness(a, b) is not None


def settings_key(spectrum: Spectrum) -> str:
    """The spectrum's normalisation settings as one comparable string."""
    return json.dumps(spectrum.settings or {}, sort_keys=True, default=str)


def flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            out.update(flat_settings(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def settings_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What differs between two settings, e.g. `autobk.rbkg 1.2, not 1.5`."""
    a, b = flat_settings(old), flat_settings(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "; ".join(_setting_change(k, a.get(k), b.get(k)) for k in keys) or "unknown"


def _setting_change(key: str, value: Any, other: Any) -> str:
    """`key value, not other`, the values as a pipeline file writes them (`0.3`, `hanning`,
    `true`), not as Python prints them (`0.30000000000000004`, `'hanning'`, `True`)."""
    text, other_text = _setting_text(value), _setting_text(other)
    if text == other_text:  # floats differing beyond the digits shown
        text, other_text = repr(value), repr(other)
    return f"{key} {text}, not {other_text}"


def _setting_text(value: Any) -> str:
    if value is None:
        return "the default"  # not set: the unit's or xraylarch's default applies
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return f"[{', '.join(_setting_text(v) for v in value)}]"
    return str(value)


def normaliser(settings: Mapping[str, Any]) -> str:
    """Which code normalised a spectrum, in words: its unit's distribution and version as the
    spectrum records them (`normalizer`, set by `xas.normalize`)."""
    made_by = settings.get("normalizer")
    if not isinstance(made_by, Mapping) or not made_by.get("version"):
        return "a version of xas.normalize that did not record itself"
    return f"{made_by.get('distribution') or made_by.get('unit')} {made_by['version']}"


def superseded_reason(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Why a spectrum is left out of its group's merge: normalised by other code (a plugin
    upgraded between sessions) or with other settings than the newest spectra."""
    if old.get("normalizer") != new.get("normalizer"):
        return (
            f"normalised by {normaliser(old)}, the newest scans by {normaliser(new)}; only "
            "scans normalised by the same code are merged: reprocess it to include it"
        )
    diff = settings_difference(old, new)
    return (
        f"normalised with other settings than the newest ({diff}); only scans normalised "
        "alike are merged: reprocess it to include it"
    )


def _made_at(spectrum: Spectrum) -> float:
    """When the spectrum was made (a Unix time, `made_at` in its metadata: its message's time
    in the transport); -inf when it does not say."""
    since = spectrum.metadata.get("made_at")
    if isinstance(since, bool) or not isinstance(since, int | float) or not math.isfinite(since):
        return -math.inf
    return float(since)


def _acquisition_order(entry: _Entry) -> tuple[str, str]:
    """The order the scans were measured in: their start time (ISO 8601, from the file's
    header), then their identity (file names of repeats count up)."""
    return str(entry.spectrum.metadata.get("start_time") or ""), entry.scan_id


class Merger:
    """Incremental merge of repeats; one instance per running `xas.merge` unit."""

    def __init__(self, params: MergeParams | None = None) -> None:
        self.params = params or MergeParams()
        self._groups: dict[tuple[str, ...], list[_Entry]] = {}
        #: when each settings were first seen: which settings are newest when the spectra do
        #: not say when they were made (`made_at`), e.g. those made outside a run
        self._first_seen: dict[str, int] = {}
        #: each group's noise scale of its first merge, which names the group's first curve
        self._first_scale: dict[tuple[str, ...], dict[str, Any]] = {}
        #: source key of a file's version -> (the version that replaces it, that one's group,
        #: that one's source key): a file corrected after it was read may land in another group
        #: (its sample renamed), and be corrected again
        self._replaced: dict[str, tuple[Any, tuple[str, ...], str | None]] = {}
        #: scan id -> when the merge first got it: of two groups' identical scans, the one that
        #: came first is the measurement (a restarted merge gets them again in that order)
        self._arrival: dict[str, int] = {}

    def group_key(self, spectrum: Spectrum) -> tuple[str, ...]:
        # the temperature is a reading, not a name: by its nearest multiple of a step, in
        # kelvin (`temperature` says why), so that `100 K` and `100.0 K` are one group
        return tuple(
            temperature.group(spectrum.metadata.get(k), self.params.temperature_step)
            if k == "temperature"
            else str(spectrum.metadata.get(k, ""))
            for k in self.params.group_by
        )

    def _reading(self, entry: _Entry) -> dict[str, float]:
        """`{"temperature": kelvin}` of a scan, grouped by its temperature and saying one: the
        agent's plan asks for the temperature the scans were measured at
        (`temperature.setpoint`), which the group's label, a multiple of the step, is not."""
        if "temperature" not in self.params.group_by:
            return {}  # a merge's key is its content: unchanged where nothing is grouped by it
        value = temperature.reading(entry.spectrum.metadata.get("temperature"))
        return {} if value is None else {"temperature": value}

    def add(self, spectrum: Spectrum | Mapping[str, Any]) -> Merged:
        """File a spectrum and return its group's merge (see `add_all`)."""
        return self.add_all(spectrum)[-1]

    def add_all(self, spectrum: Spectrum | Mapping[str, Any]) -> list[Merged]:
        """File a spectrum; the merges it changed, its own group's last. A new version of a
        file that lands in another group than the version it replaces (the file's sample
        corrected) changes the old group too: merged again without the old version, which it
        lists as superseded, so that one measurement counts once."""
        return [self.remerge(key, latest) for key, latest in self.file(spectrum)]

    def file(self, spectrum: Spectrum | Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
        """File a spectrum without merging: the groups whose merge it changed, each with the
        scan that merge names as its latest, its own group last (`add_all` merges them). A
        restarted merge files every spectrum of the earlier session and merges each group
        once (`remerge`): merging after each would cost n merges of up to n scans."""
        if not isinstance(spectrum, Spectrum):
            spectrum = Spectrum.from_json(spectrum)
        key = self.group_key(spectrum)
        entries = self._groups.setdefault(key, [])
        ident = scan_id(spectrum)
        replaces = spectrum.metadata.get("replaces")
        if replaces is not None:
            version = spectrum.metadata.get("file_version")
            self._replaced[str(replaces)] = (version, key, _source_key(ident))
        self._first_seen.setdefault(settings_key(spectrum), len(self._first_seen))
        entry = _Entry(ident, spectrum)
        self._arrival.setdefault(ident, len(self._arrival))
        for i, old in enumerate(entries):
            if old.scan_id == ident:  # redelivery: replace, never count twice
                entries[i] = entry
                break
        else:
            entries.append(entry)
        # scans arrive in any order (a transport promises none), but the anchor of the
        # alignment, the screening and the merged arrays must not depend on it
        entries.sort(key=_acquisition_order)
        changed = []
        if replaces is not None:
            for other, others in self._groups.items():
                stale = [e for e in others if _source_key(e.scan_id) == str(replaces)]
                if other != key and stale:
                    changed.append((other, stale[0].scan_id))
        # which of two groups' identical scans is the copy depends on both groups' scans: a
        # group sharing data with this one is screened again
        digests = {e.digest for e in entries}
        for other, others in self._groups.items():
            same = [e for e in others if e.digest in digests]
            if other != key and same:
                changed.append((other, same[0].scan_id))
        changed.append((key, ident))
        return changed

    def remerge(self, key: tuple[str, ...], latest: str) -> Merged:
        """The merge of the group filed under `key` as it stands, naming `latest` its latest
        scan (one of `file`'s answers)."""
        return self._remerge(key, self._groups[key], latest)

    def scale_fixed(self, key: tuple[str, ...]) -> bool:
        """Whether the group has merged scans once: its first merge fixes the noise scale its
        later merges compare theirs with (`_noise_series`), so a group's first merge is made
        when its first scans come, not only after the last."""
        return key in self._first_scale

    def _remerge(self, key: tuple[str, ...], entries: list[_Entry], latest: str) -> Merged:
        """Screen a group's entries and merge them."""
        no_majority = self._screen(self._current(entries), key)
        return self._merge(key, entries, latest, no_majority)

    def _measurement_order(self, key: tuple[str, ...], entry: _Entry) -> tuple[float, ...]:
        """How likely a scan is the measurement of identical data found in two groups, most
        likely first: the one among other scans of its sample (a DAQ writing one buffer to two
        files makes a lone file under another name; the sample measured has repeats), then the
        one the merge got first (its message made first, else filed first). Identical files
        carry the same start time, so the data cannot tell."""
        company = sum(
            1
            for e in self._groups.get(key, [])
            if e.digest != entry.digest and self._replacement(_source_key(e.scan_id)) is None
        )
        return (-company, _made_at(entry.spectrum), self._arrival.get(entry.scan_id, math.inf))

    def _copied_from(self, key: tuple[str, ...], entry: _Entry) -> tuple[_Entry, tuple] | None:
        """The scan of another group whose measured data are this one's bit for bit and that
        is the measurement rather than this one (`_measurement_order`), with its group; None
        when there is none. A file's earlier version that a later one replaces is no
        measurement (its sample corrected, it counts in the new group): not an original."""
        mine = self._measurement_order(key, entry)
        found = [
            (self._measurement_order(other, e), e, other)
            for other, others in self._groups.items()
            if other != key
            for e in others
            if e.digest == entry.digest and self._replacement(_source_key(e.scan_id)) is None
        ]
        found = [f for f in found if f[0] < mine]
        return (min(found, key=lambda f: f[0])[1:]) if found else None

    def _screen_copies_elsewhere(self, key: tuple[str, ...], entries: list[_Entry]) -> None:
        """A scan whose measured data are bit for bit those of a scan of another group (the
        same buffer saved under another sample's name) is no measurement of this group: left
        out, naming that scan and its group, instead of merged as a sample nobody measured."""
        for entry in entries:
            if entry.reasons:
                continue
            copied = self._copied_from(key, entry)
            if copied is None:
                continue
            original, group = copied
            where = ", ".join(f"{k} {v}" for k, v in zip(self.params.group_by, group, strict=True))
            entry.duplicate = True
            entry.reasons.append(
                f"duplicate of scan {_name(original)} of another group ({where}): the same "
                "measured data (energy, mu, I0), bit for bit, saved under another name, a copy "
                "rather than a measurement of this group"
            )

    # -- screening -----------------------------------------------------------------------------
    def _current(self, entries: list[_Entry]) -> list[_Entry]:
        """The entries normalised with the newest settings; the others are marked superseded
        (their E0, step and noise are not comparable, and the merge records one set)."""
        newest = self._newest(entries)
        key = settings_key(newest.spectrum)
        current = []
        for entry in entries:
            entry.superseded = settings_key(entry.spectrum) != key
            entry.replaced = False
            if not entry.superseded:
                current.append(entry)
                continue
            entry.shift, entry.shift_err = 0.0, None
            entry.reasons = [superseded_reason(entry.spectrum.settings, newest.spectrum.settings)]
        return self._latest_versions(current, self.group_key(newest.spectrum))

    def _newest(self, entries: list[_Entry]) -> _Entry:
        """The entry normalised with the settings in force most recently: the spectrum made
        last (`made_at`, its message's time in the transport, which the xas.merge unit adds),
        so that a session going back to earlier settings makes them the newest again, while an
        old spectrum redelivered or arriving late keeps its old time. Of spectra without it
        (outside a pipeline), or as old, the settings seen first most recently. The answer
        depends on the spectra, not on the order they came in (but for those ties): a
        restarted merge restoring them reaches the same."""
        return max(
            entries,
            key=lambda e: (_made_at(e.spectrum), self._first_seen[settings_key(e.spectrum)]),
        )

    def _latest_versions(self, entries: list[_Entry], key: tuple[str, ...]) -> list[_Entry]:
        """Without the versions of a file that a later version replaces: a scan file that
        changed after it was read (read before its writer had finished on a file system without
        events, or rewritten while the pipeline was stopped) is sent again, naming the source
        key of the version it `replaces`. The old read is no measurement of its own:
        superseded, not a rejected scan the agent counts as faulty."""
        kept = []
        for entry in entries:
            by = self._replacement(_source_key(entry.scan_id))
            if by is None:
                kept.append(entry)
                continue
            version, group = by
            entry.superseded = entry.replaced = True
            entry.shift, entry.shift_err = 0.0, None
            # the file changed after this version was read; why (read too early, or rewritten
            # while the pipeline was stopped) is the source's to tell, in its log
            later = f"version {version}" if version is not None else "a later version"
            reason = (
                f"replaced by {later} of the same file, which changed after this version was read"
            )
            if group != key:
                # its metadata changed (the sample's name corrected): it counts over there
                where = ", ".join(
                    f"{k} {v}" for k, v in zip(self.params.group_by, group, strict=True)
                )
                reason += f" and belongs to another group ({where}), where it is merged"
            entry.reasons = [reason]
        return kept

    def _replacement(self, key_read: str | None) -> tuple[Any, tuple[str, ...]] | None:
        """The newest version of the file that replaces the version read under `key_read`,
        and its group; None when no version replaces it. A version replaced in turn (the
        sample corrected from CuA to CuB, then back to CuA) is not where the file counts:
        naming it would send the scientist to a group that merges none of it."""
        by = self._replaced.get(key_read) if key_read is not None else None
        seen = {key_read}
        while by is not None and by[2] in self._replaced and by[2] not in seen:
            seen.add(by[2])
            by = self._replaced[by[2]]
        return None if by is None else (by[0], by[1])

    def _screen(self, entries: list[_Entry], key: tuple[str, ...]) -> dict[str, Any] | None:
        """Screen the group's entries (their `reasons`); what the merge says when the scans
        disagree with no majority, else None."""
        p = self.params
        for entry in entries:
            entry.reasons = []
            entry.duplicate = False
            entry.shift, entry.shift_err = 0.0, None
        self._screen_duplicates(entries)
        self._screen_copies_elsewhere(key, entries)
        for entry in entries:
            dumps = beam_loss_points(entry.spectrum, p.beam_dump_fraction)
            if dumps > p.beam_dump_max_points:
                entry.reasons.append(
                    f"beam loss: I0 below {p.beam_dump_fraction:g} x its median at {dumps} points"
                )
        self._screen_coverage([e for e in entries if not e.reasons])
        usable = [e for e in entries if not e.reasons]
        if p.align == "reference":
            self._align(entries, usable)
            usable = [e for e in entries if not e.reasons]
        return self._screen_outliers(usable) if usable else None

    @staticmethod
    def _screen_duplicates(entries: list[_Entry]) -> None:
        """A later scan with the same measured data as an earlier one is a copy (entries are in
        acquisition order), and merging it would count one measurement twice."""
        originals: list[_Entry] = []
        for entry in entries:
            original, same = next(
                ((o, s) for o in originals if (s := sameness(o, entry)) is not None),
                (None, None),
            )
            if original is None or same is None:
                originals.append(entry)
                continue
            if original.scan_id != entry.scan_id:
                entry.duplicate = True
                # the scan as the scientist knows it (its file), not the transport's key
                entry.reasons.append(
                    f"duplicate of scan {_name(original)}: {same.reason()}, "
                    "a copy rather than a repeat"
                )

    def _screen_coverage(self, usable: list[_Entry]) -> None:
        """Reject scans covering less than `min_range_coverage` of the group's energy range."""
        if len(usable) < 2:
            return
        ranges = [_energy_range(e) for e in usable]
        starts, ends = sorted(r[0] for r in ranges), sorted(r[1] for r in ranges)
        # the lower median of the starts and the upper one of the ends: the wider of the two
        # middle values, so one short scan of two cannot set the range
        lo, hi = starts[(len(usable) - 1) // 2], ends[len(usable) // 2]
        limit = self.params.min_range_coverage
        for entry, (start, end) in zip(usable, ranges, strict=True):
            covered = max(0.0, min(end, hi) - max(start, lo)) / (hi - lo) if hi > lo else 1.0
            if covered < limit:
                entry.reasons.append(
                    f"covers {start:.0f}-{end:.0f} eV (k up to {_k(entry, end):.2f} Å⁻¹), "
                    f"{covered:.0%} of the group's {lo:.0f}-{hi:.0f} eV (k up to "
                    f"{_k(entry, hi):.2f} Å⁻¹); limit {limit:.0%}"
                )

    def _agrees(self, reference: _Entry, entry: _Entry, by_half: bool = False) -> bool:
        """`entry` passes the outlier screening against `reference`'s edge position (the
        half-step energy with `by_half`, see `_half_step`, else E0) and edge step."""
        if entry is reference:
            return True
        p = self.params
        step, ref_step = _step(entry), _step(reference)
        deviation = abs(step - ref_step) / abs(ref_step) if ref_step else math.inf
        where = _half_step if by_half else _e0
        return (
            abs(where(entry) - where(reference)) <= p.max_e0_shift
            and deviation <= p.max_edge_step_deviation
        )

    def _screen_outliers(self, usable: list[_Entry]) -> dict[str, Any] | None:
        """Reject the scans that disagree with the majority (see the module's docstring); what
        the merge says when there is none."""
        p = self.params
        # the edge position compared: the half-step energy when every scan has one, else E0
        by_half = all(math.isfinite(_half_step(e)) for e in usable)
        agreeing = [[e for e in usable if self._agrees(ref, e, by_half)] for ref in usable]
        # the most agreeing; of as many, the first measured (entries are in acquisition order)
        best = max(range(len(usable)), key=lambda i: (len(agreeing[i]), -i))
        reference, majority = usable[best], agreeing[best]
        rivals = [
            e
            for e, others in zip(usable, agreeing, strict=True)
            if len(others) == len(majority) and e not in majority
        ]
        if rivals:
            return self._no_majority(usable, [reference, *rivals], by_half)
        e0_ref = float(np.median([_e0(e) for e in majority]))
        half_ref = float(np.median([_half_step(e) for e in majority])) if by_half else math.nan
        step_ref = float(np.median([_step(e) for e in majority]))
        for entry in usable:
            e0 = _e0(entry)
            step = _step(entry)
            half = _half_step(entry)
            if abs((half - half_ref) if by_half else (e0 - e0_ref)) > p.max_e0_shift:
                # begins with "E0 " (the agent's e0_drift counts the scans rejected for it)
                compared = (
                    f", and its half-step energy {half:.2f} eV (the edge position compared: "
                    f"less noisy than E0) is {half - half_ref:+.2f} eV from the group's "
                    f"{half_ref:.2f} eV"
                    if by_half
                    else ""
                )
                entry.reasons.append(
                    f"E0 {e0:.2f} eV is {e0 - e0_ref:+.2f} eV from the group's {e0_ref:.2f} eV"
                    f"{compared} (limit {p.max_e0_shift:g} eV)"
                )
            deviation = abs(step - step_ref) / abs(step_ref) if step_ref else math.inf
            if deviation > p.max_edge_step_deviation:
                entry.reasons.append(
                    f"edge step {step:.4g} differs by {_relative(deviation)} from the group's "
                    f"{step_ref:.4g} (limit {_relative(p.max_edge_step_deviation)})"
                )
        return None

    def _no_majority(
        self, usable: list[_Entry], heads: list[_Entry], by_half: bool = False
    ) -> dict[str, Any]:
        """Reject every usable scan: they disagree, and as many agree with one of `heads` as
        with another, so which is the measurement cannot be told."""
        p = self.params
        # no majority, so no group's median: two scans agree by these limits between them
        position = "half-step energies" if by_half else "E0s"
        limits = (
            f"two scans agree within {p.max_e0_shift:g} eV between their {position} and "
            f"{_relative(p.max_edge_step_deviation)} between their edge steps"
        )

        def edge(entry: _Entry) -> str:
            half = f", half-step energy {_half_step(entry):.2f} eV" if by_half else ""
            return f"E0 {_e0(entry):.2f} eV{half}"

        for entry in usable:
            others = [h for h in heads if not self._agrees(h, entry, by_half)]
            against = "; ".join(
                f"scan {_name(h)} has {edge(h)}, edge step {_step(h):.4g}" for h in others
            )
            what = f"{edge(entry)}," if by_half else edge(entry)
            entry.reasons.append(
                f"no majority: {what} and edge step {_step(entry):.4g} disagree "
                f"with the other scans ({against}; {limits}) and as many of the group's scans "
                "agree with either, so which is the measurement cannot be told: check the scans"
            )
        # every scan screened, not only the camps' heads: the sentence counts them all
        values = ", ".join(f"{_name(e)}: {edge(e)}, edge step {_step(e):.4g}" for e in usable)
        return {
            "scans": [e.scan_id for e in usable],
            "reason": (
                f"the {len(usable)} scans screened for E0 and edge step disagree ({values}; "
                f"{limits}) and no majority agrees with one of them, so nothing is merged"
            ),
        }

    def _anchor(self, usable: list[_Entry]) -> _Entry | None:
        """The scan whose foil the others are aligned on: the one whose foil's E0 agrees
        (within `max_e0_shift`) with the most others'. The first scan would let one drifted scan
        put every other on its energy scale, or reject them all beyond `max_align_shift`; the
        majority's foil, as the outlier screening's reference, does not depend on the files'
        names or order. Of as many (two scans that disagree: no majority), the one whose foil's
        E0 is nearest the tabulated edge energy of the group's element and edge (the reference
        foil is there to calibrate: the other is the miscalibrated scan); where that is not
        known, the first measured (entries are in acquisition order)."""
        with_foil = [e for e in usable if _foil(e.spectrum) is not None]
        if not with_foil:
            return None
        limit = self.params.max_e0_shift
        e0s = [_foil_e0(e) for e in with_foil]
        agreeing = [sum(abs(a - b) <= limit for b in e0s) for a in e0s]
        most = max(agreeing)
        tied = [e for e, n in zip(with_foil, agreeing, strict=True) if n == most]
        offsets = [_foil_offset(e) for e in tied]
        known = [(abs(o[0]), i) for i, o in enumerate(offsets) if o is not None]
        if len(tied) > 1 and len(known) == len(tied):
            return tied[min(known)[1]]  # nearest the edge; of as near, the first measured
        return tied[0]

    def _align(self, entries: list[_Entry], usable: list[_Entry]) -> None:
        """Fit each scan's foil onto the anchor's (see `_anchor`)."""
        p = self.params
        anchor = self._anchor(usable)
        if anchor is None:
            return
        a_energy, a_mu = _foil(anchor.spectrum)  # type: ignore[misc]
        a_e0 = float(anchor.spectrum.values.get("e0_ref") or math.nan)
        anchor.shift, anchor.shift_err = 0.0, 0.0
        for entry in entries:
            foil = _foil(entry.spectrum)
            if entry is anchor or foil is None:
                continue
            # every add re-screens the group: fit again only when the anchor changed
            if entry.fit is not None and entry.fit[0] is anchor.spectrum:
                fit = entry.fit[1]
            else:
                e0_ref = entry.spectrum.values.get("e0_ref")
                start = a_e0 - float(e0_ref) if e0_ref else 0.0
                try:
                    fit = fit_alignment(
                        foil[0], foil[1], a_energy, a_mu, a_e0, p.align_emin, p.align_emax, start
                    )
                except (SpectrumError, ValueError) as exc:
                    entry.reasons.append(f"alignment on the reference foil failed: {exc}")
                    continue
                entry.fit = (anchor.spectrum, fit)
            entry.shift, entry.shift_err = fit.shift, fit.stderr
            if not math.isfinite(fit.shift) or abs(fit.shift) > p.max_align_shift:
                entry.reasons.append(
                    f"alignment shift {fit.shift:+.2f} eV on the reference foil is beyond "
                    f"max_align_shift {p.max_align_shift:g} eV{_miscalibrated(entry, anchor)}"
                )

    # -- merging -------------------------------------------------------------------------------
    def _settings(self, spectrum: Spectrum) -> tuple[PreEdgeParams, AutobkParams, NoiseParams]:
        own = spectrum.settings or {}
        pre = self.params.pre_edge or PreEdgeParams.model_validate(own.get("pre_edge", {}))
        bkg = self.params.autobk or AutobkParams.model_validate(own.get("autobk", {}))
        noise = self.params.noise or NoiseParams.model_validate(own.get("noise", {}))
        return pre, bkg, noise

    def _merge(
        self,
        key: tuple[str, ...],
        entries: list[_Entry],
        latest: str,
        no_majority: dict[str, Any] | None = None,
    ) -> Merged:
        group: dict[str, Any] = dict(zip(self.params.group_by, key, strict=True))
        code = self._newest(entries).spectrum.settings.get("normalizer")

        def other_code(entry: _Entry) -> bool:
            return entry.superseded and entry.spectrum.settings.get("normalizer") != code

        accepted = [e for e in entries if not e.reasons]
        rejected = [
            {
                "scan": e.scan_id,
                "reasons": list(e.reasons),
                **({"superseded": True} if e.superseded else {}),
                # normalised by other code than the merged scans: the merge unit warns of it
                **({"normalised_by": normaliser(e.spectrum.settings)} if other_code(e) else {}),
                **({"duplicate": True} if e.duplicate else {}),
                # not a measurement of its own: the agent counts the file once (`replaced`)
                **({"replaced": True} if e.replaced else {}),
            }
            for e in entries
            if e.reasons
        ]
        # all accepted scans share their settings (see _current): these are the ones used
        used = self._settings(accepted[0].spectrum) if accepted else None
        scans = [
            {
                "scan": e.scan_id,
                "accepted": not e.reasons,
                "e0": _e0(e),
                # the edge position the screening compares; the agent's drift follows it too
                "half_step": _half_step(e),
                "edge_step": e.spectrum.values.get("edge_step"),
                # on the merge's scale: the agent fits them with the merges' noise
                **(_scan_noise(e, *used) if used and not e.superseded else _own_noise(e)),
                "shift": e.shift,
                "shift_err": e.shift_err,
                **self._reading(e),
                **_label_conflict(e),
            }
            for e in entries
        ]
        if not accepted or used is None:
            return Merged(group, 0, [], rejected, latest, {}, {}, scans, no_majority=no_majority)
        energies = [e.spectrum.arrays["energy"] + e.shift for e in accepted]
        mus = [e.spectrum.arrays["mu"] for e in accepted]
        grid, mean, std = merge_mu(energies, mus)
        if len(grid) < 20:
            raise SpectrumError(
                f"the scans of {group} share only {len(grid)} energies; they cannot be merged"
            )
        n = len(accepted)
        # merge_groups' spread is the population std; the mean's standard error uses ddof=1
        stderr = std / math.sqrt(n - 1) if n > 1 else np.full_like(mean, np.nan)
        glitches: list[dict[str, Any]] = []
        if n > 1:
            mean, stderr, glitches = _deglitched(
                grid,
                mean,
                stderr,
                interpolated(energies, mus, grid),
                [(e.scan_id, _name(e)) for e in accepted],
            )
        pre, bkg, noise = used
        arrays, values = analyse(grid, mean, pre, bkg, noise)
        arrays["mu_stderr"] = stderr
        settings = {
            **program(),
            # the code that normalised the merged scans (all the same, see _current)
            **_normalizer(accepted[0].spectrum),
            # and how they computed mu: the agent fits together only noise of merges alike
            **_normalised_as(accepted[0].spectrum),
            "align": self.params.align,
            "pre_edge": pre.model_dump(),
            "autobk": bkg.model_dump(),
            "noise": noise.model_dump(),
            "deglitch": deglitch_settings(),
        }
        own = _own_settings(accepted[0].spectrum)
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
            self._noise_series(key, group, settings),
            noise_by_merge=_noise_override(used, own),
            glitches=glitches,
        )

    def _noise_series(
        self, key: tuple[str, ...], group: dict[str, Any], settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The group, and what changed in the noise's scale since the group's first merge."""
        scale = noise_scale(settings)
        first = self._first_scale.setdefault(key, scale)
        if scale == first:
            return dict(group)
        return {**group, "settings": settings_difference(scale, first)}


def _deglitched(
    grid: np.ndarray,
    mean: np.ndarray,
    stderr: np.ndarray,
    rows: np.ndarray,
    names: list[tuple[str, str]],
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """The mean and its standard error without the glitch points (`GLITCH_RULE`), and what
    was found. Points of the mean with no glitch are merge_groups' own, untouched."""
    flagged, scores = find_glitches(grid, rows)
    glitches = glitch_record(grid, flagged, scores, names)
    if len(names) < 3 or not glitches:
        return mean, stderr, glitches
    keep = ~flagged
    at = ~keep.all(axis=0)
    mean, stderr = mean.copy(), stderr.copy()
    for j in np.flatnonzero(at):
        values = rows[keep[:, j], j]
        mean[j] = values.mean()
        stderr[j] = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else np.nan
    return mean, stderr, glitches


def _label_conflict(entry: _Entry) -> dict[str, Any]:
    """`{"label_conflict": {"header": "Cu K", "file_name": "Fe K", "file": ...}}` of a scan
    whose header and file name name different edges (`xas.scan-files` finds it): grouped as
    the header says, it may make a group nobody planned, which the merge result, its summary
    and the agent must say. Only when there is one: a merge's key is its content."""
    conflict = entry.spectrum.metadata.get("label_conflict")
    if not isinstance(conflict, Mapping):
        return {}
    return {"label_conflict": {**conflict, "file": entry.spectrum.metadata.get("file")}}


def label_conflicts(merged: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `label_conflict`s of a merge's scans (`_label_conflict`), copies of scans left
    out: a copy is no scan of the group."""
    copies = {str(r.get("scan")) for r in merged.get("rejected", []) if r.get("duplicate")}
    return [
        dict(s["label_conflict"])
        for s in merged.get("scans", [])
        if isinstance(s.get("label_conflict"), Mapping) and str(s.get("scan")) not in copies
    ]


def only_by_label_conflict(merged: Mapping[str, Any]) -> bool:
    """Whether the group exists only because of scans whose header contradicts their file name:
    every scan of it has a `label_conflict`. Nobody planned such a group (a Cu foil saved under
    an Fe series' name): no more scans of it are asked for."""
    copies = {str(r.get("scan")) for r in merged.get("rejected", []) if r.get("duplicate")}
    scans = [s for s in merged.get("scans", []) if str(s.get("scan")) not in copies]
    return bool(scans) and len(label_conflicts(merged)) == len(scans)


def label_conflict_text(merged: Mapping[str, Any]) -> str:
    """`20K_GOE_Fe_K_240.00002.xdi: header Cu K, file name Fe K; ...`, '' for none."""
    return "; ".join(
        f"{c.get('file')}: header {c.get('header')}, file name {c.get('file_name')}"
        for c in label_conflicts(merged)
    )


#: the values that say a spectrum's noise and the k window it is measured over
NOISE_VALUES = ("epsilon_k", "noise_kmin", "noise_kmax")


def _own_noise(entry: _Entry) -> dict[str, Any]:
    """The noise `xas.normalize` found for the scan, with its own settings."""
    return {k: entry.spectrum.values.get(k) for k in NOISE_VALUES}


def _own_settings(
    spectrum: Spectrum,
) -> tuple[PreEdgeParams, AutobkParams, NoiseParams]:
    own = spectrum.settings or {}
    return (
        PreEdgeParams.model_validate(own.get("pre_edge", {})),
        AutobkParams.model_validate(own.get("autobk", {})),
        NoiseParams.model_validate(own.get("noise", {})),
    )


def _noise_override(
    used: tuple[PreEdgeParams, AutobkParams, NoiseParams],
    own: tuple[PreEdgeParams, AutobkParams, NoiseParams],
) -> str | None:
    """What of the merge's analysis settings differs from the merged scans' own, in words
    (`noise.kweight 3, not 2`); None when the merge analyses as they were."""
    names = ("pre_edge", "autobk", "noise")
    mine = {n: m.model_dump() for n, m in zip(names, used, strict=True)}
    theirs = {n: m.model_dump() for n, m in zip(names, own, strict=True)}
    return None if mine == theirs else settings_difference(mine, theirs)


def _scan_noise(
    entry: _Entry, pre: PreEdgeParams, bkg: AutobkParams, noise: NoiseParams
) -> dict[str, Any]:
    """The scan's noise under the merge's analysis settings. Where they are the scan's own,
    what `xas.normalize` found; where the merge overrides them (its `noise`, `pre_edge` or
    `autobk`), the noise of the merge and of each scan must be measured alike, or the merge
    of two scans at kweight 3 (1.06e-4) beside single scans at kweight 2 (1.55e-4, 1.36e-4)
    reads as ideal averaging and the agent fits a floor from two scales. Only the noise
    settings differing, from the scan's own chi(k); else its mu analysed again. NaN values
    (None) when that analysis fails on the scan: it is then no point of the noise history."""
    own = _own_settings(entry.spectrum)
    if (pre, bkg, noise) == own or not noise.enabled or not bkg.enabled:
        return _own_noise(entry)
    key = json.dumps([pre.model_dump(), bkg.model_dump(), noise.model_dump()], sort_keys=True)
    if key not in entry.noise_under:
        entry.noise_under[key] = _noise_again(entry.spectrum, (pre, bkg, noise), own)
    return dict(entry.noise_under[key])


def _noise_again(
    spectrum: Spectrum,
    used: tuple[PreEdgeParams, AutobkParams, NoiseParams],
    own: tuple[PreEdgeParams, AutobkParams, NoiseParams],
) -> dict[str, Any]:
    pre, bkg, noise = used
    k, chi = spectrum.arrays.get("k"), spectrum.arrays.get("chi")
    try:
        if (pre, bkg) == own[:2] and k is not None and chi is not None:
            values: Mapping[str, Any] = normalize.estimate_noise(k, chi, noise)
        else:
            energy, mu = spectrum.arrays["energy"], spectrum.arrays["mu"]
            values = analyse(energy, mu, pre, bkg, noise)[1]
    except (SpectrumError, ValueError, KeyError):
        return dict.fromkeys(NOISE_VALUES)
    return {k: _plain(values.get(k)) for k in NOISE_VALUES}


def _plain(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def merge_mu(
    energies: list[np.ndarray], mus: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid, mean mu, std of mu) by xraylarch's `merge_groups` on the first scan's grid
    within the energies every scan covers (beyond them merge_groups would extrapolate).

    The grid is given as merge_groups' `master`, already clipped, rather than trimmed by
    `trim=True`: that slices up to the last common energy, leaving it out, so every merge lost
    its last point (a merge of one scan was not that scan, and its noise window ended a step
    early: 0.7-0.9 % more noise on coarse high-k steps). Each scan is still interpolated from
    all of its points, and merge_groups' cubic-to-linear fallback looks at the same range."""
    from larch import Group
    from larch.io import merge_groups

    groups = [
        Group(energy=np.asarray(e, dtype=float), mu=np.asarray(m, dtype=float))
        for e, m in zip(energies, mus, strict=True)
    ]
    lo = max(float(np.min(e)) for e in energies)
    hi = min(float(np.max(e)) for e in energies)
    first = groups[0]
    inside = (first.energy >= lo) & (first.energy <= hi)
    master = Group(energy=first.energy[inside], mu=first.mu[inside])
    out = merge_groups(
        groups, master=master, xarray="energy", yarray="mu", kind="cubic", trim=False
    )
    return np.asarray(out.energy, dtype=float), np.asarray(out.mu), np.asarray(out.mu_std)


def _normalizer(spectrum: Spectrum) -> dict[str, Any]:
    made_by = (spectrum.settings or {}).get("normalizer")
    return {"normalizer": dict(made_by)} if isinstance(made_by, Mapping) else {}


def _normalised_as(spectrum: Spectrum) -> dict[str, Any]:
    """The merged spectra's own settings that the merge does not redo: the mode mu was
    computed in and the energy calibration."""
    own = spectrum.settings or {}
    return {k: own[k] for k in ("mode", "calibrate") if k in own}


def _foil(spectrum: Spectrum) -> tuple[np.ndarray, np.ndarray] | None:
    mu_ref = spectrum.arrays.get("mu_ref")
    if mu_ref is None or not spectrum.values.get("e0_ref"):
        return None
    return spectrum.arrays["energy"], mu_ref


def _foil_e0(entry: _Entry) -> float:
    """The E0 normalize found on the scan's reference foil (eV, as measured)."""
    return float(entry.spectrum.values.get("e0_ref") or math.nan)


def _foil_offset(entry: _Entry) -> tuple[float, float, str] | None:
    """(foil E0 - edge energy, edge energy, its name): how far the scan's reference foil's E0
    is from the energy of the edge it is measured at, the energy `xas.normalize` calibrates to
    (`calibration_energy`, else the tabulated energy of the scan's element and edge: the foil
    is of the sample's element); None when neither is known."""
    meta = entry.spectrum.metadata
    e0 = _foil_e0(entry)
    target = meta.get("calibration_energy")
    if isinstance(target, int | float) and not isinstance(target, bool) and math.isfinite(target):
        return e0 - float(target), float(target), "calibration energy"
    element, edge = meta.get("element"), meta.get("edge")
    if not element or not edge or not math.isfinite(e0):
        return None
    try:
        energy = normalize.tabulated_edge_energy(str(element), str(edge))
    except SpectrumError:
        return None
    return e0 - energy, energy, f"tabulated {element} {edge} edge"


def _miscalibrated(entry: _Entry, anchor: _Entry) -> str:
    """What the foils say of a scan the alignment rejects: how far its foil's E0 and the
    anchor's are from the edge's energy (empty when it is not known)."""
    mine, theirs = _foil_offset(entry), _foil_offset(anchor)
    if mine is None or theirs is None:
        return ""
    return (
        f": its reference foil's E0 {_foil_e0(entry):.2f} eV is {mine[0]:+.2f} eV from the "
        f"{mine[2]} ({mine[1]:.2f} eV), that of scan {_name(anchor)}, the anchor, "
        f"{theirs[0]:+.2f} eV: its energy scale is off"
    )


def _energy_range(entry: _Entry) -> tuple[float, float]:
    energy = entry.spectrum.arrays["energy"]
    return float(np.min(energy)), float(np.max(energy))


def _k(entry: _Entry, energy: float) -> float:
    """k (Å⁻¹) at an energy, from the scan's own E0 (xraylarch's `etok`)."""
    from larch.xafs import etok

    return float(etok(max(0.0, energy - float(entry.spectrum.values.get("e0") or energy))))


def _source_key(ident: str) -> str | None:
    """The source's key of the message a scan id names (`<unit>|<port>|key:<key>`: the key
    xas.scan-files gives a file's version, which `replaces` names), None for other ids."""
    _, sep, key = ident.rpartition("|key:")
    return key if sep else None


def _step(entry: _Entry) -> float:
    return float(entry.spectrum.values["edge_step"] or 0.0)


def _name(entry: _Entry) -> str:
    """A scan as the scientist knows it: its file's name."""
    return str(entry.spectrum.metadata.get("file") or entry.scan_id)


def _e0(entry: _Entry) -> float:
    return float(entry.spectrum.values["e0"] or math.nan) + entry.shift


#: The edge position the outlier screening compares: the energy where the normalised mu
#: crosses half the edge step (linearly interpolated), not xraylarch's E0. E0 is the maximum of
#: dmu/dE, which noise moves from one feature of the edge to another: on the two bundled
#: goethite repeats in fluorescence (If/I0, noise about 1 % of the edge step per point) E0 is
#: 7122.63 and 7126.12 eV, and refitting each with as much noise again scatters it by 1.1 and
#: 0.45 eV (standard deviation; over 4 eV in all), while their half-step energies, 7123.14 and
#: 7123.28 eV, scatter by 0.07 eV: the two repeats agree. In transmission (noise 1e-4) E0 is
#: 7126.91 and 7127.17 eV and the half-step energies 7124.22 and 7124.23 eV (scatter 0.001 eV).
#: A real shift of the sample's edge (a changed sample) moves both by as much, so it is caught
#: as before, and in noisy data too, where E0 can hide it: the first fluorescence repeat with
#: its sample's mu moved by 3 eV has E0 7125.83 eV, 0.3 eV from the other's, and its half-step
#: energy 2.9 eV away. Widening the E0 limit by E0's scatter instead (1.2 eV for the two
#: together: 1 + 2 x 1.2 eV) would have let that 3 eV shift pass. E0 stays the value the
#: merge reports; the half-step energy only decides the screening.
HALF_STEP = 0.5


def _half_step(entry: _Entry) -> float:
    """The energy (after alignment) where the scan's normalised mu crosses `HALF_STEP` going up,
    the crossing nearest its E0 (a pre-edge peak may cross too; noise may add crossings within
    its own size of the edge's), NaN when it never does (a spectrum without `norm`)."""
    energy = entry.spectrum.arrays.get("energy")
    norm = entry.spectrum.arrays.get("norm")
    if energy is None or norm is None or len(norm) != len(energy) or len(norm) < 2:
        return math.nan
    energy, norm = np.asarray(energy, dtype=float), np.asarray(norm, dtype=float)
    up = np.flatnonzero((norm[:-1] < HALF_STEP) & (norm[1:] >= HALF_STEP))
    if not up.size:
        return math.nan
    de, dn = energy[up + 1] - energy[up], norm[up + 1] - norm[up]
    crossings = energy[up] + (HALF_STEP - norm[up]) * de / dn
    e0 = float(entry.spectrum.values.get("e0") or math.nan)
    nearest = int(np.argmin(np.abs(crossings - e0))) if math.isfinite(e0) else 0
    return float(crossings[nearest]) + entry.shift


def beam_loss_points(spectrum: Spectrum, fraction: float) -> int:
    """Points where I0 falls below `fraction` of its median (0 when the scan has no I0)."""
    i0 = spectrum.arrays.get("i0")
    if i0 is None or len(i0) == 0:
        return 0
    median = float(np.nanmedian(i0))
    if median <= 0:
        return len(i0)
    return int(np.sum(i0 < fraction * median))
