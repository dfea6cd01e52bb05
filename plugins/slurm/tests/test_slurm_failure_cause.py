"""A unit whose worker fails at every start for a reason a restart might fix (the transport
refusing connections) is restarted, then failed; `pipeline status` says why the worker ended,
in its own words. Before, it said only "exceeded the restart attempts"
(an outside tester: a Redis URL pointing nowhere, thirty jobs, and the cause only in each job's
log). On a real one-node Slurm; the Redis plugin's transport pointed at a closed port (no Redis
server needed), so it runs where that plugin is installed."""

from __future__ import annotations

import json

import pytest
from slurm_support import executor, run_pipeline, wait_until

pytest.importorskip("asapo_pipelines_redis", reason="needs the redis plugin (plugins/redis)")

PIPELINE_FILE = """\
pipeline: refused
transport:
  redis: {url: "redis://127.0.0.1:1"}
units:
  files:
    unit: core.files
    params: {directory: files/, pattern: "*.txt"}
    outputs: {files: raw}
deploy:
  slurm: {partition: debug, poll_interval: 0.5, restart: {attempts: 1, delay: 1}}
"""
#: what the worker says of the refused connection
CAUSE = "error: Redis at 127.0.0.1:1 is unreachable"


def test_a_unit_failing_at_each_start_is_failed_with_the_workers_reason(slurm, workdir):
    (workdir / "files").mkdir()
    file = workdir / "refused.pipeline.yaml"
    file.write_text(PIPELINE_FILE)
    executor(file)  # registered, so that a failing test leaves no watcher or job behind
    env = slurm.env
    # not waited for: a deploy that sees the unit fail within its wait fails itself
    # (test_slurm_deploy_wait_failed); here the watcher alone is to end the deployment
    deployed = run_pipeline("deploy", str(file), "--wait", "0", env=env)
    assert deployed.returncode == 0, deployed.stderr

    def failed():
        shown = json.loads(run_pipeline("status", str(file), "--json", env=env).stdout)
        return shown if shown["state"] == "failed" else None

    shown = wait_until("the deployment to fail", failed, timeout=90, every=1)
    ((state, detail),) = [(i["state"], i["detail"]) for i in shown["instances"]]
    assert state == "failed"
    assert CAUSE in detail, detail
    assert "restart" in detail, detail  # and that it was restarted before it was failed
    text = run_pipeline("status", str(file), env=env)
    assert CAUSE in text.stdout, text.stdout
