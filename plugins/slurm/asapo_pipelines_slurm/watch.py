"""The restart policy of a Slurm deployment: `python -m asapo_pipelines_slurm.watch STATE_DIR`.

Started by `pipeline deploy` (and `start`) on the submitting host in its own session. Every
`poll_interval` seconds it asks squeue about the deployment's jobs; a job that ended without
finishing its work (killed, cancelled by someone else, node failure, non-zero exit) is
resubmitted after the policy's delay, within its attempts (the core's restart tracker decides,
by Nomad's rules, as on the local executor), and the restart is counted in `state.json`. A batch
worker that exits 0 is complete; one that exits 78 (a configuration error) fails at once, as on
the local executor. Once an instance failed for good (restarts exhausted, a configuration error),
the watcher cancels the deployment's other jobs, as the local executor stops its other tasks
after a failure. Once every instance is complete, failed or so stopped, the watcher has the
deployment's run ended (`record_end`) and exits. SIGTERM (`pipeline stop`) ends the watcher
after the current look; `stop` itself cancels the jobs then.

Why resubmission and not `scontrol requeue`: Slurm holds a requeued batch job for the
credential lifetime (120 s by default) before it may start again; a new job starts at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk.executors import RestartPolicy, RestartTracker
from asapo_pipelines_slurm import commands
from asapo_pipelines_slurm.commands import SlurmError, SlurmRejected
from asapo_pipelines_slurm.state import (
    Layout,
    instance_key,
    process_start_time,
    read_state,
    write_state,
)

#: squeue's states of a job that still runs or will run.
ALIVE = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "RESIZING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
}
#: The executor's own final states of an instance.
FINAL = {"complete", "failed", "stopped"}
#: `pipeline worker`'s exit code for a configuration error: restarting cannot help.
EX_CONFIG = 78


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with contextlib.suppress(OSError):
        print(f"{stamp} {message}", flush=True)


def submit(instance: dict[str, Any]) -> str:
    return commands.sbatch(
        [*instance["options"], instance["script_path"]],
        f"unit {instance['unit']} replica {instance['replica']}",
    )


def exit_of(job_id: str, squeue_state: str | None) -> tuple[str, int | None, str]:
    """(Slurm's final state, exit code or None, one line) of an ended job."""
    details = commands.job_details(job_id)
    if details is None:
        return squeue_state or "GONE", None, f"job {job_id} is no longer known to Slurm"
    final = details.get("JobState", squeue_state or "UNKNOWN")
    code_text, _, sig = details.get("ExitCode", "").partition(":")
    code = int(code_text) if code_text.isdigit() else None
    return final, code, f"job {job_id} ended {final}{_how(final, code, sig)}"


def _how(final: str, code: int | None, sig: str) -> str:
    """How the job's process ended, as Slurm's `ExitCode=code:signal` says: a signal when one
    killed it (a cancelled job's 0:15 read "exit code 0", a clean exit), an exit code when its
    worker exited; nothing for a job that ran no worker to the end (NODE_FAIL, a pending job
    cancelled: 0:0). Without brackets of its own: the sentence is often said inside some
    (`start`'s `files-0 (job 41 ended COMPLETED with exit code 0)`, a run's message), where
    it read "(exit code 0))"."""
    if sig not in ("", "0"):
        return f", killed by signal {sig}"
    if code is None or (code == 0 and final not in ("COMPLETED", "FAILED")):
        return ""
    return f" with exit code {code}"


def completed(final: str, code: int | None, state: dict[str, Any]) -> bool:
    """Whether an ended job's worker is done for good: a batch worker that exited 0. A
    service's worker exiting 0 is restarted (it should run until stopped)."""
    return final == "COMPLETED" and code == 0 and state["type"] == "batch"


def judged(
    instance: dict[str, Any], state: dict[str, Any], final: str, code: int | None, what: str
) -> bool:
    """Whether an end of the instance's job is final whatever the restart policy says, the
    instance marked so: `complete` (`completed`), or `failed` for a configuration error (exit
    code 78: the same configuration fails again), with the worker's last error. Shared by the
    watcher and by `pipeline start` for a job that ended while no watcher looked."""
    if completed(final, code, state):
        instance.update(state="complete", detail=what)
        return True
    if code == EX_CONFIG:
        reason = last_error(instance) or "a configuration error"
        instance.update(state="failed", detail=f"{what}: {reason}")
        return True
    return False


def ended_as(instances: list[dict[str, Any]]) -> str:
    """A deployment's state once every instance is final: `failed` when one failed, `complete`
    when every one is; else `stopped`. Instances stopped by `pipeline stop` are no success:
    taken for one, a deployment started again too early was recorded `complete` having run
    nothing."""
    if any(i["state"] == "failed" for i in instances):
        return "failed"
    return "complete" if all(i["state"] == "complete" for i in instances) else "stopped"


#: how long Slurm must go on saying that a pending job cannot start before the watcher believes
#: it: its first reason is not always its last. A job asking for more time than its partition
#: allows shows PartitionConfig (more CPUs or memory than a node has) until the scheduler has
#: looked at it, PartitionTimeLimit after: 0.65-1.8 s after submission on the test cluster.
#: Timed, not counted in looks, so that it holds for any poll_interval.
NEVER_SETTLE = 3.0


def seen_alive(instance: dict[str, Any], job: dict[str, str], now: float) -> None:
    """Record squeue's word on a job that runs or waits (`now`: wall-clock seconds, kept in
    the state file across watcher restarts). `cannot_start`: Slurm has said for NEVER_SETTLE
    seconds that the pending job cannot start (`commands.never_starts`); `detail` holds the
    reason it gives now."""
    never = job["state"] == "PENDING" and bool(commands.never_starts(job["reason"]))
    instance["state"] = job["state"].lower()
    instance["detail"] = job["nodes"] if job["state"] == "RUNNING" else job["reason"]
    if not never:
        instance.pop("never_since", None)
        instance.pop("cannot_start", None)
        return
    since = instance.setdefault("never_since", now)
    if now - since >= NEVER_SETTLE:
        instance["cannot_start"] = True


def last_error(instance: dict[str, Any]) -> str:
    """The last error the worker of the instance's current job printed, or "". Only the lines
    after that job's start line count: restarts append to one log file, and a job cancelled
    by hand was shown with a Redis error an earlier job had printed minutes before."""
    with contextlib.suppress(OSError):
        lines = Path(instance["stderr"]).read_text(errors="replace").splitlines()
        lines = lines[_job_start(lines, str(instance["job_id"])) :]
        for line in reversed(lines):
            if line.strip().startswith("error:") or "Error" in line:
                return line.strip()
    return ""


def _job_start(lines: list[str], job_id: str) -> int:
    """The index of the line after job `job_id`'s start line (`plan._script` writes it),
    or len(lines) when the job wrote none: it printed nothing of its own."""
    start = f"asapo-pipelines: Slurm job {job_id} on "
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith(start):
            return index + 1
    return len(lines)


#: The restarts of an instance whose times the state keeps (`restarted`): more than any
#: policy's attempts are never needed to seed a tracker (`_count_earlier`).
KEPT_RESTARTS = 1001


def restarted(instance: dict[str, Any], now: float) -> None:
    """Record when the instance was restarted (wall-clock seconds), so that a job watcher
    started again within the session counts it against the restart budget."""
    times = [*instance.get("restarted_at", []), now]
    instance["restarted_at"] = times[-KEPT_RESTARTS:]


def _count_earlier(tracker: RestartTracker, instance: dict[str, Any], now: float) -> None:
    """Seed a new tracker with the instance's restarts of this session made by an earlier
    watcher (one killed, or its host rebooted, and started again by `pipeline start`) within
    the policy's interval, the window counted from the first of them. Begun empty, each
    watcher death gave every unit `restart.attempts` more restarts. A new session (`deploy`,
    `start` after a `stop`) clears them: it has the whole budget."""
    recent = [t for t in instance.get("restarted_at", []) if now - t <= tracker.policy.interval]
    if recent:
        tracker.count = len(recent)
        tracker.start -= now - min(recent)


class Watcher:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.stopping = False
        self.trackers: dict[str, RestartTracker] = {}
        self.due: dict[str, float] = {}

    def tracker(self, key: str, state: dict[str, Any]) -> RestartTracker:
        if key not in self.trackers:
            r = state["restart"]
            policy = RestartPolicy(
                attempts=int(r["attempts"]),
                interval=float(r["interval"]),
                delay=float(r["delay"]),
                mode=r["mode"],  # written by this plugin from a checked `restart:`
            )
            tracker = RestartTracker(
                policy, restart_on_success=state["type"] == "service", now=time.monotonic()
            )
            _count_earlier(tracker, state["instances"][key], time.time())
            self.trackers[key] = tracker
        return self.trackers[key]

    def look(self, state: dict[str, Any]) -> None:
        """One round: every active instance's job asked about, dead ones handled."""
        active = {k: i for k, i in state["instances"].items() if i["state"] not in FINAL}
        asked = [i["job_id"] for k, i in active.items() if k not in self.due and i["job_id"]]
        queue = commands.queue(asked)
        now = time.monotonic()
        for key, instance in active.items():
            if key in self.due:
                if now >= self.due[key]:
                    self.resubmit(instance)
                continue
            job = queue.get(instance["job_id"])
            if job is not None and job["state"] in ALIVE:
                seen_alive(instance, job, time.time())
                continue
            self.ended(key, instance, state, job["state"] if job else None, now)

    def stop_after_failure(self, state: dict[str, Any]) -> None:
        """Once an instance failed for good, cancel the jobs of the others and stop them, as
        the local executor stops its other tasks: the pipeline cannot go on without that unit,
        while the other jobs would hold their allocations until their time limit and the
        deployment would show `running` for ever."""
        instances = state["instances"]
        failed = [i for i in instances.values() if i["state"] == "failed"]
        others = {k: i for k, i in instances.items() if i["state"] not in FINAL}
        if not failed or not others:
            return
        culprit = f"unit {failed[0]['unit']} replica {failed[0]['replica']}"
        log(f"{failed[0]['name']} failed: stopping the other jobs after a failure")
        jobs = [i["job_id"] for k, i in others.items() if k not in self.due and i["job_id"]]
        queued = commands.queue(jobs)
        commands.scancel([j for j in jobs if queued.get(j, {}).get("state") in ALIVE])
        for key, instance in others.items():
            self.due.pop(key, None)  # not resubmitted
            instance.update(state="stopped", detail=f"cancelled: {culprit} failed")

    def ended(
        self,
        key: str,
        instance: dict[str, Any],
        state: dict[str, Any],
        seen: str | None,
        now: float,
    ) -> None:
        final, code, what = exit_of(instance["job_id"], seen)
        if judged(instance, state, final, code, what):
            said = "complete" if instance["state"] == "complete" else "not restarted"
            log(f"{instance['name']}: {instance['detail']}: {said}")
            return
        decision = self.tracker(key, state).on_exit(1 if code in (None, 0) else code, now)
        # why the worker ended, as it said it: "exceeded the 5 restart attempts" alone left
        # the user to read each job's log for a Redis that refused every connection
        cause = last_error(instance)
        what = f"{what}: {cause}" if cause else what
        if decision.action == "restart":
            self.due[key] = now + decision.delay
            instance.update(state="restarting", detail=f"{what}; {decision.reason}")
            log(f"{instance['name']}: {what}; resubmitting in {decision.delay:.1f} s")
        else:
            instance.update(state="failed", detail=f"{what}; {decision.reason}")
            log(f"{instance['name']}: {what}; {decision.reason}")

    def resubmit(self, instance: dict[str, Any]) -> None:
        """Submit the instance's job again. Slurm refusing it (an account out of time, a
        partition down) fails the instance with Slurm's reason; a controller that does not
        answer is asked again at the next look."""
        key = instance_key(instance["unit"], int(instance["replica"]))
        try:
            job_id = submit(instance)
        except SlurmRejected as exc:
            del self.due[key]
            instance.update(state="failed", detail=exc.message)
            log(f"{instance['name']}: not resubmitted: {exc.message}")
            return
        del self.due[key]
        instance["restarts"] = int(instance.get("restarts", 0)) + 1
        restarted(instance, time.time())
        instance["jobs"] = [*instance.get("jobs", []), job_id]
        instance.update(job_id=job_id, state="pending", detail="resubmitted")
        log(f"{instance['name']}: resubmitted as job {job_id} (restart {instance['restarts']})")

    def run(self) -> int:
        state = read_state(self.layout)
        if state is None:
            log(f"error: no deployment state in {self.layout.root}")
            return 1
        state.update(watcher_pid=os.getpid(), watcher_started=process_start_time(os.getpid()))
        write_state(self.layout, state)
        log(f"watching {len(state['instances'])} job(s) of {state['pipeline']}")
        interval = float(state.get("poll_interval", 2.0))
        written = json.dumps(state, sort_keys=True)
        while not self.stopping:
            try:
                self.look(state)
                self.stop_after_failure(state)
            except SlurmError as exc:  # the controller may be back at the next look
                log(f"warning: {exc.message}")
            if not self.layout.root.is_dir():
                log("the state directory is gone (pipeline stop --purge); stopping")
                return 0
            instances = list(state["instances"].values())
            if all(i["state"] in FINAL for i in instances):
                state["state"] = ended_as(instances)
            # written when something changed: the state lives on a shared filesystem
            text = json.dumps(state, sort_keys=True)
            if text != written:
                write_state(self.layout, state)
                written = text
            if state["state"] in FINAL:
                log(f"{state['pipeline']} {state['state']}")
                if state["state"] != "stopped":  # `pipeline stop` ends a stopped one's run
                    record_end(state)
                return 0
            end = time.monotonic() + interval
            while not self.stopping and time.monotonic() < end:
                time.sleep(0.05)
        log("stopped watching (pipeline stop)")
        return 0


#: How long the command that records the run's end may take (it reads the workers' counters).
RECORD_TIMEOUT = 120.0


def record_end(state: dict[str, Any]) -> None:
    """Have the deployment's run ended as the deployment ended, with the workers' counts: by
    `pipeline status FILE --executor slurm`, which records the end of a deployment that ended on
    its own (the core's runs are reached through the `pipeline` command, not imported past the
    SDK's door). Without it a batch pipeline's run stayed `running` for ever. Best effort: the
    results are written, and the next `pipeline status` or `stop` records the end as well."""
    file = state.get("file")
    if not file:  # deployed by an older version of the plugin
        return
    argv = [sys.executable, "-m", "asapo_pipelines", "status", file, "--executor", "slurm"]
    try:
        done = subprocess.run(
            [*argv, "--json"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=RECORD_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(f"warning: the end of the run is not recorded: {exc}")
        return
    for line in done.stderr.splitlines():
        log(f"pipeline status: {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asapo_pipelines_slurm.watch")
    parser.add_argument("state_dir", type=Path)
    args = parser.parse_args(argv)
    watcher = Watcher(Layout(args.state_dir))

    def stop(signum: int, frame: Any) -> None:
        watcher.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return watcher.run()


if __name__ == "__main__":
    sys.exit(main())
