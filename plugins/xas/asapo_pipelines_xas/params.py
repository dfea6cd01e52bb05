"""Parameters of the XAS units, as pydantic models.

This module is imported when the catalog registers the plugin, so it must stay light: pydantic
only, never numpy or xraylarch. Every xraylarch keyword the units pass on is exposed here with
xraylarch's own default, so that a pipeline file can set any of them and leaving one out means
"what xraylarch would do".
"""

from __future__ import annotations

import difflib
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from asapo_pipelines.sdk import Params

#: Roles a scan's columns can play. `mu` is an already computed absorption (XDI files often
#: carry one, e.g. `mutrans`).
ROLES = ("energy", "i0", "it", "iref", "if", "mu")
Role = Literal["energy", "i0", "it", "iref", "if", "mu"]


def _check_range(
    what: str, low_name: str, low: float | None, high_name: str, high: float | None, unit: str
) -> None:
    """A range given by its two ends must not be empty: xraylarch would take an empty or
    reversed window without a word and give no result (or a meaningless one) for every scan."""
    if low is not None and high is not None and low >= high:
        raise ValueError(
            f"{low_name} {low:g} must be below {high_name} {high:g}: the {what} "
            f"[{low:g}, {high:g}] {unit} is empty"
        )


#: the element symbols, Z = 1..118, as xraydb writes them (a test compares them with xraydb's):
#: a static list because this module must stay light (importing xraydb takes most of a second)
ELEMENTS = (  # noqa: SIM905  (one line of symbols reads as the periodic table does)
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
    "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb "
    "Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm "
    "Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
#: the absorption edges xraydb tabulates for any element
EDGES = "K L1 L2 L3 M1 M2 M3 M4 M5 N1 N2 N3 N4 N5 N6 N7 O1 O2 O3 O4 O5 P1 P2 P3".split()  # noqa: SIM905


def _one_of(what: str, value: str, names: list[str]) -> str:
    """`value` as `names` write it (any case); a ValueError with the nearest name otherwise:
    a typo would otherwise pass validation and fail every scan at run time."""
    found = {n.lower(): n for n in names}.get(value.strip().lower())
    if found is not None:
        return found
    near = difflib.get_close_matches(value.strip(), names, n=1, cutoff=0.5)
    hint = f"; did you mean {near[0]}?" if near else ""
    raise ValueError(f"{value!r} is not {what}{hint}")


class ScanFilesParams(Params):
    """What `xas.scan-files` reads and how it maps the files' columns."""

    directory: Annotated[
        str,
        Field(
            description="Directory holding the scan files.",
            examples=["data"],
            json_schema_extra={"format": "directory-path"},
        ),
    ]
    pattern: Annotated[
        str, Field(description="Glob pattern of the scan files, e.g. `*.xdi` or `*.fio`.")
    ] = "*"
    recursive: Annotated[bool, Field(description="Also read files in subdirectories.")] = False
    watch: Annotated[
        bool,
        Field(
            description="Keep running and read each new file once it is complete (the live "
            "beamline case); otherwise read the files present and finish."
        ),
    ] = False
    settle_seconds: Annotated[
        float,
        Field(
            ge=0,
            description="In watch mode, a file seen without file system events (NFS, GPFS, or "
            "there when the watch starts) counts as complete once its size and modification time "
            "have not changed for this long and no process here holds it open for writing; must "
            "exceed the writer's longest pause. With events, a file is complete when its writer "
            "closes it.",
        ),
    ] = 2.0
    order: Annotated[
        Literal["name", "mtime"], Field(description="Order in which present files are read.")
    ] = "name"
    format: Annotated[
        Literal["auto", "p65", "xdi", "fio"],
        Field(
            description="File format: `p65` (`#` header, last header line names the columns), "
            "`xdi` (XDI 1.0), `fio` (DESY FIO with %c/%p/%d blocks) or `auto` (from the content)."
        ),
    ] = "auto"
    columns: Annotated[
        dict[Role, str | int | None],
        Field(
            description="Column of each role (energy, i0, it, iref, if, mu) by name or 0-based "
            "index; roles left out are found by the usual names of the format (P65: enc_energy, "
            "VFC01..VFC04; XDI: energy, i0, itrans, irefer, ifluor, mutrans). `null` switches a "
            "role off: `iref: null` reads no reference channel (no foil: the scans are neither "
            "calibrated nor aligned on one), even where a column has its usual name."
        ),
    ] = {}
    sample: Annotated[
        str | None,
        Field(
            description="Sample name; overrides the header's (XDI Sample.name, FIO sample). "
            "Without either, the file name without its extension and scan number is used, so "
            "repeats of one sample share it. The scan number is only a zero-padded counter at "
            "the end of the name, a leading 0 and at least 3 digits after `_`, `.` or `-` "
            "(`fe_foil_001`, `20K_GOE_Fe_K_240.00000`: samples `fe_foil`, `20K_GOE_Fe_K_240`); "
            "any other trailing number stays in the sample name (`cu_T_100`, `sample_2`), so "
            "files differing only in it are never merged as repeats. Set this to group them."
        ),
    ] = None
    element: Annotated[
        str | None,
        Field(description="Absorbing element (e.g. Fe); overrides the header and the file name."),
    ] = None
    edge: Annotated[
        str | None, Field(description="Absorption edge (K, L3, ...); overrides the header.")
    ] = None
    min_points: Annotated[
        int, Field(ge=2, description="Fewer distinct energies than this make a file malformed.")
    ] = 20

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, str | int | None]) -> dict[str, str | int | None]:
        if "energy" in value and value["energy"] is None:
            raise ValueError(
                "energy cannot be switched off (`energy: null`): every scan needs its energy "
                "column; name it, or leave it out to find it by its usual names"
            )
        return value

    @field_validator("element")
    @classmethod
    def _element(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _one_of("an element symbol (Fe, Cu, ...)", value, ELEMENTS)

    @field_validator("edge")
    @classmethod
    def _edge(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # `K-edge`, `L3 edge`: the edge's name is what is asked for
        name = value.strip().removesuffix("edge").removesuffix("-").strip() or value
        return _one_of("an absorption edge (K, L1, L2, L3, M1, ...)", name, EDGES)


class PreEdgeParams(Params):
    """xraylarch `pre_edge`: E0, pre-edge line, post-edge normalisation, edge step, flattening."""

    e0: Annotated[
        float | None,
        Field(
            description="Edge energy in eV; found from max d(mu)/dE when unset. A scan whose "
            "energies do not include it is refused (xraylarch would ignore it)."
        ),
    ] = None
    step: Annotated[float | None, Field(description="Edge step; fitted when unset.")] = None
    pre1: Annotated[
        float | None, Field(description="Start of the pre-edge fit range, eV relative to E0.")
    ] = None
    pre2: Annotated[
        float | None, Field(description="End of the pre-edge fit range, eV relative to E0.")
    ] = None
    npre: Annotated[
        int, Field(ge=0, le=1, description="Pre-edge degree: 1 for a line, 0 for a constant.")
    ] = 1
    nvict: Annotated[
        int, Field(ge=0, description="Energy exponent (Victoreen) of the pre-edge fit.")
    ] = 0
    norm1: Annotated[
        float | None, Field(description="Start of the post-edge fit range, eV relative to E0.")
    ] = None
    norm2: Annotated[
        float | None, Field(description="End of the post-edge fit range, eV relative to E0.")
    ] = None
    nnorm: Annotated[
        int | None,
        Field(
            ge=0, le=3, description="Degree of the post-edge polynomial; from the range when unset."
        ),
    ] = None
    make_flat: Annotated[bool, Field(description="Also compute the flattened spectrum.")] = True
    iscalc: Annotated[
        bool, Field(description="The spectrum is calculated (very short pre-edge).")
    ] = False

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        _check_range("pre-edge fit range", "pre1", self.pre1, "pre2", self.pre2, "eV")
        _check_range("post-edge fit range", "norm1", self.norm1, "norm2", self.norm2, "eV")
        return self


class AutobkParams(Params):
    """xraylarch `autobk`: spline background mu0(E) and chi(k)."""

    enabled: Annotated[bool, Field(description="Run autobk (background and chi(k)).")] = True
    rbkg: Annotated[
        float, Field(gt=0, description="R (Angstrom) below which chi(R) is background.")
    ] = 1.0
    nknots: Annotated[
        int | None, Field(ge=2, description="Number of spline knots; from rbkg when unset.")
    ] = None
    kmin: Annotated[float, Field(ge=0, description="Minimum k (1/Angstrom) of the spline.")] = 0.0
    kmax: Annotated[
        float | None, Field(gt=0, description="Maximum k; the whole data range when unset.")
    ] = None
    kweight: Annotated[float, Field(ge=0, description="k-weight of the Fourier transform.")] = 1
    dk: Annotated[float, Field(ge=0, description="Window taper of the Fourier transform.")] = 0.1
    win: Annotated[
        Literal["hanning", "parzen", "welch", "gaussian", "sine", "kaiser"],
        Field(description="Fourier transform window."),
    ] = "hanning"
    nfft: Annotated[int, Field(ge=16, description="FFT size.")] = 2048
    kstep: Annotated[float, Field(gt=0, description="k grid step (1/Angstrom).")] = 0.05
    nclamp: Annotated[int, Field(ge=0, description="Points clamped at each end.")] = 3
    clamp_lo: Annotated[float, Field(ge=0, description="Weight of the low-k clamp.")] = 0
    clamp_hi: Annotated[float, Field(ge=0, description="Weight of the high-k clamp.")] = 1
    calc_uncertainties: Annotated[
        bool, Field(description="Also compute uncertainties of bkg and chi (slower).")
    ] = False
    err_sigma: Annotated[float, Field(gt=0, description="Sigma level of the uncertainties.")] = 1

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        _check_range("spline's k range", "kmin", self.kmin, "kmax", self.kmax, "Å⁻¹")
        return self


class NoiseParams(Params):
    """xraylarch `estimate_noise`: noise in chi(k) from the high-R part of chi(R).

    One deliberate difference from xraylarch's defaults: `kmax` unset means `max(k) - 0.5`, the
    end of the data less half a unit of k, where xraylarch's fixed 20 Å⁻¹ lies past the end of
    most scans and biases the estimate (a window over k where there is no data). The window
    actually used is recorded in each spectrum's values (`noise_kmin`, `noise_kmax`).
    """

    enabled: Annotated[bool, Field(description="Estimate the noise (needs autobk).")] = True
    rmin: Annotated[float, Field(ge=0, description="Start of the high-R region (Angstrom).")] = 15.0
    rmax: Annotated[float, Field(gt=0, description="End of the high-R region (Angstrom).")] = 30.0
    kweight: Annotated[float, Field(ge=0, description="k-weight of the transform.")] = 1
    kmin: Annotated[float, Field(ge=0, description="Start of the k window.")] = 0
    kmax: Annotated[
        float | None,
        Field(gt=0, description="End of the k window; max(k) - 0.5 (inside the data) when unset."),
    ] = None
    dk: Annotated[float, Field(ge=0, description="Window taper.")] = 4
    dk2: Annotated[float | None, Field(ge=0, description="Second window taper.")] = None
    kstep: Annotated[float, Field(gt=0, description="k grid step.")] = 0.05
    kwindow: Annotated[
        Literal["hanning", "parzen", "welch", "gaussian", "sine", "kaiser"],
        Field(description="Window function of the k window."),
    ] = "kaiser"
    nfft: Annotated[int, Field(ge=16, description="FFT size.")] = 2048

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        _check_range("high-R region", "rmin", self.rmin, "rmax", self.rmax, "Å")
        _check_range("k window", "kmin", self.kmin, "kmax", self.kmax, "Å⁻¹")
        return self


class NormalizeParams(Params):
    """What `xas.normalize` computes from one scan."""

    mode: Annotated[
        Literal["transmission", "fluorescence", "reference", "mu"],
        Field(
            description="mu(E): transmission ln(I0/It), fluorescence If/I0, reference foil "
            "ln(It/Iref), or `mu` to use the file's own mu column."
        ),
    ] = "transmission"
    calibrate: Annotated[
        bool,
        Field(
            description="Shift the energy so that the reference foil's E0 equals the tabulated "
            "edge energy of the element (needs It and Iref)."
        ),
    ] = False
    calibration_energy: Annotated[
        float | None,
        Field(
            gt=0, description="Edge energy (eV) to calibrate to; the tabulated value when unset."
        ),
    ] = None
    max_calibration_shift: Annotated[
        float,
        Field(gt=0, description="A larger calibration shift (eV) is an error, not a correction."),
    ] = 20.0
    max_edge_offset: Annotated[
        float | None,
        Field(
            ge=0,
            description="A scan labelled with an element and edge (by the xas.scan-files params, "
            "the header or the file name) whose E0 lies further than this (eV) from that edge's "
            "tabulated energy is refused as mislabelled: chemical shifts and calibration offsets "
            "are tens of eV, neighbouring edges hundreds apart. With `calibrate`, the reference "
            "foil's E0 is checked first, against the larger of this and max_calibration_shift. "
            "Element and edge inferred from E0 are not checked; 0 or null disables the check.",
        ),
    ] = 50.0
    pre_edge: PreEdgeParams = PreEdgeParams()
    autobk: AutobkParams = AutobkParams()
    noise: NoiseParams = NoiseParams()


class MergeParams(Params):
    """How `xas.merge` groups, aligns and screens repeats."""

    group_by: Annotated[
        list[Literal["sample", "element", "edge", "mode", "temperature"]],
        Field(
            min_length=1,
            description="Metadata that make scans repeats of one measurement. Add "
            "`temperature` (XDI `Sample.temperature`) when files of one sample at several "
            "temperatures name it alike (`Sample.name`): they are repeats otherwise. The "
            "temperature is read with its unit (K, mK, °C, degC, C; `100 K`, `100.0 K` and "
            "`100K` are one) and grouped by its nearest multiple of `temperature_step`, so "
            "readings around one setpoint (20.1 K, 20.3 K) are repeats; the group's "
            "temperature is that multiple (`20 K`). Text that is no temperature (no unit, "
            "`room temperature`) groups by the text, with a warning; files that name none are "
            "the group `temperature unknown`.",
        ),
    ] = ["sample", "element", "edge", "mode"]
    temperature_step: Annotated[
        float,
        Field(
            gt=0,
            description="With `temperature` in `group_by`: a scan belongs to the temperature "
            "group of the multiple of this (kelvin) nearest its reading. Match it to the "
            "setpoints (1 K for setpoints in whole kelvin, 10 K for a series in steps of 10 K): "
            "readings within half a step of a setpoint are its repeats. A nearest multiple "
            "gives the same groups whatever order the scans arrive in; readings either side "
            "of a half step (20.49 K, 20.51 K) are two groups.",
        ),
    ] = 1.0
    align: Annotated[
        Literal["reference", "none"],
        Field(
            description="`reference`: shift each scan by the least-squares fit of its reference "
            "foil's derivative dmu/dE onto the anchor's: the scan whose foil's E0 agrees "
            "(within `max_e0_shift`) with the most others', of as many the one whose foil's "
            "E0 is nearest the edge's tabulated energy (else the first measured); "
            "`none`: merge on the energies as measured."
        ),
    ] = "reference"
    align_emin: Annotated[
        float,
        Field(description="Start of the alignment fit range, eV relative to the foil's E0."),
    ] = -15.0
    align_emax: Annotated[
        float,
        Field(description="End of the alignment fit range, eV relative to the foil's E0."),
    ] = 35.0
    max_align_shift: Annotated[
        float,
        Field(gt=0, description="A fitted alignment shift beyond this (eV) rejects the scan."),
    ] = 10.0
    max_e0_shift: Annotated[
        float,
        Field(
            gt=0,
            description="Reject a scan whose edge position (after alignment) differs more (eV) "
            "from the group's (the median over the majority), so accepted scans can differ from "
            "each other by up to twice this. The edge position is the half-step energy, where "
            "the normalised mu crosses half the edge step: noise moves it far less than E0 (the "
            "maximum of dmu/dE, which the merge reports); E0 where a scan has none.",
        ),
    ] = 1.0
    max_edge_step_deviation: Annotated[
        float,
        Field(
            gt=0,
            description="Reject a scan whose edge step differs more (fraction) from the "
            "group's (the median over the majority), so accepted scans can differ from each "
            "other by up to about twice this.",
        ),
    ] = 0.1
    min_range_coverage: Annotated[
        float,
        Field(
            gt=0,
            le=1,
            description="Reject a scan whose energy range covers less than this fraction of the "
            "group's (median start to median end of its scans): a partial scan would cut every "
            "scan in the merge down to its own range.",
        ),
    ] = 0.98
    beam_dump_fraction: Annotated[
        float,
        Field(
            gt=0,
            lt=1,
            description="I0 below this fraction of its median counts as a beam loss.",
        ),
    ] = 0.5
    beam_dump_max_points: Annotated[
        int, Field(ge=0, description="Reject a scan with more beam-loss points than this.")
    ] = 2
    pre_edge: Annotated[
        PreEdgeParams | None,
        Field(description="pre_edge settings for the merged spectrum; the spectra's own if unset."),
    ] = None
    autobk: Annotated[
        AutobkParams | None,
        Field(description="autobk settings for the merged spectrum; the spectra's own if unset."),
    ] = None
    noise: Annotated[
        NoiseParams | None,
        Field(description="estimate_noise settings for the merged spectrum; the spectra's own."),
    ] = None

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        _check_range(
            "alignment fit range",
            "align_emin",
            self.align_emin,
            "align_emax",
            self.align_emax,
            "eV",
        )
        twice = sorted({key for key in self.group_by if self.group_by.count(key) > 1})
        if twice:
            raise ValueError(
                f"group_by names {', '.join(twice)} twice: each key groups once; remove the repeat"
            )
        default = type(self).model_fields["temperature_step"].default
        if self.temperature_step != default and "temperature" not in self.group_by:
            # a step chosen for a series of temperatures that groups nothing: the scans of all
            # the temperatures would be merged as repeats of one measurement (the default is
            # let through: a unit's snippet, `pipeline show-unit`, writes every param)
            raise ValueError(
                f"temperature_step {self.temperature_step:g} is set, but group_by "
                f"({', '.join(self.group_by)}) has no temperature, so scans are not grouped by "
                "temperature at all: add temperature to group_by, or remove temperature_step"
            )
        return self


class ConvergenceParams(Params):
    """When `xas.convergence-agent` asks for more scans and when it says stop."""

    target_noise: Annotated[
        float,
        Field(
            gt=0,
            description="Noise in chi(k) (epsilon_k) to reach; the agent stops below it.",
            examples=[0.002],
        ),
    ]
    max_scans: Annotated[
        int, Field(ge=1, description="Never ask for more than this many scans in total.")
    ] = 20
    max_batch: Annotated[
        int, Field(ge=1, description="At most this many scans in one suggestion.")
    ] = 10
    fit_min_points: Annotated[
        int,
        Field(
            ge=3,
            description="Fit the noise as eps^2 = a^2/N + b^2 (b: the floor shared by all "
            "repeats) once this many points are known (each scan's own noise at N = 1 and each "
            "merge's) at two or more different N; before that, predictions "
            "assume 1/sqrt(N) and are marked uncertain.",
        ),
    ] = 3
    floor_confidence: Annotated[
        float,
        Field(
            gt=0.5,
            lt=1,
            description="Use the fitted floor b only when the fit has merges of three or more "
            "different N and b^2 is above zero at this one-sided confidence (Student t with "
            "points - 2 degrees of freedom, from the fit's standard error); otherwise the agent "
            "decides as with no floor (1/sqrt(N)) and says why. It stops below the floor only "
            "when b^2 exceeds target_noise^2 at this confidence too.",
        ),
    ] = 0.95
    stability_tolerance: Annotated[
        float,
        Field(
            ge=0,
            description="Stop when the normalised merged spectrum changes less than this (RMS) "
            "between merges; 0 disables the test.",
        ),
    ] = 0.0
    stability_min_scans: Annotated[
        int, Field(ge=2, description="Apply the stability test only from this many scans on.")
    ] = 3
    max_rejected_fraction: Annotated[
        float,
        Field(
            gt=0,
            le=1,
            description="Suggest changing parameters when more of the scans than this were "
            "rejected (at least two).",
        ),
    ] = 0.5
    max_e0_drift: Annotated[
        float,
        Field(
            ge=0,
            description="A steady trend of the sample's edge position over a group's scans "
            "(at least four, in the order they were measured; those rejected for their edge "
            "position included) larger than this in all (eV), and too regular for scatter, is "
            "reported as the sample changing under the beam (radiation damage, "
            "photoreduction): change_parameters, whatever the noise. The edge position is the "
            "one the merge screens by, the half-step energy (E0 jumps between features of the "
            "edge with noise). 0 disables it.",
        ),
    ] = 0.5
    plan_name: Annotated[
        str, Field(min_length=1, description="Name of the scan plan the suggestion runs.")
    ] = "xas_scan"
    plan_kwargs: Annotated[
        dict[str, object],
        Field(description="Extra keyword arguments for the plan (e.g. detectors, ranges)."),
    ] = {}
