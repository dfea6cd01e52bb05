"""The compiler: plans -> Nomad job JSON, validated against the strict schema in schemas/."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from asapo_pipelines import __version__
from asapo_pipelines.catalog import Catalog
from asapo_pipelines.launchplan.compile import compile_pipeline, job_identity
from asapo_pipelines.launchplan.errors import LaunchPlanError
from asapo_pipelines.launchplan.jobspec import (
    INSTALL_TASK,
    FileTemplate,
    JobPlan,
    NomadVarSecret,
    ReschedulePolicy,
    TaskGroupPlan,
    TaskResources,
    compile_job,
    template_delimiters,
)
from asapo_pipelines.launchplan.python_env import INSTALL_SCRIPT, ExistingEnv, InstallEnv, Wheel
from asapo_pipelines.launchplan.restart import RestartPolicy
from asapo_pipelines.pipeline.model import Pipeline

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "nomad-job.schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)

USER_FILE = (
    "pipeline: p65-xas\n"
    "# a user's text that looks like templating must arrive untouched:\n"
    'description: "{{ env \\"HOME\\" }} {{ with nomadVar \\"x\\" }}{{ .y }}{{ end }} $(rm -rf /) '
    '${NOMAD_TOKEN}"\n'
)


def errors(payload: dict) -> list[str]:
    """Every complaint, including those nested under the `anyOf` of nullable fields."""
    out = []
    pending = list(VALIDATOR.iter_errors(payload))
    while pending:
        error = pending.pop()
        out.append(f"{'/'.join(map(str, error.absolute_path))}: {error.message}")
        pending.extend(error.context or ())
    return out


def group(name: str = "scans", **kw: Any) -> TaskGroupPlan:
    args = ("worker", "${NOMAD_TASK_DIR}/pipeline.yaml", name, "--replica", "${NOMAD_ALLOC_INDEX}")
    return TaskGroupPlan(name=name, args=args, **kw)


def plan(**kw: Any) -> JobPlan:
    base: dict[str, Any] = {
        "id": "p65-xas",
        "type": "batch",
        "groups": (group("scans"), group("writer", count=2, resources=TaskResources(gpus=1))),
        "files": (FileTemplate(dest="local/pipeline.yaml", content=USER_FILE),),
    }
    base.update(kw)
    return JobPlan(**base)


WHEEL = Wheel(url="https://wheels.example/asapo_pipelines-0.1.0-py3-none-any.whl", sha256="a" * 64)
VARIANTS = {
    "raw_exec-on-path": plan(),
    "raw_exec-venv": plan(python=ExistingEnv("/gpfs/envs/pipelines")),
    "exec-install-index": plan(
        driver="exec",
        python=InstallEnv(
            requirements=("asapo-pipelines==0.1.0", "asapo-xas==1.2.0"),
            index_url="https://pypi.example/simple",
        ),
    ),
    "docker-install-wheels": plan(
        driver="docker",
        image="python:3.11-slim",
        python=InstallEnv(requirements=("asapo-pipelines==0.1.0",), wheels=(WHEEL,)),
    ),
    "service-secrets": plan(
        type="service",
        namespace="beamline",
        region="europe",
        datacenters=("dc1", "dc2"),
        secrets=(NomadVarSecret("ASAPO_TOKEN", "nomad/jobs/p65-xas", "ASAPO_TOKEN"),),
        meta={"pipeline": "p65-xas"},
    ),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_compiled_jobs_validate_against_the_strict_schema(name: str) -> None:
    payload = compile_job(VARIANTS[name])
    assert errors(payload) == []
    assert list(payload) == ["Job"]


def _objects(node: Any, path: str = "#") -> Iterator[tuple[str, dict]]:
    if isinstance(node, dict):
        if node.get("type") == "object" or (
            isinstance(node.get("type"), list) and "object" in node["type"]
        ):
            yield path, node
        for key, value in node.items():
            yield from _objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{path}/{i}")


def test_schema_is_strict_every_object_is_closed() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    structs = maps = 0
    for path, node in _objects(SCHEMA):
        if "properties" in node:
            structs += 1
            assert node.get("additionalProperties") is False or path.endswith("GetterOptions"), (
                f"{path} is an open struct"
            )
        elif path.endswith("/Config") or path.endswith("/Policy"):
            # driver Config is closed per driver through if/then; a scaling Policy is opaque
            # to Nomad by its documentation
            continue
        else:
            maps += 1
            assert isinstance(node.get("additionalProperties"), dict), f"{path} is open"
    assert structs > 40
    assert maps > 5
    task = SCHEMA["definitions"]["Task"]
    assert {rule["then"]["properties"]["Config"]["$ref"] for rule in task["allOf"]} == {
        "#/definitions/RawExecConfig",
        "#/definitions/ExecConfig",
        "#/definitions/DockerConfig",
    }


@pytest.mark.parametrize(
    ("where", "edit", "complaint"),
    [
        ("job", lambda j: j.update(Taskgroups=j.pop("TaskGroups")), "'Taskgroups' was unexpected"),
        ("job", lambda j: j.update(Datacenter=["dc1"]), "'Datacenter' was unexpected"),
        ("group", lambda g: g.update(RestartPolicy={"Attempt": 3}), "'Attempt' was unexpected"),
        ("task", lambda t: t["Resources"].update(MemoryMb=256), "'MemoryMb' was unexpected"),
        ("task", lambda t: t["Config"].update(comand="x"), "'comand' was unexpected"),
        ("task", lambda t: t.update(Driver="raw-exec"), "'raw-exec' is not one of"),
        ("task", lambda t: t.update(KillTimeout="30s"), "'30s' is not of type"),
        ("task", lambda t: t["Templates"][0].update(Perms="rw-r--r--"), "does not match"),
        ("job", lambda j: j.update(VaultToken="s.abcdef"), "'s.abcdef' is not of type 'null'"),
        ("job", lambda j: j.update(Type="daemon"), "'daemon' is not one of"),
    ],
)
def test_schema_rejects_misspelled_and_forbidden_fields(
    where: str, edit: Any, complaint: str
) -> None:
    payload = compile_job(VARIANTS["raw_exec-on-path"])
    job = payload["Job"]
    target = {"job": job, "group": job["TaskGroups"][0], "task": job["TaskGroups"][0]["Tasks"][0]}
    edit(target[where])
    found = errors(payload)
    assert any(complaint in e for e in found), found


def test_schema_rejects_docker_registry_credentials_in_the_job() -> None:
    payload = compile_job(VARIANTS["docker-install-wheels"])
    task = payload["Job"]["TaskGroups"][0]["Tasks"][-1]
    task["Config"]["auth"] = {"username": "u", "password": "p"}
    assert any("'auth' was unexpected" in e for e in errors(payload))


def test_schema_accepts_a_job_written_as_nomads_json_job_docs_show_it() -> None:
    # Nomad's own JSON (e.g. `nomad job run -output`) spells every unset field as null.
    task = {
        "Name": "worker",
        "Driver": "docker",
        "User": "",
        "Lifecycle": None,
        "Config": {"image": "python:3.11", "ports": ["http"], "auth_soft_fail": True},
        "Constraints": None,
        "Affinities": None,
        "Env": None,
        "Services": None,
        "Resources": {
            "CPU": 100,
            "Cores": None,
            "MemoryMB": 128,
            "MemoryMaxMB": None,
            "DiskMB": None,
            "Networks": None,
            "Devices": None,
            "IOPS": None,
        },
        "RestartPolicy": None,
        "Meta": None,
        "KillTimeout": None,
        "LogConfig": None,
        "Artifacts": None,
        "Vault": None,
        "Templates": None,
        "DispatchPayload": None,
        "VolumeMounts": None,
        "Leader": False,
        "ShutdownDelay": 0,
        "KillSignal": "",
        "Kind": "",
        "ScalingPolicies": None,
        "Identity": {"Env": True, "File": True},
    }
    job = {
        "Region": None,
        "Namespace": None,
        "ID": "docs",
        "Name": "docs",
        "Type": "service",
        "Priority": None,
        "AllAtOnce": None,
        "Datacenters": ["dc1"],
        "NodePool": "default",
        "Constraints": None,
        "Affinities": None,
        "TaskGroups": [
            {
                "Name": "web",
                "Count": 1,
                "Constraints": None,
                "Disconnect": None,
                "Affinities": None,
                "Tasks": [task],
                "Spreads": None,
                "Volumes": None,
                "RestartPolicy": {
                    "Interval": 600_000_000_000,
                    "Attempts": 3,
                    "Delay": 10_000_000_000,
                    "Mode": "fail",
                },
                "ReschedulePolicy": None,
                "EphemeralDisk": {"Sticky": None, "Migrate": None, "SizeMB": 300},
                "Update": None,
                "Migrate": None,
                "Networks": [
                    {
                        "Mode": "",
                        "Device": "",
                        "CIDR": "",
                        "IP": "",
                        "DNS": None,
                        "ReservedPorts": None,
                        "Hostname": "",
                        "MBits": None,
                        "DynamicPorts": [
                            {"Label": "http", "Value": 0, "To": 8080, "HostNetwork": ""}
                        ],
                    }
                ],
                "Meta": None,
                "Services": [
                    {
                        "Name": "web",
                        "Tags": ["a"],
                        "CanaryTags": None,
                        "EnableTagOverride": False,
                        "PortLabel": "http",
                        "AddressMode": "",
                        "Address": "",
                        "Checks": None,
                        "CheckRestart": None,
                        "Connect": None,
                        "Meta": None,
                        "CanaryMeta": None,
                        "TaggedAddresses": None,
                        "TaskName": "",
                        "OnUpdate": "",
                        "Provider": "nomad",
                    }
                ],
                "ShutdownDelay": None,
                "StopAfterClientDisconnect": None,
                "MaxClientDisconnect": None,
                "Scaling": None,
                "Consul": None,
            }
        ],
        "Update": {
            "Stagger": None,
            "MaxParallel": 1,
            "HealthCheck": None,
            "MinHealthyTime": 10_000_000_000,
            "HealthyDeadline": 180_000_000_000,
            "ProgressDeadline": 600_000_000_000,
            "Canary": 0,
            "AutoRevert": False,
            "AutoPromote": None,
        },
        "Multiregion": None,
        "Spreads": None,
        "Periodic": None,
        "ParameterizedJob": None,
        "Reschedule": None,
        "Migrate": {
            "MaxParallel": 1,
            "HealthCheck": "checks",
            "MinHealthyTime": 10_000_000_000,
            "HealthyDeadline": 300_000_000_000,
        },
        "Meta": None,
        "ConsulToken": None,
        "VaultToken": None,
        "Stop": None,
        "ParentID": None,
        "Dispatched": False,
        "DispatchIdempotencyToken": None,
        "Payload": None,
        "ConsulNamespace": None,
        "VaultNamespace": None,
        "NomadTokenID": None,
        "Status": None,
        "StatusDescription": None,
        "Stable": None,
        "Version": None,
        "SubmitTime": None,
        "CreateIndex": None,
        "ModifyIndex": None,
        "JobModifyIndex": None,
    }
    assert errors({"Job": job}) == []


def test_job_shape_follows_the_compiler_rules() -> None:
    job = compile_job(VARIANTS["service-secrets"])["Job"]
    assert (job["ID"], job["Type"], job["Namespace"], job["Region"]) == (
        "p65-xas",
        "service",
        "beamline",
        "europe",
    )
    assert job["Datacenters"] == ["dc1", "dc2"]
    assert [g["Name"] for g in job["TaskGroups"]] == ["scans", "writer"]
    writer = job["TaskGroups"][1]
    assert writer["Count"] == 2
    # restart and reschedule are always explicit, durations in nanoseconds
    assert writer["RestartPolicy"] == {
        "Attempts": 5,
        "Interval": 1_800_000_000_000,
        "Delay": 5_000_000_000,
        "Mode": "fail",
    }
    assert writer["ReschedulePolicy"]["Unlimited"] is True
    assert writer["ReschedulePolicy"]["DelayFunction"] == "exponential"
    [task] = writer["Tasks"]
    assert task["Resources"]["Devices"] == [{"Name": "nvidia/gpu", "Count": 1}]
    assert task["LogConfig"] == {"MaxFiles": 5, "MaxFileSizeMB": 20}
    assert task["KillSignal"] == "SIGTERM"
    # rotated logs of both streams fit the ephemeral disk, or Nomad would refuse the job
    assert writer["EphemeralDisk"]["SizeMB"] >= 2 * 5 * 20
    batch = compile_job(VARIANTS["raw_exec-on-path"])["Job"]
    assert batch["Type"] == "batch"
    assert batch["TaskGroups"][0]["ReschedulePolicy"]["Unlimited"] is False
    assert "Namespace" not in batch
    custom = compile_job(plan(groups=(group(restart=RestartPolicy(attempts=1, delay=2)),)))
    assert custom["Job"]["TaskGroups"][0]["RestartPolicy"]["Attempts"] == 1


def test_tasks_run_argv_never_a_shell() -> None:
    for name, variant in VARIANTS.items():
        for grp in compile_job(variant)["Job"]["TaskGroups"]:
            for task in grp["Tasks"]:
                config = task["Config"]
                assert isinstance(config["args"], list), name
                assert Path(config["command"]).name not in {"sh", "bash", "dash", "zsh"}, name
                assert not any(
                    arg in {"-c"} and config["command"].endswith("sh") for arg in config["args"]
                )
    worker = compile_job(VARIANTS["raw_exec-venv"])["Job"]["TaskGroups"][0]["Tasks"][0]
    assert worker["Config"] == {
        "command": "/gpfs/envs/pipelines/bin/pipeline",
        "args": [
            "worker",
            "${NOMAD_TASK_DIR}/pipeline.yaml",
            "scans",
            "--replica",
            "${NOMAD_ALLOC_INDEX}",
        ],
    }
    docker = compile_job(VARIANTS["docker-install-wheels"])["Job"]["TaskGroups"][0]["Tasks"][1]
    assert docker["Config"]["image"] == "python:3.11-slim"
    assert docker["Config"]["command"] == "${NOMAD_ALLOC_DIR}/venv/bin/pipeline"
    on_path = compile_job(VARIANTS["raw_exec-on-path"])["Job"]["TaskGroups"][0]["Tasks"][0]
    assert on_path["Config"]["command"] == "pipeline"


def test_pipeline_file_is_delivered_literally_through_a_template() -> None:
    task = compile_job(VARIANTS["raw_exec-on-path"])["Job"]["TaskGroups"][0]["Tasks"][0]
    [template] = task["Templates"]
    assert template["EmbeddedTmpl"] == USER_FILE
    assert template["DestPath"] == "local/pipeline.yaml"
    left, right = template["LeftDelim"], template["RightDelim"]
    # consul-template only acts on its delimiters: none occurs in the file, and the user's
    # `{{ ... }}` is therefore plain text
    assert left not in USER_FILE
    assert right not in USER_FILE
    assert "{{" not in left
    assert "}}" not in right
    assert template["ChangeMode"] == "noop"
    # a file that contains a previous file's delimiters gets other ones
    sneaky = USER_FILE + f"# {left} {right}\n"
    left2, right2 = template_delimiters(sneaky)
    assert left2 not in sneaky
    assert right2 not in sneaky


def test_secrets_come_from_nomad_variables_never_from_the_job() -> None:
    job = compile_job(VARIANTS["service-secrets"])["Job"]
    task = job["TaskGroups"][0]["Tasks"][0]
    secret = task["Templates"][1]
    assert secret["DestPath"] == "secrets/pipeline.env"
    assert secret["Envvars"] is True
    assert secret["Perms"] == "0600"
    left, right = secret["LeftDelim"], secret["RightDelim"]
    assert secret["EmbeddedTmpl"] == (
        f'ASAPO_TOKEN={left} with nomadVar "nomad/jobs/p65-xas" {right}'
        f"{left} .ASAPO_TOKEN {right}{left} end {right}\n"
    )
    assert "ASAPO_TOKEN" not in task["Env"]
    assert job.get("VaultToken") is None
    assert job.get("ConsulToken") is None


def test_prestart_install_task_is_pinned_and_checked() -> None:
    grp = compile_job(VARIANTS["docker-install-wheels"])["Job"]["TaskGroups"][0]
    install, worker = grp["Tasks"]
    assert install["Name"] == INSTALL_TASK
    assert install["Lifecycle"] == {"Hook": "prestart", "Sidecar": False}
    assert install["Config"]["command"] == "python3"
    assert install["Config"]["args"][:3] == ["-c", INSTALL_SCRIPT, "${NOMAD_ALLOC_DIR}/venv"]
    assert install["Config"]["args"][-1] == "asapo-pipelines==0.1.0"
    assert "--no-index" in install["Config"]["args"]
    [artifact] = install["Artifacts"]
    assert artifact["GetterOptions"] == {"checksum": "sha256:" + "a" * 64}
    assert artifact["RelativeDest"] == "local/wheels/asapo_pipelines-0.1.0-py3-none-any.whl"
    assert worker["Env"]["VIRTUAL_ENV"] == "${NOMAD_ALLOC_DIR}/venv"
    index = compile_job(VARIANTS["exec-install-index"])["Job"]["TaskGroups"][0]["Tasks"][0]
    args = index["Config"]["args"]
    assert args[args.index("--index-url") + 1] == "https://pypi.example/simple"
    assert args[-2:] == ["asapo-pipelines==0.1.0", "asapo-xas==1.2.0"]
    assert "Artifacts" not in index


def _nomad_interpolate(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(NOMAD_[A-Z_]+)\}", lambda m: env[m.group(1)], value)


def _build_wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal, valid pure-python wheel with a `pipeline` console script."""
    dist = f"{name.replace('-', '_')}-{version}"
    wheel = directory / f"{dist}-py3-none-any.whl"
    module = name.replace("-", "_")
    files = {
        f"{module}/__init__.py": "def main():\n    print('pipeline from the installed env')\n",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{dist}.dist-info/entry_points.txt": f"[console_scripts]\npipeline = {module}:main\n",
    }
    records = []
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            data = text.encode()
            archive.writestr(path, data)
            digest = hashlib.sha256(data).digest()
            b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            records.append(f"{path},sha256={b64},{len(data)}")
        records.append(f"{dist}.dist-info/RECORD,,")
        archive.writestr(f"{dist}.dist-info/RECORD", "\n".join(records) + "\n")
    return wheel


