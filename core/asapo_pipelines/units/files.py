"""`core.files`: one message per file of a directory, optionally watching it for new files."""

from __future__ import annotations

import os
import time
from pathlib import Path

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.sdk.units import Source


class FilesSource(Source):
    def on_start(self) -> None:
        self.directory = Path(self.params.directory)
        if not self.directory.is_dir():
            raise PipelinesError(f"directory {self.directory} does not exist")
        self.sent: set[str] = set()

    def _present(self) -> list[Path]:
        glob = self.directory.rglob if self.params.recursive else self.directory.glob
        files = [p for p in glob(self.params.pattern) if p.is_file()]
        if self.params.order == "mtime":
            return sorted(files, key=lambda p: (p.stat().st_mtime, str(p)))
        return sorted(files)

    def _send(self, path: Path) -> None:
        name = path.relative_to(self.directory).as_posix()
        stat = path.stat()
        self.emit(
            "files",
            path.read_bytes(),
            metadata={"name": name, "size": stat.st_size, "mtime": stat.st_mtime},
            # the file name is the output's key: a restarted source does not send it twice
            key=name,
        )
        self.sent.add(name)

    def run(self) -> None:
        for path in self._present():
            if self.stopping:
                return
            self._send(path)
        if not self.params.watch:
            return
        seen: dict[str, tuple[int, float, float]] = {}  # name -> (size, mtime, unchanged since)
        while not self.wait(min(0.2, self.params.settle_seconds or 0.2)):
            now = time.monotonic()
            for path in self._present():
                name = path.relative_to(self.directory).as_posix()
                if name in self.sent:
                    continue
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    continue
                size_mtime = (stat.st_size, stat.st_mtime)
                previous = seen.get(name)
                if previous is None or previous[:2] != size_mtime:
                    seen[name] = (*size_mtime, now)
                elif now - previous[2] >= self.params.settle_seconds:
                    self._send(path)
                    seen.pop(name, None)
