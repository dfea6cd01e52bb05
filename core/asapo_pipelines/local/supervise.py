"""Entry point of a detached supervisor: `python -m asapo_pipelines.local.supervise RUN_DIR`.

Started by `pipeline run --detach` in its own session; runs `<RUN_DIR>/job.json`, writes its
events to `supervisor.log` and its state to `state.json`; SIGTERM (`pipeline stop`) or SIGINT
stop the tasks cleanly, also while the supervisor is starting. However it ends, it ends the
run in the store (`ASAPO_PIPELINES_RUN`): its log is in the run directory, which may be what
made it fail (deleted, or on a full disk).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.local.executor import ExecOptions, LocalExecutor, RunResult
from asapo_pipelines.local.layout import JOB_FILE, STOPPED_ORPHANS_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asapo_pipelines.local.supervise")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--pipeline-file", default=None)
    # the `--data-dir` of `pipeline run --detach`, for the stop command of a refusal
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stop = _StopWhileStarting()

    def log(message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        # the log is on the run directory's disk: when that is full the run goes on (or stops
        # for that reason, in one sentence in the state file), never on a failed print
        with contextlib.suppress(OSError):
            print(f"{stamp} {message}", flush=True)

    try:
        job = json.loads((args.run_dir / JOB_FILE).read_text())
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            print(f"error: cannot run {args.run_dir / JOB_FILE}: {exc}", flush=True)
        return 1
    try:
        options = ExecOptions(
            on_event=log,
            pipeline_file=args.pipeline_file,
            data_dir=args.data_dir,
            detached=True,
            stopped_orphans=_stopped_orphans(args.run_dir),
        )
        executor = LocalExecutor(job, args.run_dir, options)
        stop.hand_to(executor)
        result = executor.run()
    except PipelinesError as exc:
        with contextlib.suppress(OSError):
            print(f"error: {exc.message}", flush=True)
        result = RunResult("failed", exc.message, {})
    else:
        log(result.message)
    from asapo_pipelines.runs.lifecycle import record_end

    record_end(args.pipeline_file, job, result)  # the run's end, in the store
    return 0 if result.status in ("complete", "stopped") else 1


def _stopped_orphans(run_dir: Path) -> dict[str, Any] | None:
    """The tasks of a lost run `pipeline run` stopped before starting this supervisor
    (`STOPPED_ORPHANS_FILE`, taken: a later start writes its own), said in its log and state
    as if it had stopped them; None when it stopped none, or the file cannot be read (the
    run goes on without the note)."""
    path = run_dir / STOPPED_ORPHANS_FILE
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    with contextlib.suppress(OSError):
        path.unlink()
    return found if isinstance(found, dict) else None


class _StopWhileStarting:
    """SIGTERM and SIGINT from the supervisor's start on: before the executor runs (reading
    the job, checking the machine's limits) they are kept and handed to it, which then starts
    no task and ends the run `stopped`; the executor handles them itself while it runs."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.executor: LocalExecutor | None = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.reason = self.reason or signal.Signals(signum).name
        if self.executor is not None:
            self.executor.request_stop(signal.Signals(signum).name)

    def hand_to(self, executor: LocalExecutor) -> None:
        self.executor = executor
        if self.reason is not None:
            executor.request_stop(self.reason)


if __name__ == "__main__":
    sys.exit(main())
