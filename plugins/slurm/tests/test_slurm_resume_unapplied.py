"""A deployment resumed under a changed configuration whose changed unit then processes nothing
(its inputs were all processed before) still holds the earlier settings' results. `pipeline
run --resume` says so when its session ends; a deployment's session ends with nobody in the
foreground, so `pipeline status` says it, the same sentence. Before, nothing did (an outside
tester: `deploy --resume` with a changed rbkg, the run `complete`, the results rbkg 1.0's and no
word of it). On a real one-node Slurm."""

from __future__ import annotations

from slurm_support import EXAMPLES, run_pipeline, runs_of, wait_until


def _deploy_and_wait(file, env, *args: str) -> dict:
    deployed = run_pipeline("deploy", str(file), *args, env=env)
    assert deployed.returncode == 0, deployed.stderr

    def ended():
        run = runs_of(file, env)[-1]
        return run if run["state"] != "running" else None

    return wait_until("the run to end", ended, timeout=60, every=1)


def test_status_says_a_changed_unit_of_a_resumed_deployment_processed_nothing(slurm, workdir):
    (workdir / "files").mkdir()
    for name in ("run-1.txt", "run-2.txt"):
        (workdir / "files" / name).write_text((EXAMPLES / "files" / name).read_text())
    file = workdir / "resumed.pipeline.yaml"
    example = (
        (EXAMPLES / "files-to-jsonl.pipeline.yaml")
        .read_text()
        .replace(
            'nomad: {datacenters: ["*"], driver: raw_exec}',
            "slurm: {partition: debug, poll_interval: 0.5}",
        )
    )
    file.write_text(example)
    env = slurm.env
    assert _deploy_and_wait(file, env)["state"] == "complete"
    first = run_pipeline("status", str(file), env=env)
    assert first.returncode == 0, first.stderr
    assert "processed no message" not in first.stdout + first.stderr  # nothing changed yet

    file.write_text(example.replace("payload: text", "payload: base64"))
    run = _deploy_and_wait(file, env, "--resume")
    assert (run["state"], run["sessions"]) == ("complete", 2)
    status = run_pipeline("status", str(file), env=env)
    assert status.returncode == 0, status.stderr
    said = [line for line in status.stdout.splitlines() if "processed no message" in line]
    assert said == [
        "warning: sink processed no message under its changed configuration in this session: "
        "its results, and those made from them, are still the earlier settings'; "
        f"`pipeline reprocess {file} --from {run['id']}` applies the change to the run's inputs"
    ], status.stdout
