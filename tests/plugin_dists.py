"""Throwaway plugin distributions used by the catalog tests: one healthy, one raising on
import, one with an invalid descriptor, two claiming the same unit name, one with a misspelled
hook."""

from __future__ import annotations

from asapo_pipelines.testing.distributions import PluginProject

HEALTHY_PLUGIN = """
from typing import Annotated, Literal
from pydantic import Field
from asapo_pipelines.sdk import Params, Port, Resources, UnitDescriptor, hookimpl


class DenoiseParams(Params):
    sigma: Annotated[
        float, Field(gt=0, description="Width of the Gaussian kernel in pixels.")
    ] = 1.5
    method: Annotated[Literal["gauss", "median"], Field(description="Filter to apply.")] = "gauss"
    mask_file: Annotated[str, Field(description="HDF5 file with the detector mask.")]


@hookimpl
def register_units(register):
    register(UnitDescriptor(
        name="acme.denoise",
        kind="processor",
        status="stable",
        summary="Removes detector noise from frames.",
        description="Applies a Gaussian or median filter to each frame.",
        inputs=(Port(name="frames", content_type="image/frame", format="seedee"),),
        outputs=(Port(name="clean", content_type="image/frame", format="seedee"),),
        params=DenoiseParams,
        resources=Resources(cpu=2000, memory=4096, gpus=1),
        runtime="acme_healthy.runtime:Denoise",
    ))
    register({
        "name": "acme.detector",
        "kind": "connector",
        "summary": "Reads frames from the ACME detector.",
        "outputs": [{"name": "frames", "content_type": "image/frame"}],
        "runtime": "acme_healthy.runtime:Detector",
    })
"""

# Importing this would prove that listing imported a runtime: it leaves a mark in the
# environment variable's file.
HEALTHY_RUNTIME = """
import os
mark = os.environ.get("ACME_RUNTIME_MARK")
if mark:
    with open(mark, "a") as f:
        f.write("imported\\n")


class Denoise:
    pass


class Detector:
    pass
"""

BROKEN_PLUGIN = """
raise RuntimeError("libacme.so.3 not found")
"""

INVALID_PLUGIN = """
from asapo_pipelines.sdk import UnitDescriptor, hookimpl


@hookimpl
def register_units(register):
    register({"name": "Bad Name", "kind": "processor", "summary": "x", "runtime": "a:b"})
    register({"name": "acme.good", "kind": "agent", "summary": "Still listed.",
              "inputs": [{"name": "results"}], "runtime": "acme_invalid.rt:Good"})
    register({"name": "acme.noinputs", "kind": "processor", "summary": "No inputs.",
              "runtime": "acme_invalid.rt:NoInputs"})
"""

DUP_PLUGIN = """
from asapo_pipelines.sdk import UnitDescriptor, hookimpl


@hookimpl
def register_units(register):
    register(UnitDescriptor(name="shared.thing", kind="connector", summary="{who}'s thing.",
                            outputs=(), runtime="{pkg}.rt:Thing"))
    {extra}
"""

TYPO_PLUGIN = """
from asapo_pipelines.sdk import hookimpl


@hookimpl
def register_unit(register):
    pass
"""


def projects() -> list[PluginProject]:
    return [
        PluginProject(
            "acme-healthy",
            "1.2.0",
            {"plugin.py": HEALTHY_PLUGIN, "runtime.py": HEALTHY_RUNTIME},
            {"acme": "acme_healthy.plugin"},
        ),
        PluginProject(
            "acme-broken",
            "0.3.0",
            {"plugin.py": BROKEN_PLUGIN},
            {"acme-broken": "acme_broken.plugin"},
        ),
        PluginProject(
            "acme-invalid",
            "2.0.0",
            {"plugin.py": INVALID_PLUGIN},
            {"acme-invalid": "acme_invalid.plugin"},
        ),
        PluginProject(
            "dup-one",
            "1.0.0",
            {
                "plugin.py": DUP_PLUGIN.format(
                    who="one",
                    pkg="dup_one",
                    extra='register(UnitDescriptor(name="shared.only-one", kind="connector", '
                    'summary="Only in dup-one.", runtime="dup_one.rt:Only"))',
                )
            },
            {"dup-one": "dup_one.plugin"},
        ),
        PluginProject(
            "dup-two",
            "2.0.0",
            {
                "plugin.py": DUP_PLUGIN.format(
                    who="two",
                    pkg="dup_two",
                    # a core unit's name: refused, the core's own stays loaded
                    extra='register(UnitDescriptor(name="core.identity", kind="connector", '
                    'summary="Not the core\'s.", runtime="dup_two.rt:Thing"))',
                )
            },
            {"dup-two": "dup_two.plugin"},
        ),
        PluginProject(
            "acme-typo", "0.1.0", {"plugin.py": TYPO_PLUGIN}, {"acme-typo": "acme_typo.plugin"}
        ),
    ]


# A first unit plugin, as an outside author writes it: a source and a processor, an input
# required and an output as every output is (optional to connect).
ACME_PLUGIN = """
from asapo_pipelines.sdk import Port, UnitDescriptor, hookimpl


@hookimpl
def register_units(register):
    register(UnitDescriptor(name="acme.numbers", kind="connector", summary="Counts.",
                            outputs=(Port(name="numbers"),), runtime="asapo_pipelines_acme.rt:N"))
    register(UnitDescriptor(name="acme.peak-finder", kind="processor", summary="Finds peaks.",
                            inputs=(Port(name="frames"),),
                            outputs=(Port(name="peaks"), Port(name="debug", required=False)),
                            runtime="asapo_pipelines_acme.rt:PeakFinder"))
"""

# The same registration without `@hookimpl`: pluggy never calls it.
UNMARKED_PLUGIN = """
from asapo_pipelines.sdk import Port, UnitDescriptor


def register_units(register):
    register(UnitDescriptor(name="beam.peak-finder", kind="processor", summary="Finds peaks.",
                            inputs=(Port(name="frames"),), outputs=(Port(name="peaks"),),
                            runtime="asapo_pipelines_beam.rt:PeakFinder"))
"""

# Misnamed and unmarked: no hook by either name.
MISNAMED_PLUGIN = """
def register_unit(register):
    pass
"""


#: the runtimes' module (never imported by the tests: listing and validation only look it up)
FIRST_RUNTIME = """
class N:
    pass


class PeakFinder:
    pass
"""


def first_plugin_projects() -> list[PluginProject]:
    return [
        PluginProject(
            "asapo-pipelines-acme",
            "0.1.0",
            {"plugin.py": ACME_PLUGIN, "rt.py": FIRST_RUNTIME},
            {"acme": "asapo_pipelines_acme.plugin"},
        ),
        PluginProject(
            "asapo-pipelines-beam",
            "0.1.0",
            {"plugin.py": UNMARKED_PLUGIN, "rt.py": FIRST_RUNTIME},
            {"beam": "asapo_pipelines_beam.plugin"},
        ),
        PluginProject(
            "asapo-pipelines-gamma",
            "0.1.0",
            {"plugin.py": MISNAMED_PLUGIN},
            {"gamma": "asapo_pipelines_gamma.plugin"},
        ),
    ]
