"""`pipeline start` of a stopped Slurm deployment runs the copy of the file that was deployed:
on a real Slurm, it refuses (nothing submitted, nothing recorded) when FILE was edited since
or when the store no longer holds the deployment's run, and `status` warns of such an edit.
An outside tester's `start` said "resuming run r1 (unchanged)" and ran the old advisor
target; after Redis lost its data it began a new run r1 that wrote every scan twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ruamel.yaml import YAML
from slurm_support import run_pipeline, runs_of, watching_file


def _deployed_then_stopped(workdir: Path, name: str, env: dict[str, str]) -> Path:
    file = watching_file(workdir, name, first_file=True)
    deployed = run_pipeline("deploy", str(file), env=env)
    assert deployed.returncode == 0, deployed.stderr
    stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr
    return file


def _state(workdir: Path, name: str) -> dict:
    return json.loads((workdir / ".pipeline-slurm" / name / "state.json").read_text())


def _jobs(workdir: Path, name: str) -> list[str]:
    return [j for i in _state(workdir, name)["instances"].values() for j in i["jobs"]]


def test_start_refuses_an_edited_file_and_status_warns_of_it(slurm, workdir):
    env = slurm.env
    file = _deployed_then_stopped(workdir, "edited", env)
    jobs = _jobs(workdir, "edited")
    file.write_text(file.read_text().replace("settle_seconds: 0.1", "settle_seconds: 0.2"))

    shown = run_pipeline("status", str(file), env=env)
    assert shown.returncode == 0, shown.stderr
    assert (
        f"warning: {file} was edited after it was deployed: files (settle_seconds 0.1 -> 0.2); "
        "the deployment has ended, and `pipeline start` would run the copy deployed: "
        f"`pipeline deploy --resume {file}` runs the edited file"
    ) in shown.stderr, shown.stderr
    # a stopped deployment has nothing to stop (it was told to `pipeline stop` it)
    assert "pipeline stop" not in shown.stderr, shown.stderr

    started = run_pipeline("start", str(file), env=env)
    assert started.returncode != 0, started.stdout
    assert started.stderr.strip() == (
        f"error: {file} was edited after it was deployed: files (settle_seconds 0.1 -> 0.2); "
        "`pipeline start` would run the copy deployed, so nothing was started: `pipeline "
        f"deploy --resume {file}` applies the edit, or put the file back as it was"
    ), started.stderr
    assert _jobs(workdir, "edited") == jobs  # nothing submitted
    ((run),) = runs_of(file, env)
    assert (run["state"], run["sessions"]) == ("stopped", 1)

    # the advised command applies it; status has nothing more to say
    resumed = run_pipeline("deploy", "--resume", str(file), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming run r1 under a changed configuration: files (settle_seconds" in (
        resumed.stdout
    ), resumed.stdout
    shown = run_pipeline("status", str(file), env=env)
    assert "was edited" not in shown.stderr, shown.stderr


def test_status_says_the_counters_of_an_edited_transport_are_not_the_deployments(slurm, workdir):
    env = slurm.env
    file = watching_file(workdir, "moved", first_file=True)
    deployed = run_pipeline("deploy", str(file), env=env)
    assert deployed.returncode == 0, deployed.stderr
    copy = YAML(typ="safe").load((workdir / ".pipeline-slurm/moved/pipeline.yaml").read_text())
    old = copy["transport"]["embedded"]["path"]
    new = str(workdir / "elsewhere")
    file.write_text(file.read_text() + f"transport: {{embedded: {{path: {new}}}}}\n")

    shown = run_pipeline("status", str(file), env=env)
    # the edited transport's store lacks the run, the deployment's holds it: not said lost
    # (it was, and so `status` exited 1 for a deployment that goes on)
    assert shown.returncode == 0, shown.stderr
    assert "no longer holds" not in shown.stderr, shown.stderr
    assert (
        f"was edited after it was deployed: transport (embedded.path {json.dumps(old)} -> "
        f"{json.dumps(new)}); its jobs run the copy deployed: `pipeline stop {file}` and "
        f"`pipeline deploy --resume {file}` apply the edit"
    ) in shown.stderr, shown.stderr
    assert (
        "the counters below are read through the edited transport, not the deployment's"
        in shown.stderr
    ), shown.stderr


def test_start_refuses_when_the_store_lost_the_deployments_run(slurm, workdir):
    env = slurm.env
    file = _deployed_then_stopped(workdir, "emptied", env)
    jobs = _jobs(workdir, "emptied")
    copy = YAML(typ="safe").load((workdir / ".pipeline-slurm/emptied/pipeline.yaml").read_text())
    store = Path(copy["transport"]["embedded"]["path"])
    # the store comes back empty (a Redis without persistence restarted)
    shutil.move(store, workdir / "aside")

    started = run_pipeline("start", str(file), env=env)
    assert started.returncode != 0, started.stdout
    assert started.stderr.strip() == (
        "error: the store no longer holds run r1 of this deployment of pipeline emptied (it "
        "holds no run of this pipeline: its data was lost or emptied); `pipeline deploy --fresh "
        f"{file}` processes every input again"
    ), started.stderr
    assert _jobs(workdir, "emptied") == jobs  # nothing submitted
    listed = run_pipeline("runs", str(file), "--json", env=env)
    assert json.loads(listed.stdout or "{}").get("runs", []) == [], listed  # no new run r1


def test_status_does_not_take_an_edited_unit_named_transport_for_the_transport(slurm, workdir):
    """A unit may be named like a section of the file: its edit is not the transport's (the
    edit was found in the warning's words, and `status` said the counters were read through
    an edited transport, which also kept it from saying the store lost the run)."""
    env = slurm.env
    file = watching_file(workdir, "named", first_file=True)
    file.write_text(file.read_text().replace("  sink:\n", "  transport:\n"))
    deployed = run_pipeline("deploy", str(file), env=env)
    assert deployed.returncode == 0, deployed.stderr
    file.write_text(file.read_text().replace("results/out.jsonl", "results/other.jsonl"))

    shown = run_pipeline("status", str(file), env=env)
    assert shown.returncode == 0, shown.stderr
    assert (
        "was edited after it was deployed: transport (path "
        '"results/out.jsonl" -> "results/other.jsonl"); its jobs run the copy deployed'
    ) in shown.stderr, shown.stderr
    assert "edited transport" not in shown.stderr, shown.stderr
