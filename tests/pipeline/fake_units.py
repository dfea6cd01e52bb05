"""Units of a pretend beamline plugin, for validation tests: typed ports (content types that
match, families, wildcards), params with ranges and enums, a deprecated unit, a unit whose
runtime module is misspelt, a transport whose client library is not installed.

The tests use this module both in-process (a catalog built from it) and installed as a real
plugin distribution (for the `pipeline` command in a subprocess)."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from asapo_pipelines.sdk import Params, Port, TransportDescriptor, UnitDescriptor, hookimpl


class ScanFilesParams(Params):
    directory: Annotated[str, Field(description="Directory with the scan files.")]
    pattern: Annotated[str, Field(description="Glob pattern of the scan files.")] = "*.xdi"


class NormalizeParams(Params):
    pre_edge: Annotated[
        tuple[float, float], Field(description="Pre-edge range relative to E0, in eV.")
    ] = (-150.0, -30.0)
    e0: Annotated[float | None, Field(description="Edge energy in eV; found when left out.")] = None
    method: Annotated[Literal["larch", "polynomial"], Field(description="Normalization.")] = "larch"
    rebin: Annotated[int, Field(ge=1, le=16, description="Points merged into one.")] = 1


class MergeParams(Params):
    repeats: Annotated[int, Field(ge=1, description="Scans merged into one spectrum.")] = 3


class AgentParams(Params):
    target_noise: Annotated[float, Field(gt=0, description="Stop when noise is below.")]
    max_scans: Annotated[int, Field(ge=1, description="Upper limit of scans.")] = 20


class WriterParams(Params):
    file: Annotated[str, Field(description="NeXus file to write.")]
    compression: Annotated[
        Literal["none", "gzip", "lzf"], Field(description="HDF5 dataset compression.")
    ] = "gzip"


# The runtimes are this module's own (validate checks that a runtime's module is installed,
# wherever this module is: `fake_units` in-process, `fake_beamline.plugin` installed); the
# classes are never run.
class ScanFiles: ...


class Normalize: ...


class Merge: ...


class Agent: ...


class Writer: ...


class Detector: ...


class Old: ...


UNITS = [
    UnitDescriptor(
        name="xas.scan-files",
        kind="connector",
        status="beta",
        summary="Reads XAS scan files.",
        outputs=(Port(name="scans", content_type="xas/scan"),),
        params=ScanFilesParams,
        runtime=f"{__name__}:ScanFiles",
    ),
    UnitDescriptor(
        name="xas.normalize",
        kind="processor",
        status="stable",
        summary="Normalizes XAS scans.",
        inputs=(Port(name="scans", content_type="xas/scan"),),
        outputs=(Port(name="spectra", content_type="xas/spectrum", format="seedee"),),
        params=NormalizeParams,
        runtime=f"{__name__}:Normalize",
    ),
    UnitDescriptor(
        name="xas.merge",
        kind="processor",
        summary="Merges repeated spectra.",
        inputs=(Port(name="spectra", content_type="xas/spectrum"),),
        outputs=(Port(name="merged", content_type="xas/merged"),),
        params=MergeParams,
        runtime=f"{__name__}:Merge",
    ),
    UnitDescriptor(
        name="xas.convergence-agent",
        kind="agent",
        summary="Proposes more scans or a stop.",
        inputs=(Port(name="merged", content_type="xas/*"),),
        outputs=(Port(name="plans", content_type="application/json"),),
        params=AgentParams,
        runtime=f"{__name__}:Agent",
    ),
    UnitDescriptor(
        name="nexus.writer",
        kind="connector",
        summary="Writes NeXus files.",
        inputs=(
            Port(name="spectra", content_type="xas/spectrum"),
            Port(name="merged", content_type="xas/*", required=False),
        ),
        params=WriterParams,
        runtime=f"{__name__}:Writer",
    ),
    UnitDescriptor(
        name="img.detector",
        kind="connector",
        summary="Reads detector frames.",
        outputs=(Port(name="frames", content_type="image/tiff", format="bytes"),),
        runtime=f"{__name__}:Detector",
    ),
    UnitDescriptor(
        name="xas.old-normalize",
        kind="processor",
        status="deprecated",
        summary="The old normalization; use xas.normalize.",
        inputs=(Port(name="scans", content_type="xas/scan"),),
        outputs=(Port(name="spectra", content_type="xas/spectrum"),),
        runtime=f"{__name__}:Old",
    ),
    UnitDescriptor(
        name="xas.edge-jump",
        kind="processor",
        summary="Measures the edge jump; its runtime's module is misspelt.",
        inputs=(Port(name="spectra", content_type="xas/spectrum"),),
        outputs=(Port(name="jumps", content_type="application/json"),),
        # `unitz` for `units`, in a package installed wherever the tests run, so that the
        # report names the same near module in-process and installed (P207's golden)
        runtime="asapo_pipelines.unitz.edge:EdgeJump",
    ),
]


@hookimpl
def register_units(register):
    for unit in UNITS:
        register(unit)


class WirebusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str
    password_file: str | None = None


#: a transport whose client library is installed nowhere (P109's and P110's goldens); its
#: runtime is never called, validation only looks for `requires`
WIREBUS = TransportDescriptor(
    name="wirebus",
    summary="A pretend facility bus; its client library is not installed anywhere.",
    config=WirebusConfig,
    runtime=f"{__name__}:open_wirebus",
    requires=("fake_wirebus_client",),
    install="pip install 'fake-beamline[wirebus]'",
)


@hookimpl
def register_transports(register):
    register(WIREBUS)


@hookimpl
def check_pipeline(pipeline, catalog, report):
    """A pretend check across units: a merge of more repeats than the agent it feeds may ask
    for in all could never send it a merge (P314); a pipeline named `check-fails` makes the
    check itself fail, as a plugin's bug would (P315)."""
    if pipeline.name == "check-fails":
        raise RuntimeError("the pretend check fails on purpose")
    if pipeline.transport.kind == "wirebus":
        # a transport's plugin: a file its section names that does not exist (P111)
        given = pipeline.transport.config.password_file
        if given and not Path(pipeline.transport.options()["password_file"]).exists():
            report(("transport", "wirebus", "password_file"), "P111", f"{given} does not exist")
    for name, config in pipeline.units.items():
        if config.unit != "xas.merge":
            continue
        repeats = pipeline.params_for(name, catalog).repeats
        for other, fed in pipeline.units.items():
            if fed.unit != "xas.convergence-agent":
                continue
            if not set(config.outputs.values()) & set(fed.inputs.values()):
                continue
            limit = pipeline.params_for(other, catalog).max_scans
            if repeats > limit:
                report(
                    ("units", name, "params", "repeats"),
                    "P314",
                    f"repeats {repeats} is more than the max_scans {limit} of {other}, which "
                    "reads this merge: it would never get one",
                )
