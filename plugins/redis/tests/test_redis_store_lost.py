"""A Redis restarted under a running pipeline (`pipeline run` on a real redis-server).

With its data (the production setting: an append-only file), the workers ride it out: each
file reaches the sink once, the run ends 0 and no unit was restarted. Before, every worker died
on the broken connection and each restart cost its unit one of its restart attempts.

Without its data (restarted empty, or FLUSHALL), a worker must not go on: stream ids start
again at 1 there, and outputs keyed by input ids were taken for ones the sink already held
(skipped as duplicates, in silence). The store id the first producer wrote is gone: every
worker ends with exit 78 and one sentence saying what to do, and nothing was skipped.

From an older RDB snapshot (no append-only file), a Redis keeps its store id but not the writes
since: messages sent and acknowledged after the snapshot were lost, and acknowledgements undone
delivered them again, in silence. The store counts its writes: a worker that saw a count the
store no longer reaches ends with exit 78 and its own sentence."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines_redis.testing import RedisServer, copy_chain

from leaked_processes import stop_run

PIPELINE = Path(sys.executable).with_name("pipeline")
LOST = "lost the data of this pipeline's store"
BEHIND = "came back with older data than this worker had seen"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(ASAPO_PIPELINES_CACHE_DIR=str(tmp / "cache"), COLUMNS="200")
    return env


def _chain(work: Path, server: RedisServer, *, watch: bool) -> Path:
    """files -> identity -> jsonl sink on Redis, each message committed on its own."""
    doc = copy_chain(
        "restart", server.url, "incoming", "out/copied.jsonl", watch=watch, key_prefix="restart"
    )
    path = work / "restart.pipeline.yaml"
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return path


def _write_files(directory: Path, start: int, stop: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(start, stop):
        tmp = directory / f".f{i:05d}.tmp"
        tmp.write_text(f"file {i}\n")
        tmp.rename(directory / f"f{i:05d}.txt")


def _sink_names(work: Path) -> Counter[str]:
    """How often each input file reached the sink (complete lines only)."""
    try:
        text = (work / "out" / "copied.jsonl").read_text()
    except FileNotFoundError:
        return Counter()
    return Counter(
        json.loads(line)["metadata"]["name"] for line in text.splitlines() if line.endswith("}")
    )


def _wait_for(check: Callable[[], bool], run: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 120
    while not check():
        assert run.poll() is None, f"the run ended before {what}: {run.communicate()[1]}"
        assert time.monotonic() < deadline, f"no {what} within 120 s"
        time.sleep(0.1)


def _start(work: Path, file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(PIPELINE), "run", str(file), "--fresh"],
        cwd=work,
        env=_env(work),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(
    run: subprocess.Popen[str], work: Path, file: Path, timeout: float = 180
) -> tuple[str, str]:
    """The run's output once it ended; one still going after `timeout` is stopped (`pipeline
    stop`, its return code then says so)."""
    try:
        return run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        return stop_run(run, file, env=_env(work), cwd=work)


def _units(work: Path) -> dict[str, dict[str, Any]]:
    """unit -> its task's record in the supervisor's state file (restarts, exit codes)."""
    [state_file] = (work / ".pipeline-data" / "runs").glob("*/state.json")
    return {u["group"]: u for u in json.loads(state_file.read_text())["units"]}


def _restarts(work: Path) -> dict[str, int]:
    """unit -> how often its task was restarted in the run."""
    return {group: int(unit["restarts"]) for group, unit in _units(work).items()}


def _logs(work: Path) -> str:
    """Everything the run's workers logged (stdout and stderr of every task)."""
    return "\n".join(
        p.read_text(errors="replace")
        for p in sorted((work / ".pipeline-data" / "runs").glob("*/alloc/*/alloc/logs/*"))
    )


def test_workers_ride_out_a_redis_restarted_with_its_data(tmp_path: Path) -> None:
    # enough that the run is still going once Redis has written its file and stopped: on
    # a quiet machine 300 were all through the chain before the stop took effect
    files = 2000
    _write_files(tmp_path / "incoming", 0, files)
    with RedisServer(tmp_path / "redis") as server:
        file = _chain(tmp_path, server, watch=False)
        run = _start(tmp_path, file)
        try:
            _wait_for(lambda: len(_sink_names(tmp_path)) >= 30, run, "the first outputs")
            server.stop(signal.SIGTERM)  # writes its append-only file, drops every connection
            assert len(_sink_names(tmp_path)) < files, "the run ended before the restart"
            time.sleep(1.0)
            server.start()  # same port, same files: the store as it was
        finally:
            _, err = _finish(run, tmp_path, file)
    assert run.returncode == 0, err
    names = _sink_names(tmp_path)
    assert len(names) == files
    assert set(names.values()) == {1}
    # ridden out: no worker ended on the restart (each such end costs a restart attempt)
    assert _restarts(tmp_path) == {"files": 0, "identity": 0, "sink": 0}, err


def _restart_empty(server: RedisServer) -> None:
    """Redis back without its data: its append-only file lost (no persistence, a new disk)."""
    server.stop(signal.SIGTERM)
    shutil.rmtree(server.dir / "appendonlydir", ignore_errors=True)
    (server.dir / "dump.rdb").unlink(missing_ok=True)
    server.start()


def _flushall(server: RedisServer) -> None:
    """Redis emptied under the workers, no connection broken."""
    import redis

    client = redis.Redis.from_url(server.url)
    client.flushall()
    client.close()


@pytest.mark.parametrize("empty", [_restart_empty, _flushall], ids=["restarted-empty", "flushall"])
def test_a_redis_that_lost_its_data_ends_the_run_in_one_sentence_and_skips_nothing(
    tmp_path: Path, empty: Callable[[RedisServer], None]
) -> None:
    first = 10
    _write_files(tmp_path / "incoming", 0, first)
    with RedisServer(tmp_path / "redis") as server:
        file = _chain(tmp_path, server, watch=True)
        run = _start(tmp_path, file)
        try:
            _wait_for(lambda: len(_sink_names(tmp_path)) >= first, run, "the first files")
            empty(server)
            # files that come after: on an empty Redis their ids start again at 1
            _write_files(tmp_path / "incoming", first, 2 * first)
            out, err = _finish(run, tmp_path, file, timeout=60)
        finally:
            stop_run(run, file, env=_env(tmp_path), cwd=tmp_path)
    _assert_ended_in_one_sentence(
        tmp_path, run, out, err, f"Redis at 127.0.0.1:{server.port} {LOST}"
    )
    # every file the sink holds is one of those it was given, and the later ones were not
    # written as duplicates of earlier ids: each line's name is its own file
    assert set(_sink_names(tmp_path)) <= {f"f{i:05d}.txt" for i in range(2 * first)}


def _assert_ended_in_one_sentence(
    work: Path, run: subprocess.Popen[str], out: str, err: str, sentence: str
) -> None:
    """The workers that met the store ended with 78 (not restarted: a restart meets the same
    store), so the run failed, saying why; the sink holds no file twice and skipped none."""
    assert run.returncode == 1, (out, err)
    exits = {group: unit["exit_codes"] for group, unit in _units(work).items()}
    assert [78] in exits.values(), exits
    # the others met it too, or were stopped after that failure (which unit meets it first is
    # a race; a source waiting for files ends cleanly on SIGTERM, 0): none was restarted
    assert all(codes in ([78], [-signal.SIGTERM], [0]) for codes in exits.values()), exits
    assert "(exit code 78: a restart cannot fix it, so it was not restarted)" in out
    assert sentence in err
    assert "`pipeline run --fresh FILE` processes every input again" in err
    assert "Traceback" not in err
    names = _sink_names(work)
    # nothing written twice, and nothing taken for a file the sink already held
    assert set(names.values()) == {1}, names
    assert "skipped message" not in _logs(work)


def _every_call_refused(transport: Any, producer: Any, consumer: Any, said: str) -> None:
    """Once the store is lost, every later send, finish, acknowledgement and new producer
    raises `StoreLost` with the sentence `said`: nothing more is read or written."""
    from asapo_pipelines_redis.transport import StoreLost

    for call in (
        lambda: producer.send("s", b"after", None),
        lambda: producer.finish_stream("s"),
        lambda: consumer.acknowledge("s", 1),
        lambda: transport.producer("other"),
    ):
        with pytest.raises(StoreLost, match=re.escape(said)):
            call()


def _older_snapshot(server: RedisServer) -> Path:
    """A copy of the store as it is now (SAVE: an RDB snapshot), for `_restart_from`."""
    import redis

    client = redis.Redis.from_url(server.url)
    client.save()
    client.close()
    kept = server.dir.parent / f"{server.dir.name}-snapshot.rdb"
    shutil.copyfile(server.dir / "dump.rdb", kept)
    return kept


def _restart_from(server: RedisServer, snapshot: Path) -> None:
    """Redis stopped without saving and started again from an older snapshot (no AOF)."""
    import redis

    client = redis.Redis.from_url(server.url)
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(nosave=True)
    client.close()
    server.stop()  # reaps the process SHUTDOWN ended
    shutil.copyfile(snapshot, server.dir / "dump.rdb")
    server.start()


#: Redis as many run it: RDB snapshots only (here taken by hand), no append-only file
SNAPSHOTS_ONLY = ("appendonly no", "enable-debug-command local")


def test_a_redis_back_from_an_older_snapshot_ends_the_run_in_one_sentence(
    tmp_path: Path,
) -> None:
    """Files 0-9 reach the sink, the snapshot is taken, files 10-19 reach the sink, Redis comes
    back from the snapshot, files 20-29 arrive. Before, the source's next ids were 11-20 again,
    so the sink skipped files 20-29 as duplicates of the ids it held, in silence."""
    first = 10
    _write_files(tmp_path / "incoming", 0, first)
    with RedisServer(tmp_path / "redis", config=SNAPSHOTS_ONLY) as server:
        file = _chain(tmp_path, server, watch=True)
        run = _start(tmp_path, file)
        try:
            _wait_for(lambda: len(_sink_names(tmp_path)) >= first, run, "the first files")
            snapshot = _older_snapshot(server)
            _write_files(tmp_path / "incoming", first, 2 * first)
            _wait_for(lambda: len(_sink_names(tmp_path)) >= 2 * first, run, "the next files")
            _restart_from(server, snapshot)
            _write_files(tmp_path / "incoming", 2 * first, 3 * first)
            out, err = _finish(run, tmp_path, file, timeout=60)
        finally:
            stop_run(run, file, env=_env(tmp_path), cwd=tmp_path)
    _assert_ended_in_one_sentence(
        tmp_path, run, out, err, f"Redis at 127.0.0.1:{server.port} {BEHIND} (write "
    )
    assert "processed again" in err
    assert "`appendonly yes`" in err
    assert set(_sink_names(tmp_path)) <= {f"f{i:05d}.txt" for i in range(3 * first)}


def test_a_store_written_before_store_ids_is_adopted_by_the_next_run(tmp_path: Path) -> None:
    """A store a release without store ids wrote (its data, no `<prefix>:store-id`) is taken
    up by `pipeline run`, which gives it an id, instead of being refused as lost."""
    import redis

    _write_files(tmp_path / "incoming", 0, 5)
    with RedisServer(tmp_path / "redis") as server:
        file = _chain(tmp_path, server, watch=False)
        first = subprocess.run(
            [str(PIPELINE), "run", str(file), "--fresh"],
            cwd=tmp_path,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert first.returncode == 0, first.stderr
        client = redis.Redis.from_url(server.url)
        assert client.delete("restart:store-id") == 1  # as the older release left it
        _write_files(tmp_path / "incoming", 5, 10)
        again = subprocess.run(
            [str(PIPELINE), "run", str(file)],  # resumes run r1 on the store as it is
            cwd=tmp_path,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        adopted = client.get("restart:store-id")
        client.close()
    assert again.returncode == 0, again.stderr
    assert "resuming run r1" in again.stdout, again.stdout
    assert LOST not in again.stdout + again.stderr
    assert adopted  # the store has its id now: a later reconnect can tell it apart
    names = _sink_names(tmp_path)
    assert sorted(names) == [f"f{i:05d}.txt" for i in range(10)]
    assert set(names.values()) == {1}


@pytest.mark.parametrize("empty", [_restart_empty, _flushall], ids=["restarted-empty", "flushall"])
def test_after_a_lost_store_the_transport_reads_and_writes_nothing(
    tmp_path: Path, empty: Callable[[RedisServer], None]
) -> None:
    """The first call that finds the store id gone says so (StoreLost, a damaged store: exit
    78), and so does every call after it: nothing is written into the emptied Redis."""
    import redis

    from asapo_pipelines_redis.transport import StoreLost, open_transport

    with RedisServer(tmp_path / "redis") as server:
        transport = open_transport({"url": server.url, "timeout": 1, "key_prefix": "lost"})
        producer = transport.producer("src")
        consumer = transport.consumer("src", "g")
        producer.send("s", b"one", None)
        assert consumer.get_next("s", timeout=1).id == 1
        empty(server)
        with pytest.raises(StoreLost) as info:
            consumer.get_next("s", timeout=1)
        assert str(info.value).startswith(f"Redis at 127.0.0.1:{server.port} {LOST}")
        assert info.value.kind == "damaged"  # the worker's exit 78, no restart
        _every_call_refused(transport, producer, consumer, LOST)
        consumer.close()
        producer.close()
        transport.close()
        client = redis.Redis.from_url(server.url)
        left = client.keys("lost:*")
        client.close()
    assert left == []


@pytest.mark.parametrize("how", ["restarted", "reloaded"])
def test_a_store_back_in_time_is_store_lost_for_every_call_after(tmp_path: Path, how: str) -> None:
    """Message 2 sent and message 1 acknowledged after the snapshot; Redis back from it:
    restarted (the new connection finds fewer writes) or reloaded under the open connection
    (DEBUG RELOAD NOSAVE: the claim script finds them). Before, message 1 came again (its
    acknowledgement undone) and message 2 never came."""
    from asapo_pipelines_redis.transport import StoreLost, open_transport

    with RedisServer(tmp_path / "redis", config=SNAPSHOTS_ONLY) as server:
        transport = open_transport({"url": server.url, "timeout": 1, "key_prefix": "old"})
        producer = transport.producer("src")
        consumer = transport.consumer("src", "g")
        producer.send("s", b"one", None)
        snapshot = _older_snapshot(server)
        producer.send("s", b"two", None)
        assert consumer.get_next("s", timeout=1).id == 1
        consumer.acknowledge("s", 1)
        if how == "restarted":
            _restart_from(server, snapshot)
        else:
            import redis

            client = redis.Redis.from_url(server.url)
            shutil.copyfile(snapshot, server.dir / "dump.rdb")
            client.execute_command("DEBUG", "RELOAD", "NOSAVE")
            client.close()
        with pytest.raises(StoreLost) as info:
            consumer.get_next("s", timeout=1)
        assert str(info.value).startswith(f"Redis at 127.0.0.1:{server.port} {BEHIND} (write ")
        assert info.value.kind == "damaged"  # the worker's exit 78, no restart
        _every_call_refused(transport, producer, consumer, BEHIND)
        consumer.close()
        producer.close()
        transport.close()
