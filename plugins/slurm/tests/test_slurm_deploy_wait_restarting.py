"""`pipeline deploy FILE --wait N` of a unit whose job fails within the wait and is restarted
exits 0 (a restart is the restart policy at work, and the deployment goes on) but says so in
a warning on stderr. Before, the restart was one clause inside the long `deployed ...` line
on stdout, and a worker failing at its very start was easy to miss.

The workers cannot reach their Redis transport (a closed loopback port): an error that a
restart may cure, unlike a configuration error. The jobs are held a few seconds (`--begin`)
so that the watcher's first look finds them pending and its next comes after the deploy's
wait: the jobs fail between two looks, and the deploy waits for the watcher to handle that."""

from __future__ import annotations

import pytest
from slurm_support import executor, run_pipeline, watching_file

from asapo_pipelines_slurm.testing import free_port

pytest.importorskip("asapo_pipelines_redis", reason="needs the redis plugin (plugins/redis)")

#: the deploy mapping's inside: the watcher looks at once, then only after the deploy's wait
SLURM = (
    "partition: debug, poll_interval: 45, restart: {attempts: 5, delay: 600}, "
    'extra_options: ["--begin=now+5"]'
)


def test_deploy_wait_warns_of_jobs_restarting_within_the_wait_and_exits_0(slurm, workdir):
    file = watching_file(workdir, "restartwait", slurm=SLURM)
    with file.open("a") as fh:  # a Redis transport on a closed port
        fh.write(f'transport:\n  redis: {{url: "redis://127.0.0.1:{free_port()}/0", timeout: 1}}\n')
    ex = executor(file)  # registered, so that a failing test leaves no watcher or job behind
    deployed = run_pipeline("deploy", str(file), "--wait", "35", env=slurm.env)
    assert deployed.returncode == 0, deployed.stderr
    assert "Traceback" not in deployed.stdout + deployed.stderr
    assert "2 restarting after their job failed" in deployed.stdout, deployed.stdout
    # (the line before it says that the run could not be recorded: Redis holds its record)
    said = [line for line in deployed.stderr.splitlines() if "restarted" in line]
    assert said == [
        "warning: the job(s) of files-0, sink-0 failed within the wait and are being "
        f"restarted; `pipeline logs {file} files` shows why"
    ], deployed.stderr
    # nothing ended the deployment: the watcher resubmits the jobs after the policy's delay
    status = ex.status()
    assert status.state == "running", status
    assert {i.state for i in status.instances} == {"restarting"}, status
