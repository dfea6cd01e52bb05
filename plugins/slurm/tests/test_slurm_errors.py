"""What a user sees when Slurm cannot take the pipeline: one sentence each, nothing left behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_support import copy_example, executor

from asapo_pipelines_slurm.commands import SlurmError
from asapo_pipelines_slurm.testing import free_port

EXAMPLE = "files-to-jsonl.pipeline.yaml"


def _one_sentence(message: str) -> None:
    assert "\n" not in message
    assert "Traceback" not in message
    assert message.strip() == message


def test_no_slurm_commands_on_path_is_one_sentence(workdir, monkeypatch):
    file = copy_example(EXAMPLE, workdir, "files")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    with pytest.raises(SlurmError) as err:
        executor(file).deploy(wait=5)
    assert err.value.message.startswith("the Slurm command sbatch is not on PATH")
    _one_sentence(err.value.message)


def test_unreachable_controller_is_one_sentence(slurm, workdir, monkeypatch):
    file = copy_example(EXAMPLE, workdir, "files")
    # the test cluster's configuration, with the controller moved to a port nobody listens on
    text = slurm.conf.read_text()
    text = re.sub(r"SlurmctldPort=\d+", f"SlurmctldPort={free_port()}", text)
    conf = workdir / "slurm.conf"
    conf.write_text(text.replace("MessageTimeout=10", "MessageTimeout=2"))
    monkeypatch.setenv("SLURM_CONF", str(conf))
    with pytest.raises(SlurmError) as err:
        executor(file, partition="debug").deploy(wait=5)
    assert err.value.message.startswith("the Slurm controller is unreachable (")
    assert "Unable to contact slurm controller" in err.value.message
    _one_sentence(err.value.message)


def test_unknown_partition_names_the_known_ones(slurm, workdir):
    file = copy_example(EXAMPLE, workdir, "files")
    with pytest.raises(SlurmError) as err:
        executor(file, partition="gpu-nope").deploy(wait=5)
    assert err.value.message == "Slurm has no partition 'gpu-nope' (its partitions: debug)"
    assert not (workdir / ".pipeline-slurm").exists()  # refused before anything was written


def test_a_rejected_job_quotes_slurms_reason_and_cancels_what_was_submitted(slurm, workdir):
    file = copy_example(EXAMPLE, workdir, "files")
    # the last unit asks for far more memory than the node has: its job is refused at submit
    text = file.read_text().replace(
        "    inputs: {messages: checked}",
        "    inputs: {messages: checked}\n    resources: {memory: 100000000}",
    )
    file.write_text(text)
    ex = executor(file)
    with pytest.raises(SlurmError) as err:
        ex.deploy(wait=5)
    message = err.value.message
    assert message.startswith("Slurm rejected the job of unit sink replica 0: ")
    assert "Requested node configuration is not available" in message
    _one_sentence(message)
    # the two jobs submitted before the refusal were cancelled: nothing half-deployed runs
    names = squeue_names(slurm)
    assert not [n for n in names if n.startswith("files-to-jsonl.")]


def squeue_names(slurm) -> list[str]:
    done = subprocess.run(
        ["squeue", "--noheader", "--states=PENDING,RUNNING", "--format=%j"],
        env=slurm.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.split()


def test_status_of_a_pipeline_never_deployed_says_so(slurm, workdir):
    file = copy_example(EXAMPLE, workdir, "files")
    with pytest.raises(SlurmError) as err:
        executor(file).status()
    assert err.value.message.startswith("pipeline files-to-jsonl is not deployed on Slurm")
