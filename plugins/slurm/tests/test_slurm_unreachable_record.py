"""A deployment whose transport cannot be reached from the submitting host: `deploy` warns
that its workers record the run when they start (documented: docs/runs.md), and `status` and
`stop` warn once each that the run's record is not read or updated. Before, `status` and
`stop` repeated deploy's "its workers record it when they start" (stop twice) about a
deployment that had failed and whose workers would never start (an outside tester, with a
Redis URL pointing nowhere). On a real one-node Slurm; the embedded store below a regular
file stands for a transport that cannot be reached."""

from __future__ import annotations

from slurm_support import executor, run_pipeline, wait_finished, watching_text

RECORDED_BY_WORKERS = "its workers record it when they start"
NOT_READ = "warning: the run's record is not read or updated: the pipeline's transport cannot"


def test_status_and_stop_say_once_that_the_record_cannot_be_read(slurm, workdir):
    (workdir / "files").mkdir()
    (workdir / "files" / "a.txt").write_text("first\n")
    (workdir / "blocked").write_text("a file where the store's folder should be\n")
    file = workdir / "unreachable.pipeline.yaml"
    text = watching_text("unreachable", slurm="partition: debug, poll_interval: 0.5")
    file.write_text(text + "transport:\n  embedded: {path: blocked/store}\n")
    ex = executor(file)  # registered, so that a failing test leaves no watcher or job behind
    env = slurm.env
    # not waited for: a deploy that sees its units fail within its wait fails itself
    # (test_slurm_deploy_wait_failed); here the watcher alone is to end the deployment
    deployed = run_pipeline("deploy", str(file), "--wait", "0", env=env)
    try:
        assert deployed.returncode == 0, deployed.stderr
        assert deployed.stderr.count(RECORDED_BY_WORKERS) == 1, deployed.stderr
        # its workers fail (exit 78: the store cannot be made); once the watcher has the
        # deployment failed, status ends its run, which it cannot read
        assert wait_finished(ex, timeout=60).state == "failed"
        status = run_pipeline("status", str(file), env=env)
        said = status.stdout + status.stderr
        assert said.count(NOT_READ) == 1, said
        assert RECORDED_BY_WORKERS not in said
    finally:
        stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr
    said = stopped.stdout + stopped.stderr
    assert said.count(NOT_READ) == 1, said
    assert RECORDED_BY_WORKERS not in said
