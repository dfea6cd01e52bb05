"""Normalisation of one scan with xraylarch: mu(E), calibration, pre_edge, autobk, noise.

The numerics are xraylarch's (`pre_edge`, `autobk`, `xftf`/`xftr` for the noise, tabulated edges
from `xray_edge`, element and edge from E0 with xraydb's `guess_edge`); this module computes mu
from the detector channels, passes every parameter on, and packs the results into a `Spectrum`,
the body of an `xas/spectrum` message.

    mu_transmission = ln(I0 / It)     mu_fluorescence = If / I0     mu_reference = ln(It / Iref)

The sample's mu never depends on the reference channel: a scan whose reference foil is unusable
(Iref dead or switched off, zero or missing counts) is normalised without it, with a note, and
only `calibrate`, which needs the foil, refuses it (see `reference_foil`).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asapo_pipelines_xas.errors import EdgeLabelError, SpectrumError
from asapo_pipelines_xas.params import AutobkParams, NoiseParams, NormalizeParams, PreEdgeParams
from asapo_pipelines_xas.readers import Scan, canonical_edge, canonical_element, canonical_label

#: Arrays a spectrum carries (on the scan's energy grid unless named k/chi).
ENERGY_ARRAYS = (
    "energy",
    "mu",
    "norm",
    "flat",
    "pre_edge_line",
    "post_edge",
    "bkg",
    "i0",
    "mu_ref",
)
K_ARRAYS = ("k", "chi")
SCALARS = (
    "e0",
    "edge_step",
    "epsilon_k",
    "epsilon_r",
    "kmax_suggest",
    "noise_kmin",
    "noise_kmax",
    "e0_ref",
    "energy_shift",
    *("pre1", "pre2", "norm1", "norm2", "nnorm"),
    *("autobk_rbkg", "autobk_kweight", "autobk_kmin", "autobk_kmax", "autobk_nknots"),
)
#: below max(k) by this much ends the noise window when `noise.kmax` is unset (Å⁻¹)
NOISE_KMAX_MARGIN = 0.5


@dataclass
class Spectrum:
    """Results of normalising one scan (the `xas/spectrum` message body)."""

    metadata: dict[str, Any]
    arrays: dict[str, np.ndarray]
    values: dict[str, float | None]
    #: the xraylarch settings used, so that the merge can analyse its mean the same way
    settings: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        # spectrum.e0, spectrum.norm, ... read naturally; only called for missing attributes
        if name in ("arrays", "values"):
            raise AttributeError(name)
        if name in self.arrays:
            return self.arrays[name]
        if name in self.values:
            return self.values[name]
        raise AttributeError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "metadata": dict(self.metadata),
            "values": {k: _json_float(v) for k, v in self.values.items()},
            "arrays": {k: _json_array(v) for k, v in self.arrays.items()},
            "settings": self.settings,
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Spectrum:
        try:
            arrays = {k: np.asarray(v, dtype=float) for k, v in dict(body["arrays"]).items()}
            values = {k: (None if v is None else float(v)) for k, v in dict(body["values"]).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise SpectrumError(f"not an xas/spectrum message ({exc})") from None
        return cls(dict(body.get("metadata", {})), arrays, values, dict(body.get("settings", {})))


def _json_float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _json_array(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=float)]


# -- mu ----------------------------------------------------------------------------------------


def compute_mu(scan: Scan, mode: str) -> np.ndarray:
    """mu(E) of a scan in the given mode, with a clear error for missing or bad channels."""
    if mode == "mu":
        return _need(scan, "mu", mode).copy()
    if mode == "transmission":
        return _log_ratio(scan, "i0", "it", mode)
    if mode == "reference":
        return _log_ratio(scan, "it", "iref", mode)
    if mode == "fluorescence":
        i0 = _need(scan, "i0", mode)
        fluo = _need(scan, "if", mode)
        if np.any(i0 == 0):
            raise SpectrumError(
                f"{_label(scan)}: I0 is zero at {int(np.sum(i0 == 0))} points, so If/I0 is "
                "undefined there"
            )
        return fluo / i0
    raise SpectrumError(f"unknown mode {mode!r}")


def _label(scan: Scan) -> str:
    return str(scan.metadata.get("file") or scan.metadata.get("sample") or "scan")


def _need(scan: Scan, role: str, mode: str) -> np.ndarray:
    values = scan.channel(role)
    if values is None and _switched_off(scan, role):
        raise SpectrumError(
            f"{_label(scan)}: mode {mode} needs the {role} channel, which xas.scan-files "
            f"switches off (`columns: {{{role}: null}}`)"
        )
    if values is None:
        have = ", ".join(scan.channels) or "none"
        missing = (
            f"{_label(scan)}: mode {mode} needs the {role} channel, which the scan does not have "
            f"(channels: {have})"
        )
        if mode in ("transmission", "fluorescence") and scan.channel("mu") is not None:
            # a file with its absorption already computed (XDI `mutrans`, often with i0 only):
            # reading its mu is the remedy; a column under an unusual name is the rarer case
            column = dict(scan.metadata.get("columns") or {}).get("mu")
            named = f" (column {column})" if column else ""
            raise SpectrumError(
                f"{missing}; the file has mu already{named}: `mode: mu` in xas.normalize uses "
                f"it (if the file has an {role} column under another name, map it with "
                "`columns` in xas.scan-files)"
            )
        raise SpectrumError(f"{missing}; map it with `columns` in xas.scan-files")
    return values


def _log_ratio(scan: Scan, num: str, den: str, mode: str) -> np.ndarray:
    a, b = _need(scan, num, mode), _need(scan, den, mode)
    bad = _not_counts(a) | _not_counts(b)
    if np.any(bad):
        raise SpectrumError(
            f"{_label(scan)}: ln({num}/{den}) needs positive counts, but {int(bad.sum())} points "
            f"are zero, negative or missing"
        )
    return np.log(a / b)


def _not_counts(values: np.ndarray) -> np.ndarray:
    """Where a channel holds no count a logarithm can take: zero, negative, missing (null in
    the message: nan) or infinite."""
    values = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        return ~(np.isfinite(values) & (values > 0))


# -- xraylarch ---------------------------------------------------------------------------------


def _kwargs(model: PreEdgeParams | AutobkParams) -> dict[str, Any]:
    data = model.model_dump()
    data.pop("enabled", None)
    return data


def noise_window(k: np.ndarray, noise: NoiseParams) -> tuple[float, float]:
    """(kmin, kmax) of the noise window: `kmax` unset is max(k) - 0.5, inside the data."""
    kmax = noise.kmax if noise.kmax is not None else float(np.max(k)) - NOISE_KMAX_MARGIN
    if kmax <= noise.kmin:
        raise SpectrumError(
            f"the noise window is empty: kmax {kmax:.2f} is not above kmin {noise.kmin:g} "
            f"(the data end at k = {float(np.max(k)):.2f} Å⁻¹)"
        )
    return float(noise.kmin), float(kmax)


def estimate_noise(k: np.ndarray, chi: np.ndarray, noise: NoiseParams) -> dict[str, float]:
    """xraylarch's `estimate_noise`, step for step, with every parameter taking effect.

    Why not the function itself: in xraylarch 2026.3.1 it hands the window to `xftf` as
    `kwindow=`, which `xftf` ignores (it reads `window=`), so the window is always Kaiser; and
    with a coarse `kstep` its index `nfft/2` becomes a float and it raises. Otherwise this is its
    method: RMS of chi(R) over [rmin, rmax] scaled by the window's mean (epsilon_r), Parseval's
    theorem to chi(k) (epsilon_k), and kmax_suggest from the back-transform. With the Kaiser
    window the numbers are xraylarch's own (tested).
    """
    from larch import Group
    from larch.math import index_of, realimag
    from larch.xafs import xftf, xftr

    kmin, kmax = noise_window(k, noise)
    nfft, kstep, kweight = noise.nfft, noise.kstep, noise.kweight
    tmp = Group()
    xftf(
        k,
        chi,
        kmin=kmin,
        kmax=kmax,
        rmax_out=min(10 * math.pi, noise.rmax + 2),
        kweight=kweight,
        dk=noise.dk,
        dk2=noise.dk2,
        window=noise.kwindow,
        nfft=nfft,
        kstep=kstep,
        group=tmp,
    )
    rstep = float(tmp.r[1] - tmp.r[0])
    irmin = int(0.01 + noise.rmin / rstep)
    irmax = min(nfft // 2, int(1.01 + noise.rmax / rstep))
    highr = realimag(tmp.chir[irmin:irmax])
    if irmax <= irmin or len(highr) == 0:
        raise SpectrumError(
            f"the noise region R = [{noise.rmin:g}, {noise.rmax:g}] Å holds no points of chi(R) "
            f"(nfft {nfft}, kstep {kstep:g})"
        )
    kwin_ave = float(tmp.kwin.sum()) * kstep / (kmax - kmin)
    eps_r = math.sqrt(float((highr * highr).sum()) / len(highr)) / kwin_ave
    w = 2 * kweight + 1
    eps_k = math.sqrt((2 * math.pi * w) / (kstep * (kmax**w - kmin**w))) * eps_r
    xftr(
        tmp.r,
        tmp.chir,
        group=tmp,
        rmin=0.5,
        rmax=9.5,
        dr=1.0,
        window="parzen",
        nfft=nfft,
        kstep=kstep,
    )
    iq0 = index_of(tmp.q, (kmax + kmin) / 2.0)
    test = tmp.chiq_mag[iq0:] / tmp.q[iq0:] ** kweight
    below = np.where(test < eps_k)[0]
    kmax_suggest = float(tmp.q[iq0 + below[0]]) if len(below) else float(tmp.q[-1])
    return {
        "epsilon_k": float(eps_k),
        "epsilon_r": float(eps_r),
        "kmax_suggest": kmax_suggest,
        "noise_kmin": kmin,
        "noise_kmax": kmax,
    }


#: the ranges xraylarch's `pre_edge` used, as it reports them (`pre_edge_details`)
PRE_EDGE_USED = ("pre1", "pre2", "norm1", "norm2", "nnorm")


def pre_edge_used(group: Any) -> dict[str, float | None]:
    """The pre-edge and post-edge ranges (eV from E0) and post-edge degree `pre_edge` used.

    Recorded with every result beside the settings as given, which stay `null` where xraylarch
    chooses: from the data (norm2 the last point), and by rules of its version (2026.3.1:
    pre2 = pre1/2, norm1 = min(25, norm2/15)), which its docstring states otherwise (pre2
    about pre1/3, norm1 about min(150, norm2/3)). The edge step, so chi(k) and its noise,
    depend on them (norm1 150 instead of 25 moves goethite's by 2.3 %)."""
    details = getattr(group, "pre_edge_details", None)
    return {name: _number(getattr(details, name, None)) for name in PRE_EDGE_USED}


def autobk_used(group: Any, autobk: AutobkParams) -> dict[str, float | None]:
    """What `autobk` used: its rbkg (raised to two R-grid steps when below), k-weight, the
    spline's k range (kmax the end of the data when unset) and number of knots (from rbkg
    and the k range when unset), as it reports them (`autobk_details`, `rbkg`)."""
    details = getattr(group, "autobk_details", None)
    return {
        "autobk_rbkg": _number(getattr(group, "rbkg", None)),
        "autobk_kweight": float(autobk.kweight),  # autobk applies it as given
        "autobk_kmin": _number(getattr(details, "kmin", None)),
        "autobk_kmax": _number(getattr(details, "kmax", None)),
        "autobk_nknots": _number(getattr(details, "nknots", None)),
    }


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def analyse(
    energy: np.ndarray,
    mu: np.ndarray,
    pre_edge: PreEdgeParams,
    autobk: AutobkParams,
    noise: NoiseParams,
) -> tuple[dict[str, np.ndarray], dict[str, float | None]]:
    """Run xraylarch's pre_edge, then autobk and estimate_noise if enabled."""
    from larch import Group
    from larch.xafs import autobk as larch_autobk
    from larch.xafs import pre_edge as larch_pre_edge

    group = Group()
    _check_fixed_e0(energy, pre_edge.e0)
    try:
        larch_pre_edge(energy, mu, group=group, **_kwargs(pre_edge))
    except Exception as exc:  # xraylarch raises bare ValueError/IndexError on unusable data
        raise SpectrumError(f"pre_edge failed: {exc}") from None
    arrays = {
        "energy": np.asarray(energy, dtype=float),
        "mu": np.asarray(mu, dtype=float),
        "norm": np.asarray(group.norm, dtype=float),
        "pre_edge_line": np.asarray(group.pre_edge, dtype=float),
        "post_edge": np.asarray(group.post_edge, dtype=float),
    }
    if pre_edge.make_flat and getattr(group, "flat", None) is not None:
        arrays["flat"] = np.asarray(group.flat, dtype=float)
    values: dict[str, float | None] = {
        "e0": float(group.e0),
        "edge_step": float(group.edge_step),
    }
    if not math.isfinite(values["e0"] or math.nan) or not values["edge_step"]:
        raise SpectrumError("pre_edge found no absorption edge in this spectrum")
    # what xraylarch chose, after the results: `pipeline tail` shows values in this order, and
    # a line cut at the terminal's width must still show the noise
    used = pre_edge_used(group)
    if autobk.enabled:
        try:
            larch_autobk(energy, mu, group=group, **_kwargs(autobk))
        except Exception as exc:
            raise SpectrumError(f"autobk failed: {exc}") from None
        used.update(autobk_used(group, autobk))
        arrays["bkg"] = np.asarray(group.bkg, dtype=float)
        arrays["k"] = np.asarray(group.k, dtype=float)
        arrays["chi"] = np.asarray(group.chi, dtype=float)
        if noise.enabled:
            try:
                values.update(estimate_noise(group.k, group.chi, noise))
            except SpectrumError:
                raise
            except Exception as exc:
                raise SpectrumError(f"estimate_noise failed: {exc}") from None
    return arrays, {**values, **used}


def program() -> dict[str, str]:
    """Name and version of the library that did the numerics (for provenance)."""
    from importlib.metadata import version

    return {"program": "xraylarch", "version": version("xraylarch")}


def tabulated_edge_energy(element: str, edge: str) -> float:
    """Edge energy in eV from xraylarch's tables (xraydb)."""
    from larch.xray import xray_edge

    try:
        return float(xray_edge(element, edge).energy)
    except Exception:
        raise SpectrumError(f"no tabulated {edge} edge for element {element!r}") from None


#: the edges an E0 is matched with, by how often XAS is measured there: K and L3 edges first;
#: L2, L1 and M5 only when neither fits (an oxidised iron's E0 lies 14 eV above Fe K and on Nd
#: L1, which nobody measures at 7 keV: xraydb's `guess_edge` says Nd L1 there)
COMMON_EDGES = ("K", "L3")
RARE_EDGES = ("L2", "L1", "M5")
#: where a measured E0 lies from its edge's tabulated energy, in eV: a chemical shift moves it
#: up by up to about 20 eV (Fe(III) +14, S(VI) +10, V(V) +15 to +20), calibration a few eV
#: either way
E0_FROM_EDGE = (-5.0, 25.0)


def edge_candidates(e0: float) -> list[tuple[str, str, float]]:
    """(element, edge, tabulated energy) of the edges E0 may be the E0 of (`E0_FROM_EDGE`),
    the likeliest first: a common edge before a rare one, then the nearer."""
    from xraydb import guess_edge, xray_edge

    found: list[tuple[int, float, str, str, float]] = []
    for edge in (*COMMON_EDGES, *RARE_EDGES):
        # the nearest element of each series (edges of one series lie hundreds of eV apart)
        element, _ = guess_edge(e0, edges=(edge,))
        if not element:
            continue
        tabulated = float(xray_edge(element, edge).energy)
        low, high = E0_FROM_EDGE
        if low <= e0 - tabulated <= high:
            tier = 0 if edge in COMMON_EDGES else 1
            found.append((tier, abs(e0 - tabulated), str(element), edge, tabulated))
    return [(element, edge, tabulated) for *_, element, edge, tabulated in sorted(found)]


def identify_edge(
    e0: float, candidates: list[tuple[str, str, float]] | None = None
) -> tuple[str, str, float] | None:
    """(element, edge, tabulated energy) E0 is likeliest the E0 of: the nearest K or L3 edge
    in reach (`edge_candidates`); else xraydb's `guess_edge` (the guess xraylarch's `pre_edge`
    makes); None when nothing fits. `candidates`: `edge_candidates(e0)`, when known."""
    from xraydb import guess_edge, xray_edge

    if not math.isfinite(e0) or e0 < 100:
        return None
    # a rare edge is never taken for being near: a Fe K scan 13 to 27 eV off (a calibration
    # error) would be Nd L1; beyond the common edges' reach, xraydb's guess prefers K edges
    if candidates is None:
        candidates = edge_candidates(e0)
    common = [c for c in candidates if c[1] in COMMON_EDGES]
    if common:
        return common[0]
    element, edge = guess_edge(e0)
    if not element or not edge:
        return None
    return str(element), str(edge), float(xray_edge(element, edge).energy)


def _window_method(source: str) -> str:
    """`identity.method` of a label from `edge_candidates` (`E0_FROM_EDGE`), in the docs'
    words: the tabulated edge lies below E0 by up to 25 eV, above it by up to 5."""
    low, high = E0_FROM_EDGE
    return (
        f"the nearest K or L3 edge tabulated (xraydb) between {-low:g} eV above the {source} "
        f"and {high:g} eV below it"
    )


def _guess_method(source: str) -> str:
    """`identity.method` of a label from xraydb's `guess_edge` (`identify_edge`'s fallback)."""
    low, high = E0_FROM_EDGE
    return (
        f"xraydb's guess_edge of the {source}: no K or L3 edge is tabulated between {-low:g} eV "
        f"above it and {high:g} eV below it"
    )


def infer_identity(
    metadata: dict[str, Any],
    e0: float,
    source: str,
    candidates: list[tuple[str, str, float]] | None = None,
    method: str | None = None,
) -> None:
    """Fill element and edge from E0 when the file named neither, and say so in the metadata
    (`identity: {inferred: [...], from: ..., e0, tabulated, method}`) so nobody mistakes it for
    a header value. `method`: the rule that chose the `candidates` given (the foil's); by
    default the E0 rule, in the words of the branch of `identify_edge` that decided."""
    missing = [key for key in ("element", "edge") if not metadata.get(key)]
    if not missing:
        return
    # five xraydb lookups per edge series: once per scan, for the guess and its alternatives
    if candidates is None:
        candidates = edge_candidates(e0) if math.isfinite(e0) and e0 >= 100 else []
    found = identify_edge(e0, candidates)
    if found is None:
        return
    element, edge, tabulated = found
    if method is None:
        in_window = any(c[1] in COMMON_EDGES for c in candidates)  # else guess_edge decided
        method = _window_method(source) if in_window else _guess_method(source)
    guess = {"element": element, "edge": edge}
    for key in missing:
        metadata[key] = guess[key]
    metadata["identity"] = {
        "inferred": missing,
        "from": source,
        "e0": round(float(e0), 2),
        "tabulated_edge_energy": tabulated,
        "method": method,
    }
    # the other edges E0 fits as well: a reader of the result sees that the guess had a choice
    others = [f"{el} {ed}" for el, ed, _ in candidates if (el, ed) != (element, edge)]
    if others:
        metadata["identity"]["also_fits"] = others


#: how far a reference foil's E0 may lie from its edge's tabulated energy, in eV: a metal foil
#: has no chemical shift, only the beamline's calibration error, which reaches several eV (a
#: mono recalibrated after a crystal change); a hard 5 eV split one sample's repeats, foils at
#: +4.8 and +5.2 eV, into V K and La L3
FOIL_FROM_EDGE = 10.0
#: two K or L3 edges this close to each other (eV) are one edge to any foil: its E0 cannot say
#: which it is, and the sample's E0 decides (Se K and Tl L3 are both tabulated at 12658.0 eV;
#: no other K or L3 edges above 1 keV lie within 3 eV of each other). Edges further apart are
#: told apart by which is nearer the foil's E0: a tie on how near the foil is (this close to
#: each) flipped an outside tester's repeats, foils 0.13 eV apart 9 eV above V K, between V K
#: and La L3, and the sample's E0 it fell back on then chose La L3, the edge the foil is
#: further from
FOIL_TIE = 1.0


#: `identity.from` and `identity.method` of a label the reference foil decided (`foil_edge`)
FOIL_SOURCE = "reference foil E0"
FOIL_METHOD = (
    f"the nearest K or L3 edge tabulated (xraydb) within {FOIL_FROM_EDGE:g} eV of the {FOIL_SOURCE}"
)


# cached: a scan's foil is looked up by `foil_edge` and again by `foil_identity` (its other
# edges), each look 4 SQL queries of xraydb's tables, in the file-to-decision path
@functools.lru_cache(maxsize=256)
def foil_edges(e0_ref: float) -> tuple[tuple[str, str, float], ...]:
    """(element, edge, tabulated energy) of the K and L3 edges within `FOIL_FROM_EDGE` of a
    reference foil's E0, the nearest first."""
    from xraydb import guess_edge, xray_edge

    if not math.isfinite(e0_ref) or e0_ref < 100:
        return ()
    near: list[tuple[float, str, str, float]] = []
    for edge in COMMON_EDGES:
        element, _ = guess_edge(e0_ref, edges=(edge,))  # the nearest of the series
        if element:
            tabulated = float(xray_edge(element, edge).energy)
            near.append((abs(e0_ref - tabulated), str(element), edge, tabulated))
    return tuple((el, ed, tab) for off, el, ed, tab in sorted(near) if off <= FOIL_FROM_EDGE)


def foil_edge(e0_ref: float) -> tuple[str, str, float] | None:
    """(element, edge, tabulated energy) of the K or L3 edge a reference foil's E0 is the E0
    of: the nearest one within `FOIL_FROM_EDGE`, unless another one within it is tabulated at
    about the same energy (`FOIL_TIE`); None otherwise. A foil about as near two edges names
    the nearer; `foil_identity` says the other fits too."""
    near = foil_edges(e0_ref)
    if not near:
        return None
    if len(near) > 1 and abs(near[1][2] - near[0][2]) < FOIL_TIE:
        return None
    return near[0]


def foil_identity(metadata: dict[str, Any], e0_ref: Any, e0: float) -> bool:
    """Fill element and edge from the reference foil's E0 when the file named neither and the
    foil's E0 is clearly on one K or L3 edge (`foil_edge`), the sample's E0 in its reach from
    the foil's (`E0_FROM_EDGE`: the foil shows the calibration error, so the sample's shift is
    counted from it); True when it did. The foil is the better witness: a metal foil's E0 sits
    on the tabulated edge, where a sample's chemical shift of up to 20 eV can carry it onto
    another element's edge (V(V) 17 eV above V K is 1 eV from La L3, Cl(V) 16 eV above Cl K
    is on Ru L3). A foil of another element than the sample (a neighbour's foil for a rare
    edge) is out of the sample's reach and leaves the choice to the sample's E0."""
    if all(metadata.get(key) for key in ("element", "edge")):
        return False
    if not isinstance(e0_ref, int | float) or not math.isfinite(e0_ref) or not math.isfinite(e0):
        return False
    found = foil_edge(float(e0_ref))
    if found is None:
        return False
    element, edge, tabulated = found
    low, high = E0_FROM_EDGE
    if not low <= e0 - e0_ref <= high:
        return False
    named = {key: metadata.get(key) for key in ("element", "edge") if metadata.get(key)}
    if any(str(value) != {"element": element, "edge": edge}[key] for key, value in named.items()):
        return False  # the file names an element or edge the foil's is not: the sample decides
    infer_identity(metadata, float(e0_ref), FOIL_SOURCE, [(element, edge, tabulated)], FOIL_METHOD)
    candidates = edge_candidates(e0) if e0 >= 100 else []
    # what the sample's E0 alone would fit as well, the foil deciding between them: K and L3
    # edges only (a rare edge is never taken for being near, see `identify_edge`); and the
    # other edges in the foil's own reach: a foil 8.5 eV above V K is 9.5 below La L3, and the
    # reader should see that the foil chose by 1 eV
    others = [(el, ed) for el, ed, _ in candidates if ed in COMMON_EDGES]
    others += [(el, ed) for el, ed, _ in foil_edges(float(e0_ref))]
    also = [f"{el} {ed}" for el, ed in dict.fromkeys(others) if (el, ed) != (element, edge)]
    if also:
        metadata["identity"]["also_fits"] = also
    return True


#: header keys the readers take the element and edge from (XDI, FIO), lower case
HEADER_KEYS = {
    "element": ("element.symbol", "scan.element", "element"),
    "edge": ("element.edge", "scan.edge", "edge"),
}


def edge_label(metadata: Mapping[str, Any]) -> tuple[str, str] | None:
    """(element, edge) the scan is labelled with, or None when it names not both."""
    element, edge = metadata.get("element"), metadata.get("edge")
    if not element or not edge:
        return None
    return str(element), str(edge)


def _label_origin(metadata: Mapping[str, Any], key: str) -> tuple[str, str | None] | None:
    """Where the reader took `element` or `edge` from, in its order of precedence: the params
    override the header, the header the file name. (kind, header key) or None if unknown."""
    value = _canonical(metadata, key, metadata.get(key))
    header = metadata.get("header")
    if isinstance(header, Mapping):
        lower = {str(k).lower(): (str(k), v) for k, v in header.items()}
        for name in HEADER_KEYS[key]:
            # the reader wrote the header's `fe` as `Fe`: still the header's
            if name in lower and _canonical(metadata, key, lower[name][1]) == value:
                return "header", lower[name][0]
    if "file_base" not in metadata:
        return None  # not read from a file by xas.scan-files: no way to tell
    if metadata.get(f"{key}_from_name") == value:
        return "file name", None
    return "params", None


def _canonical(metadata: Mapping[str, Any], key: str, value: Any) -> Any:
    """An element or edge as the tables write it (None and empty as they are)."""
    if not value:
        return value
    if key == "element":
        return canonical_element(value)
    return canonical_edge(value, metadata.get("element"))


def label_source(metadata: Mapping[str, Any]) -> str:
    """' (from the file name)' and the like for a message; '' when unknown."""
    element, edge = _label_origin(metadata, "element"), _label_origin(metadata, "edge")
    if element is None or edge is None:
        return ""

    def text(origin: tuple[str, str | None]) -> str:
        kind, key = origin
        if kind == "header":
            return f"the header's {key}"
        return "the file name" if kind == "file name" else "the xas.scan-files params"

    if element[0] == edge[0] == "header":
        return f" (from the header's {element[1]} and {edge[1]})"
    if element[0] == edge[0]:
        return f" (from {text(element)})"
    return f" (element from {text(element)}, edge from {text(edge)})"


def check_edge_label(
    scan: Scan,
    label: tuple[str, str] | None,
    e0: float,
    limit: float | None,
    what: str = "E0",
    limit_name: str = "max_edge_offset",
) -> None:
    """Refuse a scan whose E0 lies more than `limit` eV from the tabulated energy of the edge it
    is labelled with: a typo in a file name would otherwise group, store and plan the next scans
    under the wrong edge. No label (E0 identifies the edge) or no limit: nothing to check."""
    if not limit or label is None or not math.isfinite(e0):
        return
    element, edge = label
    try:
        tabulated: float | None = tabulated_edge_energy(element, edge)
    except SpectrumError:
        tabulated = None
    if tabulated is not None and abs(e0 - tabulated) <= limit:
        return
    labelled = f"{_label(scan)} is labelled {element} {edge}{label_source(scan.metadata)}"
    if tabulated is not None:
        cut = _cut_short(scan, label, (e0, what), tabulated, limit)
        if cut is not None:
            raise EdgeLabelError(f"{labelled}, but {cut}")
    nearest = identify_edge(e0)
    hint = ""
    if nearest is not None and nearest[:2] != (element, edge):
        hint = f": did you mean {nearest[0]} {nearest[1]} ({nearest[2]:.2f} eV)?"
    if tabulated is None:
        raise EdgeLabelError(
            f"{labelled}, which has no tabulated edge energy to check its {what} "
            f"{e0:.2f} eV against{hint}"
        )
    raise EdgeLabelError(
        f"{labelled}, but its {what} {e0:.2f} eV is {abs(e0 - tabulated):.2f} eV from the "
        f"tabulated {element} {edge} edge ({tabulated:.2f} eV), beyond {limit_name} "
        f"{limit:g} eV{hint}"
    )


#: eV measured above an E0 for it to be taken for an edge: larch normalises on the data above
#: E0, and a whole scan of another edge has hundreds of eV there (an Fe K scan labelled Cu K:
#: nearly 1000), where a file read before its writer finished ends a few tens of eV above the
#: wiggle its E0 was found on (an outside tester's 158-point read: 69 eV)
EDGE_NEEDS_ABOVE = 100.0


def _cut_short(
    scan: Scan, label: tuple[str, str], found: tuple[float, str], tabulated: float, limit: float
) -> str | None:
    """What a scan refused for its label says when it ends before the labelled edge could show
    (below the tabulated energy plus `limit`, where its E0 is looked for) with less than
    `EDGE_NEEDS_ABOVE` eV measured above the E0 found (`found`: the value, and what it is the
    E0 of): the file looks incomplete, read before its writer finished (watch mode reads a
    file when its writer closes it; a DAQ that closes it between chunks looks finished at each
    close). Proposing the element whose edge that E0 happens to be near ("did you mean Eu
    L3?") sent an outside tester after a label that was right. None otherwise: a scan that
    reaches past its edge, or shows a whole edge elsewhere, is mislabelled."""
    energy = np.asarray(scan.energy, dtype=float)
    energy = energy[np.isfinite(energy)]
    (element, edge), (e0, what) = label, found
    if not energy.size or float(energy.max()) >= tabulated + limit:
        return None
    low, high = float(energy.min()), float(energy.max())
    if high - e0 >= EDGE_NEEDS_ABOVE:
        return None
    where = "before" if high < tabulated else f"less than {limit:g} eV above"
    return (
        f"the file looks incomplete: its {energy.size} points run from {low:.2f} to "
        f"{high:.2f} eV and end {where} the tabulated {element} {edge} edge ({tabulated:.2f} "
        f"eV), so its {what} {e0:.2f} eV is on no edge (was it read before its writer "
        "finished?)"
    )


def calibration_shift(
    energy: np.ndarray, scan: Scan, params: NormalizeParams, metadata: dict[str, Any]
) -> tuple[float, float, float, Foil]:
    """(shift, e0_ref before the shift, target, the foil) that moves the foil's E0 onto the
    target. Without element and edge anywhere, they are inferred from the foil's E0. A scan
    without a usable foil is refused: it asked to be calibrated, and its energies as measured
    would be merged with calibrated ones as if they were."""
    try:
        foil = reference_foil(energy, scan, params.pre_edge)
    except ReferenceUnusable as exc:
        raise SpectrumError(
            f"{_label(scan)}: calibrate needs the reference foil, but its channel is unusable "
            f"({exc}), so this scan cannot be calibrated: set `calibrate: false` to normalise "
            "it on its energies as measured"
        ) from None
    if foil is None:
        if _switched_off(scan, "iref"):
            raise SpectrumError(
                f"{_label(scan)}: calibrate needs the reference foil, but xas.scan-files "
                "switches its channel off (`columns: {iref: null}`)"
            )
        raise SpectrumError(f"{_label(scan)}: calibration needs the It and Iref channels")
    e0_ref = foil.e0
    target = params.calibration_energy
    if target is None:
        if params.max_edge_offset:
            # a foil far beyond both limits sits at another edge: the label is wrong, and
            # that is the one thing to report (a shift within max_calibration_shift is not)
            limit, name = params.max_edge_offset, "max_edge_offset"
            if params.max_calibration_shift > limit:
                limit, name = params.max_calibration_shift, "max_calibration_shift"
            check_edge_label(scan, edge_label(metadata), e0_ref, limit, "reference foil's E0", name)
        found = foil_edge(e0_ref)
        if found is not None:
            # the foil's rule, as without calibrate (`foil_identity`): a sample's label must
            # not depend on whether its scans are calibrated (the E0 rule on the foil's E0 took
            # V K for a foil 9.5 eV above it, where the foil rule says La L3)
            near = [found, *(c for c in foil_edges(e0_ref) if c != found)]
            infer_identity(metadata, e0_ref, FOIL_SOURCE, near, FOIL_METHOD)
        else:
            infer_identity(metadata, e0_ref, FOIL_SOURCE)
        element, edge = metadata.get("element"), metadata.get("edge")
        if not element or not edge:
            raise SpectrumError(
                f"{_label(scan)}: calibration needs the element and edge (set them in "
                "xas.scan-files) or `calibration_energy`"
            )
        target = tabulated_edge_energy(str(element), str(edge))
    shift = target - e0_ref
    if abs(shift) > params.max_calibration_shift:
        raise SpectrumError(
            f"{_label(scan)}: the reference foil's E0 {e0_ref:.2f} eV is {shift:+.2f} eV from "
            f"{target:.2f} eV, beyond max_calibration_shift {params.max_calibration_shift} eV"
        )
    return shift, e0_ref, target, foil


#: The reference foil's points with no count ln(It/Iref) can take (a counter reading 0 now and
#: then) are dropped from the foil's spectrum when they are few and isolated: at most this
#: fraction of the scan's points...
REFERENCE_MAX_DROPPED = 0.01
#: ...and no more than this many in a row. More, or a longer stretch (a channel that dropped
#: out for a while, or is dead), make the foil unusable: its edge would be drawn through a gap.
REFERENCE_MAX_RUN = 2


class ReferenceUnusable(SpectrumError):
    """The scan's reference channel gives no foil spectrum; the message says why."""


@dataclass
class Foil:
    """The reference foil measured with a scan: its E0 (eV, on the energies given), mu_ref =
    ln(It/Iref) on every energy of the scan, and the energies of the points dropped from it
    (filled in mu_ref from their neighbours)."""

    e0: float
    mu: np.ndarray
    dropped: np.ndarray


def reference_foil(energy: np.ndarray, scan: Scan, pre_edge: PreEdgeParams) -> Foil | None:
    """The reference foil, ln(It/Iref), or None without those channels.

    Points where It or Iref hold no count (`_not_counts`) are dropped when few and isolated
    (`REFERENCE_MAX_DROPPED`, `REFERENCE_MAX_RUN`): the foil's E0 is found without them, and
    mu_ref is interpolated there, so that it stays on the scan's energies (where the merge
    aligns it). More, or pre_edge failing on the foil, raise `ReferenceUnusable`."""
    it, iref = scan.channel("it"), scan.channel("iref")
    if it is None or iref is None:
        return None
    energy = np.asarray(energy, dtype=float)
    bad_it, bad_iref = _not_counts(it), _not_counts(iref)
    bad = bad_it | bad_iref
    if np.any(bad):
        _check_droppable(energy, bad, bad_it, bad_iref)
    good = ~bad
    mu_ref = np.empty(len(energy))
    mu_ref[good] = np.log(np.asarray(it, dtype=float)[good] / np.asarray(iref, dtype=float)[good])
    mu_ref[bad] = np.interp(energy[bad], energy[good], mu_ref[good])
    # the foil's own edge: E0 and step are fitted, not taken from the sample's settings
    settings = pre_edge.model_copy(update={"e0": None, "step": None})
    from larch import Group
    from larch.xafs import pre_edge as larch_pre_edge

    group = Group()
    try:
        larch_pre_edge(energy[good], mu_ref[good], group=group, **_kwargs(settings))
    except Exception as exc:
        raise ReferenceUnusable(f"pre_edge on the reference foil failed: {exc}") from None
    e0 = float(group.e0)
    if not math.isfinite(e0):
        raise ReferenceUnusable("pre_edge found no edge in the reference foil")
    _check_edge(float(group.edge_step), mu_ref[good], e0)
    if np.any(bad):
        places = _foil_edge_places(energy, mu_ref, settings, e0)
        rise = _rise_across(mu_ref, bad, float(group.edge_step))
        _check_dropped_off_edge(energy, bad, rise, places)
    return Foil(e0, mu_ref, energy[bad])


def _foil_edge_places(
    energy: np.ndarray, mu_ref: np.ndarray, settings: PreEdgeParams, e0: float
) -> list[tuple[str, float]]:
    """Where the edge of a foil with dropped points may be: (what, with `{}` for the energy;
    energy in eV).

    The E0 found without the dropped points alone cannot tell whether they were on the edge:
    the foil's E0 is its steepest point, and found without points there it is found beside
    them (an outside tester's two zeros at 7110.98 and 7111.52 eV, where the foil's E0 is
    7111.52, moved it to 7120.00 eV, 8.5 eV away, and the foil calibrated the scan 8.5 eV off).
    So the points are also tested against the E0 found across them (mu_ref with them
    interpolated: a straight line over a gap in the rise is as steep as the rise, and the E0
    falls in the gap; the tester's case gives 7111.52 eV), and against the tabulated edge the
    foil names (a metal foil's E0 sits on it, up to the calibration error: `foil_edge`)."""
    from larch import Group
    from larch.xafs import pre_edge as larch_pre_edge

    places = [("E0 {:.2f} eV found without them", e0)]
    group = Group()
    try:
        larch_pre_edge(energy, mu_ref, group=group, **_kwargs(settings))
        across = float(group.e0)
    except Exception:  # the E0 without them stands; the tabulated edge is still tested
        across = math.nan
    if math.isfinite(across):
        places.append(("E0 {:.2f} eV found across them", across))
    named = [foil_edge(e) for _, e in places]
    for found in dict.fromkeys(n for n in named if n is not None):  # each edge once, in order
        element, edge, tabulated = found
        places.append((f"{element} {edge} {{:.2f}} eV tabulated", tabulated))
    return places


def _check_dropped_off_edge(
    energy: np.ndarray, bad: np.ndarray, rise: np.ndarray, places: list[tuple[str, float]]
) -> None:
    """Raise `ReferenceUnusable` when dropped foil points lie within `FOIL_EDGE_GAP` of any
    place its edge may be (`_foil_edge_places`). Near the tabulated edge alone, only when the
    foil rises across them (`FOIL_RISE_ACROSS`): the table says where a foil's edge should
    be, the foil's own data where it is."""
    said = ", ".join(w.format(e) for w, e in places)
    for what, place in places:
        near = bad & (np.abs(energy - place) <= FOIL_EDGE_GAP)
        if not np.any(near):
            continue
        steepest = float(np.max(rise[near]))
        if "tabulated" in what and steepest < FOIL_RISE_ACROSS:
            continue  # the foil is flat there: the points are off its edge, which is elsewhere
        clause = (
            f", and the foil rises across them by {steepest:.0%} of its edge step"
            if "tabulated" in what
            else ""
        )
        raise ReferenceUnusable(
            f"It or Iref hold no count at {_energies(energy[near])} eV, within "
            f"{FOIL_EDGE_GAP:g} eV of the foil's edge ({said}){clause}, so its E0 cannot be "
            "found without them"
        )


def _rise_across(mu_ref: np.ndarray, bad: np.ndarray, step: float) -> np.ndarray:
    """For each point, how much the foil rises (in edge steps) from the good point before the
    dropped points around it to the good point after them (0 for a good point; inf for a
    dropped one at an end of the scan, which nothing brackets)."""
    rise = np.zeros(len(bad))
    good = np.flatnonzero(~bad)
    for i in np.flatnonzero(bad):
        k = int(np.searchsorted(good, i))
        if k == 0 or k == len(good) or not step:
            rise[i] = math.inf
        else:
            rise[i] = abs(mu_ref[good[k]] - mu_ref[good[k - 1]]) / abs(step)
    return rise


#: Dropped foil points near the tabulated edge, but off both E0s found, are on the foil's edge
#: only where the foil rises across them by this share of its edge step. The P65 Fe foil rises
#: by 12 to 17 % of its step across two points dropped anywhere on its edge (xraylarch's norm,
#: both scans, the foil moved by -8 to +12 eV), and by 0.1 to 0.6 % across two in its flat
#: pre-edge, where the tabulated Fe K edge is when the mono is 6 to 12 eV off: the foil's E0
#: is then the same with and without them (7119.52 eV, the foil 8 eV off), and refusing the
#: foil for them refused a scan it could calibrate.
FOIL_RISE_ACROSS = 0.05


#: a reference foil's edge must stand out of its point-to-point scatter (MAD of the second
#: differences) by this much, and be at least `MIN_FOIL_STEP` in ln(It/Iref): the P65 Fe foil's
#: step 2.0 is 450 times its scatter; a foil out of the beam (Iref a fixed share of It) gives
#: a flat ln(It/Iref), whose "edge" xraylarch's pre_edge still places somewhere (an outside
#: tester's at 7352.92 eV: the merge then rejected the sample's good scan as 241 eV off)
FOIL_STEP_OVER_NOISE = 10.0
MIN_FOIL_STEP = 0.01
#: dropped foil points this close to where its edge may be (eV, `_foil_edge_places`) leave
#: the edge without its steepest points: the P65 Fe foil's derivative is above half its peak
#: from 7110.5 to 7112.6 eV around its E0 7111.5, and two zeros there moved its E0 by 0.5 eV
#: (a second tester) or by 8.5 eV (the two steepest points, a third). Points further up the
#: rise (its second maximum, 7118 to 7122 eV) leave the E0 where it is (xraylarch, two zeros
#: at 7119.5 and 7120.0 eV: E0 unchanged to 0.001 eV), and the E0 is what the foil is used for
#: (calibration, the label; the merge's alignment fits 50 eV of it, one point interpolated)
FOIL_EDGE_GAP = 5.0


def _check_edge(step: float, mu_ref: np.ndarray, e0: float) -> None:
    """Raise `ReferenceUnusable` when the foil shows no edge (see `FOIL_STEP_OVER_NOISE`)."""
    second = np.diff(np.asarray(mu_ref, dtype=float), 2)
    scatter = 1.4826 * float(np.median(np.abs(second - np.median(second)))) if len(second) else 0
    least = max(MIN_FOIL_STEP, FOIL_STEP_OVER_NOISE * scatter)
    if not math.isfinite(step) or step < least:
        raise ReferenceUnusable(
            f"the reference foil shows no edge (is it in the beam?): the edge step pre_edge "
            f"finds at {e0:.2f} eV, {step:.2g}, is below {least:.2g} ({FOIL_STEP_OVER_NOISE:g} "
            f"times the foil's point-to-point scatter, and at least {MIN_FOIL_STEP:g})"
        )


def _check_droppable(
    energy: np.ndarray, bad: np.ndarray, bad_it: np.ndarray, bad_iref: np.ndarray
) -> None:
    """Raise `ReferenceUnusable` unless the foil's bad points are few and isolated."""
    count, total = int(bad.sum()), len(bad)
    channels = {
        (True, False): "It is",
        (False, True): "Iref is",
        (True, True): "It and Iref are",
    }[bool(np.any(bad_it)), bool(np.any(bad_iref))]
    what = f"{channels} zero, negative or missing at {count} of {total} points"
    if count == total:
        raise ReferenceUnusable(f"{channels} zero, negative or missing at all {total} points")
    if count > REFERENCE_MAX_DROPPED * total:
        raise ReferenceUnusable(
            f"{what}, more than the {REFERENCE_MAX_DROPPED:.0%} that may be dropped"
        )
    run, start = _longest_run(bad)
    if run > REFERENCE_MAX_RUN:
        raise ReferenceUnusable(
            f"{what}, {run} of them in a row from {energy[start]:.2f} eV, more than the "
            f"{REFERENCE_MAX_RUN} in a row that may be dropped"
        )


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(length, start index) of the longest run of True in `mask` (the first of as long)."""
    best, best_start, run, start = 0, 0, 0, 0
    for i, value in enumerate(mask):
        if value:
            if run == 0:
                start = i
            run += 1
            if run > best:
                best, best_start = run, start
        else:
            run = 0
    return best, best_start


def _switched_off(scan: Scan, role: str) -> bool:
    """Whether xas.scan-files was told the scans have no `role` channel (`columns: {role:
    null}`): the reader writes the role with None in the metadata's `columns`."""
    columns = scan.metadata.get("columns")
    return isinstance(columns, Mapping) and role in columns and columns[role] is None


#: the reference notes already logged, by file: each once per process (a file normalised again,
#: a new version of it, redelivered, says nothing new)
_WARNED: set[tuple[str, str]] = set()
log = logging.getLogger(__name__)


def _warn_once(scan: Scan, text: str) -> None:
    """Log `text` about the scan, once per file and text (the worker's log, and the run's
    output, which shows every WARNING line of a worker)."""
    key = (_label(scan), text)
    if key in _WARNED:
        return
    _WARNED.add(key)
    log.warning("%s: %s", _label(scan), text)


def _energies(values: np.ndarray, most: int = 5) -> str:
    shown = ", ".join(f"{v:.2f}" for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


def _check_fixed_e0(energy: np.ndarray, e0: float | None) -> None:
    """A fixed `pre_edge.e0` must lie within the scan: xraylarch ignores one that does not
    (beyond its second or second-to-last energy) and finds E0 itself, while the parameters
    recorded with the result say the fixed one was used."""
    if e0 is None or len(energy) < 3:
        return
    low, high = float(energy[1]), float(energy[-2])
    if not low <= e0 <= high:
        raise SpectrumError(
            f"the fixed pre_edge.e0 {e0:g} eV is outside {low:.1f} to {high:.1f} eV (the "
            f"scan's second to second-to-last energy; it runs {float(energy[0]):.1f} to "
            f"{float(energy[-1]):.1f} eV), where xraylarch would ignore it and find E0 itself; "
            "set it within that range (another edge's scans need their own pipeline or no "
            "fixed e0)"
        )


def load_larch() -> None:
    """Import the parts of xraylarch that normalising calls: seconds, once per process.

    `xas.normalize` calls this in `on_start`, while its worker says "loading". Left to the first
    scan, the import made the first decision of every run wait 7-14 s although the live table
    already said "running". The functions here import larch where they use it so that the
    plugin's descriptors, the catalog and `pipeline validate` never pay for it."""
    import larch.math
    import larch.xafs
    import larch.xray  # noqa: F401


def normalize_scan(scan: Scan, params: NormalizeParams | None = None) -> Spectrum:
    """Normalise one scan: the whole of `xas.normalize` for one message.

    Every error names the scan file (`_label`) first, whatever raised it: xraylarch's own words
    ("autobk failed: x must be strictly increasing if s = 0") do not say which of a directory's
    files could not be normalised, and the log line and the error record show only this text.
    An error from a library call not wrapped below becomes a `SpectrumError` (the scan is at
    fault, a retry fails the same way) that names the file and keeps the library's words;
    running out of memory or a failing disk stays what it is."""
    try:
        return _normalize_scan(scan, params or NormalizeParams())
    except SpectrumError as exc:
        raise _naming_file(scan, exc, _kev_hint(scan)) from None
    except (OSError, MemoryError):
        raise
    except Exception as exc:
        raise SpectrumError(
            f"{_label(scan)}: normalising failed: {type(exc).__name__}: {exc}{_kev_hint(scan)}"
        ) from exc


#: energies all below this many eV are no edge this unit normalises: keV read as eV
KEV_LIKE = 100.0


def _kev_hint(scan: Scan) -> str:
    """What a failure on a scan whose energies look like keV adds: the readers take eV unless
    an XDI column says keV, and xraylarch's words ("x must be strictly increasing") do not
    point there."""
    energy = np.asarray(scan.energy, dtype=float)
    finite = energy[np.isfinite(energy)]
    if not finite.size or float(finite.max()) >= KEV_LIKE:
        return ""
    return (
        f"; its energies run from {float(finite.min()):g} to {float(finite.max()):g}, as if in "
        "keV, and are read as eV: label the energy column keV (XDI `# Column.1: energy keV`) "
        "or write eV"
    )


def _naming_file(scan: Scan, exc: SpectrumError, hint: str = "") -> SpectrumError:
    """The error, with the scan's file in front of its message unless it names it already,
    and `hint` after it."""
    label = _label(scan)
    if str(exc).startswith(label) and not hint:
        return exc
    text = str(exc) if str(exc).startswith(label) else f"{label}: {exc}"
    return type(exc)(f"{text}{hint}")


def _normalize_scan(scan: Scan, params: NormalizeParams) -> Spectrum:
    mu = compute_mu(scan, params.mode)
    energy = np.asarray(scan.energy, dtype=float)
    values: dict[str, float | None] = {"energy_shift": 0.0}
    metadata = {**scan.metadata, "mode": params.mode}
    # a scan message of another producer (or an older xas.scan-files) may say `fe`/`k`: the
    # merge groups and the agent plans by this metadata, where it must be one label
    canonical_label(metadata)
    label = edge_label(metadata)  # before E0 fills in what the file did not name
    foil: Foil | None = None
    # what is said of the foil once the label is known to fit (`check_edge_label`)
    notes: list[str] = []
    if params.calibrate:
        shift, e0_ref_raw, target, foil = calibration_shift(energy, scan, params, metadata)
        energy = energy + shift
        values["energy_shift"] = shift
        values["e0_ref"] = e0_ref_raw + shift
        metadata["calibration_energy"] = target
    else:
        try:
            foil = reference_foil(energy, scan, params.pre_edge)
        except ReferenceUnusable as exc:
            # the sample's mu does not need the foil: normalised without it, and said so
            note = (
                f"the reference channel is unusable ({exc}): this scan is normalised without "
                "its foil, so it has no mu_ref or e0_ref and is neither calibrated nor aligned "
                "on a foil (the merge takes its energies as measured)"
            )
            metadata["reference"] = note
            notes.append(note)
        values["e0_ref"] = None if foil is None else foil.e0
    mu_ref = None if foil is None else foil.mu
    if foil is not None and len(foil.dropped):
        note = (
            f"{len(foil.dropped)} point{'s' if len(foil.dropped) > 1 else ''} of the reference "
            f"foil dropped, where It or Iref hold no count (at {_energies(foil.dropped)} eV, as "
            "measured): its E0 is found without them, and mu_ref is interpolated there"
        )
        metadata["reference"] = note
        notes.append(note)
    arrays, results = analyse(energy, mu, params.pre_edge, params.autobk, params.noise)
    values.update(results)
    e0 = float(values["e0"] or math.nan)
    check_edge_label(scan, label, e0, params.max_edge_offset)
    for note in notes:
        # said of a scan that is normalised: a file read before its writer finished ends
        # before the foil's edge, and "is the foil in the beam?" sent a reader the wrong way
        # before the refusal said the file looks incomplete
        _warn_once(scan, note)
    # a P65 header names no element; the edge itself does: the foil's E0 first (see
    # `foil_identity`), else the sample's
    if not foil_identity(metadata, values.get("e0_ref"), e0):
        infer_identity(metadata, e0, "E0")
    canonical_label(metadata)  # an edge named without its element: now the element is known
    i0 = scan.channel("i0")
    if i0 is not None:
        arrays["i0"] = np.asarray(i0, dtype=float)
    if mu_ref is not None:
        # the merge aligns repeats on the foil measured with each scan
        arrays["mu_ref"] = np.asarray(mu_ref, dtype=float)
    settings = {
        **program(),
        "mode": params.mode,
        "calibrate": params.calibrate,
        "pre_edge": params.pre_edge.model_dump(),
        "autobk": params.autobk.model_dump(),
        "noise": params.noise.model_dump(),
    }
    return Spectrum(metadata, arrays, values, settings)
