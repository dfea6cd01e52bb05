"""Nomad's restart rules decided step by step, task-level policies, and the live table."""

from __future__ import annotations

import io
import random

from local_jobs import NS, group, job, task
from rich.console import Console

from asapo_pipelines.launchplan.restart import RestartPolicy, RestartTracker
from asapo_pipelines.local.job import read_job
from asapo_pipelines.local.live import LiveView, status_table


def tracker(mode: str = "fail", *, on_success: bool = False, attempts: int = 2) -> RestartTracker:
    policy = RestartPolicy(attempts=attempts, interval=60.0, delay=10.0, mode=mode)
    return RestartTracker(policy, restart_on_success=on_success, now=0.0, rng=random.Random(1))


def test_attempts_within_the_interval_then_fail() -> None:
    t = tracker()
    first, second = t.on_exit(1, now=1.0), t.on_exit(1, now=12.0)
    assert (first.action, second.action) == ("restart", "restart")
    # Delay plus Nomad's jitter of up to 25 %
    assert 10.0 <= first.delay <= 12.5
    assert t.on_exit(1, now=25.0).action == "fail"


def test_a_new_interval_forgets_earlier_restarts() -> None:
    t = tracker()
    assert t.on_exit(1, now=1.0).action == "restart"
    assert t.on_exit(1, now=12.0).action == "restart"
    # 61 s after the first start the interval is over: counting starts afresh
    assert t.on_exit(1, now=61.0).action == "restart"
    assert t.on_exit(1, now=72.0).action == "restart"
    assert t.on_exit(1, now=83.0).action == "fail"


def test_mode_delay_waits_for_the_end_of_the_interval() -> None:
    t = tracker("delay")
    t.on_exit(1, now=1.0)
    t.on_exit(1, now=12.0)
    third = t.on_exit(1, now=25.0)
    assert third.action == "restart"
    assert third.delay == 35.0  # until 60 s after the interval began


def test_success_completes_batch_tasks_and_restarts_service_tasks() -> None:
    assert tracker(on_success=False).on_exit(0, now=1.0).action == "complete"
    assert tracker(on_success=True).on_exit(0, now=1.0).action == "restart"
    assert tracker(attempts=0).on_exit(1, now=1.0).action == "fail"


def test_task_restart_policy_overrides_its_groups() -> None:
    own = task("b", "pass", RestartPolicy={"Attempts": 0})
    spec = read_job(job("t", group("g", task("g", "pass"), own, Attempts=4, Delay=2 * NS)))
    main, other = spec.groups[0].tasks
    assert (main.restart.attempts, main.restart.delay) == (4, 2.0)  # type: ignore[union-attr]
    assert (other.restart.attempts, other.restart.delay) == (0, 2.0)  # type: ignore[union-attr]


STATE = {
    "job": "p65",
    "type": "service",
    "status": "running",
    "started": 100.0,
    "finished": 160.0,
    "units": [
        {
            "unit": "scans[0]",
            "group": "scans",
            "index": 0,
            "task": "scans",
            "lifecycle": "main",
            "state": "running",
            "pid": 4242,
            "restarts": 1,
            "exit_codes": [-9],
        },
        {
            "unit": "scans[0]",
            "group": "scans",
            "index": 0,
            "task": "install-env",
            "lifecycle": "prestart",
            "state": "complete",
            "pid": None,
            "restarts": 0,
            "exit_codes": [0],
        },
        {
            "unit": "merge[0]",
            "group": "merge",
            "index": 0,
            "task": "merge",
            "lifecycle": "main",
            "state": "restarting",
            "pid": None,
            "restarts": 2,
            "exit_codes": [3, 3],
        },
    ],
}


def render(table: object) -> str:
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(table)
    return out.getvalue()


