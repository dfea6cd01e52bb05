"""Acceptance: `pipeline worker` processes on the embedded transport, as a pipeline runs them."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest
from procs import own, read_stream, spawn, values, wait_ok, wait_until, worker_env, write_pipeline

from asapo_pipelines.testing.distributions import PluginProject, install
from asapo_pipelines.transport import open_transport

from helpers import run_pipeline

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The sample units installed as a real plugin distribution (entry point and all)."""
    root = tmp_path_factory.mktemp("plugin")
    source = (HERE / "sample_units.py").read_text()
    project = PluginProject(
        "asapo-worker-test-units",
        modules={"units.py": source},
        entry_points={"worker-tests": "asapo_worker_test_units.units"},
    ).write(root)
    target = root / "site"
    install([project], target)
    return worker_env(target)


def chain(count: int, tag_params: dict, *, retry: dict | None = None) -> dict:
    return {
        "numbers": {
            "unit": "test.numbers",
            "params": {"count": count},
            "outputs": {"numbers": "numbers"},
        },
        "tag": {
            "unit": "test.tag",
            "params": tag_params,
            "inputs": {"numbers": "numbers"},
            "outputs": {"tagged": "tagged"},
            "retry": retry or {"attempts": 0},
        },
        "sink": {
            "unit": "core.jsonl-sink",
            "params": {"path": "out/tagged.jsonl"},
            "inputs": {"messages": "tagged"},
        },
    }


def sink_numbers(directory: Path) -> list[int]:
    lines = (directory / "out" / "tagged.jsonl").read_text().splitlines()
    return [json.loads(line)["metadata"]["provenance"]["inputs"][0]["id"] for line in lines]


def test_processor_killed_ten_times_loses_and_duplicates_nothing(tmp_path, env):
    count = 2000
    pipeline = write_pipeline(tmp_path, chain(count, {"sleep": 0.002}))
    log = tmp_path / "workers.log"
    source = spawn(pipeline, "numbers", env, log=log)
    sink = spawn(pipeline, "sink", env, log=log)
    lease = ("--lease-seconds", "1.0")
    rng = random.Random(20261125)
    kills = 0
    processor = spawn(pipeline, "tag", env, *lease, log=log)
    while kills < 10:
        time.sleep(rng.uniform(0.3, 1.2))
        if processor.poll() is not None:
            break  # it finished before all kills were spent: the test below says so
        processor.send_signal(signal.SIGKILL)
        processor.wait()
        kills += 1
        processor = spawn(pipeline, "tag", env, *lease, log=log)
    assert kills == 10, "the processor finished before it was killed 10 times"
    for proc in (source, processor, sink):
        assert wait_ok(proc) == 0, log.read_text()[-3000:]
    # the processor's own output stream: every input exactly once, despite the redeliveries
    tagged = read_stream(tmp_path / "store", own("tagged"))
    ids = sorted(m.metadata["provenance"]["inputs"][0]["id"] for m in tagged)
    assert ids == list(range(1, count + 1))
    # and the sink at the end of the chain
    assert sorted(sink_numbers(tmp_path)) == list(range(1, count + 1))


