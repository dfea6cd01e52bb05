"""An out-of-tree plugin whose units block where the test says, until it releases them: a
source whose `run()` waits on a "device" in its own code, a runtime slow to import (as larch
is), a sink whose `on_start` waits on a device, a stateful unit whose `restore()` hangs. Each
blocking part writes what blocks it to the file `HELD_MARK` names and waits, deaf to the
worker, until the file `HELD_RELEASE` names is there (at most five minutes). Used by the
busy-status and the viewer tests."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers import PIPELINE, installed_plugin, plugin_env, run_pipeline

PLUGIN = """
from asapo_pipelines.sdk import describe, hookimpl, inp, out


@hookimpl
def register_units(register):
    register(describe(
        "{prefix}.device", kind="connector", summary="Waits in its own code for a device.",
        runtime="{package}.runtime:Device", outputs=[out("frames")],
    ))
    register(describe(
        "{prefix}.fit", kind="connector", summary="A runtime slow to import, like larch.",
        runtime="{package}.heavy:Fit", inputs=[inp("files")],
    ))
    register(describe(
        "{prefix}.starter", kind="connector", summary="Its on_start waits for a device.",
        runtime="{package}.runtime:Starter", inputs=[inp("files")],
    ))
    register(describe(
        "{prefix}.numbers", kind="connector", summary="Sends three numbers.",
        runtime="{package}.runtime:Numbers", outputs=[out("numbers")],
    ))
    register(describe(
        "{prefix}.keeper", kind="processor", summary="Keeps a sum; its restore can hang.",
        runtime="{package}.runtime:Keeper", inputs=[inp("numbers")],
        outputs=[out("sums")],
    ))
"""

HOLD = """
import os
import time
from pathlib import Path


def hold(mark):
    Path(os.environ["HELD_MARK"]).write_text(mark)
    release = Path(os.environ["HELD_RELEASE"])
    began = time.monotonic()
    while not release.exists() and time.monotonic() - began < 300:
        time.sleep(0.1)  # deaf to the worker: a device's driver call, a read that hangs
"""

# importing it takes as long as the test wants: the worker is loading meanwhile
HEAVY = """
from asapo_pipelines.sdk import Sink

from {package}.hold import hold

hold("import")


class Fit(Sink):
    def process(self, message):
        return None
"""

RUNTIME = """
from asapo_pipelines.sdk import Processor, Sink, Source

from {package}.hold import hold


class Device(Source):
    def run(self):
        self.emit("frames", {{"n": 1}}, key="1")
        hold("device")
        self.emit("frames", {{"n": 2}}, key="2")


class Starter(Sink):
    def on_start(self):
        hold("on_start")

    def process(self, message):
        return None


class Numbers(Source):
    def run(self):
        for n in (1, 2, 3):
            self.emit("numbers", {{"n": n}}, key=str(n))


class Keeper(Processor):
    restores_state = True

    def on_start(self):
        self.total = 0

    def restore(self, message):
        if message.id == 2:
            hold("restore")
        self.total += message.value["n"]

    def process(self, message):
        self.total += message.value["n"]
        return {{"total": self.total}}
"""


def held_units(folder: Path, prefix: str) -> Path:
    """The plugin installed under `folder`, its units named `<prefix>.device` and so on; the
    site to give `held_env`."""
    package = f"asapo_{prefix}_units"
    sources = {
        "plugin.py": PLUGIN.format(prefix=prefix, package=package),
        "hold.py": HOLD,
        "heavy.py": HEAVY.format(package=package),
        "runtime.py": RUNTIME.format(package=package),
    }
    return installed_plugin(folder, f"asapo-{prefix}-units", sources, {prefix: f"{package}.plugin"})


def held_env(folder: Path, site: Path, name: str) -> dict[str, str]:
    """The environment of the commands: the plugin, and the mark and release files
    `<folder>/<name>.mark` and `<folder>/<name>.release`."""
    return plugin_env(
        site, HELD_MARK=str(folder / f"{name}.mark"), HELD_RELEASE=str(folder / f"{name}.release")
    )


@contextmanager
def running(folder: Path, name: str, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`pipeline run <name>.pipeline.yaml` in the background; released and stopped (with its
    workers) if the test fails before it ends."""
    file = f"{name}.pipeline.yaml"
    run = subprocess.Popen(
        [PIPELINE, "run", file],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield run
    finally:
        (folder / f"{name}.release").write_text("go")
        if run.poll() is None:
            # its workers run in sessions of their own: stopped by the command, not the signal
            run_pipeline("stop", file, cwd=folder, env=env, timeout=180)
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
