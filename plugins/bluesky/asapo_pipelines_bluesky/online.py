"""`pipeline validate --online` for `bluesky.queue`: the plans a file names, asked of the queue
server itself (the plans its user group may run, and their parameters). `pipeline run` asks the
same before it starts anything (the core calls this plugin's `check_online` hook there too), so
a plan the server does not allow is refused at once, not when the first suggestion is refused
at night.

Checked: the bridge's own `plan` template, and the `plan_name` / `plan_kwargs` of the units that
feed it suggestions (the convention of xas.convergence-agent's params).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asapo_pipelines_bluesky.params import QueueParams

Report = Callable[[tuple[str, ...], str, str], None]
UNIT = "bluesky.queue"


def _parameters(plan: dict[str, Any]) -> tuple[set[str], bool]:
    """The keyword names a plan takes, and whether it takes any (**kwargs)."""
    names: set[str] = set()
    anything = False
    for parameter in plan.get("parameters") or []:
        kind = str((parameter.get("kind") or {}).get("name", ""))
        if kind == "VAR_KEYWORD":
            anything = True
        elif kind != "VAR_POSITIONAL":
            names.add(str(parameter.get("name")))
    return names, anything


def _check_plan(
    allowed: dict[str, Any],
    name: Any,
    kwargs: dict[str, Any],
    at: tuple[str, ...],
    kwargs_at: tuple[str, ...],
    server: str,
    report: Report,
) -> None:
    if name not in allowed:
        import difflib

        near = difflib.get_close_matches(str(name), list(allowed), n=1)
        hint = f"; did you mean {near[0]}?" if near else ""
        report(
            at,
            "P501",
            f"the queue server at {server} does not allow plan {name} (it allows "
            f"{', '.join(sorted(allowed))}){hint}",
        )
        return
    names, anything = _parameters(allowed[name])
    if anything:
        return
    for key in kwargs:
        if key not in names:
            report(
                (*kwargs_at, key),
                "P501",
                f"plan {name} on the queue server at {server} takes no argument {key} "
                f"(it takes {', '.join(sorted(names)) or 'none'})",
            )


def check(pipeline: Any, catalog: Any, report: Report) -> None:
    from asapo_pipelines_bluesky.queue import QueueClient, QueueError

    producers = pipeline.producers()
    for instance, config in pipeline.units.items():
        if config.unit != UNIT:
            continue
        params = pipeline.params_for(instance, catalog)
        assert isinstance(params, QueueParams)
        where = ("units", instance, "params")
        try:
            with QueueClient(params) as client:
                allowed = client.plans_allowed()
        except QueueError as exc:
            report((*where, "control_address"), "P502", f"plans not checked: {exc.message}")
            continue
        if not allowed:
            # a server whose environment was never opened has no plan list yet: that says
            # nothing about the names, and it may well be opened before the first suggestion
            report(
                (*where, "control_address"),
                "P502",
                f"plans not checked: the queue server at {params.control_address} allows user "
                f"group {params.user_group} no plans yet (was its environment ever opened?)",
            )
            continue
        if params.plan is not None:
            _check_plan(
                allowed,
                params.plan.name,
                params.plan.kwargs,
                (*where, "plan", "name"),
                (*where, "plan", "kwargs"),
                params.control_address,
                report,
            )
        for stream in (config.inputs or {}).values():
            for agent, _port in producers.get(stream, []):
                agent_params = pipeline.params_for(agent, catalog)
                name = getattr(agent_params, "plan_name", None)
                if name is None:
                    continue
                _check_plan(
                    allowed,
                    name,
                    dict(getattr(agent_params, "plan_kwargs", {}) or {}),
                    ("units", agent, "params", "plan_name"),
                    ("units", agent, "params", "plan_kwargs"),
                    params.control_address,
                    report,
                )
