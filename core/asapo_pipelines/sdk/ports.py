"""Declaring a unit once: ports and descriptor built in the plugin's light registration module.

The descriptor is the single declaration of a unit's ports. The catalog reads it to list and
validate pipelines; at run time the worker hands the same descriptor to the runtime class, which
looks its ports (and their wire formats) up there instead of declaring them a second time::

    # acme_units/__init__.py  -- the light module the entry point names
    from asapo_pipelines.sdk import Params, describe, inp, out, hookimpl

    class ScaleParams(Params):
        factor: float = 2.0

    SCALE = describe(
        "acme.scale", kind="processor", summary="Multiplies every value by a factor.",
        runtime="acme_units.runtime:Scale",        # imported only inside a worker
        inputs=[inp("values", "acme/numbers")],
        outputs=[out("scaled", "acme/numbers")],
        params=ScaleParams,
    )

    @hookimpl
    def register_units(register):
        register(SCALE)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from asapo_pipelines.descriptor import NoParams, Port, Resources, UnitDescriptor


def inp(
    name: str,
    content_type: str = "*/*",
    *,
    format: str = "json",
    required: bool = True,
    description: str = "",
) -> Port:
    """An input port: `name`, what it accepts (`type/subtype`, `*/*` for anything), its format."""
    return Port(
        name=name,
        content_type=content_type,
        format=format,
        required=required,
        description=description,
    )


def out(
    name: str,
    content_type: str = "application/json",
    *,
    format: str = "json",
    description: str = "",
) -> Port:
    """An output port: `name`, what it carries (`type/subtype`) and its wire format."""
    return Port(name=name, content_type=content_type, format=format, description=description)


def describe(
    name: str,
    *,
    kind: str,
    summary: str,
    runtime: str,
    inputs: Iterable[Port] = (),
    outputs: Iterable[Port] = (),
    params: type[Any] = NoParams,
    resources: Resources | None = None,
    **extra: Any,
) -> UnitDescriptor:
    """Build (and validate) a unit descriptor; keyword arguments as `UnitDescriptor` has them."""
    fields: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "summary": summary,
        "runtime": runtime,
        "inputs": tuple(inputs),
        "outputs": tuple(outputs),
        "params": params,
        **extra,
    }
    if resources is not None:
        fields["resources"] = resources
    return UnitDescriptor(**fields)
