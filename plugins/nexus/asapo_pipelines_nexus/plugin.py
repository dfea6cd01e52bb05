"""Registration of `nexus.writer` (the module the `asapo_pipelines` entry point names).

Light on purpose: pydantic and the core's descriptor types only, never h5py or numpy.
"""

from __future__ import annotations

from asapo_pipelines.sdk import Port, RegisterUnit, Resources, UnitDescriptor, hookimpl
from asapo_pipelines_nexus.params import NexusWriterParams

WRITER = UnitDescriptor(
    name="nexus.writer",
    kind="connector",
    status="beta",
    summary="Appends raw XAS scans (NXxas) and processed results (NXprocess) to a NeXus file.",
    description=(
        "A sink that writes each raw scan as an NXentry following the NXxas application "
        "definition and each normalised or merged spectrum as an NXentry with NXprocess and "
        "NXdata groups, into one HDF5 file opened in SWMR mode so that readers can follow it "
        "while it grows. A message delivered twice is written once (its provenance key is "
        "stored on the entry)."
    ),
    inputs=(
        Port(
            name="scans",
            content_type="xas/scan",
            format="json",
            required=False,
            description="Raw scans, each stored as an NXxas entry.",
        ),
        Port(
            name="spectra",
            content_type="xas/spectrum",
            format="json",
            required=False,
            description="Normalised spectra, each stored as NXprocess + NXdata.",
        ),
        Port(
            name="merged",
            content_type="xas/merged",
            format="json",
            required=False,
            description="Merged spectra, each stored as NXprocess + NXdata with errors.",
        ),
        Port(
            name="plans",
            content_type="plan/suggestion",
            format="json",
            required=False,
            description="An agent's decisions (action, count, reason, confidence, metrics), "
            "each stored as an NXentry without data: its `decision` (NXcollection) names the "
            "merge entry it was based on, `plan` (NXnote) holds the whole message.",
        ),
    ),
    params=NexusWriterParams,
    resources=Resources(cpu=300, memory=256),
    runtime="asapo_pipelines_nexus.units:NexusWriterSink",
)


@hookimpl
def register_units(register: RegisterUnit) -> None:
    register(WRITER)
