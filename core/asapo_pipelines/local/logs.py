"""Task logs as Nomad's log collector writes them: `alloc/logs/<task>.stdout.N` and
`.stderr.N`, a new file when the current one reaches MaxFileSizeMB, the oldest removed when
there are more than MaxFiles. A restarted task appends to its newest file, as on Nomad.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

MB = 1024 * 1024
#: a worker's log line of a level that reports no failure (`<time> <unit>[<replica>] INFO ...`,
#: the format `pipeline worker` logs with)
_QUIET_LOG_LINE = re.compile(r"^\S.*? \S+\[\d+\] (INFO|DEBUG) ")
#: a worker's log line that reports a problem: its `asctime`, unit replica, level and message
_LOUD_LOG_LINE = re.compile(
    rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \S+\[\d+\] (WARNING|ERROR|CRITICAL) (.*?)\r?$"
)
#: a longer line (no newline in sight: binary output) is not a log line; only its start is kept
MAX_LINE = 16 * 1024
CHUNK = 64 * 1024
TAIL_BYTES = 8 * 1024


def _index(path: Path) -> int:
    return int(path.name.rsplit(".", 1)[1])


def log_files(logs_dir: Path, task: str, stream: str) -> list[Path]:
    """The task's files of `stream` ("stdout"/"stderr"), oldest first."""
    pattern = re.compile(rf"^{re.escape(task)}\.{stream}\.(\d+)$")
    found = []
    if logs_dir.is_dir():
        for entry in logs_dir.iterdir():
            match = pattern.match(entry.name)
            if match:
                found.append((int(match.group(1)), entry))
    return [path for _, path in sorted(found)]


class RotatingLog:
    """Writes one stream of one task, rotating by size and keeping at most `max_files`."""

    def __init__(self, logs_dir: Path, task: str, stream: str, max_files: int, max_mb: int):
        self.dir = logs_dir
        self.task = task
        self.stream = stream
        self.max_files = max(1, max_files)
        self.max_bytes = max(1, max_mb) * MB
        existing = log_files(logs_dir, task, stream)
        self.index = int(existing[-1].name.rsplit(".", 1)[1]) if existing else 0
        self._file: BinaryIO | None = None
        self._size = 0
        self._lock = threading.Lock()
        #: the last bytes written, kept in memory: the "last error" of a failed task is read
        #: from here, even when the log file itself could not be written
        self.tail = bytearray()
        #: the first write failure (full disk, lost mount): later output is dropped, the pipe
        #: is still drained so that the task never blocks on it
        self.error: OSError | None = None
        # both files exist from the start, as with Nomad, so `logs --stderr` finds them
        try:
            self._open()
        except OSError as exc:
            self.error = exc

    def _path(self, index: int) -> Path:
        return self.dir / f"{self.task}.{self.stream}.{index}"

    def _open(self) -> BinaryIO:
        if self._file is None:
            self._file = open(self._path(self.index), "ab")  # noqa: SIM115 - kept open
            self._size = self._file.tell()
        return self._file

    def write(self, data: bytes) -> None:
        with self._lock:
            self.tail += data
            del self.tail[: max(0, len(self.tail) - TAIL_BYTES)]
            if self.error is not None:
                return
            try:
                self._write(data)
            except OSError as exc:
                self.error = exc
                with contextlib.suppress(OSError):
                    if self._file is not None:
                        self._file.close()
                self._file = None

    def last_error(self) -> str:
        """The task's last `error: ...` line, else its last line that is not a worker's log
        line of level INFO or DEBUG (from the kept tail): "sink finished: 20 processed" is
        no error to quote."""
        lines = [
            line.strip()
            for line in self.tail.decode("utf-8", errors="replace").splitlines()
            if line.strip()
        ]
        for line in reversed(lines):
            if line.startswith("error: "):
                return line.removeprefix("error: ")
        told = [line for line in lines if not _QUIET_LOG_LINE.search(line)]
        return told[-1] if told else ""

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            fh = self._open()
            room = self.max_bytes - self._size
            if room <= 0:
                self._rotate()
                continue
            part = view[:room]
            fh.write(part)
            fh.flush()
            self._size += len(part)
            view = view[len(part) :]

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.index += 1
        for old in log_files(self.dir, self.task, self.stream):
            if _index(old) <= self.index - self.max_files:
                old.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def problem_line(line: bytes) -> tuple[str, str] | None:
    """(level, message) of a worker's WARNING, ERROR or CRITICAL log line, else None."""
    match = _LOUD_LOG_LINE.match(line)
    if match is None:
        return None
    return match.group(1).decode(), match.group(2).decode("utf-8", errors="replace")


def _split_lines(pending: bytes, data: bytes, on_line: Callable[[bytes], None]) -> bytes:
    """Hand each complete line of `pending + data` to `on_line`; the unfinished rest."""
    *lines, rest = (pending + data).split(b"\n")
    for line in lines:
        on_line(line)
    return rest[:MAX_LINE]


def pump(
    fd: int, sink: RotatingLog, on_line: Callable[[bytes], None] | None = None
) -> threading.Thread:
    """A thread copying a pipe into `sink` until the writer side closes, handing each line
    to `on_line` too when given."""

    def run() -> None:
        pending = b""
        try:
            while True:
                try:
                    data = os.read(fd, CHUNK)
                except OSError:
                    break
                if not data:
                    break
                sink.write(data)
                if on_line is not None:
                    pending = _split_lines(pending, data, on_line)
            if on_line is not None and pending:
                on_line(pending)  # the last line, without its newline
        finally:
            os.close(fd)

    thread = threading.Thread(target=run, name=f"log-{sink.task}-{sink.stream}", daemon=True)
    thread.start()
    return thread


def whole_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """`chunks` of a log as whole lines (the last one as it ends): two logs copied into one
    output (`pipeline logs`, both streams followed) then never cut into each other's lines."""
    rest = b""
    for chunk in chunks:
        whole, newline, rest = (rest + chunk).rpartition(b"\n")
        if newline:
            yield whole + newline
    if rest:
        yield rest


def read_log(
    logs_dir: Path,
    task: str,
    stream: str,
    *,
    follow: bool = False,
    keep_going: Callable[[], bool] = lambda: True,
    poll: float = 0.2,
) -> Iterator[bytes]:
    """The task's log, oldest kept file first; with `follow`, new output as it is written
    (across rotations) until `keep_going()` turns false."""
    files = log_files(logs_dir, task, stream)
    index = _index(files[0]) if files else 0
    offset = 0
    while True:
        # asked before reading, so that output written before the end is always read
        alive = follow and keep_going()
        path = logs_dir / f"{task}.{stream}.{index}"
        progressed = False
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                while chunk := fh.read(CHUNK):
                    offset += len(chunk)
                    progressed = True
                    yield chunk
        except FileNotFoundError:
            # removed by rotation before we got to it: skip ahead to what is kept
            later = [p for p in log_files(logs_dir, task, stream) if _index(p) > index]
            if later:
                index, offset = _index(later[0]), 0
                continue
        if (logs_dir / f"{task}.{stream}.{index + 1}").exists():
            index, offset = index + 1, 0
            continue
        if progressed:
            continue
        if not alive:
            return
        time.sleep(poll)
