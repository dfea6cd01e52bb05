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
        #: watch mode: name -> (size, mtime, unchanged since) of each file seen, not sent yet
        #: (None until the files present at start are sent and the watch begins)
        self.waiting: dict[str, tuple[int, float, float]] | None = None

    def _present(self) -> list[Path]:
        glob = self.directory.rglob if self.params.recursive else self.directory.glob
        files = [p for p in glob(self.params.pattern) if p.is_file()]
        if self.params.order == "mtime":
            return sorted(files, key=lambda p: (p.stat().st_mtime, str(p)))
        return sorted(files)

    def _send(self, path: Path) -> None:
        name = path.relative_to(self.directory).as_posix()
        try:
            stat = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            self._vanished(name)
            return
        self.emit(
            "files",
            data,
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
        seen = self.waiting = {}
        while not self.wait(min(0.2, self.params.settle_seconds or 0.2)):
            now = time.monotonic()
            present: set[str] = set()
            for path in self._present():
                name = path.relative_to(self.directory).as_posix()
                present.add(name)
                if name in self.sent:
                    continue
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    continue  # gone between listing and stat: told of at the next look
                size_mtime = (stat.st_size, stat.st_mtime)
                previous = seen.get(name)
                if previous is None or previous[:2] != size_mtime:
                    seen[name] = (*size_mtime, now)
                elif now - previous[2] >= self.params.settle_seconds:
                    seen.pop(name, None)
                    self._send(path)
            for name in [n for n in seen if n not in present]:
                del seen[name]
                self._vanished(name)

    def _vanished(self, name: str) -> None:
        """A file seen disappeared before it was sent: say so, the user expects its message."""
        self.log.warning(
            "file %s disappeared before it was complete (deleted or renamed while being "
            "written): it is not sent",
            name,
        )
