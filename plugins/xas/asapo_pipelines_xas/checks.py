"""Checks across the XAS units of one pipeline file (the `check_pipeline` hook).

Light on purpose, as `plugin` is: pydantic models only. A unit's params model sees its own
params alone; what contradicts a source's params is found here, so `pipeline validate` refuses
it at its place in the file, where each scan would otherwise fail at run time, one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

#: what each need of `xas.normalize` is called in a sentence, by the params that ask for it
_NEEDS_FOIL = {
    "calibrate": "calibrate: true calibrates each scan on its reference foil",
    "mode": "mode: reference normalises the reference foil itself, ln(It/Iref)",
}


def sources_of(pipeline: Any, instance: str) -> Iterator[str]:
    """The instances writing a stream that `instance` reads."""
    read = set(pipeline.units[instance].inputs.values())
    for name, config in pipeline.units.items():
        if read & set(config.outputs.values()):
            yield name


def foil_needed(pipeline: Any, catalog: Any, instance: str) -> list[str]:
    """The params of a `xas.normalize` instance that need the reference channel (Iref)."""
    params = pipeline.params_for(instance, catalog)
    needs = []
    if params.calibrate:
        needs.append("calibrate")
    if params.mode == "reference":
        needs.append("mode")
    return needs


def iref_switched_off(pipeline: Any, catalog: Any, instance: str) -> bool:
    """Whether a `xas.scan-files` instance reads no reference channel (`columns: {iref: null}`)."""
    columns = pipeline.params_for(instance, catalog).columns
    return "iref" in columns and columns["iref"] is None


def check_foil(
    pipeline: Any, catalog: Any, report: Callable[[tuple[str, ...], str, str], None]
) -> None:
    """`xas.normalize` asked for the reference foil (`calibrate`, `mode: reference`) on scans
    from a `xas.scan-files` that switches the foil's channel off: every scan would be refused."""
    for name, config in pipeline.units.items():
        if config.unit != "xas.normalize":
            continue
        needs = foil_needed(pipeline, catalog, name)
        if not needs:
            continue
        for source in sources_of(pipeline, name):
            if pipeline.units[source].unit != "xas.scan-files":
                continue
            if not iref_switched_off(pipeline, catalog, source):
                continue
            for need in needs:
                report(
                    ("units", name, "params", need),
                    "P314",
                    f"{_NEEDS_FOIL[need]}, but its scans come from unit {source}, which "
                    "reads no reference channel (`columns: {iref: null}`): set "
                    f"{'calibrate: false' if need == 'calibrate' else 'another mode'} here, "
                    f"or name the reference column in the columns of {source} (or leave iref "
                    "out to find it by its usual name)",
                )
