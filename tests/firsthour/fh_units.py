"""Small units for the first-hour tests: their descriptors and runtimes in one module (the tests
add this folder to sys.path, so `fh_units:Class` imports inside the harness)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from asapo_pipelines.sdk import Message, Params, Processor, describe, hookimpl, inp, out


class ListParams(Params):
    # a default factory: the JSON Schema has no default for it
    labels: Annotated[list[str], Field(default_factory=lambda: ["a", "b"])]
    scale: Annotated[float, Field(gt=0, le=10, description="Scale factor.")] = 1.0


class NumpyMean(Processor):
    """Returns numpy scalars and arrays, as numerical code does."""

    def process(self, message: Message) -> Any:
        import numpy as np

        values = np.asarray(message.value["values"], dtype=float)
        return {"mean": values.mean() * self.params.scale, "doubled": values * 2}


class BadValue(Processor):
    def process(self, message: Message) -> Any:
        return {"tags": {"not", "json"}}


class Offset(Processor):
    def process(self, message: Message) -> Any:
        return {"value": message.value["value"] + 1}


MEAN = describe(
    "fh.mean",
    kind="processor",
    summary="Mean of a list of values.",
    runtime="fh_units:NumpyMean",
    inputs=[inp("values", "fh/values")],
    outputs=[out("mean", "fh/mean")],
    params=ListParams,
)
BAD = describe(
    "fh.bad",
    kind="processor",
    summary="Emits a set on a JSON port.",
    runtime="fh_units:BadValue",
    inputs=[inp("values", "fh/values")],
    outputs=[out("tagged", "fh/tags")],
)
OFFSET = describe(
    "fh.offset",
    kind="processor",
    summary="Adds one.",
    runtime="fh_units:Offset",
    inputs=[inp("value", "fh/number")],
    outputs=[out("value", "fh/number")],
)


@hookimpl
def register_units(register):
    for unit in (MEAN, BAD, OFFSET):
        register(unit)