def test_prestart_install_command_really_builds_a_working_venv(tmp_path: Path) -> None:
    """Run the prestart task's argv as a Nomad client would (no shell, ${NOMAD_*} interpolated,
    wheels downloaded into local/wheels), then the worker's command from that venv."""
    (tmp_path / "src").mkdir()
    wheel = _build_wheel(tmp_path / "src", "tiny-pipeline", "0.3.0")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    job = compile_job(
        plan(
            python=InstallEnv(
                requirements=("tiny-pipeline==0.3.0",),
                wheels=(Wheel(url=f"https://wheels.example/{wheel.name}", sha256=sha),),
                python=sys.executable,
            )
        )
    )["Job"]
    install, worker = job["TaskGroups"][0]["Tasks"]
    alloc_dir, task_dir = tmp_path / "alloc", tmp_path / INSTALL_TASK
    alloc_dir.mkdir()
    # what go-getter does for the artifact (its checksum matched: we computed it)
    [artifact] = install["Artifacts"]
    dest = tmp_path / artifact["RelativeDest"].replace("local/", f"{INSTALL_TASK}/", 1)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(wheel.read_bytes())
    env = {
        "NOMAD_ALLOC_DIR": str(alloc_dir),
        "NOMAD_TASK_DIR": str(task_dir),
        "NOMAD_ALLOC_INDEX": "0",
    }
    argv = [
        _nomad_interpolate(a, env)
        for a in [install["Config"]["command"], *install["Config"]["args"]]
    ]
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    done = subprocess.run(
        argv, env={**clean_env, **install["Env"]}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    # a restarted prestart task reuses the venv
    again = subprocess.run(
        argv, env={**clean_env, **install["Env"]}, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    command = _nomad_interpolate(worker["Config"]["command"], env)
    run = subprocess.run([command], capture_output=True, text=True, timeout=60)
    assert run.stdout == "pipeline from the installed env\n"


def test_prestart_install_checks_wheels_on_a_shared_filesystem(tmp_path: Path) -> None:
    """Wheels given as paths on the nodes are checked against their sha256 by the install task
    itself; a wheel that changed since the job was compiled is not installed."""
    shared = tmp_path / "shared"
    shared.mkdir()
    wheel = _build_wheel(shared, "tiny-pipeline", "0.4.0")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    job = compile_job(
        plan(
            python=InstallEnv(
                requirements=("tiny-pipeline==0.4.0",),
                wheels=(Wheel(url=str(wheel), sha256=sha),),
                python=sys.executable,
            )
        )
    )["Job"]
    install, worker = job["TaskGroups"][0]["Tasks"]
    assert "Artifacts" not in install
    assert install["Config"]["args"][3] == json.dumps([[str(wheel), sha]], separators=(",", ":"))
    args = install["Config"]["args"]
    assert args[args.index("--find-links") + 1] == str(shared)
    assert "--no-index" in args
    env = {"NOMAD_ALLOC_DIR": str(tmp_path / "alloc"), "NOMAD_TASK_DIR": str(tmp_path / "t")}
    argv = [_nomad_interpolate(a, env) for a in [install["Config"]["command"], *args]]
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    original = wheel.read_bytes()
    wheel.write_bytes(original + b"tampered")
    refused = subprocess.run(argv, env=clean_env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith(f"wheel {wheel} has sha256 ")
    assert refused.stderr.strip().endswith(f"not {sha}; not installing")
    assert not (tmp_path / "alloc" / "venv").exists()
    wheel.write_bytes(original)
    done = subprocess.run(argv, env=clean_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    command = _nomad_interpolate(worker["Config"]["command"], env)
    assert subprocess.run([command], capture_output=True, text=True).stdout == (
        "pipeline from the installed env\n"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "P65 XAS"}, "job ID 'P65 XAS' must be lower case"),
        ({"driver": "podman"}, "unknown Nomad driver 'podman'; use one of raw_exec, exec, docker"),
        ({"driver": "docker"}, "the docker driver needs an image (deploy.nomad.image)"),
        ({"image": "python:3.11"}, "an image is only used by the docker driver, not by raw_exec"),
        (
            {"python": InstallEnv(requirements=("asapo-xas>=1",))},
            "distribution 'asapo-xas>=1' must be pinned as name==version",
        ),
        (
            {"python": InstallEnv(requirements=("a==1",), index_url="https://me:pw@idx/simple")},
            "the package index URL contains credentials, which would be written into the job",
        ),
        (
            {
                "python": InstallEnv(
                    requirements=("a==1",), wheels=(Wheel("https://x/a.tar.gz", "b" * 64),)
                )
            },
            "must end in a .whl file name",
        ),
        (
            {
                "python": InstallEnv(
                    requirements=("a==1",), wheels=(Wheel("https://x/a-1-py3-none-any.whl", "xyz"),)
                )
            },
            "sha256 must be 64 lower-case hex digits",
        ),
        ({"python": ExistingEnv("envs/local")}, "must be absolute"),
        ({"env": {"DATA": "${HOME}/data"}}, "environment variable DATA contains '${'"),
        ({"groups": (group(env={"X": "${attr.kernel.name}"}),)}, "unit scans: environment"),
        ({"groups": (group(), group())}, "task group 'scans' appears twice"),
        (
            {"groups": (group(restart=RestartPolicy(attempts=10, delay=60, interval=300)),)},
            "unit scans: 10 restarts 60 s apart do not fit in the restart interval of 300 s",
        ),
        (
            {"groups": (group(reschedule=ReschedulePolicy(attempts=2, unlimited=True)),)},
            "rescheduling is either unlimited or limited to some attempts",
        ),
        (
            {"groups": (group(reschedule=ReschedulePolicy(delay=1)),)},
            "the reschedule delay must be at least 5 s",
        ),
        ({"groups": ()}, "a job needs at least one task group"),
        ({"secrets": (NomadVarSecret("T", 'a" }}{{ evil', "k"),)}, "Nomad variable"),
        ({"files": (FileTemplate("../etc/passwd", "x"),)}, "must be under local/ or secrets/"),
    ],
)
def test_plans_that_cannot_compile_give_one_sentence(change: dict, message: str) -> None:
    with pytest.raises(LaunchPlanError) as info:
        compile_job(plan(**change))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# -- from a pipeline (the validated model of asapo_pipelines.pipeline) --------------------------

ASAPO = {"asapo": {"endpoint": "asapo:8400", "beamtime": "11012345", "token_env": "ASAPO_TOKEN"}}


def _pipeline(
    tmp_path: Path,
    *,
    watch: bool = False,
    deploy: dict[str, Any] | None = None,
    transport: dict[str, Any] | None = None,
    streams: dict[str, Any] | None = None,
) -> Pipeline:
    """The pipeline model as `load_pipeline` gives it, bound to a file whose text is
    `USER_FILE` (the compiler delivers the file's own text, not the model)."""
    path = tmp_path / "demo.pipeline.yaml"
    path.write_text(USER_FILE)
    model = Pipeline.model_validate(
        {
            "pipeline": "demo",
            "transport": transport or ASAPO,
            "streams": streams or {},
            "units": {
                "scans": {
                    "unit": "core.files",
                    "params": {"directory": "/data", "watch": watch},
                    "outputs": {"files": "raw"},
                },
                "copy": {
                    "unit": "core.identity",
                    "inputs": {"input": "raw"},
                    "outputs": {"output": "out"},
                    "replicas": 3,
                    "resources": {"cpu": 1000, "memory": 2048, "gpus": 2},
                },
                "sink": {
                    "unit": "core.jsonl-sink",
                    "params": {"path": "/data/out.jsonl"},
                    "inputs": {"messages": "out"},
                },
            },
            "deploy": deploy or {"nomad": {"datacenters": ["dc1"], "namespace": "beamline"}},
        }
    )
    return model.bind(path)


def test_compile_pipeline_makes_one_job_with_a_group_per_unit(tmp_path: Path) -> None:
    catalog = Catalog.load()
    compiled = compile_pipeline(_pipeline(tmp_path), catalog)
    assert errors(compiled.job) == []
    job = compiled.job["Job"]
    assert job["Type"] == "batch"
    assert job["Meta"] == {"pipeline": "demo", "asapo-pipelines": __version__}
    groups = {g["Name"]: g for g in job["TaskGroups"]}
    assert list(groups) == ["scans", "copy", "sink"]
    assert groups["copy"]["Count"] == 3
    assert groups["copy"]["Meta"] == {"unit": "core.identity", "instance": "copy"}
    copy_task = groups["copy"]["Tasks"][0]
    assert copy_task["Resources"] == {
        "CPU": 1000,
        "MemoryMB": 2048,
        "Devices": [{"Name": "nvidia/gpu", "Count": 2}],
    }
    # the descriptor's defaults where the file says nothing
    assert groups["sink"]["Tasks"][0]["Resources"] == {"CPU": 200, "MemoryMB": 128}
    assert copy_task["Config"]["args"][:3] == ["worker", "${NOMAD_TASK_DIR}/pipeline.yaml", "copy"]
    assert copy_task["Templates"][0]["EmbeddedTmpl"] == USER_FILE
    # the asapo token is read on the node from the job's Nomad variable
    assert 'nomadVar "nomad/jobs/demo"' in copy_task["Templates"][1]["EmbeddedTmpl"]
    assert compiled.warnings == []


def test_compile_pipeline_service_when_a_source_keeps_running(tmp_path: Path) -> None:
    catalog = Catalog.load()
    assert compile_pipeline(_pipeline(tmp_path, watch=True), catalog).job["Job"]["Type"] == (
        "service"
    )
    external = {"raw-scans": {"external": True}}
    assert (
        compile_pipeline(_pipeline(tmp_path, streams=external), catalog).job["Job"]["Type"]
        == "service"
    )


def test_compile_pipeline_installs_the_catalogs_pinned_distributions(tmp_path: Path) -> None:
    catalog = Catalog.load()
    deploy = {
        "nomad": {
            "python": {"install": {"index_url": "https://pypi.example/simple"}},
            "driver": "exec",
        }
    }
    embedded = {"embedded": {"path": "/x"}}
    compiled = compile_pipeline(_pipeline(tmp_path, deploy=deploy, transport=embedded), catalog)
    assert errors(compiled.job) == []
    install = compiled.job["Job"]["TaskGroups"][0]["Tasks"][0]
    assert install["Lifecycle"]["Hook"] == "prestart"
    assert install["Config"]["args"][-1] == f"asapo-pipelines=={__version__}"
    assert "embedded transport" in compiled.warnings[0]
    deep = copy.deepcopy(compiled.job)
    assert deep == compiled.job


def test_compile_pipeline_reads_wheels_with_their_checksums(tmp_path: Path) -> None:
    catalog = Catalog.load()
    local = tmp_path / "asapo_pipelines-0.1.0-py3-none-any.whl"
    local.write_bytes(b"wheel bytes")
    url = "https://wheels.example/asapo_xas-1.2.0-py3-none-any.whl"
    deploy = {
        "nomad": {
            "python": {
                "install": {
                    "wheels": [f"{url}#sha256={'C' * 64}", str(local)],
                    "packages": ["numpy==2.1.0"],
                }
            }
        }
    }
    compiled = compile_pipeline(_pipeline(tmp_path, deploy=deploy), catalog)
    assert errors(compiled.job) == []
    install = compiled.job["Job"]["TaskGroups"][0]["Tasks"][0]
    [artifact] = install["Artifacts"]
    assert artifact["GetterSource"] == url
    assert artifact["GetterOptions"]["checksum"] == "sha256:" + "c" * 64
    checks = json.loads(install["Config"]["args"][3])
    assert checks == [[str(local), hashlib.sha256(b"wheel bytes").hexdigest()]]
    assert install["Config"]["args"][-2:] == [f"asapo-pipelines=={__version__}", "numpy==2.1.0"]


@pytest.mark.parametrize(
    ("install", "message"),
    [
        # a URL without its checksum is refused by validation (P405), as an unpinned package
        # is (P407); a path on the nodes that is not readable here cannot be hashed by the
        # compiler either
        (
            {"wheels": ["/nodes-only/wheels/a-1.0-py3-none-any.whl"]},
            "needs its checksum: write it",
        ),
        (
            {"packages": [f"asapo-pipelines==0.0.0{__version__}"]},
            f"but the pipeline's units need asapo-pipelines=={__version__}",
        ),
    ],
)
def test_compile_pipeline_install_errors_are_one_sentence(
    tmp_path: Path, install: dict, message: str
) -> None:
    deploy = {"nomad": {"python": {"install": install}}}
    # the file's python section or the job's checks: both raise the launch plan's error
    with pytest.raises(LaunchPlanError, match=re.escape(message)):
        compile_pipeline(_pipeline(tmp_path, deploy=deploy), Catalog.load())


def test_delivered_file_carries_absolute_transport_paths_and_the_base_dir(tmp_path: Path) -> None:
    """Tasks read their copy in `local/`, so what was relative to the original file is made
    absolute there, and the original folder is passed on for the units' relative params."""
    store = tmp_path / ".pipeline-data"
    embedded = {"embedded": {"path": str(store)}}
    pipe = _pipeline(tmp_path, transport=embedded)
    assert pipe.path is not None
    pipe.path.write_text(
        "# my pipeline, {{ not a template }}\n"
        "pipeline: demo\n"
        "transport:\n"
        "  embedded: {path: .pipeline-data}   # next to this file\n"
        "units: {}\n"
    )
    compiled = compile_pipeline(pipe, Catalog.load())
    task = compiled.job["Job"]["TaskGroups"][0]["Tasks"][0]
    delivered = task["Templates"][0]["EmbeddedTmpl"]
    assert delivered == (
        "# my pipeline, {{ not a template }}\n"
        "pipeline: demo\n"
        "transport:\n"
        f"  embedded: {{path: {store}}} # next to this file\n"
        "units: {}\n"
    )
    assert task["Env"]["ASAPO_PIPELINES_BASE_DIR"] == str(tmp_path)
    # a file without a transport section gets the default store, spelled out
    pipe.path.write_text("pipeline: demo\nunits: {}\n")
    delivered = compile_pipeline(pipe, Catalog.load()).job["Job"]["TaskGroups"][0]["Tasks"][0][
        "Templates"
    ][0]["EmbeddedTmpl"]
    assert delivered == f"pipeline: demo\nunits: {{}}\ntransport:\n  embedded:\n    path: {store}\n"


def test_redacted_copy_hides_secret_looking_values() -> None:
    from asapo_pipelines.launchplan.jobspec import REDACTED, redacted

    payload = compile_job(VARIANTS["docker-install-wheels"])
    task = payload["Job"]["TaskGroups"][0]["Tasks"][0]
    task["Env"].update(ASAPO_TOKEN="abc", MY_PASSWORD="pw", DATA_DIR="/data")
    task["Artifacts"][0]["GetterHeaders"] = {"Authorization": "Bearer xyz"}
    task["Artifacts"][0]["GetterOptions"]["aws_access_key_secret"] = "s3cr3t"
    shown = redacted(payload)
    env = shown["Job"]["TaskGroups"][0]["Tasks"][0]["Env"]
    assert (env["ASAPO_TOKEN"], env["MY_PASSWORD"], env["DATA_DIR"]) == (
        REDACTED,
        REDACTED,
        "/data",
    )
    artifact = shown["Job"]["TaskGroups"][0]["Tasks"][0]["Artifacts"][0]
    assert artifact["GetterHeaders"] == {"Authorization": REDACTED}
    assert artifact["GetterOptions"]["aws_access_key_secret"] == REDACTED
    assert artifact["GetterOptions"]["checksum"].startswith("sha256:")
    assert "s3cr3t" not in json.dumps(shown)
    # the original is untouched
    assert task["Env"]["ASAPO_TOKEN"] == "abc"


def test_model_defaults_leave_namespace_and_region_to_the_environment(tmp_path: Path) -> None:
    # the model fills in `namespace: default` and `region: global`; only what the file wrote
    # reaches the job
    implicit: dict[str, Any] = {"nomad": {"datacenters": ["*"]}}
    job = compile_pipeline(_pipeline(tmp_path, deploy=implicit), Catalog.load()).job["Job"]
    assert "Namespace" not in job
    assert "Region" not in job
    explicit = {"nomad": {"namespace": "beamline", "region": "europe"}}
    job = compile_pipeline(_pipeline(tmp_path, deploy=explicit), Catalog.load()).job["Job"]
    assert (job["Namespace"], job["Region"]) == ("beamline", "europe")
    # stop/start/status/logs need only the job's identity, not a compilation
    assert job_identity(_pipeline(tmp_path, deploy=explicit)) == ("demo", "beamline")
    assert job_identity(_pipeline(tmp_path, deploy=implicit)) == ("demo", None)


def test_compiled_tasks_read_back_for_the_local_executor() -> None:
    from asapo_pipelines.launchplan.jobspec import TaskFile, VarRef, task_files, task_secrets

    task = compile_job(VARIANTS["service-secrets"])["Job"]["TaskGroups"][0]["Tasks"][0]
    assert task_files(task) == [TaskFile("local/pipeline.yaml", USER_FILE, "0644")]
    assert task_secrets(task) == [VarRef("ASAPO_TOKEN", "nomad/jobs/p65-xas", "ASAPO_TOKEN")]
    # a hand-written consul-template template cannot be rendered without Nomad
    task["Templates"].append({"EmbeddedTmpl": '{{ env "HOME" }}', "DestPath": "local/x"})
    with pytest.raises(LaunchPlanError, match="local/x of task scans needs consul-template"):
        task_files(task)
