"""What would be submitted (`plan`), without a cluster: resources mapped onto sbatch options, one
job per replica, and workers started as the Nomad job starts them."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
from pydantic import ValidationError
from slurm_support import PIPELINE, copy_example, executor

from asapo_pipelines_slurm.commands import reason
from asapo_pipelines_slurm.config import SlurmConfig

EXAMPLE = "files-to-jsonl.pipeline.yaml"


def _with_resources(file, text: str) -> None:
    file.write_text(
        file.read_text().replace(
            "    inputs: {input: raw}\n", f"    inputs: {{input: raw}}\n{text}"
        )
    )


def test_plan_maps_resources_replicas_and_site_options_onto_sbatch(workdir):
    file = copy_example(EXAMPLE, workdir, "files")
    _with_resources(file, "    replicas: 2\n    resources: {cpu: 2500, memory: 3000, gpus: 1}\n")
    plan = executor(
        file,
        partition="maxcpu",
        account="p65",
        qos="beamtime",
        time="12:00:00",
        constraint="EPYC&V4",
        extra_options=["--reservation=beam"],
    ).plan()
    jobs = {(j["unit"], j["replica"]): j for j in plan["jobs"]}
    assert sorted(jobs) == [("files", 0), ("pass", 0), ("pass", 1), ("sink", 0)]
    options = jobs[("pass", 1)]["options"]
    for expected in (
        "--job-name=files-to-jsonl.pass.1",
        "--cpus-per-task=3",  # 2500 MHz at 1000 MHz per CPU
        "--mem=3000M",
        "--gres=gpu:1",
        "--partition=maxcpu",
        "--account=p65",
        "--qos=beamtime",
        "--time=12:00:00",
        "--constraint=EPYC&V4",
        "--reservation=beam",
        "--no-requeue",
        "--open-mode=append",
    ):
        assert expected in options
    # a unit with the core's default resources (500 MHz, 256 MB) gets one CPU and no GPU
    assert "--cpus-per-task=1" in jobs[("files", 0)]["options"]
    assert not [o for o in jobs[("files", 0)]["options"] if o.startswith("--gres")]


def test_workers_start_with_the_nomad_jobs_arguments(workdir):
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.launchplan.compile import compile_pipeline
    from asapo_pipelines.pipeline import load_pipeline

    file = copy_example(EXAMPLE, workdir, "files")
    ex = executor(file)
    plan = ex.plan()
    nomad = compile_pipeline(load_pipeline(file, Catalog.load()), Catalog.load()).job["Job"]
    for group in nomad["TaskGroups"]:
        task = group["Tasks"][-1]
        job = next(j for j in plan["jobs"] if j["unit"] == group["Name"])
        script = job["script"]
        exec_line = next(line for line in script.splitlines() if line.startswith("exec "))
        argv = shlex.split(exec_line)[1:]
        worker = argv[argv.index("worker") :]
        # Nomad's: worker ${NOMAD_TASK_DIR}/pipeline.yaml UNIT --replica ${NOMAD_ALLOC_INDEX}
        assert worker[0] == task["Config"]["args"][0] == "worker"
        assert (
            worker[2:]
            == [group["Name"], "--replica", "0"]
            == [
                task["Config"]["args"][2],
                "--replica",
                "0",
            ]
        )
        assert worker[1] == f"{plan['state_dir']}/pipeline.yaml"
        for key, value in task["Env"].items():
            assert f"export {key}={shlex.quote(value)}" in script


def test_config_refuses_options_the_executor_sets_and_bad_times():
    with pytest.raises(ValidationError, match="--output is set by the executor"):
        SlurmConfig(extra_options=["--output=/tmp/x"])
    with pytest.raises(ValidationError, match="must start with - or --"):
        SlurmConfig(extra_options=["reservation=beam"])
    with pytest.raises(ValidationError):
        SlurmConfig(time="twelve hours")
    with pytest.raises(ValidationError):
        SlurmConfig(partition="a b")
    assert SlurmConfig(time="1-12:00").time == "1-12:00"


#: spellings sbatch reads as an option the executor sets: a value attached to a short option,
#: short options grouped, a long option abbreviated (getopt_long's unique prefixes)
OWNED_SPELLINGS = {
    "-o/tmp/x": "-o (--output)",
    "-e/tmp/x": "-e (--error)",
    "-Jname": "-J (--job-name)",
    "-c4": "-c (--cpus-per-task)",
    "-n2": "-n (--ntasks)",
    "-N1": "-N (--nodes)",
    "-vo/tmp/x": "-o (--output)",
    "--out=/tmp/x": "--out (--output)",
    "--job=name": "--job (--job-name)",
    "--cpus-per-t=2": "--cpus-per-t (--cpus-per-task)",
    "--no-req": "--no-req (--no-requeue)",
    "--output=/tmp/x": "--output",
}


@pytest.mark.parametrize("item", sorted(OWNED_SPELLINGS))
def test_config_refuses_every_spelling_of_an_option_the_executor_sets(item):
    with pytest.raises(ValidationError) as raised:
        SlurmConfig(extra_options=[item])
    assert f"sbatch option {OWNED_SPELLINGS[item]} is set by the executor" in str(raised.value)


@pytest.mark.parametrize(
    ("item", "why"),
    [
        ("--e=/tmp/x", "--e is ambiguous (it could be --error, --exclude,"),
        ("-p", "-p needs its value in the same item: -pVALUE"),
        ("--partition", "--partition needs its value in the same item: --partition=VALUE"),
        ("--test", "--test (--test-only) would submit no job"),
        ("-y", "sbatch has no option -y"),
    ],
)
def test_config_refuses_items_sbatch_would_misread(item, why):
    with pytest.raises(ValidationError, match=re.escape(why)):
        SlurmConfig(extra_options=[item])


def test_config_keeps_site_options_and_options_of_newer_slurms():
    items = ["--reservation=p65", "--exclusive", "-k", "--mem-per-cpu=2G", "--tres-bind=x"]
    assert SlurmConfig(extra_options=items).extra_options == items


def test_pipeline_validate_locates_an_abbreviated_owned_option(workdir):
    file = copy_example(EXAMPLE, workdir, "files")
    file.write_text(
        file.read_text().replace(
            'nomad: {datacenters: ["*"], driver: raw_exec}',
            'slurm: {extra_options: ["--reservation=beam", "--out=/tmp/x"]}',
        )
    )
    done = subprocess.run(
        [PIPELINE, "validate", str(file)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    line = next(n for n, text in enumerate(file.read_text().splitlines(), 1) if "--out" in text)
    assert f"{file}:{line}:" in done.stdout + done.stderr
    assert "sbatch option --out (--output) is set by the executor" in done.stdout + done.stderr


def test_slurms_reason_is_quoted_without_tool_prefixes():
    stderr = (
        "sbatch: error: Batch job submission failed: Requested node configuration is not "
        "available\n"
    )
    assert reason(stderr) == "Requested node configuration is not available"


def test_install_runs_the_cores_prestart_script_once_per_deployment_under_flock(workdir):
    from asapo_pipelines import __version__
    from asapo_pipelines.sdk.executors import INSTALL_SCRIPT

    file = copy_example(EXAMPLE, workdir, "files")
    wheel = workdir / "extra-1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    plan = executor(
        file, python={"install": {"packages": ["numpy==2.1.0"], "wheels": [str(wheel)]}}
    ).plan()
    script = plan["jobs"][0]["script"]
    # the install command spans lines: the script's newlines are inside its quotes
    start = script.index("PIP_NO_CACHE_DIR=1 ") + len("PIP_NO_CACHE_DIR=1 ")
    argv = shlex.split(script[start : script.index(" >&2 || exit $?", start)])
    venv = f"{plan['state_dir']}/venv"
    assert argv[:5] == ["flock", f"{plan['state_dir']}/venv.lock", "python3", "-c", INSTALL_SCRIPT]
    assert argv[5] == venv
    assert f"asapo-pipelines=={__version__}" in argv
    assert "numpy==2.1.0" in argv
    assert ["--find-links", str(workdir)] == argv[argv.index("--find-links") :][:2]
    assert f"exec {venv}/bin/pipeline worker " in script
    # the worker starts only when the install succeeded
    assert script.index("flock") < script.index("exec ")
    checked = workdir / "job.sh"
    checked.write_text(script)
    assert subprocess.run(["bash", "-n", str(checked)], capture_output=True).returncode == 0


def test_a_wheel_url_is_refused_on_slurm_in_one_sentence(workdir):
    from asapo_pipelines_slurm.commands import SlurmError

    file = copy_example(EXAMPLE, workdir, "files")
    url = "https://wheels.example/x-1.0-py3-none-any.whl#sha256=" + "0" * 64
    with pytest.raises(SlurmError, match="is a URL; on Slurm give wheels as absolute paths"):
        executor(file, python={"install": {"wheels": [url]}}).plan()
