"""Parameters of `bluesky.queue`.

Imported when the catalog registers the plugin: pydantic only, never the queue-server client.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from asapo_pipelines.sdk import Params


class Budget(BaseModel):
    """Limits on what the bridge submits without a person; over them a suggestion is held."""

    model_config = ConfigDict(extra="forbid")

    repeats_per_sample: Annotated[
        int | None,
        Field(ge=1, description="At most this many scans queued for one target (sample)."),
    ] = None
    scans_per_run: Annotated[
        int | None,
        Field(ge=1, description="At most this many scans queued in all, over the inbox's life."),
    ] = None
    window_scans: Annotated[
        int | None,
        Field(ge=1, description="At most this many scans queued within `window_minutes`."),
    ] = None
    window_minutes: Annotated[
        float, Field(gt=0, description="The sliding time window `window_scans` applies to.")
    ] = 60.0


class PlanTemplate(BaseModel):
    """How to build a queue item for a suggestion that carries none.

    String values may name the suggestion's fields in braces: `{target}`, `{scans}`,
    `{action}`, `{uid}` and `{group[sample]}` (the agent's `arguments.group`); a value that is
    exactly one placeholder keeps the field's type (`"{scans}"` gives an int).
    """

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, description="Plan name on the queue server.")]
    args: list[Any] = Field(default_factory=list, description="Positional arguments.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")


class QueueParams(Params):
    """Where `bluesky.queue` submits suggestions, and when it may do so on its own."""

    control_address: Annotated[
        str,
        Field(
            pattern=r"^(tcp|ipc|inproc)://",
            description="The RE Manager's 0MQ control address (`--zmq-control-addr`).",
        ),
    ] = "tcp://localhost:60615"
    public_key: Annotated[
        str | None,
        Field(
            description="The server's public key (z85, from `qserver-zmq-keys`) when its control "
            "channel is encrypted; `file:PATH` reads it from a file."
        ),
    ] = None
    user: Annotated[
        str, Field(min_length=1, description="User name recorded with each queue item.")
    ] = "asapo-pipelines"
    user_group: Annotated[
        str,
        Field(min_length=1, description="The user group whose plan permissions apply."),
    ] = "primary"
    mode: Annotated[
        Literal["auto", "approve"],
        Field(
            description="`auto`: submit at once, within the budget; `approve`: wait in the "
            "inbox until a person approves (`pipeline suggestions FILE approve ID`)."
        ),
    ] = "approve"
    timeout: Annotated[
        float,
        Field(gt=0, le=300, description="Seconds to wait for each answer of the queue server."),
    ] = 5.0
    start_queue: Annotated[
        bool,
        Field(
            description="Start the queue after adding an item when the manager is idle and its "
            "environment is open (otherwise items wait for the operator's `queue_start`)."
        ),
    ] = False
    budget: Budget = Field(default_factory=Budget, description="Limits in auto mode.")
    plan: Annotated[
        PlanTemplate | None,
        Field(
            description="The queue item for suggestions without one (e.g. "
            '`{name: xas_scan, kwargs: {sample: "{target}", repeats: "{scans}"}}`).'
        ),
    ] = None
    inbox: Annotated[
        str,
        Field(
            min_length=1,
            description="The inbox database (suggestions, their states and people's "
            "decisions); relative to the pipeline file.",
        ),
    ] = ".pipeline-data/suggestions.sqlite"
