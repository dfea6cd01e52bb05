"""Running `pipeline` for the NeXus writer's end-to-end tests: in a work folder of the test's
own, with its own listing cache and none of the caller's ASAPO_PIPELINES_* settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py

from asapo_pipelines_nexus.writer import KEY_ATTR

PIPELINE_BIN = str(Path(sys.executable).with_name("pipeline"))

#: a watching `xas.scan-files` -> `nexus.writer` pipeline named `{name}`, writing
#: results/scans.nxs from the scans put in data/
WATCHING_WRITER = """\
pipeline: {name}
units:
  scans:
    unit: xas.scan-files
    params: {{directory: data/, pattern: "*.xdi", watch: true}}
    outputs: {{scans: raw-scans}}
  writer:
    unit: nexus.writer
    params: {{file: results/scans.nxs}}
    inputs: {{scans: raw-scans}}
"""


def pipeline_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(work / "cache")
    # the local executor starts `pipeline worker` tasks from PATH, as a user's shell would
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def pipeline(work: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`pipeline ARGS` run in `work`; the caller checks its exit status."""
    return subprocess.run(
        [PIPELINE_BIN, *args],
        cwd=work,
        env=pipeline_env(work),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pipeline_ok(work: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = pipeline(work, *args, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def text(value: Any) -> str:
    """An HDF5 string attribute or dataset value as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def source_files(path: Path) -> list[str]:
    """The scan file of each complete entry of the NeXus file (those with their key, which the
    writer sets last); none before the file exists or while it cannot be read yet."""
    try:
        with h5py.File(path, "r", swmr=True, locking=False) as f:
            return [
                name
                for group in f.values()
                if group is not None and KEY_ATTR in group.attrs
                for name in json.loads(group["provenance/source_files/data"][()])
            ]
    except (OSError, KeyError):
        return []


def writer_log(work: Path) -> str:
    """`pipeline logs p.pipeline.yaml writer` in `work`: both streams."""
    logs = pipeline(work, "logs", "p.pipeline.yaml", "writer")
    assert logs.returncode == 0, logs.stderr
    return logs.stdout + logs.stderr
