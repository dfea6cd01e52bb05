"""Nomad's job as `pipeline status` shows it: one line for the job, a row per unit with the
allocation counts Nomad keeps, then each allocation's tasks and their recent events."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.nomad.client import JobStatus


def render_status(status: JobStatus) -> str:
    lines = [
        f"job {status.id}: {status.type}, {_state(status)}, "
        f"version {status.version}, namespace {status.namespace}, "
        f"datacenters {', '.join(status.datacenters) or '-'}"
    ]
    columns = ["Queued", "Starting", "Running", "Complete", "Failed", "Lost"]
    width = max([4, *(len(g) for g in status.groups)])
    lines.append(f"{'unit':<{width}}  " + "  ".join(f"{c.lower():>8}" for c in columns))
    for name, counts in status.groups.items():
        cells = "  ".join(f"{counts.get(c, 0):>8}" for c in columns)
        lines.append(f"{name:<{width}}  {cells}")
    if status.allocations:
        lines.append("allocations:")
    for alloc in status.allocations:
        lines.append(
            f"  {alloc.id[:8]} {alloc.name} on {alloc.node or '-'}: {alloc.status} "
            f"(desired {alloc.desired}, modified {alloc.modified or '-'})"
        )
        for task in alloc.tasks:
            failed = ", failed" if task.failed else ""
            restarts = f"{task.restarts} restart{'' if task.restarts == 1 else 's'}"
            lines.append(f"    task {task.name}: {task.state}{failed}, {restarts}")
            for event in task.events:
                message = f": {event['message']}" if event["message"] else ""
                lines.append(f"      {event['time']} {event['type']}{message}")
    for failure in status.failures:
        lines.extend(f"! {sentence}" for sentence in failure.sentences())
    return "\n".join(lines)


def _state(status: JobStatus) -> str:
    """Nomad's `dead` with what it means here (`JobStatus.state`): "dead (complete)"."""
    if status.state == status.status or status.stopped:
        return status.state
    return f"{status.status} ({status.state})"
