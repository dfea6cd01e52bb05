"""A pipeline file whose `deploy:` section names Nomad (as the shipped examples do), deployed
with `--executor slurm`: `status`, `logs` and `stop` without `--executor` still go to the
section's Nomad (docs/slurm.md: add `--executor slurm` to each command), and when Nomad cannot
answer they now say that a Slurm deployment of the file is recorded here. Before, an outside
tester got only "cannot reach Nomad at http://127.0.0.1:4646". On a real one-node Slurm, with
Nomad's address a closed loopback port."""

from __future__ import annotations

from slurm_support import EXAMPLES, executor, run_pipeline

HINT = "a slurm deployment of files.pipeline.yaml is recorded here: add `--executor slurm`"


def test_commands_on_the_sections_executor_name_the_slurm_deployment(slurm, workdir):
    (workdir / "files").mkdir()
    (workdir / "files" / "a.txt").write_text("first\n")
    file = workdir / "files.pipeline.yaml"
    text = (EXAMPLES / "files-to-jsonl.pipeline.yaml").read_text()
    file.write_text(text.replace('pattern: "*.txt"}', 'pattern: "*.txt", watch: true}'))
    executor(file)  # registered, so that a failing test leaves no watcher or job behind
    env = {**slurm.env, "NOMAD_ADDR": "http://127.0.0.1:1"}
    deployed = run_pipeline("deploy", str(file), "--executor", "slurm", env=env)
    assert deployed.returncode == 0, deployed.stderr
    try:
        for command in (("status", str(file)), ("logs", str(file), "sink"), ("stop", str(file))):
            done = run_pipeline(*command, env=env)
            assert done.returncode != 0, (command, done.stdout)
            assert "Traceback" not in done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert done.stderr.strip().endswith(HINT), done.stderr
        shown = run_pipeline("status", str(file), "--executor", "slurm", env=env)
        assert shown.returncode == 0, shown.stderr
    finally:
        stopped = run_pipeline("stop", str(file), "--executor", "slurm", env=env)
    assert stopped.returncode == 0, stopped.stderr
