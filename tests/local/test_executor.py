"""The local executor run in-process on hand-written Nomad jobs, with real subprocesses."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from local_jobs import NS, alive, group, job, task, wait_for

from asapo_pipelines.local.errors import LocalRunError
from asapo_pipelines.local.executor import ExecOptions, LocalExecutor, RunResult

DUMP_ENV = (
    "import json, os\n"
    "keys = [k for k in os.environ if k.startswith(('NOMAD_', 'MY_'))]\n"
    "out = {k: os.environ[k] for k in keys}\n"
    "out['cwd'] = os.getcwd()\n"
    "out['template'] = open('local/config.txt').read()\n"
    "path = os.path.join(os.environ['NOMAD_ALLOC_DIR'], 'data', 'env.json')\n"
    "open(path, 'w').write(json.dumps(out))\n"
    "print('hello from', os.environ['NOMAD_ALLOC_NAME'], flush=True)\n"
)


def run(payload: dict[str, Any], run_dir: Path, **options: Any) -> RunResult:
    events: list[str] = options.pop("events", [])
    opts = ExecOptions(on_event=events.append, handle_signals=False, **options)
    return LocalExecutor(payload, run_dir, opts).run()


def test_tasks_run_with_nomads_layout_env_and_templates(tmp_path: Path) -> None:
    payload = job(
        "layout",
        group(
            "scans",
            task(
                "scans",
                DUMP_ENV,
                Env={
                    "MY_DIR": "${NOMAD_TASK_DIR}/out",
                    "MY_INDEX": "replica-${NOMAD_ALLOC_INDEX}",
                    "MY_UNKNOWN": "${attr.not.known}",
                },
                Meta={"unit": "core.files"},
                Resources={"CPU": 750, "MemoryMB": 321},
                Templates=[
                    {
                        "EmbeddedTmpl": (
                            'pipeline: p1\n{{ not a template }}\nhost: <<env "NOMAD_JOB_ID">>\n'
                        ),
                        "DestPath": "local/config.txt",
                        "LeftDelim": "<<",
                        "RightDelim": ">>",
                        "Perms": "0640",
                    }
                ],
            ),
            count=2,
        ),
        Namespace="beamline",
        Region="desy",
        Meta={"pipeline": "p1"},
    )
    run_dir = tmp_path / "runs" / "layout"
    result = run(payload, run_dir)
    assert result.status == "complete", result.message
    assert result.exit_code == 0
    for index in (0, 1):
        alloc = run_dir / "alloc" / f"scans-{index}"
        env = json.loads((alloc / "alloc" / "data" / "env.json").read_text())
        assert env["NOMAD_ALLOC_DIR"] == str(alloc / "alloc")
        assert env["NOMAD_TASK_DIR"] == str(alloc / "scans" / "local")
        assert env["NOMAD_SECRETS_DIR"] == str(alloc / "scans" / "secrets")
        assert env["cwd"] == str(alloc / "scans")
        assert env["NOMAD_ALLOC_INDEX"] == str(index)
        assert env["NOMAD_ALLOC_NAME"] == f"layout.scans[{index}]"
        assert env["NOMAD_GROUP_NAME"] == env["NOMAD_TASK_NAME"] == "scans"
        assert env["NOMAD_JOB_ID"] == env["NOMAD_JOB_NAME"] == "layout"
        assert env["NOMAD_NAMESPACE"] == "beamline"
        assert env["NOMAD_REGION"] == "desy"
        assert env["NOMAD_DC"] == "dc1"
        assert env["NOMAD_CPU_LIMIT"] == "750"
        assert env["NOMAD_MEMORY_LIMIT"] == "321"
        assert env["NOMAD_META_pipeline"] == "p1"
        assert env["NOMAD_META_UNIT"] == "core.files"
        assert len(env["NOMAD_ALLOC_ID"]) == 36
        assert env["MY_DIR"] == str(alloc / "scans" / "local" / "out")
        assert env["MY_INDEX"] == f"replica-{index}"
        assert env["MY_UNKNOWN"] == "${attr.not.known}"  # left alone, as Nomad does
        # literal text outside the delimiters, env actions rendered
        assert env["template"] == "pipeline: p1\n{{ not a template }}\nhost: layout\n"
        assert oct((alloc / "scans" / "local" / "config.txt").stat().st_mode & 0o777) == "0o640"
        for sub in ("alloc/data", "alloc/tmp", "scans/tmp"):
            assert (alloc / sub).is_dir()
        assert (alloc / "scans" / "secrets").stat().st_mode & 0o777 == 0o700
        logs = alloc / "alloc" / "logs"
        assert (logs / "scans.stdout.0").read_text() == f"hello from layout.scans[{index}]\n"
        assert (logs / "scans.stderr.0").read_text() == ""
    ids = {
        json.loads((run_dir / "alloc" / f"scans-{i}" / "alloc/data/env.json").read_text())[
            "NOMAD_ALLOC_ID"
        ]
        for i in (0, 1)
    }
    assert len(ids) == 2
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "complete"
    assert [(u["unit"], u["state"], u["exit_codes"]) for u in state["units"]] == [
        ("scans[0]", "complete", [0]),
        ("scans[1]", "complete", [0]),
    ]


PRESTART = (
    "import os, time\n"
    "time.sleep(0.4)\n"
    "open(os.path.join(os.environ['NOMAD_ALLOC_DIR'], 'data', 'venv-ready'), 'w').write('ok')\n"
)
MAIN_CHECKS = (
    "import os, sys\n"
    "ready = os.path.exists(os.path.join(os.environ['NOMAD_ALLOC_DIR'], 'data', 'venv-ready'))\n"
    "print('prestart done before me:', ready)\n"
    "sys.exit(0 if ready else 5)\n"
)


def test_prestart_runs_to_completion_before_the_main_task(tmp_path: Path) -> None:
    install = task("install-env", PRESTART, Lifecycle={"Hook": "prestart", "Sidecar": False})
    payload = job("pre", group("normalize", install, task("normalize", MAIN_CHECKS), Attempts=0))
    events: list[str] = []
    result = run(payload, tmp_path / "run", events=events)
    assert result.status == "complete", result.message
    logs = tmp_path / "run" / "alloc" / "normalize-0" / "alloc" / "logs"
    assert (logs / "normalize.stdout.0").read_text() == "prestart done before me: True\n"
    order = [e for e in events if "started" in e or "complete" in e]
    assert order[0].startswith("normalize[0]/install-env started")
    assert order[1].startswith("normalize[0]/install-env exited with code 0")
    assert order[2].startswith("normalize[0] started")


def test_failed_prestart_fails_the_group_and_main_never_starts(tmp_path: Path) -> None:
    install = task(
        "install-env",
        "import sys; sys.exit('no index reachable')",
        Lifecycle={"Hook": "prestart", "Sidecar": False},
    )
    marker = tmp_path / "main-ran"
    main = task("normalize", f"open({str(marker)!r}, 'w')")
    result = run(job("pre-fail", group("normalize", install, main, Attempts=1)), tmp_path / "r")
    assert result.status == "failed"
    assert result.exit_code == 1
    assert not marker.exists()
    assert result.message.startswith(
        "normalize[0]/install-env failed for good: it exited with code 1 after 1 restart"
    )
    stderr = tmp_path / "r/alloc/normalize-0/alloc/logs/install-env.stderr.0"
    assert stderr.read_text() == "no index reachable\nno index reachable\n"


CRASH = (
    "import os, sys, time\n"
    "with open(os.path.join(os.environ['NOMAD_ALLOC_DIR'], 'data', 'starts'), 'a') as f:\n"
    "    f.write(f'{time.time()}\\n')\n"
    "sys.exit(3)\n"
)


def test_crashing_task_is_restarted_attempts_times_with_delay_then_the_job_fails(
    tmp_path: Path,
) -> None:
    payload = job(
        "crash",
        group("merge", task("merge", CRASH), Attempts=2, Delay=NS // 4),
        group("sleeper", task("sleeper", "import time; time.sleep(60)")),
    )
    events: list[str] = []
    result = run(payload, tmp_path / "r", events=events)
    assert result.status == "failed"
    assert result.exit_code == 1
    starts = [
        float(x) for x in (tmp_path / "r/alloc/merge-0/alloc/data/starts").read_text().split()
    ]
    assert len(starts) == 3  # the first run and 2 restarts
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(starts))
    assert result.message == (
        "merge[0] failed for good: it exited with code 3 after 2 restarts and exceeded the 2 "
        'restart attempts allowed in 1m and the restart mode is "fail" (Attempts 2 in Interval '
        "1m, Delay 0.25s, Mode fail)"
    )
    units = {u["unit"]: u for u in result.state["units"]}
    assert units["merge[0]"]["state"] == "failed"
    assert units["merge[0]"]["restarts"] == 2
    assert units["merge[0]"]["exit_codes"] == [3, 3, 3]
    # the healthy unit was stopped with its kill signal, not left behind
    assert units["sleeper[0]"]["state"] == "stopped"
    assert units["sleeper[0]"]["exit_codes"] == [-signal.SIGTERM]
    assert "stopping the other tasks after a failure" in events


FAIL_TWICE = (
    "import os, sys, time\n"
    "path = os.path.join(os.environ['NOMAD_ALLOC_DIR'], 'data', 'starts')\n"
    "with open(path, 'a') as f:\n"
    "    f.write(f'{time.time()}\\n')\n"
    "sys.exit(0 if len(open(path).read().split()) >= 3 else 1)\n"
)


def test_mode_delay_waits_for_the_next_interval_instead_of_failing(tmp_path: Path) -> None:
    payload = job(
        "delay",
        group(
            "agent",
            task("agent", FAIL_TWICE),
            Attempts=1,
            Interval=int(1.5 * NS),
            Delay=0,
            Mode="delay",
        ),
    )
    result = run(payload, tmp_path / "r")
    assert result.status == "complete", result.message
    starts = [
        float(x) for x in (tmp_path / "r/alloc/agent-0/alloc/data/starts").read_text().split()
    ]
    assert len(starts) == 3
    # the second failure exceeded Attempts: the third start waited for the interval's end
    assert starts[2] - starts[0] >= 1.5
    assert result.state["units"][0]["restarts"] == 2


WAIT_FOR_GO = (
    "import os, sys, time\n"
    "data = os.path.join(os.environ['NOMAD_ALLOC_DIR'], 'data')\n"
    "open(os.path.join(data, f'pid.{os.getpid()}'), 'w').close()\n"
    "while not os.path.exists(os.path.join(data, 'go')):\n"
    "    time.sleep(0.02)\n"
    "print('finished', flush=True)\n"
)


def test_task_sigkilled_from_outside_is_restarted_and_the_job_completes(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    payload = job("killed", group("writer", task("writer", WAIT_FOR_GO), Attempts=3, Delay=0))
    results: list[RunResult] = []
    thread = threading.Thread(target=lambda: results.append(run(payload, run_dir)))
    thread.start()
    data = run_dir / "alloc" / "writer-0" / "alloc" / "data"
    first = wait_for(lambda: sorted(data.glob("pid.*")), what="the task to start")[0]
    os.kill(int(first.name.split(".")[1]), signal.SIGKILL)
    wait_for(lambda: len(list(data.glob("pid.*"))) == 2, what="the restart")
    (data / "go").touch()
    thread.join(timeout=60)
    (result,) = results
    assert result.status == "complete", result.message
    unit = result.state["units"][0]
    assert unit["restarts"] == 1
    assert unit["exit_codes"] == [-signal.SIGKILL, 0]
    assert (data.parent / "logs" / "writer.stdout.0").read_text() == "finished\n"


SPAWNS_AND_IGNORES_TERM = (
    "import os, signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "data = os.path.join(os.environ['NOMAD_ALLOC_DIR'], 'data')\n"
    "open(os.path.join(data, 'pids'), 'w').write(f'{os.getpid()} {child.pid}')\n"
    "time.sleep(600)\n"
)


def test_request_stop_terminates_everything_including_grandchildren(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    stubborn = task("stubborn", SPAWNS_AND_IGNORES_TERM, KillTimeout=NS // 2)
    payload = job(
        "svc",
        group("stubborn", stubborn),
        group("polite", task("polite", "import time; time.sleep(600)")),
        type="service",
    )
    executor = LocalExecutor(payload, run_dir, ExecOptions(handle_signals=False))
    results: list[RunResult] = []
    thread = threading.Thread(target=lambda: results.append(executor.run()))
    thread.start()
    pids_file = run_dir / "alloc" / "stubborn-0" / "alloc" / "data" / "pids"
    wait_for(
        lambda: pids_file.exists() and len(pids_file.read_text().split()) == 2,
        what="the task and its child",
    )
    task_pid, child_pid = map(int, pids_file.read_text().split())
    polite_pid = wait_for(
        lambda: next(
            u["pid"]
            for u in json.loads((run_dir / "state.json").read_text())["units"]
            if u["group"] == "polite"
        )
    )
    executor.request_stop("test")
    thread.join(timeout=30)
    (result,) = results
    assert result.status == "stopped"
    units = {u["group"]: u for u in result.state["units"]}
    assert units["stubborn"]["exit_codes"] == [-signal.SIGKILL]  # ignored SIGTERM
    assert units["polite"]["exit_codes"] == [-signal.SIGTERM]
    for pid in (task_pid, child_pid, polite_pid):
        assert not alive(pid)


def test_unrunnable_jobs_are_refused_in_one_sentence_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    docker = job(
        "d",
        group(
            "u",
            {
                "Name": "u",
                "Driver": "docker",
                "Config": {"image": "python:3.11", "command": "pipeline"},
            },
        ),
    )
    with pytest.raises(
        LocalRunError,
        match=r"^task u of unit u uses the docker driver, and the "
        r"local executor cannot run docker tasks without docker installed",
    ):
        LocalExecutor(docker, tmp_path / "d")
    missing = job(
        "m",
        group(
            "u", {"Name": "u", "Driver": "raw_exec", "Config": {"command": "no-such-program-here"}}
        ),
    )
    with pytest.raises(
        LocalRunError,
        match=r"^task u of unit u: command no-such-program-here is not found on PATH$",
    ):
        LocalExecutor(missing, tmp_path / "m")
    java = job("j", group("u", {"Name": "u", "Driver": "java", "Config": {}}))
    with pytest.raises(LocalRunError, match="uses the java driver"):
        LocalExecutor(java, tmp_path / "j")
    assert not (tmp_path / "d").exists()
    assert not (tmp_path / "m").exists()


def test_nomad_variable_secrets_come_from_the_environment_and_stay_out_of_the_state(
    tmp_path: Path,
) -> None:
    left, right = "[[asapo-pipelines-secret<", ">secret]]"
    line = (
        f'ASAPO_TOKEN={left} with nomadVar "nomad/jobs/p1" {right}{left} .asapo_token '
        f"{right}{left} end {right}\n"
    )
    code = (
        "import os; open(os.path.join(os.environ['NOMAD_ALLOC_DIR'], 'data', 'tok'), 'w')"
        ".write(os.environ['ASAPO_TOKEN'])"
    )
    secret_task = task(
        "u",
        code,
        Templates=[
            {
                "EmbeddedTmpl": line,
                "DestPath": "secrets/pipeline.env",
                "LeftDelim": left,
                "RightDelim": right,
                "Perms": "0600",
                "Envvars": True,
            }
        ],
    )
    payload = job("sec", group("u", secret_task))
    # without the variable in the environment the task cannot start, and the run says why
    missing = run(payload, tmp_path / "r0", environ={"PATH": os.environ["PATH"]})
    assert missing.status == "failed"
    assert missing.message == (
        "task u of group u reads ASAPO_TOKEN from the Nomad variable nomad/jobs/p1 (key "
        "asapo_token); set ASAPO_TOKEN in the environment to run it locally"
    )
    result = run(payload, tmp_path / "r", environ={**os.environ, "ASAPO_TOKEN": "s3cr3t-value"})
    assert result.status == "complete", result.message
    alloc = tmp_path / "r" / "alloc" / "u-0"
    assert (alloc / "alloc" / "data" / "tok").read_text() == "s3cr3t-value"
    secret_file = alloc / "u" / "secrets" / "pipeline.env"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert "s3cr3t-value" not in (tmp_path / "r" / "state.json").read_text()
