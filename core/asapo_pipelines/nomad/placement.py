"""Why the scheduler could not place a task group, in sentences, from an evaluation's metrics.

Nomad reports placement failures as `FailedTGAllocs`: per task group an AllocationMetric with
counters such as `ConstraintFiltered` ("missing drivers", "missing devices", a constraint's
text), `DimensionExhausted` ("memory", "cpu", "disk", "devices: ...") and `NodesAvailable` per
datacenter. Each cause becomes one sentence naming the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PlacementFailure:
    group: str
    reasons: list[str] = field(default_factory=list)
    coalesced: int = 0

    def sentences(self) -> list[str]:
        more = f" (and {self.coalesced} more allocations)" if self.coalesced else ""
        return [f"unit {self.group} cannot be placed{more}: {r}" for r in self.reasons]

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.group, "reasons": self.reasons, "more": self.coalesced}


def _nodes(n: int) -> str:
    return f"{n} node{'s' if n != 1 else ''}"


def _group(job: Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    for group in (job or {}).get("TaskGroups") or []:
        if group.get("Name") == name:
            return dict(group)
    return {}


def _tasks(group: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(group.get("Tasks") or [])


def _sum(group: Mapping[str, Any], key: str) -> int:
    return sum(int((t.get("Resources") or {}).get(key) or 0) for t in _tasks(group))


def explain(
    group_name: str, metric: Mapping[str, Any], job: Mapping[str, Any] | None = None
) -> PlacementFailure:
    """The failure of one group; `job` (the `Job` object) sharpens the sentences."""
    group = _group(job, group_name)
    drivers = sorted({str(t.get("Driver")) for t in _tasks(group) if t.get("Driver")})
    devices = sorted(
        {
            str(d.get("Name"))
            for t in _tasks(group)
            for d in ((t.get("Resources") or {}).get("Devices") or [])
        }
    )
    driver_text = " or ".join(drivers) or "requested"
    device_text = ", ".join(devices) or "requested"
    reasons: list[str] = []

    available = metric.get("NodesAvailable") or {}
    for dc, count in sorted(available.items()):
        if not count:
            reasons.append(f"no client node is available in datacenter {dc!r}")
    if not available and not metric.get("NodesEvaluated"):
        reasons.append(
            "no client node is eligible; check the job's datacenters and node pool and that "
            "clients are up (`nomad node status`)"
        )

    for constraint, count in sorted((metric.get("ConstraintFiltered") or {}).items()):
        if "missing drivers" in constraint:
            reasons.append(
                f"the {driver_text} driver is not enabled on {_nodes(count)}; enable it in the "
                "clients' "
                f'plugin "{drivers[0] if drivers else "raw_exec"}" configuration '
                "(raw_exec is disabled by default)"
            )
        elif "missing devices" in constraint:
            reasons.append(
                f"no {device_text} device on {_nodes(count)}; install the NVIDIA device plugin "
                "on the GPU nodes or lower the unit's gpus"
            )
        else:
            reasons.append(f"the constraint {constraint!r} excluded {_nodes(count)}")
    for node_class, count in sorted((metric.get("ClassFiltered") or {}).items()):
        reasons.append(f"node class {node_class!r} excluded {_nodes(count)}")

    for dimension, count in sorted((metric.get("DimensionExhausted") or {}).items()):
        if dimension == "memory":
            need = _sum(group, "MemoryMB")
            asked = f" for {need} MB" if need else ""
            reasons.append(
                f"not enough free memory{asked} on {_nodes(count)}; lower the unit's memory "
                "or add capacity"
            )
        elif dimension == "cpu":
            need = _sum(group, "CPU")
            asked = f" for {need} MHz" if need else ""
            reasons.append(f"not enough free CPU{asked} on {_nodes(count)}")
        elif dimension == "disk":
            size = (group.get("EphemeralDisk") or {}).get("SizeMB")
            asked = f" for the {size} MB ephemeral disk" if size else ""
            reasons.append(f"not enough free disk{asked} on {_nodes(count)}")
        elif dimension.startswith("devices"):
            detail = dimension.partition(":")[2].strip()
            reasons.append(
                f"no free {device_text} device on {_nodes(count)}"
                + (f" ({detail})" if detail else "")
            )
        else:
            reasons.append(f"{dimension} exhausted on {_nodes(count)}")

    for quota in metric.get("QuotaExhausted") or []:
        reasons.append(f"the namespace's quota is exhausted ({quota})")

    if not reasons:
        reasons.append(
            f"no node could take it ({metric.get('NodesEvaluated', 0)} evaluated, "
            f"{metric.get('NodesFiltered', 0)} filtered, "
            f"{metric.get('NodesExhausted', 0)} out of resources)"
        )
    return PlacementFailure(
        group=group_name, reasons=reasons, coalesced=int(metric.get("CoalescedFailures") or 0)
    )


def explain_all(
    failed: Mapping[str, Any] | None, job: Mapping[str, Any] | None = None
) -> list[PlacementFailure]:
    return [explain(name, metric or {}, job) for name, metric in sorted((failed or {}).items())]