def test_processor_raising_on_every_tenth_message(tmp_path, env):
    count = 500
    pipeline = write_pipeline(
        tmp_path, chain(count, {"fail_every": 10}, retry={"attempts": 1, "delay": 0.01})
    )
    procs = [spawn(pipeline, name, env) for name in ("numbers", "tag", "sink")]
    assert [wait_ok(p) for p in procs] == [0, 0, 0]
    errors = values(read_stream(tmp_path / "store", "accept.errors", "tag"))
    assert sorted(e["message"]["id"] for e in errors) == list(range(10, count + 1, 10))
    for record in errors:
        assert record["exception"] == "builtins.ValueError"
        assert record["attempts"] == 2
        assert record["traceback"].startswith("Traceback (most recent call last)")
        assert f"ValueError: cannot tag {record['message']['id']}" in record["traceback"]
    assert sorted(sink_numbers(tmp_path)) == [n for n in range(1, count + 1) if n % 10]
    status = run_pipeline("status", str(pipeline), "--json", env={"PYTHONPATH": env["PYTHONPATH"]})
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    tag = next(w for w in report["workers"] if w["instance"] == "tag")
    assert (tag["state"], tag["received"], tag["errors"]) == ("finished", count, count // 10)
    assert tag["processed"] == count - count // 10
    assert tag["retries"] == count // 10
    assert report["error_messages"] == {"tag": count // 10}


def test_late_and_out_of_order_messages_reach_the_sink(tmp_path, env):
    units = chain(0, {})
    del units["numbers"]
    pipeline = write_pipeline(tmp_path, units, streams={"numbers": {"external": True}})
    store = tmp_path / "store"
    transport = open_transport({"embedded": {"path": str(store)}})
    producer = transport.producer("numbers")
    on_time = [1, 2, 3, 5, 6, 9, 10]
    for n in on_time:
        producer.send("default", json.dumps({"n": n}).encode(), {"format": "json"}, id=n)
    producer.finish_stream("default", last_id=10)
    tag = spawn(pipeline, "tag", env)
    sink = spawn(pipeline, "sink", env)
    assert wait_until(lambda: len(read_stream(store, own("tagged"))) == len(on_time))
    time.sleep(1.0)
    assert tag.poll() is None, "the processor must wait for the ids that did not arrive"
    for n in (12, 8, 4, 11, 7):  # after the finish, and out of order
        producer.send("default", json.dumps({"n": n}).encode(), {"format": "json"}, id=n)
        time.sleep(0.05)
    assert wait_ok(tag) == 0
    assert wait_ok(sink) == 0
    assert sorted(sink_numbers(tmp_path)) == list(range(1, 13))
    producer.close()
    transport.close()


@pytest.mark.parametrize(
    ("kill_in", "written_before_restart"),
    # killed while processing the batch's 4th message: nothing of the batch written yet;
    # killed in the batch's flush: all its outputs written, none of its inputs acknowledged
    [("process", 16), ("flush", 32)],
)
def test_a_batch_interrupted_by_sigkill_is_redelivered_and_processed_exactly_once(
    tmp_path, env, kill_in, written_before_restart
):
    count = 50
    units = chain(0, {"kill_at": 20, "kill_in": kill_in})
    del units["numbers"], units["sink"]
    units["tag"]["batch"] = {"messages": 16, "wait": 1.0}
    pipeline = write_pipeline(tmp_path, units, streams={"numbers": {"external": True}})
    store = tmp_path / "store"
    feed_numbers(store, count)
    lease = ("--lease-seconds", "4")
    tag = spawn(pipeline, "tag", env, *lease)
    assert wait_ok(tag) == -signal.SIGKILL
    assert (tmp_path / "killed.marker").exists()
    # batches of 16: the first is committed, the second (17-32) was cut off by the kill
    written = read_stream(store, own("tagged"))
    assert len(written) == written_before_restart
    tag = spawn(pipeline, "tag", env, *lease)
    assert wait_ok(tag) == 0
    ids = [m.metadata["provenance"]["inputs"][0]["id"] for m in read_stream(store, own("tagged"))]
    assert sorted(ids) == list(range(1, count + 1))  # each input once: nothing lost, no double
    final = read_stream(store, "accept.status", "tag.0")[-1].metadata
    assert final["state"] == "finished"
    # the outputs the killed batch had written are recognised, not written again
    assert final["duplicates_skipped"] == written_before_restart - 16


def feed_numbers(store: Path, count: int) -> None:
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        for n in range(1, count + 1):
            p.send("default", json.dumps({"n": n}).encode(), {"format": "json"})
        p.finish_stream("default")


def test_sigterm_finishes_the_current_message_and_exits_zero(tmp_path, env):
    count = 300
    units = chain(0, {"sleep": 0.02})
    del units["numbers"], units["sink"]
    pipeline = write_pipeline(tmp_path, units, streams={"numbers": {"external": True}})
    store = tmp_path / "store"
    feed_numbers(store, count)
    tag = spawn(pipeline, "tag", env, "--lease-seconds", "600")
    assert wait_until(lambda: len(read_stream(store, own("tagged"))) >= 20)
    tag.send_signal(signal.SIGTERM)
    assert wait_ok(tag) == 0
    written = len(read_stream(store, own("tagged")))
    assert written < count
    final = read_stream(store, "accept.status", "tag.0")[-1].metadata
    assert final["state"] == "stopped"
    # everything taken was processed and acknowledged: with a lease of 600 s, a message left
    # unacknowledged would not come back to the restarted worker and this would hang
    assert final["processed"] == written
    tag = spawn(pipeline, "tag", env, "--lease-seconds", "600")
    assert wait_ok(tag) == 0
    ids = sorted(
        m.metadata["provenance"]["inputs"][0]["id"] for m in read_stream(store, own("tagged"))
    )
    assert ids == list(range(1, count + 1))


@pytest.mark.parametrize(
    ("unit", "params", "expected"),
    [
        (
            "test.needs-file",
            {"calibration": "missing-cal.h5"},
            "error: unit test.needs-file failed to start: calibration file missing-cal.h5 is "
            "missing (relative paths in a pipeline file are relative to its folder, {folder})",
        ),
        (
            "test.broken",
            {},
            "error: cannot import the runtime no_such_module_anywhere.runtime:Missing of unit "
            "test.broken: ModuleNotFoundError: No module named 'no_such_module_anywhere'",
        ),
    ],
)
def test_start_up_failure_is_one_sentence_and_non_zero(tmp_path, env, unit, params, expected):
    units = {
        "broken": {
            "unit": unit,
            "params": params,
            "inputs": {"numbers": "numbers"},
            "outputs": {"tagged": "tagged"},
        },
    }
    pipeline = write_pipeline(tmp_path, units, streams={"numbers": {"external": True}})
    result = run_pipeline("worker", str(pipeline), "broken", env={"PYTHONPATH": env["PYTHONPATH"]})
    # a configuration error: exit code 78 (EX_CONFIG), which a supervisor does not restart
    assert result.returncode == 78
    assert result.stderr.strip().splitlines() == [expected.format(folder=tmp_path)]


def test_a_worker_killed_outright_is_counted_for_what_it_committed(tmp_path, env):
    """Counters used to be published every `--status-interval` only: a worker killed (SIGKILL,
    OOM) between two records was counted short of what it had done, in `pipeline status`, the
    viewer and the run's counts, although its outputs were written and acknowledged. A commit
    now publishes within `COMMIT_GAP`; the interval here is far longer than the test."""
    count = 5
    units = chain(0, {})
    del units["numbers"], units["sink"]
    pipeline = write_pipeline(tmp_path, units, streams={"numbers": {"external": True}})
    store = tmp_path / "store"
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        for n in range(1, count + 1):  # an open stream: the worker waits for more
            p.send("default", json.dumps({"n": n}).encode(), {"format": "json"})
    tag = spawn(pipeline, "tag", env, "--status-interval", "3600")
    try:
        assert wait_until(lambda: len(read_stream(store, own("tagged"))) == count)
        assert wait_until(
            lambda: read_stream(store, "accept.status", "tag.0")[-1].metadata["processed"] == count,
            timeout=10,
        ), read_stream(store, "accept.status", "tag.0")[-1].metadata
    finally:
        tag.send_signal(signal.SIGKILL)
        tag.wait()
    last = read_stream(store, "accept.status", "tag.0")[-1].metadata
    assert (last["processed"], last["outputs"]) == (count, count)


def test_a_slow_worker_killed_outright_is_counted_for_every_commit(tmp_path, env):
    """A slow unit (a NeXus writer: one entry per commit) killed outright within `COMMIT_GAP`
    of its last record was counted short of the commits made since: its restart went on from
    that record, and the run said `writer 38` for the file's 40 entries (an outside review).
    Commits that far apart are now published before the next message is taken."""
    count = 8
    marker = tmp_path / "killed.marker"
    units = chain(0, {"sleep": 0.05, "kill_at": 6, "kill_marker": str(marker)})
    del units["numbers"], units["sink"]
    pipeline = write_pipeline(tmp_path, units, streams={"numbers": {"external": True}})
    store = tmp_path / "store"
    feed_numbers(store, count)
    # killed while processing number 6, numbers 1-5 committed within the last 0.25 s
    tag = spawn(pipeline, "tag", env, "--status-interval", "3600")
    assert wait_ok(tag) == -signal.SIGKILL
    assert marker.exists()
    tag = spawn(pipeline, "tag", env, "--status-interval", "3600")
    assert wait_ok(tag) == 0
    ids = [m.metadata["provenance"]["inputs"][0]["id"] for m in read_stream(store, own("tagged"))]
    assert sorted(ids) == list(range(1, count + 1))
    records = [m.metadata for m in read_stream(store, "accept.status", "tag.0")]
    final = records[-1]
    assert (final["state"], final["processed"]) == ("finished", count)
    # the restarted worker's first record, sent as it starts: it has handled nothing yet, so
    # its rate is 0, not the predecessor's carried count over the moment since it started
    # (the live view showed 11,070 messages/s for a worker still importing its runtime)
    first = next(r for r in records if r["pid"] == final["pid"])
    assert first["processed"] > 0  # carried
    assert first["rate"] == 0.0, first


def test_a_quiet_worker_after_quick_commits_is_not_taken_for_a_killed_one(tmp_path, env):
    """Records published after commits come closer together than the status interval; the
    viewer judged a worker silent (killed, "restarting") after 2.5 of its records' least gap,
    so a worker quiet for a second after its first batch showed "restarting". Each record now
    names its interval, and the viewer waits for that beat."""
    from asapo_pipelines.viewer.collector import ReplicaState

    units = chain(0, {})
    del units["numbers"], units["sink"]
    pipeline = write_pipeline(tmp_path, units, streams={"numbers": {"external": True}})
    store = tmp_path / "store"
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        for n in (1, 2, 3):  # an open stream: the worker waits for more
            p.send("default", json.dumps({"n": n}).encode(), {"format": "json"})
    tag = spawn(pipeline, "tag", env, "--status-interval", "2")
    try:
        assert wait_until(lambda: len(read_stream(store, own("tagged"))) == 3)
        assert wait_until(lambda: len(read_stream(store, "accept.status", "tag.0")) >= 2)
        records = [m.metadata for m in read_stream(store, "accept.status", "tag.0")]
        replica = ReplicaState()
        for record in records:
            replica.add(dict(record))
        quiet = float(records[-1]["time"]) + 1.5  # well within one 2 s beat
        assert replica.state(quiet) == "running", [r["time"] for r in records]
        assert replica.state(float(records[-1]["time"]) + 6.0) == "restarting"
    finally:
        tag.send_signal(signal.SIGKILL)
        tag.wait()
