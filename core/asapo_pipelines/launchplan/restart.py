"""Restarts of a worker that ended, by the rules of Nomad's `restart` block, which every
executor follows (the local one for its subprocesses, Slurm's watcher for its jobs):

- `attempts` restarts are allowed within `interval`, which starts at the task's first start
  and begins afresh once it has passed;
- each restart waits `delay` (plus up to 25 % jitter, as Nomad adds);
- when a failure would exceed `attempts` within the interval: mode `fail` stops restarting (the
  task failed for good), mode `delay` waits until the interval ends and starts again;
- a task that may end (a batch task, a prestart/poststart/poststop task that is not a sidecar)
  and exits 0 is complete and not restarted; a service's main task is restarted whatever its
  exit code (the caller says which, `restart_on_success`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

JITTER = 0.25


@dataclass(frozen=True)
class RestartPolicy:
    """One task's policy in seconds: what the compiled job writes (Nomad's `restart` block,
    `to_json`) and what each executor reads back from its own settings (a job's
    `RestartPolicy`, the `restart:` of `deploy.slurm`) and follows. The defaults are the
    workers' when the pipeline file says nothing."""

    attempts: int = 5
    interval: float = 30 * 60
    delay: float = 5
    mode: Literal["fail", "delay"] = "fail"

    def to_json(self) -> dict[str, Any]:
        """Nomad's JSON, durations as integer nanoseconds."""
        return {
            "Attempts": self.attempts,
            "Interval": round(self.interval * 1_000_000_000),
            "Delay": round(self.delay * 1_000_000_000),
            "Mode": self.mode,
        }

    def describe(self) -> str:
        return (
            f"Attempts {self.attempts} in Interval {_human(self.interval)}, "
            f"Delay {_human(self.delay)}, Mode {self.mode}"
        )


def _human(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Decision:
    action: str  # "complete" | "restart" | "fail"
    delay: float = 0.0
    reason: str = ""


class RestartTracker:
    """The restarts of one task, counted against its policy since `now`."""

    def __init__(
        self,
        policy: RestartPolicy,
        *,
        restart_on_success: bool,
        now: float,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.restart_on_success = restart_on_success
        self.start = now
        self.count = 0
        self.rng = rng or random.Random()

    def on_exit(self, exit_code: int, now: float) -> Decision:
        successful = exit_code == 0
        if successful and not self.restart_on_success:
            return Decision("complete", reason="exited successfully")
        policy = self.policy
        if policy.attempts == 0:
            return Decision("fail", reason="the restart policy allows no restarts")
        if now > self.start + policy.interval:
            self.count = 0
            self.start = now
        self.count += 1
        if self.count > policy.attempts:
            return self._exhausted(now)
        delay = policy.delay + (self.rng.random() * JITTER * policy.delay)
        return Decision("restart", delay=delay, reason="restarting within the restart policy")

    def _exhausted(self, now: float) -> Decision:
        """The attempts of this interval are used up: fail, or wait for the next interval."""
        policy = self.policy
        if policy.mode == "fail":
            return Decision(
                "fail",
                reason=(
                    f"exceeded the {policy.attempts} restart attempt"
                    f"{'' if policy.attempts == 1 else 's'} allowed in "
                    f"{_human(policy.interval)} "
                    'and the restart mode is "fail"'
                ),
            )
        return Decision(
            "restart",
            delay=max(0.0, self.start + policy.interval - now),
            reason='exceeded the restart attempts; waiting for the next interval (mode "delay")',
        )
