"""The cause `pipeline status` gives for a job's end is what that job's worker printed, never
an error of an earlier job of the same instance. Restarts append to one log file; before, a
job cancelled by hand (`scancel`) once Redis was back was shown as "job 21 ended CANCELLED:
error: Redis at 127.0.0.1:38823 is unreachable while connecting ..." (an operator's audit: the
error of a job that had ended a minute before, while Redis ran). On a real one-node Slurm and
a real redis-server, started only after the first jobs failed on it."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from slurm_support import executor, run_pipeline, wait_until

pytest.importorskip("asapo_pipelines_redis", reason="needs the redis plugin (plugins/redis)")

from asapo_pipelines_redis.testing import RedisServer

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

PIPELINE_FILE = """\
pipeline: latecause
transport:
  redis: {{url: "{url}", timeout: 1, key_prefix: latecause}}
units:
  files:
    unit: core.files
    params: {{directory: files/, pattern: "*.txt", watch: true, settle_seconds: 0.1}}
    outputs: {{files: raw}}
  sink:
    unit: core.jsonl-sink
    params: {{path: results/out.jsonl, payload: text}}
    inputs: {{messages: raw}}
deploy:
  slurm: {{partition: debug, poll_interval: 0.5, restart: {{attempts: 20, delay: 15}}}}
"""
UNREACHABLE = "is unreachable"


def _status(file, env):
    done = run_pipeline("status", str(file), "--json", env=env)
    return json.loads(done.stdout)


def test_a_job_cancelled_by_hand_is_not_given_an_earlier_jobs_error(slurm, workdir):
    (workdir / "files").mkdir()
    (workdir / "files" / "a.txt").write_text("a\n")
    server = RedisServer(workdir / "redis")  # its port chosen, not listening yet
    file = workdir / "latecause.pipeline.yaml"
    file.write_text(PIPELINE_FILE.format(url=server.url))
    executor(file)  # registered, so that a failing test leaves no watcher or job behind
    env = slurm.env
    try:
        deployed = run_pipeline("deploy", str(file), env=env)
        assert deployed.returncode == 0, deployed.stderr

        def sink_failed_on_redis():
            sink = _instance(_status(file, env), "sink")
            return sink["restarts"] >= 1 and UNREACHABLE in sink["detail"]

        wait_until("the sink's first job to fail on Redis", sink_failed_on_redis, 90, every=1)
        server.start()

        def sink_wrote():
            out = workdir / "results" / "out.jsonl"
            return out.exists() and out.read_text().count("\n") == 1

        wait_until("the file to reach the sink", sink_wrote, 120, every=1)
        sink = _instance(_status(file, env), "sink")
        assert sink["state"] == "running", sink
        job = sink["task_id"]
        subprocess.run(["scancel", job], env=env, check=True, timeout=30)

        log = workdir / ".pipeline-slurm" / "latecause" / "watcher.log"

        def said_of_cancel():
            ended = [line for line in log.read_text().splitlines() if f"job {job} ended" in line]
            return ended[0] if ended else None

        said = wait_until("the watcher to see the cancelled job's end", said_of_cancel, 90)
        assert UNREACHABLE not in said, said
        # resubmitted after the policy's 15 s: until then status shows how the job ended
        sink = _instance(_status(file, env), "sink")
        assert sink["state"] == "restarting", sink
        assert sink["detail"].startswith(f"job {job} ended CANCELLED"), sink
        assert UNREACHABLE not in sink["detail"], sink
    finally:
        run_pipeline("stop", str(file), env=env)
        server.stop()


def _instance(status, unit):
    (found,) = [i for i in status["instances"] if i["unit"] == unit]
    return found
