"""The unit SDK: what a unit author writes against.

Light names (safe in a plugin's registration module): `Params`, `Port`, `Resources`,
`UnitDescriptor`, `PlotHint`, `hookimpl`, `describe`, `inp`, `out`, `Suggestion`, `PlanItem`.
Runtime base classes (import them in the runtime module): `Source`, `Sink`, `Processor`,
`Agent`, `Message`, `Stream`. See docs/unit-authors.md.
"""

from __future__ import annotations

from asapo_pipelines.descriptor import (
    NoParams,
    Params,
    PlotHint,
    Port,
    Resources,
    UnitDescriptor,
)
from asapo_pipelines.hookspecs import hookimpl
from asapo_pipelines.sdk.ports import describe, inp, out
from asapo_pipelines.sdk.suggestions import SUGGESTION_CONTENT_TYPE, PlanItem, Suggestion
from asapo_pipelines.sdk.units import (
    Agent,
    Message,
    Processor,
    Sink,
    Source,
    Stream,
    Unit,
    UnitStorageError,
    UnitUsageError,
)

__all__ = [
    "SUGGESTION_CONTENT_TYPE",
    "Agent",
    "Message",
    "NoParams",
    "Params",
    "PlanItem",
    "PlotHint",
    "Port",
    "Processor",
    "Resources",
    "Sink",
    "Source",
    "Stream",
    "Suggestion",
    "Unit",
    "UnitDescriptor",
    "UnitStorageError",
    "UnitUsageError",
    "describe",
    "hookimpl",
    "inp",
    "out",
]