def test_table_shows_state_restarts_exit_codes_and_the_readers_counters() -> None:
    calls = []

    def reader() -> dict:
        calls.append(1)
        return {"scans[0]": {"processed": 1234, "rate": 56.78, "errors": 2}}

    view = LiveView(Console(file=io.StringIO()), reader)
    text = render(status_table(STATE, view.read_counters()))
    assert "job p65 (service): running, 60s" in text
    scans = next(line for line in text.splitlines() if "scans[0]" in line and "│ scans " in line)
    cells = [cell.strip() for cell in scans.split("│")[1:-1]]
    assert cells == ["scans[0]", "scans", "running", "4242", "1", "sig9", "1234", "56.8/s", "2"]
    for word in ("install-env (prestart)", "complete", "restarting", "3,3"):
        assert word in text
    merge = next(line for line in text.splitlines() if "merge[0]" in line)
    assert merge.rstrip(" │").endswith("-")  # no counters for merge
    # the reader is asked at most once per interval, whatever the refresh rate
    view.read_counters()
    assert len(calls) == 1


def test_a_failing_reader_shows_dashes_and_does_not_stop_the_table() -> None:
    def broken() -> dict:
        raise ConnectionError("status stream unavailable")

    view = LiveView(Console(file=io.StringIO()), broken)
    text = render(status_table(STATE, view.read_counters()))
    assert "1234" not in text
    assert "scans[0]" in text


def test_live_counters_are_read_off_the_supervisors_thread() -> None:
    import threading

    readers: list[str] = []
    got = threading.Event()

    def reader() -> dict:
        readers.append(threading.current_thread().name)
        got.set()
        return {"scans[0]": {"processed": 7, "rate": 1.0, "errors": 0}}

    terminal = Console(file=io.StringIO(), force_terminal=True, width=160)
    with LiveView(terminal, reader, interval=0.05) as view:
        assert got.wait(10)
        view.update(STATE)
        view.update(STATE)
    assert readers
    assert threading.current_thread().name not in readers
    assert "counters" in readers
    assert view.read_counters(force=True)["scans[0]"]["processed"] == 7


def test_a_running_worker_still_importing_its_unit_shows_loading() -> None:
    # the worker's own latest record (same pid) says "loading": its runtime is being imported
    loading = {"scans[0]": {"state": "loading", "pid": 4242, "processed": 0}}
    scans = next(
        line
        for line in render(status_table(STATE, loading)).splitlines()
        if "scans[0]" in line and "│ scans " in line
    )
    assert [cell.strip() for cell in scans.split("│")[1:-1]][2] == "loading"
    # a record of an earlier process (another pid) or a ready worker: the supervisor's state
    for row in ({"state": "loading", "pid": 1}, {"state": "running", "pid": 4242}):
        text = render(status_table(STATE, {"scans[0]": row}))
        line = next(x for x in text.splitlines() if "scans[0]" in x and "│ scans " in x)
        assert [cell.strip() for cell in line.split("│")[1:-1]][2] == "running"


def test_the_last_error_quoted_is_an_error_not_a_workers_info_line(tmp_path) -> None:
    """`failed for good: ...; its last error: X` quoted a worker's last line whatever it said:
    "sink[0] INFO sink finished: 20 received, 20 processed, 0 errors" read as the error."""
    from asapo_pipelines.local.logs import RotatingLog

    log = RotatingLog(tmp_path, "sink-0", "stderr", max_files=2, max_mb=1)
    log.write(b"2026-12-02 10:00:01,123 sink[0] INFO sink finished: 20 processed, 0 errors\n")
    assert log.last_error() == ""
    log.write(b"Traceback (most recent call last):\nValueError: the scan is empty\n")
    log.write(b"2026-12-02 10:00:02,001 sink[0] DEBUG closing\n")
    assert log.last_error() == "ValueError: the scan is empty"
    log.write(b"error: unit test.sink failed to start: no such file\n")
    log.write(b"2026-12-02 10:00:03,001 sink[0] INFO bye\n")
    assert log.last_error() == "unit test.sink failed to start: no such file"
