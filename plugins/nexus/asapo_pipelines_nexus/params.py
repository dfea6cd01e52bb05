"""Parameters of `nexus.writer`.

Imported when the catalog registers the plugin: pydantic only, never h5py or numpy.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from asapo_pipelines.sdk import Params


class NexusWriterParams(Params):
    """Where and how `nexus.writer` stores scans and results."""

    file: Annotated[
        str,
        Field(
            description="HDF5/NeXus file to append to (created if missing).",
            examples=["results/out.nxs"],
        ),
    ]
    source_name: Annotated[
        str,
        Field(
            description="NXsource/name: the facility of `beamline`, for scans whose header "
            "names no facility and no other beamline."
        ),
    ] = "PETRA III"
    source_type: Annotated[str, Field(description="NXsource/type.")] = "Synchrotron X-ray Source"
    beamline: Annotated[str, Field(description="NXinstrument/name.")] = "P65"
    mode: Annotated[
        Literal["auto", "transmission", "fluorescence"],
        Field(
            description="Measurement mode of the raw scan entries (NXdata/mode, and which "
            "detector is NXxas's absorbed_beam): `transmission` takes It, `fluorescence` If (the "
            "other is kept beside it); `auto` takes It when a scan has it, else If, else the "
            "file's mu column. A P65 file always carries It and If: set the mode xas.normalize "
            "computes mu(E) by (`fluorescence` for a fluorescence experiment), or the raw "
            "entries say Transmission."
        ),
    ] = "auto"
    monitor_mode: Annotated[Literal["timer", "monitor"], Field(description="NXmonitor/mode.")] = (
        "timer"
    )
    monitor_preset: Annotated[
        float | None,
        Field(
            description="NXmonitor/preset; in timer mode the scan's counting time per point "
            "(`count_time` in its metadata) when unset; left out when neither gives one."
        ),
    ] = None
    compression: Annotated[
        Literal["none", "gzip", "lzf"], Field(description="Compression of the arrays.")
    ] = "none"
