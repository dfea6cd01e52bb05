"""What an agent emits: a suggestion for the experiment plan.

A suggestion says what the agent wants (`action`), about what (`target`), with which arguments,
why, and how sure it is. When the suggestion can be run as it is, it also carries `plan`: an item
in the shape bluesky-queueserver's queue accepts (``{"name", "args", "kwargs", "item_type":
"plan"}``), so a beamline's queue-server client can add it with ``item_add`` unchanged.

Compatibility with bluesky-adaptive: an adaptive agent's ``ask`` returns documents (the points it
proposes) that its agent base class turns into queue-server plan items; a suggestion carries the
same content: the proposed points go in ``arguments`` (e.g. ``{"points": [...]}``) and the plan
item in ``plan``. `Suggestion.from_plan_item()` reads a queue item as produced there, and
`Suggestion.queue_item()` gives the item to submit.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: Content type of a port carrying suggestions; agents' output ports use it.
SUGGESTION_CONTENT_TYPE = "plan/suggestion"

Action = Literal["more_scans", "stop", "change_parameters"]


class PlanItem(BaseModel):  # type: ignore[no-redef]  # field `kwargs` vs. extra="allow"
    """One bluesky-queueserver queue item of type plan."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1, description="Name of the plan, e.g. `scan`.")]
    args: list[Any] = Field(default_factory=list, description="Positional arguments.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")
    item_type: Literal["plan"] = "plan"
    meta: dict[str, Any] = Field(
        default_factory=dict, description="Metadata queue-server passes into the run's start."
    )


class Suggestion(BaseModel):
    """An agent's proposal for the experiment plan."""

    model_config = ConfigDict(extra="forbid")

    action: Annotated[
        Action,
        Field(
            description="`more_scans`: repeat or extend measurements; `stop`: enough data, end "
            "this measurement; `change_parameters`: measure on with other settings."
        ),
    ]
    target: Annotated[
        str,
        Field(
            min_length=1,
            description="What the suggestion is about: a sample, a scan series or an energy range.",
        ),
    ]
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description='Action details: e.g. `{"scans": 3}` or `{"exposure": 2.0}`.',
    )
    reason: Annotated[str, Field(min_length=1, description="Why, in one or two sentences.")]
    confidence: Annotated[float, Field(ge=0.0, le=1.0, description="How sure the agent is.")]
    plan: PlanItem | None = Field(
        default=None, description="The queue-server plan item that carries the suggestion out."
    )
    agent: str = Field(default="", description="Qualified name of the agent unit (set by SDK).")
    uid: str = Field(default_factory=lambda: uuid.uuid4().hex)
    time: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    @model_validator(mode="after")
    def _stop_needs_no_plan(self) -> Suggestion:
        if self.action == "stop" and self.plan is not None and self.plan.name != "stop":
            # a stop carrying a scan plan would be contradictory for a queue client
            raise ValueError("a stop suggestion cannot carry a measurement plan")
        return self

    def queue_item(self) -> dict[str, Any] | None:
        """The item to pass to queue-server's `item_add`, with the suggestion as metadata."""
        if self.plan is None:
            return None
        item = self.plan.model_dump(mode="json")
        meta = dict(item.get("meta") or {})
        meta.setdefault(
            "suggestion",
            {
                "uid": self.uid,
                "agent": self.agent,
                "action": self.action,
                "reason": self.reason,
                "confidence": self.confidence,
            },
        )
        item["meta"] = meta
        return item

    @classmethod
    def from_plan_item(
        cls,
        item: dict[str, Any],
        *,
        target: str,
        reason: str,
        confidence: float,
        action: Action = "more_scans",
    ) -> Suggestion:
        """Wrap a queue-server plan item (as a bluesky-adaptive agent builds it)."""
        plan = PlanItem.model_validate(item)
        return cls(
            action=action,
            target=target,
            arguments={"args": plan.args, "kwargs": plan.kwargs},
            reason=reason,
            confidence=confidence,
            plan=plan,
        )


def refusal(exc: ValidationError) -> str:
    """What is wrong with a value refused as a `Suggestion`, each field at fault with what it
    may be (`action 'continue' (allowed: ...); confidence 1.5 (must be from 0 to 1)`)."""
    return "; ".join(_problem(err) for err in exc.errors(include_url=False))


def _problem(err: Any) -> str:
    """One field of a refused suggestion, with what it may be (`confidence 1.5 (must be from 0
    to 1)`)."""
    field = ".".join(str(part) for part in err["loc"])
    value = err.get("input")
    kind = err["type"]
    if not field:
        return f"a {type(value).__name__} where a dict of its fields belongs"
    if kind == "missing":
        return f"no {field} (required)"
    if kind == "extra_forbidden":
        return f"{field} (no such field)"
    if kind == "literal_error":
        return f"{field} {value!r} (allowed: {err['ctx']['expected']})"
    bounds = _BOUNDS.get(field)
    if bounds is not None and kind in ("greater_than_equal", "less_than_equal"):
        return f"{field} {value!r} (must be from {bounds[0]:g} to {bounds[1]:g})"
    shown = "" if isinstance(value, dict | list) else f" {value!r}"
    return f"{field}{shown} ({err['msg'][:1].lower()}{err['msg'][1:]})"


#: the range of each bounded number of a suggestion, for `_problem`'s sentence
_BOUNDS: dict[str, tuple[float, float]] = {"confidence": (0.0, 1.0)}
