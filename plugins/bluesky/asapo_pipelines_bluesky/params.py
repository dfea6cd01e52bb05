"""Parameters of `bluesky.queue`.

Imported when the catalog registers the plugin: pydantic only, never the queue-server client.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from asapo_pipelines.sdk import Params


def key_problem(key: str) -> str | None:
    """Why `key` is no public key the queue-server client accepts, or None (the sentence does
    not repeat the key: validation adds the value given)."""
    # the client's own check (bluesky-queueserver's validate_zmq_key: libzmq's curve_public),
    # imported only here so that registering the plugin stays light; z85 is 40 characters
    from bluesky_queueserver.manager.comms import validate_zmq_key

    try:
        validate_zmq_key(key)
    except ValueError:
        return (
            "not a public key of the queue server: it must be the 40 characters (z85) that "
            "qserver-zmq-keys prints"
        )
    return None


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

    @field_validator("public_key")
    @classmethod
    def _z85_key(cls, value: str | None) -> str | None:
        # a key from a file is checked when it is read: the file may exist only where it runs
        if value and not value.startswith("file:"):
            problem = key_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value
