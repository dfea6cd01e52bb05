"""`pipeline run/status/logs/stop` on compiled jobs (`*.json`), through the real command."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

from local_jobs import (
    NS,
    PIPELINE,
    alive,
    cli_env,
    group,
    job,
    pipeline,
    read_state,
    task,
    wait_for,
    write_job,
)

from leaked_processes import stop_run

CHATTY = (
    "import sys\n"
    "line = ('x' * 99 + '\\n').encode()\n"
    "for i in range(26000):\n"  # 2.6 MB: three files of 1 MB, the first one dropped
    "    sys.stdout.buffer.write(f'{i:08d}'.encode() + line[8:])\n"
    "sys.stdout.flush()\n"
    "print('to stderr', file=sys.stderr)\n"
)


def test_batch_run_prints_a_summary_exits_0_and_its_rotated_logs_are_readable(
    tmp_path: Path,
) -> None:
    chatty = task("chatty", CHATTY, LogConfig={"MaxFiles": 2, "MaxFileSizeMB": 1})
    quiet = task("quiet", "print('quiet done')")
    job_file = write_job(
        tmp_path / "p.json", job("p1", group("chatty", chatty), group("quiet", quiet))
    )
    done = pipeline("run", str(job_file))
    assert done.returncode == 0, done.stderr
    assert "job p1 completed: every task exited 0" in done.stdout
    assert "chatty[0]" in done.stdout
    assert "quiet[0]" in done.stdout
    logs_dir = tmp_path / ".pipeline-data" / "runs" / "p1" / "alloc" / "chatty-0" / "alloc" / "logs"
    kept = sorted(p.name for p in logs_dir.glob("chatty.stdout.*"))
    assert kept == ["chatty.stdout.1", "chatty.stdout.2"]  # MaxFiles 2: the oldest is gone
    assert all(p.stat().st_size <= 1024 * 1024 for p in logs_dir.glob("chatty.stdout.*"))
    shown = pipeline("logs", str(job_file), "chatty", "--stdout")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[-1].startswith("00025999")
    assert len(shown.stdout) == 2_600_000 - 1024 * 1024
    # file 0 (the first MiB) is gone: the output starts inside line 10485 (100-byte lines)
    assert lines[1].startswith("00010486")
    assert pipeline("logs", str(job_file), "chatty", "--stderr").stdout == "to stderr\n"
    # both streams by default, both on stdout: the unit's stdout, then its stderr
    both = pipeline("logs", str(job_file), "chatty")
    assert both.stdout == shown.stdout + "to stderr\n"
    assert both.stderr == ""
    assert pipeline("logs", str(job_file), "quiet").stdout == "quiet done\n"
    missing = pipeline("logs", str(job_file), "nope")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: job p1 has no unit nope; its units are chatty, quiet"


def test_failed_batch_run_exits_non_zero_with_one_sentence(tmp_path: Path) -> None:
    crash = task("merge", "import sys; sys.exit(7)")
    job_file = write_job(tmp_path / "p.json", job("p2", group("merge", crash, Attempts=1, Delay=0)))
    done = pipeline("run", str(job_file))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: merge[0] failed for good: it exited with code 7 after 1 restart and exceeded "
        'the 1 restart attempt allowed in 1m and the restart mode is "fail" (Attempts 1 in '
        "Interval 1m, Delay 0s, Mode fail)"
    )
    status = pipeline("status", str(job_file), "--json")
    state = json.loads(status.stdout)
    assert state["status"] == "failed"
    assert state["units"][0]["exit_codes"] == [7, 7]


def test_docker_task_without_docker_is_one_clear_sentence(tmp_path: Path) -> None:
    docker = {"Name": "u", "Driver": "docker", "Config": {"image": "python:3.11", "args": []}}
    job_file = write_job(tmp_path / "p.json", job("p3", group("u", docker)))
    done = pipeline("run", str(job_file), PATH=os.path.dirname(PIPELINE))
    assert done.returncode == 1
    assert done.stderr.startswith(
        "error: task u of unit u uses the docker driver, and the local executor cannot run "
        "docker tasks without docker installed"
    )
    assert "Traceback" not in done.stderr


SERVICE = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "data = os.path.join(os.environ['NOMAD_ALLOC_DIR'], 'data')\n"
    "open(os.path.join(data, f'child.{os.environ[\"NOMAD_TASK_NAME\"]}'), 'w')"
    ".write(str(child.pid))\n"
    "print('serving', os.environ['NOMAD_ALLOC_INDEX'], 'token' in os.environ.get('MY_T', ''),"
    " flush=True)\n"
    "time.sleep(600)\n"
)


def _service_job() -> dict:
    return job(
        "svc",
        group("source", task("source", SERVICE, Env={"MY_T": "has-token"}), count=2),
        group("sink", task("sink", SERVICE, KillTimeout=NS)),
        type="service",
    )


def _pids(run_dir: Path) -> list[int]:
    state = read_state(run_dir) or {}
    pids = [u["pid"] for u in state.get("units", []) if u["pid"]]
    for child in run_dir.glob("alloc/*/alloc/data/child.*"):
        pids.append(int(child.read_text()))
    return pids


def _all_running(run_dir: Path) -> list[int] | None:
    state = read_state(run_dir)
    if not state or len(list(run_dir.glob("alloc/*/alloc/data/child.*"))) < 3:
        return None
    if any(u["state"] != "running" for u in state["units"]):
        return None
    return _pids(run_dir)


def test_ctrl_c_stops_every_task_and_leaves_no_process_behind(tmp_path: Path) -> None:
    job_file = write_job(tmp_path / "svc.json", _service_job())
    run_dir = tmp_path / ".pipeline-data" / "runs" / "svc"
    proc = subprocess.Popen(
        [PIPELINE, "run", str(job_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        pids = wait_for(lambda: _all_running(run_dir), what="all tasks running")
        assert len(pids) == 6  # 3 tasks and a child each
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        stop_run(proc, job_file, env=cli_env())
    assert proc.returncode == 130, err
    assert "stopping all tasks (SIGINT)" in out
    assert "job svc stopped (SIGINT)" in out
    for pid in pids:
        assert not alive(pid), pid
    state = read_state(run_dir)
    assert state is not None
    assert state["status"] == "stopped"
    assert {u["state"] for u in state["units"]} == {"stopped"}


def test_detach_status_logs_stop_round_trip(tmp_path: Path) -> None:
    job_file = write_job(tmp_path / "svc.json", _service_job())
    run_dir = tmp_path / "data" / "runs" / "svc"
    started = pipeline("run", str(job_file), "--detach", "--data-dir", str(tmp_path / "data"))
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("job svc runs in the background (supervisor pid ")
    state = read_state(run_dir)
    assert state is not None
    supervisor = state["pid"]
    assert alive(supervisor)
    try:
        pids = wait_for(lambda: _all_running(run_dir), what="all tasks running")
        again = pipeline("run", str(job_file), "--detach", "--data-dir", str(tmp_path / "data"))
        assert again.returncode == 1
        assert again.stderr.strip() == (
            f"error: job svc is already running locally (supervisor pid {supervisor}); stop it "
            f"first with `pipeline stop --run-dir {run_dir}`"
        )
        shown = pipeline("status", str(job_file), "--data-dir", str(tmp_path / "data"))
        assert shown.returncode == 0, shown.stderr
        assert "job svc (service): running" in shown.stdout
        for line in ("source[0]", "source[1]", "sink[0]"):
            row = next(r for r in shown.stdout.splitlines() if line in r)
            assert "running" in row
        listed = json.loads(pipeline("status", "--run-dir", str(run_dir), "--json").stdout)
        assert [u["unit"] for u in listed["units"]] == ["source[0]", "source[1]", "sink[0]"]
        assert {u["pid"] for u in listed["units"]} <= set(pids)
        log = pipeline("logs", "--run-dir", str(run_dir), "source", "--replica", "1")
        assert log.stdout == "serving 1 True\n"
        # the secret-looking value reached the task but no command printed the environment
        assert "has-token" not in shown.stdout + log.stdout + started.stdout
        # the stop command the refusal named stops it, wherever it is typed
        suggested = shlex.split(again.stderr.split("`")[1])
        assert suggested[:2] == ["pipeline", "stop"]
        stopped = pipeline(*suggested[1:], cwd=tmp_path.parent)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == "job svc stopped (SIGTERM)"
    finally:
        if alive(supervisor):
            os.kill(supervisor, signal.SIGKILL)
    assert not alive(supervisor)
    for pid in pids:
        assert not alive(pid), pid
    final = json.loads(pipeline("status", "--run-dir", str(run_dir), "--json").stdout)
    assert final["status"] == "stopped"
    assert all(u["pid"] is None and u["state"] == "stopped" for u in final["units"])
    twice = pipeline("stop", "--run-dir", str(run_dir))
    assert twice.stdout.strip() == "job svc is not running (stopped)"


def test_follow_prints_output_as_it_comes_until_the_run_ends(tmp_path: Path) -> None:
    slow = task(
        "ticker",
        "import time\nfor i in range(5):\n    print('tick', i, flush=True)\n    time.sleep(0.3)\n",
    )
    job_file = write_job(tmp_path / "t.json", job("tick", group("ticker", slow)))
    started = pipeline("run", str(job_file), "--detach")
    assert started.returncode == 0, started.stderr
    followed = pipeline("logs", str(job_file), "ticker", "--follow")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == "".join(f"tick {i}\n" for i in range(5))
    run_dir = tmp_path / ".pipeline-data" / "runs" / "tick"
    state = wait_for(
        lambda: (read_state(run_dir) or {}).get("status") == "complete" and read_state(run_dir)
    )
    assert state["units"][0]["exit_codes"] == [0]


def test_stop_after_the_supervisor_was_killed_cleans_up_its_tasks(tmp_path: Path) -> None:
    job_file = write_job(tmp_path / "svc.json", _service_job())
    run_dir = tmp_path / ".pipeline-data" / "runs" / "svc"
    started = pipeline("run", str(job_file), "--detach")
    assert started.returncode == 0, started.stderr
    pids = wait_for(lambda: _all_running(run_dir), what="all tasks running")
    supervisor = (read_state(run_dir) or {})["pid"]
    tasks = [u["pid"] for u in (read_state(run_dir) or {})["units"]]
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not alive(supervisor), what="the supervisor to die")
    lost = json.loads(pipeline("status", str(job_file), "--json").stdout)
    assert lost["status"] == "lost"
    stopped = pipeline("stop", str(job_file))
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped after its supervisor was lost" in stopped.stdout
    assert len(pids) == 6
    # the tasks it killed, named (each leads its process group: its children went with it)
    named = re.search(r"\(pids ([\d, ]+)\)", stopped.stdout)
    assert named is not None, stopped.stdout
    assert sorted(map(int, named[1].split(", "))) == sorted(tasks), stopped.stdout
    for pid in pids:  # the tasks and the children they started
        assert not alive(pid), pid


def test_status_logs_stop_without_a_local_run_are_one_sentence(tmp_path: Path) -> None:
    job_file = write_job(tmp_path / "never.json", job("never", group("u", task("u", "pass"))))
    # no local run: the command hands over to the Nomad side when installed (which cannot
    # reach a cluster here) or says there is no run; either way one sentence, no traceback
    for args in (("status", str(job_file)), ("logs", str(job_file), "u"), ("stop", str(job_file))):
        done = pipeline(*args, NOMAD_ADDR="http://127.0.0.1:9")
        assert done.returncode != 0, args
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith("error: "), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    missing = pipeline("status", "--run-dir", str(tmp_path / "nothing"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: no local run recorded in {tmp_path / 'nothing'}"


def test_live_table_on_a_terminal(tmp_path: Path) -> None:
    import pty
    import select

    ticker = task(
        "ticker",
        "import os, time\n"
        "time.sleep(1.5)\n"
        "open(os.path.join(os.environ['NOMAD_ALLOC_DIR'], 'data', 'done'), 'w')\n",
    )
    job_file = write_job(tmp_path / "t.json", job("live", group("ticker", ticker, count=2)))
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [PIPELINE, "run", str(job_file)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=cli_env(TERM="xterm", COLUMNS="120", LINES="40"),
        close_fds=True,
    )
    os.close(follower)
    seen = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
    finally:
        proc.wait(timeout=30)
        os.close(leader)
    assert proc.returncode == 0
    text = seen.decode(errors="replace")
    # redrawn in place while running (cursor movements), with the units' live state
    assert "\x1b[" in text
    assert "running" in text
    assert "ticker[1]" in text
    assert "job live completed: every task exited 0" in text


def test_unreadable_jobs_are_one_sentence(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    done = pipeline("run", str(broken))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot read the compiled job {broken}: ")
    unsafe = write_job(tmp_path / "unsafe.json", {"Job": {"ID": "../../etc"}})
    done = pipeline("run", str(unsafe))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f'error: {unsafe} is not a compiled Nomad job ({{"Job": {{"ID": ...}}}})'
    )
    done = pipeline("run", str(tmp_path / "missing.json"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: no such file: {tmp_path / 'missing.json'}"


#: a unit that logs as a worker does (on stderr) and prints on stdout, each line written in two
#: halves a moment apart: the halves of one stream's line must not be cut by the other's
HALVES = (
    "import sys, time\n"
    "for i in range(12):\n"
    "    out, err = sys.stdout, sys.stderr\n"
    "    out.write(f'result {i} '); out.flush(); err.write(f'WARNING step {i} '); err.flush()\n"
    "    time.sleep(0.1)\n"
    "    out.write('done\\n'); out.flush(); err.write('slow\\n'); err.flush()\n"
)


def _piped(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`command` through a real shell pipe, as a user types it."""
    return subprocess.run(
        ["sh", "-c", command], cwd=cwd, capture_output=True, text=True, env=cli_env(), timeout=90
    )


