"""Entry point of a detached supervisor: `python -m asapo_pipelines.local.supervise RUN_DIR`.

Started by `pipeline run --detach` in its own session; runs `<RUN_DIR>/job.json`, writes its
events to `supervisor.log` and its state to `state.json`; SIGTERM (`pipeline stop`) or SIGINT
stop the tasks cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from pathlib import Path

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.local.executor import ExecOptions, LocalExecutor
from asapo_pipelines.local.layout import JOB_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asapo_pipelines.local.supervise")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--pipeline-file", default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def log(message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        # the log is on the run directory's disk: when that is full the run goes on (or stops
        # for that reason, in one sentence in the state file), never on a failed print
        with contextlib.suppress(OSError):
            print(f"{stamp} {message}", flush=True)

    try:
        job = json.loads((args.run_dir / JOB_FILE).read_text())
        options = ExecOptions(on_event=log, pipeline_file=args.pipeline_file, detached=True)
        result = LocalExecutor(job, args.run_dir, options).run()
    except PipelinesError as exc:
        with contextlib.suppress(OSError):
            print(f"error: {exc.message}", flush=True)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: cannot run {args.run_dir / JOB_FILE}: {exc}", flush=True)
        return 1
    log(result.message)
    return 0 if result.status in ("complete", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
