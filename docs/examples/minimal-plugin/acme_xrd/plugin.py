"""Registration module: descriptors only, no heavy imports."""

from typing import Annotated, Literal

from pydantic import Field

from asapo_pipelines.sdk import Params, Port, Resources, UnitDescriptor, hookimpl


class IntegrateParams(Params):
    poni_file: Annotated[str, Field(description="pyFAI geometry file (PONI) of the detector.")]
    bins: Annotated[int, Field(gt=0, description="Number of radial bins.")] = 1000
    unit: Annotated[
        Literal["q_nm^-1", "2th_deg"], Field(description="Radial unit of the pattern.")
    ] = "q_nm^-1"


INTEGRATE = UnitDescriptor(
    name="acme-xrd.integrate",
    kind="processor",
    status="beta",
    summary="Integrates each detector frame azimuthally into a 1-D pattern.",
    description="Uses the detector geometry in `poni_file`; one pattern per frame.",
    inputs=(Port(name="frames", content_type="image/frame", format="seedee"),),
    outputs=(Port(name="patterns", content_type="xrd/pattern", format="json"),),
    params=IntegrateParams,
    resources=Resources(cpu=2000, memory=2048),
    # imported only inside a worker, where pyFAI is installed
    runtime="acme_xrd.integrate:Integrate",
)


@hookimpl
def register_units(register):
    register(INTEGRATE)
