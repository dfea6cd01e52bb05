"""A plugin whose params model has defaults that break its own rules, as an outside plugin
author wrote one: a number below its minimum, a choice not among its choices, a nested model's
default and a default factory's result. pydantic validates none of them. Installed as a real
distribution by the tests (and imported as is by the harness tests), so its runtime strings
name whichever module this is."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from asapo_pipelines.sdk import Params, Source, describe, hookimpl, out


class Limits(Params):
    low: Annotated[float, Field(ge=0)] = -0.5


class CountParams(Params):
    count: Annotated[int, Field(ge=1)] = 3
    factor: Annotated[int, Field(gt=0)] = -1
    mode: Literal["a", "b"] = "c"
    limits: Limits = Limits()
    weights: Annotated[list[Annotated[int, Field(gt=0)]], Field(default_factory=lambda: [1, 0])]


class Count(Source):
    """Emits 1..count times factor, and says what it ran with (as the outside QA's unit did)."""

    def run(self) -> Any:
        p = self.params
        self.log.info("factor=%s mode=%s", p.factor, p.mode)
        for n in range(1, p.count + 1):
            yield {"n": n * p.factor, "mode": p.mode}


COUNT = describe(
    "bad.count",
    kind="connector",
    summary="Counts, with defaults its own params model refuses.",
    runtime=f"{__name__}:Count",
    outputs=[out("numbers", "bad/number")],
    params=CountParams,
)


@hookimpl
def register_units(register: Any) -> None:
    register(COUNT)
