"""The `procs` executor's runtime: each unit replica runs as a plain subprocess on this machine,
`pipeline worker FILE UNIT --replica N`, with one log file, and the executor's state in a JSON
file beside the logs. No restarts and no queue: what a minimal executor must do, nothing more.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import Executor, ExecutorStatus, InstanceStatus, PipelinesError
from asapo_pipelines.sdk.executors import (
    BASE_DIR_ENV,
    JOB_TYPE_ENV,
    RUN_ENV,
    Pipeline,
    delivered_file,
    job_type,
    pid_alive,
    text_lines,
)

#: seconds `stop` gives the workers to drain after SIGTERM before it kills them
STOP_GRACE = 30.0


class ProcsError(PipelinesError):
    """Anything the user can fix, said in one sentence (the CLI prints it, exit 1)."""


class ProcsExecutor(Executor):
    # no `name = ...`: the descriptor's name ("procs") is the executor's name

    # -- where the deployment lives ------------------------------------------------------------
    @classmethod
    def _folder(cls, pipeline: Pipeline, file: Path) -> Path:
        config = pipeline.deploy.config(cls.name)  # the deploy.procs section, or None
        state_dir = Path(config.state_dir if config is not None else ".procs")
        return Path(file).resolve().parent / state_dir / pipeline.name

    @property
    def folder(self) -> Path:
        assert self.file is not None  # `for_command` refuses a target without a pipeline file
        return self._folder(self.loaded(), self.file)

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.folder / "state.json").read_text())
        except FileNotFoundError:
            return None

    def _write(self, state: dict[str, Any]) -> None:
        (self.folder / "state.json").write_text(json.dumps(state, indent=1))

    def _state(self) -> dict[str, Any]:
        state = self._read()
        if state is None:
            raise ProcsError(
                f"pipeline {self.loaded().name} is not deployed with procs (no state in "
                f"{self.folder}); deploy it with `pipeline deploy {self.file}`"
            )
        return state

    @classmethod
    def has_run(cls, pipeline: Pipeline | None, file: Path | None, given: dict[str, Any]) -> bool:
        # a deployment of this file recorded here: when a command on the file fails with the
        # executor its deploy section names, the CLI then adds "add `--executor procs`"
        if pipeline is None or file is None:
            return False
        return (cls._folder(pipeline, file) / "state.json").is_file()

    # -- what runs -------------------------------------------------------------------------------
    def _tasks(self) -> list[dict[str, Any]]:
        """One task per unit instance and replica, as the pipeline file declares them."""
        pipeline = self.loaded()
        delivered = self.folder / f"{pipeline.name}.pipeline.yaml"
        tasks = []
        for unit, config in pipeline.units.items():
            for replica in range(config.replicas):
                argv = [sys.executable, "-m", "asapo_pipelines"]  # the `pipeline` command
                argv += ["worker", str(delivered), unit, "--replica", str(replica)]
                key = f"{unit}-{replica}"
                tasks.append(
                    {
                        "unit": unit,
                        "replica": replica,
                        "argv": argv,
                        "log": str(self.folder / f"{key}.log"),
                        "exit_file": str(self.folder / f"{key}.exit"),
                    }
                )
        return tasks

    def plan(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "tasks": self._tasks()}

    def refuse(self, command: str) -> None:
        # asked before `pipeline deploy` / `start` record anything in the run, and ("run")
        # before `pipeline run` starts a second copy of the run beside this deployment
        state = self._read()
        if state is not None and any(pid_alive(t["pid"]) for t in state["tasks"]):
            raise ProcsError(
                f"pipeline {self.loaded().name} runs already with procs ({self.folder}); stop "
                f"it first with `pipeline stop {self.file}`"
            )

    def deploy(self, *, wait: float) -> dict[str, Any]:
        # `wait` is for schedulers that queue tasks; a subprocess starts at once
        self.refuse("deploy")
        pipeline = self.loaded()
        assert self.file is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        # the workers read a copy: an edit of the file does not reach a running deployment
        text = Path(self.file).read_text(encoding="utf-8")
        delivered = self.folder / f"{pipeline.name}.pipeline.yaml"
        delivered.write_text(delivered_file(pipeline, text), encoding="utf-8")
        return self._launch(pipeline, "deployed")

    def start(self, *, wait: float) -> dict[str, Any]:
        self._state()  # one sentence when nothing was deployed
        self.refuse("start")
        return self._launch(self.loaded(), "started")

    def _launch(self, pipeline: Pipeline, what: str) -> dict[str, Any]:
        assert self.file is not None
        env = {
            **os.environ,
            # relative paths in params mean "next to the pipeline file", not next to the copy
            BASE_DIR_ENV: str(Path(self.file).resolve().parent),
            # batch: a worker ends when its inputs are done; service: it runs until stopped
            JOB_TYPE_ENV: job_type(pipeline, self.catalog),
        }
        if self.run_id is not None:  # the run `pipeline deploy` recorded: the workers join it
            env[RUN_ENV] = self.run_id
        tasks = self._tasks()
        for task in tasks:
            Path(task["exit_file"]).unlink(missing_ok=True)
            # the shell writes the worker's exit code when it ends (the deploying command is
            # gone by then, so nobody else could); `trap : TERM` keeps the shell alive until
            # the worker has drained, so `stop` waits for the worker itself
            script = f'trap : TERM; "$@"; echo $? > {shlex.quote(task["exit_file"])}'
            with open(task["log"], "ab") as log:
                process = subprocess.Popen(
                    ["/bin/sh", "-c", script, "sh", *task["argv"]],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,  # workers log to stderr: one file holds both
                    env=env,
                    start_new_session=True,  # outlives this command; `stop` signals the group
                )
            task["pid"] = process.pid
        self._write({"pipeline": pipeline.name, "stopped": False, "tasks": tasks})
        return {
            "deployment": pipeline.name,
            "message": f"{len(tasks)} worker(s) {what}; logs and state in {self.folder}",
            "pids": {f"{t['unit']}-{t['replica']}": t["pid"] for t in tasks},
        }

    def stop(self, *, purge: bool = False) -> dict[str, Any]:
        state = self._state()
        running = [t for t in state["tasks"] if pid_alive(t["pid"])]
        for task in running:
            task["stopped"] = True
            os.killpg(task["pid"], signal.SIGTERM)  # the workers drain and exit
        deadline = time.monotonic() + STOP_GRACE
        while any(pid_alive(t["pid"]) for t in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        for task in running:
            if pid_alive(task["pid"]):
                os.killpg(task["pid"], signal.SIGKILL)
        state["stopped"] = True
        self._write(state)
        message = f"{len(running)} worker(s) stopped" if running else "nothing was running"
        if purge:  # `pipeline stop --purge`: forget the deployment, its logs with it
            shutil.rmtree(self.folder)
            message += f"; {self.folder} removed"
        return {
            "deployment": state["pipeline"],
            "message": message,
            "stopped": [f"{t['unit']}-{t['replica']}" for t in running],
        }

    # -- what the user asks ----------------------------------------------------------------------
    def status(self) -> ExecutorStatus:
        state = self._state()
        instances = [self._instance(task) for task in state["tasks"]]
        words = {i.state for i in instances}
        # the deployment's word: `complete` and `failed` end the run (`pipeline status` and
        # `stop` record it), `stopped` is no longer running, anything else is still running
        if "running" in words:
            overall = "running"
        elif "failed" in words:
            overall = "failed"
        elif "stopped" in words:
            overall = "stopped"
        else:
            overall = "complete"
        return ExecutorStatus(
            executor=self.name,
            deployment=state["pipeline"],
            state=overall,
            instances=instances,
            extra={"folder": str(self.folder)},
        )

    def _instance(self, task: dict[str, Any]) -> InstanceStatus:
        if pid_alive(task["pid"]):
            word, detail = "running", ""
        elif task.get("stopped"):
            word, detail = "stopped", "stopped by pipeline stop"
        else:
            try:
                code = int(Path(task["exit_file"]).read_text())
            except (OSError, ValueError):
                code = None  # killed before the shell could write it
            word = "complete" if code == 0 else "failed"
            detail = f"exit code {code}" if code is not None else "ended without an exit code"
        return InstanceStatus(
            unit=task["unit"],
            replica=task["replica"],
            state=word,
            task_id=str(task["pid"]),
            detail=detail,
        )

    def logs(
        self, unit: str, *, replica: int | None = None, follow: bool = False, stderr: bool = False
    ) -> Iterator[str]:
        # one file holds the worker's stdout and stderr: `stderr` selects nothing here
        state = self._state()
        found = [t for t in state["tasks"] if (t["unit"], t["replica"]) == (unit, replica or 0)]
        if not found:
            units = sorted({t["unit"] for t in state["tasks"]})
            raise ProcsError(
                f"pipeline {state['pipeline']} has no unit {unit} replica {replica or 0} "
                f"(its units: {', '.join(units)})"
            )
        return text_lines(_chunks(Path(found[0]["log"]), found[0]["pid"], follow))


def _chunks(path: Path, pid: int, follow: bool) -> Iterator[bytes]:
    """The log's bytes; with `follow`, new ones as they come until the worker has ended."""
    with open(path, "rb") as log:
        while True:
            # asked before reading: what a worker wrote before it ended is still read
            alive = follow and pid_alive(pid)
            chunk = log.read(1 << 16)
            if chunk:
                yield chunk
            elif alive:
                time.sleep(0.2)
            else:
                return
