"""The Python environment the jobs run (`deploy.slurm.python: {venv: ...}`), asked from the
deploying host before anything is submitted: the environment sits on the shared filesystem,
at the same path as on the nodes. Unchecked, an environment without a plugin the pipeline
uses (or no environment at that path) was deployed (exit 0), and every job then failed at its
start, was resubmitted until its restarts ran out, and the instances showed only "... is not a
valid pipeline file (5 errors):" (an operator's audit of P65 on Slurm)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from asapo_pipelines_slurm.commands import SlurmError

#: one problem of `pipeline validate`: `file:line:col: error P201 unknown unit x; see ...`
_PROBLEM = re.compile(r":\d+:\d+: error P\d+ (?P<what>.*)$")
#: how long the environment's `pipeline validate` may take (its first import on a busy node)
TIMEOUT = 120.0


def problem(venv: str, file: Path) -> str | None:
    """Why the jobs' environment `venv` cannot run the pipeline of `file` (one clause), or
    None when its own `pipeline validate` accepts the file, as each worker's start would.
    Asked once per environment and version of the file: `deploy` asks through
    `validate --online`'s hook, then again where `start` asks too."""
    try:
        version = file.stat().st_mtime_ns
    except OSError:
        version = None
    key = (venv, str(file), version)
    if key not in _ANSWERS:
        _ANSWERS[key] = _ask(venv, file)
    return _ANSWERS[key]


_ANSWERS: dict[tuple[str, str, int | None], str | None] = {}


def _ask(venv: str, file: Path) -> str | None:
    command = Path(venv) / "bin" / "pipeline"
    if not os.access(command, os.X_OK):
        return f"it has no {command}: create it and install the plugins the pipeline uses"
    try:
        done = subprocess.run(
            [str(command), "validate", str(file)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            cwd=file.parent,
        )
    except subprocess.TimeoutExpired:
        return f"its `pipeline validate` did not answer within {TIMEOUT:g} s"
    except OSError as exc:
        return f"its {command} cannot be run ({exc.strerror})"
    if done.returncode == 0:
        return None
    # "; see `pipeline list-units`" would send the user to the deploying environment's list
    found = [
        m["what"].split("; see ")[0] for m in map(_PROBLEM.search, done.stdout.splitlines()) if m
    ]
    if not found:
        said = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line]
        return f"its `pipeline validate` exited with code {done.returncode}" + (
            f": {said[-1]}" if said else ""
        )
    more = f" (and {len(found) - 1} more problem(s))" if len(found) > 1 else ""
    return (
        f"its `pipeline validate` says: {found[0]}{more}; install the plugins the pipeline "
        f"uses into it (`{venv.rstrip('/')}/bin/pip install ...`)"
    )


def sentence(venv: str, why: str) -> str:
    return (
        f"the Python environment the jobs run ({venv}, deploy.slurm.python.venv) cannot run "
        f"this pipeline: {why}"
    )


def check(venv: str | None, file: Path | None) -> None:
    """Refuse, in one sentence, a deployment whose jobs could not start their workers."""
    if venv is None or file is None:
        return
    why = problem(venv, file)
    if why is not None:
        raise SlurmError(f"{sentence(venv, why)}; so nothing was submitted")