def test_logs_go_to_stdout_so_that_grep_finds_what_a_worker_logged(tmp_path: Path) -> None:
    """`pipeline logs FILE UNIT | grep X` found nothing: the unit's stderr, where workers log,
    was printed on stderr. Its lines are on stdout now, with its stdout's; followed as the run
    goes on, each line whole; and the command's own errors stay on stderr."""
    job_file = write_job(tmp_path / "p.json", job("p9", group("halves", task("halves", HALVES))))
    started = pipeline("run", str(job_file), "--detach")
    assert started.returncode == 0, started.stdout + started.stderr
    run_dir = tmp_path / ".pipeline-data" / "runs" / "p9"
    logs = run_dir / "alloc" / "halves-0" / "alloc" / "logs"
    wait_for(lambda: (logs / "halves.stderr.0").exists(), what="the unit started")
    followed = _piped(f"{PIPELINE} logs {job_file} halves --follow | grep -v '^result'", tmp_path)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == [f"WARNING step {i} slow" for i in range(12)]
    assert followed.stderr == ""
    ended = wait_for(lambda: (read_state(run_dir) or {}).get("status") != "running", what="end")
    assert ended
    found = _piped(
        f"{PIPELINE} logs {job_file} halves 2>/dev/null | grep -c 'WARNING step'", tmp_path
    )
    assert found.stdout.strip() == "12", found.stdout + found.stderr
    shown = pipeline("logs", str(job_file), "halves")
    assert shown.stdout == "".join(f"result {i} done\n" for i in range(12)) + "".join(
        f"WARNING step {i} slow\n" for i in range(12)
    )
    wrong = _piped(f"{PIPELINE} logs {job_file} nope | wc -c", tmp_path)
    assert wrong.stdout.strip() == "0"
    assert "error: job p9 has no unit nope" in wrong.stderr
