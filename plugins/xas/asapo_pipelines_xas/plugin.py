"""Registration of the XAS units (the module the `asapo_pipelines` entry point names).

Light on purpose: it imports pydantic and the core's descriptor types, never numpy or xraylarch.
The runtimes are named by import string and imported only inside a worker.
"""

from __future__ import annotations

from typing import Any

from asapo_pipelines.sdk import PlotHint, Port, RegisterUnit, Resources, UnitDescriptor, hookimpl
from asapo_pipelines_xas.checks import check_foil
from asapo_pipelines_xas.params import (
    ConvergenceParams,
    MergeParams,
    NormalizeParams,
    ScanFilesParams,
)

#: Content types on the wire; each is a JSON object described in the plugin's README.
SCAN = "xas/scan"
SPECTRUM = "xas/spectrum"
MERGED = "xas/merged"
SUGGESTION = "plan/suggestion"
#: a suggestion's life in the queue (CONTRACTS.md; bluesky.queue's `status` port)
PLAN_STATUS = "plan/status"

SCAN_FILES = UnitDescriptor(
    name="xas.scan-files",
    kind="connector",
    status="beta",
    summary="Reads XAS scan files (P65, XDI 1.0, DESY FIO), one message per scan.",
    description=(
        "A source that reads each scan file in `directory` (or, in watch mode, each new file "
        "once it is complete) and sends one message with the energy and the detector channels "
        "(I0, It, Iref, If or a ready mu) under role names, sorted by energy with duplicate "
        "energies dropped, plus the header's sample, element, edge and start time and the file "
        "name. A malformed file goes to the error stream with the reason."
    ),
    outputs=(
        Port(
            name="scans",
            content_type=SCAN,
            format="json_arrays",
            description="One scan: {metadata, energy, channels: {i0, it, iref, if, mu}}.",
        ),
    ),
    params=ScanFilesParams,
    resources=Resources(cpu=200, memory=256),
    runtime="asapo_pipelines_xas.units:ScanFiles",
)

NORMALIZE = UnitDescriptor(
    name="xas.normalize",
    kind="processor",
    status="beta",
    summary="Normalises one scan with xraylarch: E0, edge step, flat mu, chi(k), noise.",
    description=(
        "Computes mu(E) (transmission, fluorescence, reference foil or the file's mu), "
        "optionally calibrates the energy on the reference foil against the tabulated edge, "
        "then runs xraylarch's pre_edge, autobk and estimate_noise with every keyword exposed."
    ),
    inputs=(
        Port(
            name="scans",
            content_type=SCAN,
            format="json_arrays",
            description="Raw scans with role-named channels (from xas.scan-files).",
        ),
    ),
    outputs=(
        Port(
            name="spectra",
            content_type=SPECTRUM,
            format="json_arrays",
            description="E0, edge step, norm, flat, bkg, k, chi, epsilon_k and the scan's ids.",
        ),
    ),
    params=NormalizeParams,
    resources=Resources(cpu=1000, memory=512),
    runtime="asapo_pipelines_xas.units:Normalize",
    # the viewer overlays each normalised scan with the merge (same figure)
    plots=(
        PlotHint(
            port="spectra",
            kind="xy",
            x="arrays.energy",
            y="arrays.norm",
            label="metadata.file",
            figure="spectra",
            # the last few scans under the merge, the newest drawn strong: a scan that differs
            # shows; twenty lines of identical repeats would only thicken one
            keep=5,
            title="normalised spectra and their merge",
            x_title="energy (eV)",
            y_title="normalised μ(E)",
            # the edge readable: the view opens on E0 - 50 to E0 + 150 eV (double click: all)
            x_focus="values.e0",
            x_window=(-50.0, 150.0),
        ),
    ),
)

