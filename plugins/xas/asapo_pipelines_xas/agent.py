"""The convergence agent: from each merged result, more scans or stop.

Noise in the mean of N repeats falls as 1/sqrt(N). With epsilon_N the noise of the current merge,
the single-scan noise is epsilon_1 = epsilon_N sqrt(N), and the target epsilon_t is reached after

    N_t = ceil((epsilon_1 / epsilon_t)^2)  scans in total,

so the agent asks for N_t - N more (at most `max_batch`, never beyond `max_scans`). It says stop
when epsilon_N <= epsilon_t, when the normalised merged spectrum changed less than
`stability_tolerance` (RMS) since the previous merge, or when `max_scans` scans were taken; and it
suggests changing parameters when most scans are rejected.

A suggestion is a plain dict whose content matches what bluesky-adaptive agents propose and what
bluesky-queueserver queues: `item` is a queue-server plan item
(`{"name", "args", "kwargs", "item_type": "plan"}`), or None when there is nothing to run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from asapo_pipelines_xas.params import ConvergenceParams

ACTIONS = ("more_scans", "stop", "change_parameters")


class ConvergenceAgent:
    """Stateful per group: remembers the previous merge for the stability test."""

    def __init__(self, params: ConvergenceParams) -> None:
        self.params = params
        self._previous: dict[tuple[tuple[str, str], ...], tuple[np.ndarray, np.ndarray]] = {}

    def decide(self, merged: Mapping[str, Any]) -> dict[str, Any]:
        """A plan suggestion for one `xas/merged` message body (or `Merged.to_json()`)."""
        if hasattr(merged, "to_json"):
            merged = merged.to_json()
        p = self.params
        group = {str(k): str(v) for k, v in dict(merged.get("group", {})).items()}
        key = tuple(sorted(group.items()))
        n = int(merged.get("n_merged", 0))
        rejected = list(merged.get("rejected", []))
        n_total = n + len(rejected)
        values = dict(merged.get("values", {}))
        eps = values.get("epsilon_k")
        bad = [{"scan": r.get("scan"), "reasons": list(r.get("reasons", []))} for r in rejected]
        metrics: dict[str, Any] = {
            "n_merged": n,
            "n_scans": n_total,
            "epsilon_k": eps,
            "target_noise": p.target_noise,
            "e0": values.get("e0"),
            "edge_step": values.get("edge_step"),
        }
        change = self._stability(key, merged)
        metrics["change_since_previous"] = change

        def suggestion(
            action: str, reason: str, confidence: float, scans: int = 0
        ) -> dict[str, Any]:
            item = None
            arguments: dict[str, Any] = {}
            if action == "more_scans":
                arguments = {"scans": scans}
                item = {
                    "name": p.plan_name,
                    "args": [],
                    "kwargs": {**group, **p.plan_kwargs, "repeats": scans},
                    "item_type": "plan",
                }
            elif action == "change_parameters":
                arguments = {"check": sorted({r for b in bad for r in b["reasons"]})}
            return {
                "action": action,
                "target": group,
                "arguments": arguments,
                "reason": reason,
                "confidence": round(float(confidence), 3),
                "item": item,
                "bad_scans": bad,
                "latest": merged.get("latest"),
                "metrics": metrics,
            }

        if n == 0:
            return suggestion(
                "change_parameters",
                f"all {n_total} scans were rejected; check the beam and the sample",
                0.8,
            )
        if len(rejected) >= 2 and len(rejected) / n_total > p.max_rejected_fraction:
            return suggestion(
                "change_parameters",
                f"{len(rejected)} of {n_total} scans were rejected (more than "
                f"{p.max_rejected_fraction:.0%}); check the beam and the sample",
                0.7,
            )
        if eps is None:
            if n_total >= p.max_scans:
                return suggestion("stop", f"maximum of {p.max_scans} scans reached", 0.6)
            return suggestion(
                "more_scans", "no noise estimate yet (autobk or estimate_noise is off)", 0.2, 1
            )
        eps = float(eps)
        if eps <= p.target_noise:
            return suggestion(
                "stop",
                f"noise {eps:.3g} reached the target {p.target_noise:.3g} with {n} merged scans",
                0.95,
            )
        if n_total >= p.max_scans:
            return suggestion(
                "stop",
                f"maximum of {p.max_scans} scans reached; noise {eps:.3g} is still above the "
                f"target {p.target_noise:.3g}",
                0.6,
            )
        if (
            p.stability_tolerance > 0
            and n >= p.stability_min_scans
            and change is not None
            and change < p.stability_tolerance
        ):
            return suggestion(
                "stop",
                f"the merged spectrum changed by {change:.3g} (RMS of the normalised mu) since "
                f"the previous merge, below {p.stability_tolerance:.3g}",
                0.75,
            )
        single = eps * math.sqrt(n)
        needed = math.ceil((single / p.target_noise) ** 2 - 1e-9)
        more = max(1, needed - n)
        capped = min(more, p.max_batch, p.max_scans - n_total)
        metrics["predicted_scans_total"] = needed
        reason = (
            f"noise {eps:.3g} after {n} merged scans; falling as 1/sqrt(N) it reaches the "
            f"target {p.target_noise:.3g} after {needed} scans"
        )
        if capped < more:
            reason += (
                f"; asking for {capped} now (max_batch {p.max_batch}, max_scans {p.max_scans})"
            )
        return suggestion("more_scans", reason, self._confidence(merged, n, eps), capped)

    def _confidence(self, merged: Mapping[str, Any], n: int, eps: float) -> float:
        """How well the 1/sqrt(N) law held so far: 0.5 with one scan, up to 0.95."""
        singles = [
            float(s["epsilon_k"])
            for s in merged.get("scans", [])
            if s.get("accepted") and s.get("epsilon_k")
        ]
        if n < 2 or not singles:
            return 0.5
        expected = float(np.mean(singles)) / math.sqrt(n)
        return min(0.95, max(0.2, 1.0 - abs(math.log(eps / expected))))

    def _stability(self, key: Any, merged: Mapping[str, Any]) -> float | None:
        arrays = dict(merged.get("arrays", {}))
        if "energy" not in arrays or "norm" not in arrays:
            return None
        energy = np.asarray(arrays["energy"], dtype=float)
        norm = np.asarray(arrays["norm"], dtype=float)
        previous = self._previous.get(key)
        self._previous[key] = (energy, norm)
        if previous is None:
            return None
        old = np.interp(energy, previous[0], previous[1])
        return float(np.sqrt(np.nanmean((norm - old) ** 2)))
