"""The local executor behind the `Executor` interface: the core's `local` executor.

It wraps what `pipeline run` already does (the supervisor in `local.executor`, the run
directory of `local.control`) without changing it: `deploy` and `start` are `pipeline run
--detach` (with its run session), the other methods read and stop the recorded run.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from asapo_pipelines.executor import Executor, ExecutorStatus, InstanceStatus, text_lines
from asapo_pipelines.pipeline import DEFAULT_DATA_DIR


class LocalPipelineExecutor(Executor):
    name = "local"

    def _job(self) -> dict[str, Any]:
        from asapo_pipelines.nomad.compile import compile_pipeline

        return dict(compile_pipeline(self.pipeline, self.catalog).job)

    def _run_dir(self) -> Path:
        from asapo_pipelines.local.layout import run_dir
        from asapo_pipelines.nomad.compile import job_identity

        embedded = self.pipeline.transport.spec().get("embedded") or {}
        base = Path(embedded.get("path") or self.file.resolve().parent / DEFAULT_DATA_DIR)
        return run_dir(base, str(job_identity(self.pipeline)[0]))

    def plan(self) -> dict[str, Any]:
        return {"job": self._job()}

    def deploy(self, *, wait: float) -> dict[str, Any]:
        # `pipeline run --detach`: the run session (r1, resume) exactly as the command keeps it
        import json

        done = subprocess.run(
            [sys.executable, "-m", "asapo_pipelines", "run", str(self.file), "--detach", "--json"],
            capture_output=True,
            text=True,
            timeout=max(wait, 30.0),
            check=False,
        )
        if done.returncode != 0:
            from asapo_pipelines.local.errors import LocalRunError

            last = (done.stderr.strip().splitlines() or ["the local run did not start"])[-1]
            raise LocalRunError(last.removeprefix("error: "))
        state: dict[str, Any] = json.loads(done.stdout)
        return state

    def start(self, *, wait: float) -> dict[str, Any]:
        return self.deploy(wait=wait)

    def stop(self, *, purge: bool = False) -> dict[str, Any]:
        from asapo_pipelines.local.control import stop_run

        return dict(stop_run(self._run_dir()))

    def status(self) -> ExecutorStatus:
        from asapo_pipelines.local.control import run_status

        state = run_status(self._run_dir())
        return ExecutorStatus(
            executor=self.name,
            deployment=str(state.get("job") or self.pipeline.name),
            state=str(state.get("status") or "not started"),
            instances=[
                InstanceStatus(
                    unit=str(u.get("group")),
                    replica=int(u.get("index", 0)),
                    state=str(u.get("state")),
                    task_id=None if u.get("pid") is None else str(u.get("pid")),
                    restarts=int(u.get("restarts") or 0),
                )
                for u in state.get("units") or []
                if u.get("lifecycle", "main") == "main"
            ],
        )

    def logs(
        self, unit: str, *, replica: int | None = None, follow: bool = False, stderr: bool = False
    ) -> Iterator[str]:
        from asapo_pipelines.local.control import unit_log

        name = unit if replica is None else f"{unit}[{replica}]"
        yield from text_lines(unit_log(self._run_dir(), name, stderr=stderr, follow=follow))
