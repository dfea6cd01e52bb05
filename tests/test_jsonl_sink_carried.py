"""`core.jsonl-sink` counts on from the summary it is handed (`UnitContext.carried_summary`):
after a kill within the session it adds the lines its predecessor wrote after its last status
record (they are in the file); in a resumed session it takes the earlier session's final
summary as it is, since lines added to the file after that session ended are another
writer's (a reprocess run writing the same file), not this run's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asapo_pipelines.testing.harness import UnitHarness, message


def _sink(path: Path, carried: dict[str, Any], *, after_restart: bool) -> UnitHarness:
    harness = UnitHarness("core.jsonl-sink", {"path": str(path)})
    harness.runner.context.carried_summary = carried
    harness.runner.context.carried_after_restart = after_restart
    return harness


def _lines(stream: str, ids: range) -> list[Any]:
    """Messages of one input stream, numbered as the transport numbered them."""
    return [message(f"line {i}", stream=stream, id=i) for i in ids]


def _write(path: Path, messages: list[Any]) -> UnitHarness:
    harness = UnitHarness("core.jsonl-sink", {"path": str(path)})
    harness.send(*messages)
    return harness


def test_a_restart_counts_the_lines_its_killed_predecessor_wrote_after_its_last_record(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.jsonl"
    killed = _write(out, _lines("s", range(1, 2)))
    published = killed.runner.summary(running=True)  # the last status record
    killed.send(*_lines("s", range(2, 4)))  # written, never reported: the process is killed
    killed.shutdown()

    again = _sink(out, published, after_restart=True)
    again.send(*_lines("s", range(2, 5)))  # 2 and 3 delivered again: in the file already
    summary = again.shutdown().summary
    assert summary["lines_written"] == len(out.read_text().splitlines()) == 4


def test_a_resumed_session_does_not_count_lines_another_writer_added(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    session = _write(out, _lines("s", range(1, 3)))
    ended = session.shutdown().summary  # the session's final record: exact
    other = _write(out, _lines("reprocess", range(1, 4)))  # another run, the same file
    other.shutdown()

    resumed = _sink(out, ended, after_restart=False)
    resumed.send(*_lines("s", range(3, 4)))
    summary = resumed.shutdown().summary
    assert len(out.read_text().splitlines()) == 6
    assert summary["lines_written"] == 3  # 2 in the first session, 1 now
