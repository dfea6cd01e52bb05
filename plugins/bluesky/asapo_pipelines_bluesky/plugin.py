"""Registration of `bluesky.queue` (the module the `asapo_pipelines` entry point names).

Light on purpose: pydantic and the core's descriptor types only, never the queue-server client.
"""

from __future__ import annotations

from typing import Any

from asapo_pipelines.sdk import (
    SUGGESTION_CONTENT_TYPE,
    Port,
    RegisterUnit,
    ReportFinding,
    Resources,
    UnitDescriptor,
    hookimpl,
)
from asapo_pipelines_bluesky.params import QueueParams

#: Content type of the feedback port (CONTRACTS.md: one JSON object per state change).
STATUS_CONTENT_TYPE = "plan/status"

QUEUE = UnitDescriptor(
    name="bluesky.queue",
    kind="processor",
    status="experimental",
    summary="Submits agents' plan suggestions to a bluesky-queueserver, after approval or "
    "within budgets.",
    description=(
        "Takes plan suggestions and adds each as a plan item to a bluesky-queueserver queue over "
        "its 0MQ control API, the suggestion's uid in the item's metadata: a suggestion is "
        "queued at most once, also across restarts (the queue and its history are checked "
        "first). In `approve` mode suggestions wait in the inbox (`pipeline suggestions FILE`, "
        "the viewer) for a person; in `auto` mode they are queued at once unless over the "
        "budget, then held with the reason. An item the server refuses goes to the error "
        "stream with the server's reason and is not retried. Every state change is sent on "
        "`status` for the agent."
    ),
    inputs=(
        Port(
            name="suggestions",
            content_type=SUGGESTION_CONTENT_TYPE,
            format="json",
            description="Plan suggestions (from an agent such as xas.convergence-agent).",
        ),
    ),
    outputs=(
        Port(
            name="status",
            content_type=STATUS_CONTENT_TYPE,
            format="json",
            required=False,
            description="{uid, target, state, scans, reason, time} per state change.",
        ),
    ),
    params=QueueParams,
    resources=Resources(cpu=100, memory=128),
    runtime="asapo_pipelines_bluesky.units:QueueBridge",
)


@hookimpl
def register_units(register: RegisterUnit) -> None:
    register(QUEUE)


@hookimpl
def check_online(pipeline: Any, catalog: Any, report: ReportFinding) -> None:
    """`pipeline validate --online`: the plans the file names, asked of the queue server."""
    from asapo_pipelines_bluesky.online import check

    check(pipeline, catalog, report)
