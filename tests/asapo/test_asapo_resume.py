"""A completed P65 run started again on ASAP::O (the loopback, with the real asapo wheels) ends.

`pipeline run` of an unchanged pipeline resumes its run: every worker starts, finds nothing new
and ends. A resumed worker ends only once its upstream workers' final status records say they
ended in this session. Each XAS worker sent its first status records through two producers of
one stream (the status thread's, and one for the summary it has at its start); on ASAP::O both
numbered from what the service said when each was made, so one record took the id of the
other and was refused as a duplicate. When that record was normalize's final one, merge,
advisor and writer waited for ever: the user's second `pipeline run` never returned.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from loopback import LoopbackAsapo

from helpers import CACHE_DIR

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "resume-loopback-Tok3n"
PIPELINE = Path(sys.executable).with_name("pipeline")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(
            importlib.util.find_spec(m) is None
            for m in ("asapo_pipelines_xas", "asapo_pipelines_nexus", "asapo_consumer")
        ),
        reason="needs plugins/xas, plugins/nexus and the asapo extra installed",
    ),
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(ASAPO_PIPELINES_CACHE_DIR=CACHE_DIR, COLUMNS="200", P65_TOKEN=TOKEN)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(cwd: Path, *args: str, timeout: float) -> tuple[int | None, str, str]:
    """`pipeline ARGS`; on a timeout the job is stopped (its workers too) and the code is None."""
    proc = subprocess.Popen(
        [str(PIPELINE), *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)  # the supervisor stops its tasks, as Ctrl-C does
        out, err = proc.communicate(timeout=120)
        return None, out, err


def test_a_completed_p65_run_started_again_on_asapo_ends(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(
        ROOT / "examples", examples, ignore=shutil.ignore_patterns(".pipeline-data", "results")
    )
    path = examples / "p65-xas.pipeline.yaml"
    with LoopbackAsapo(TOKEN, beamtime="resume-test") as service:
        transport = (
            f'{{asapo: {{endpoint: "{service.endpoint}", beamtime: {service.beamtime}, '
            "token_env: P65_TOKEN, request_timeout: 5}}"
        )
        text, n = re.subn(r"(?m)^transport: .*$", f"transport: {transport}", path.read_text())
        assert n == 1
        path.write_text(text)

        code, out, err = _run(examples, "run", path.name, timeout=300)
        assert code == 0, err[-2000:]
        first = [line for line in out.splitlines() if "/Fe/K/transmission: " in line]
        assert first, out

        # nothing is new: every worker ends at once (the old code waited until the timeout)
        code, out, err = _run(examples, "run", path.name, timeout=240)
        assert code == 0, f"the second run did not end by itself: {err[-1500:]}"
        assert "resuming run r1 of pipeline p65-xas (unchanged)" in out + err
        assert "job p65-xas completed: every task exited 0" in out + err
        again = [line for line in out.splitlines() if "/Fe/K/transmission: " in line]
        assert again == first
