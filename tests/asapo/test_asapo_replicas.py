"""A unit with replicas on ASAP::O: the replicas write one output stream, each through its own
producer. Their automatic ids collided (each counted from the last id the service held when it
first wrote), the service refused one message of each pair, and every replica exited 1 and was
restarted until it got through by luck: 60 files through 3 replicas took 2-3 restarts of each.
Now a message whose id another replica took is sent again under a new one. Real `pipeline run`
on the project's loopback ASAP::O (a protocol-level stand-in for the service, which cannot run
here) with the real asapo client wheels."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from loopback import LoopbackAsapo

from helpers import PIPELINE

pytest.importorskip("asapo_consumer", reason="the asapo extra is not installed")

TOKEN = "replicas-Tok3n"
FILES = 60
REPLICAS = 3


def test_replicas_of_a_unit_share_its_output_stream_without_restarts(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    for i in range(FILES):
        (tmp_path / "files" / f"f{i:02d}.txt").write_text(f"file {i}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["REPLICAS_TOKEN"] = TOKEN
    with LoopbackAsapo(TOKEN) as service:
        transport = {
            "asapo": {
                "endpoint": service.endpoint,
                "beamtime": service.beamtime,
                "token_env": "REPLICAS_TOKEN",
                "request_timeout": 5,
            }
        }
        doc = {
            "pipeline": "reps",
            "transport": transport,
            "units": {
                "files": {
                    "unit": "core.files",
                    "params": {"directory": "files"},
                    "outputs": {"files": "raw"},
                },
                "pass": {
                    "unit": "core.identity",
                    "replicas": REPLICAS,
                    "inputs": {"input": "raw"},
                    "outputs": {"output": "checked"},
                },
                "sink": {
                    "unit": "core.jsonl-sink",
                    "params": {"path": "out.jsonl", "payload": "text"},
                    "inputs": {"messages": "checked"},
                },
            },
        }
        (tmp_path / "reps.pipeline.yaml").write_text(json.dumps(doc, indent=2))  # JSON is YAML
        done = subprocess.run(
            [PIPELINE, "run", "reps.pipeline.yaml"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    # no replica failed: each ran once and exited 0
    assert "restarting" not in done.stdout, done.stdout
    for r in range(REPLICAS):
        assert f"pass[{r}] exited with code 0: complete" in done.stdout, done.stdout
    names = [json.loads(line)["metadata"]["name"] for line in (tmp_path / "out.jsonl").open()]
    assert sorted(names) == [f"f{i:02d}.txt" for i in range(FILES)]
