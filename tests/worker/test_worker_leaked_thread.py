"""A unit that starts a thread which is not a daemon and never ends it kept its worker alive
after its last message: the interpreter waits for such threads at exit, so `pipeline run` of a
batch never ended (an outside-in audit stopped one after 5 min 31 s). The worker now waits a
few seconds for them, then says which threads it leaves and exits with its own code. Real
plugin distribution, real `pipeline run`, real subprocesses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers import PIPELINE, installed_plugin, plugin_env

PLUGIN = """
from asapo_pipelines.sdk import describe, hookimpl, inp


@hookimpl
def register_units(register):
    register(describe(
        "leaky.sink", kind="connector", summary="Starts a thread it never ends.",
        runtime="asapo_leaky_units.runtime:Leaky", inputs=[inp("files")],
    ))
    register(describe(
        "leaky.pooled", kind="connector", summary="Leaves an idle thread pool to the exit.",
        runtime="asapo_leaky_units.runtime:Pooled", inputs=[inp("files")],
    ))
"""

RUNTIME = """
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from asapo_pipelines.sdk import Sink


class Leaky(Sink):
    def process(self, message):
        if not any(t.name == "acme-poller" for t in threading.enumerate()):
            # waits for ever, and is not a daemon: the interpreter would wait for it at exit
            threading.Thread(target=threading.Event().wait, name="acme-poller").start()
        with Path(os.environ["LEAKY_OUT"]).open("a") as out:
            out.write(message.metadata["name"] + "\\n")


POOL = ThreadPoolExecutor(2)  # never shut down: its idle threads end at interpreter exit


class Pooled(Sink):
    def process(self, message):
        name = POOL.submit(lambda: message.metadata["name"]).result()
        with Path(os.environ["LEAKY_OUT"]).open("a") as out:
            out.write(name + "\\n")
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed_plugin(
        tmp_path_factory.mktemp("leaky"),
        "asapo-leaky-units",
        {"plugin.py": PLUGIN, "runtime.py": RUNTIME},
        {"leaky": "asapo_leaky_units.plugin"},
    )


def _run(tmp_path: Path, site: Path, unit: str) -> tuple[subprocess.CompletedProcess, str]:
    """`pipeline run` of files -> `unit`, and what `pipeline logs` shows of `unit`."""
    (tmp_path / "files").mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / "files" / name).write_text(name)
    doc = {
        "pipeline": "leaky",
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": "files"},
                "outputs": {"files": "raw"},
            },
            "leaky": {"unit": unit, "inputs": {"files": "raw"}},
        },
    }
    (tmp_path / "leaky.pipeline.yaml").write_text(json.dumps(doc, indent=2))  # JSON is YAML
    out = tmp_path / "seen.txt"
    env = plugin_env(site, LEAKY_OUT=str(out))
    run = subprocess.Popen(
        [PIPELINE, "run", "leaky.pipeline.yaml"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # before, this run never ended: the timeout is the test's failure, not a time limit
        stdout, stderr = run.communicate(timeout=240)
    finally:
        if run.poll() is None:  # stopped as a user would: its workers go with it
            subprocess.run([PIPELINE, "stop", "leaky.pipeline.yaml"], cwd=tmp_path, env=env)
            run.communicate(timeout=120)
    done = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert sorted(out.read_text().split()) == ["a.txt", "b.txt", "c.txt"]
    logs = subprocess.run(
        [PIPELINE, "logs", "leaky.pipeline.yaml", "leaky"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, logs.stdout + logs.stderr


def test_a_thread_the_unit_never_ends_does_not_keep_the_run_from_ending(
    tmp_path: Path, site: Path
) -> None:
    done, logs = _run(tmp_path, site, "leaky.sink")
    said = " ".join(done.stdout.split())
    assert "job leaky completed: every task exited 0" in said, said
    assert (
        "the unit left 1 thread running ('acme-poller') 10 s after it finished; the worker exits "
        "without waiting for it" in said
    ), said
    assert "('acme-poller')" in logs, logs


def test_a_thread_pool_left_to_the_exit_ends_there_without_a_word(
    tmp_path: Path, site: Path
) -> None:
    """A pool's idle threads are not daemons either, but the exit ends them: the worker says
    nothing of them and does not wait its grace for them."""
    done, logs = _run(tmp_path, site, "leaky.pooled")
    assert "job leaky completed: every task exited 0" in " ".join(done.stdout.split())
    assert "after it finished" not in done.stdout + logs, done.stdout + logs