MERGE = UnitDescriptor(
    name="xas.merge",
    kind="processor",
    status="beta",
    summary="Merges repeats of one sample and edge, rejecting outliers, after each new scan.",
    description=(
        "Groups spectra by sample, element and edge, aligns them on the reference foil, rejects "
        "scans whose E0 or edge step stray beyond limits or whose I0 shows a beam loss, and "
        "emits after every new scan the mean mu(E) with its standard error, re-analysed with "
        "xraylarch, and the number of scans merged."
    ),
    inputs=(
        Port(
            name="spectra",
            content_type=SPECTRUM,
            format="json_arrays",
            description="Normalised scans (from xas.normalize).",
        ),
    ),
    outputs=(
        Port(
            name="merged",
            content_type=MERGED,
            format="json_arrays",
            description="Merged mu, standard error, E0, edge step, chi(k), noise, accepted and "
            "rejected scans with reasons.",
        ),
    ),
    params=MergeParams,
    resources=Resources(cpu=1000, memory=512),
    runtime="asapo_pipelines_xas.units:Merge",
    plots=(
        # the newest merge of each sample and edge, drawn over the scans it merged
        PlotHint(
            port="merged",
            kind="xy",
            x="arrays.energy",
            y="arrays.norm",
            label="n_merged",
            label_format="{} scan{s} merged",
            series="group",
            figure="spectra",
            keep=1,
            x_focus="values.e0",
            x_window=(-50.0, 150.0),
        ),
        # a curve per sample and edge: a foil scan among the repeats is not a jump in it; and
        # one more after a settings change, whose noise is on another scale (`noise_series`)
        PlotHint(
            port="merged",
            kind="scalar",
            x="n_merged",
            y="values.epsilon_k",
            series="noise_series",
            title="noise against the number of scans merged",
            x_title="scans merged",
            y_title="noise in χ(k), ε_k",
            # shared with the agent's target (an hline)
            figure="noise",
        ),
    ),
)

CONVERGENCE_AGENT = UnitDescriptor(
    name="xas.convergence-agent",
    kind="agent",
    status="experimental",
    summary="Decides from each merged result whether more scans are needed, and how many.",
    description=(
        "Fits the merged noise against the number of scans as eps^2 = a^2/N + b^2 (b: the "
        "floor repeats share) and suggests the scans still needed to reach `target_noise`, "
        "counting those asked for and not yet arrived; says stop when the target is met, when "
        "it is below the noise floor (with the best reachable noise), when the spectrum no "
        "longer changes or `max_scans` is reached; flags rejected scans. Suggestions carry a "
        "bluesky-queueserver plan item and say why, in numbers."
    ),
    inputs=(
        Port(
            name="merged",
            content_type=MERGED,
            format="json_arrays",
            description="Merge results with their noise (from xas.merge).",
        ),
        Port(
            name="queue",
            content_type=PLAN_STATUS,
            format="json",
            required=False,
            description="Optional: each suggestion's state in the queue (e.g. bluesky.queue's "
            "`status`); rejected, failed or held suggestions no longer count as in flight, "
            "the others' repeats count until it says they are done.",
        ),
    ),
    outputs=(
        Port(
            name="plans",
            content_type=SUGGESTION,
            format="json",
            description="{action, target, arguments, reason, confidence, item, bad_scans}.",
        ),
    ),
    params=ConvergenceParams,
    resources=Resources(cpu=200, memory=128),
    runtime="asapo_pipelines_xas.units:ConvergenceAgent",
    plots=(
        # the decisions on each sample and edge in a colour of their own, named as the noise curves
        PlotHint(
            port="plans",
            kind="scalar",
            y="action",
            label="reason",
            series="arguments.group",
            title="the agent's decisions",
            # against the scans merged, as the noise plot: a batch run's decisions, seconds
            # apart, do not pile up on one instant
            x="arguments.metrics.n_merged",
            x_title="scans merged",
            y_title="decision",
        ),
        # the noise the agent aims at, drawn across the merge's noise plot
        PlotHint(
            port="plans",
            kind="hline",
            y="arguments.metrics.target_noise",
            figure="noise",
            title="target",
        ),
        # the floor the agent's fit of eps² = a²/N + b² finds, with its error (absent before
        # the fit; the decision's reason says whether the agent trusts it)
        PlotHint(
            port="plans",
            kind="hline",
            y="arguments.metrics.noise_model.floor",
            label="arguments.metrics.noise_model.floor_err",
            label_format="± {}",
            figure="noise",
            title="fitted floor",
        ),
        # where the fit says the target is reached: the predicted number of scans, at the
        # target (not drawn when the decision predicts none: reached, or out of reach)
        PlotHint(
            port="plans",
            kind="scalar",
            x="arguments.metrics.predicted_scans_total",
            y="arguments.metrics.target_noise",
            label="reason",
            figure="noise",
            keep=1,
            title="predicted: target reached",
        ),
    ),
)

UNITS = (SCAN_FILES, NORMALIZE, MERGE, CONVERGENCE_AGENT)


@hookimpl
def register_units(register: RegisterUnit) -> None:
    for descriptor in UNITS:
        register(descriptor)


@hookimpl
def check_pipeline(pipeline: Any, catalog: Any, report: Any) -> None:
    check_foil(pipeline, catalog, report)
