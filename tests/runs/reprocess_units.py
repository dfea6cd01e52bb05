"""A unit of the reprocess comparison tests, installed as a real plugin distribution: an agent
that, like the XAS convergence agent, sends one suggestion per input and whose summary keeps
only the last decision per group. Each file it reads holds a noise level; levels above
`ceiling` are clipped to it, so another ceiling changes the decisions on the loud files only
(the last file is quiet: the summaries of two runs are then equal while earlier suggestions
differ). Its suggestions carry the SDK's new uid and time on every send, as every agent's do."""

from __future__ import annotations

from typing import Any

from asapo_pipelines.sdk import Agent, Message, Params, describe, hookimpl, inp, out


class ClipParams(Params):
    #: the highest noise level a decision uses
    ceiling: float = 100.0
    #: below this, stop
    target: float = 5.0


CLIP = describe(
    "cmp.clip-agent",
    kind="agent",
    summary="Decides from each file's noise level, clipped to a ceiling.",
    runtime=f"{__name__}:ClipAgent",
    inputs=[inp("files", "*/*", format="bytes")],
    outputs=[out("plans", "plan/suggestion")],
    params=ClipParams,
)


class ClipAgent(Agent):
    def on_start(self) -> None:
        self.decisions: dict[str, dict[str, Any]] = {}

    def process(self, message: Message) -> None:
        noise = min(float(bytes(message.payload or b"0").decode()), self.params.ceiling)
        action = "stop" if noise < self.params.target else "more_scans"
        self.decisions["sample"] = {"action": action, "noise": noise}
        self.suggest(
            {
                "action": action,
                "target": "sample",
                "reason": f"noise {noise:g}",
                "confidence": 0.5,
                "arguments": {"noise": noise},
            }
        )

    def summary(self) -> dict[str, Any]:
        return {"decisions": self.decisions}


@hookimpl
def register_units(register: Any) -> None:
    register(CLIP)
