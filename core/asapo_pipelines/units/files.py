"""`core.files`: one message per file of a directory, optionally watching it for new files.

A file is sent once per content: one whose content changed since it was sent (in this run or an
earlier session of it) is sent again as a new version, keyed by its content hash so that
exactly-once de-duplication does not drop it; a `touch` or a rewrite with the same bytes sends
nothing.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.sdk.dirwatch import nothing_matches
from asapo_pipelines.sdk.units import Message, Source

#: the newest files sent again that the summary lists
SUMMARY_ITEMS = 20


class Sent(NamedTuple):
    """What was sent last of one file: enough to tell whether it changed since."""

    key: str
    #: None for a message sent before files carried their hash: size and mtime decide then
    sha256: str | None
    version: int
    size: int
    mtime: float

    def same(self, sha256: str, stat: os.stat_result) -> bool:
        if self.sha256 is not None:
            return self.sha256 == sha256
        return (self.size, self.mtime) == (stat.st_size, stat.st_mtime)


class FilesSource(Source):
    #: a restarted or resumed source learns which version of each file an earlier run sent
    restores_state = True

    def on_start(self) -> None:
        self.directory = Path(self.params.directory)
        if not self.directory.is_dir():
            raise PipelinesError(f"directory {self.directory} does not exist")
        #: name -> what was sent last of it (by this process, or an earlier one: `restore`)
        self.last: dict[str, Sent] = {}
        #: name -> (size, mtime) when this process read it: watch mode looks again on a change
        self.sent: dict[str, tuple[int, float]] = {}
        #: the files sent again as a new version, for the summary
        self.sent_again: list[dict[str, Any]] = []
        #: watch mode: name -> (size, mtime, unchanged since) of each file seen, not sent yet
        #: (None until the files present at start are sent and the watch begins)
        self.waiting: dict[str, tuple[int, float, float]] | None = None

    def restore(self, message: Message) -> None:
        meta = message.metadata
        name, key = meta.get("name"), message.key
        if not isinstance(name, str) or key is None:
            return
        version = meta.get("version", 1)
        sha256 = meta.get("sha256")
        self.last[name] = Sent(
            key,
            sha256 if isinstance(sha256, str) else None,
            version if isinstance(version, int) else 1,
            meta.get("size", -1),
            meta.get("mtime", -1.0),
        )

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
        # costs about as much as reading the file from the page cache (SHA-256 runs at GB/s)
        sha256 = hashlib.sha256(data).hexdigest()
        self.sent[name] = (stat.st_size, stat.st_mtime)
        metadata: dict[str, Any] = {
            "name": name,
            "size": stat.st_size,
            "mtime": stat.st_mtime,
            "sha256": sha256,
        }
        previous = self.last.get(name)
        if previous is not None and previous.same(sha256, stat):
            # unchanged (or only touched): sent again under the key it was sent with, which
            # the runtime drops as already sent
            metadata["version"] = previous.version
            self.emit("files", data, metadata=metadata, key=previous.key)
            return
        # the first version is keyed by the file name (as before versions were told apart);
        # a later one by name, version and content, so that it is not taken for one sent
        version = 1 if previous is None else previous.version + 1
        key = name if previous is None else f"{name}@{version}-{sha256[:16]}"
        metadata["version"] = version
        if previous is not None:
            metadata["replaces"] = previous.key
        self.emit("files", data, metadata=metadata, key=key)
        self.last[name] = Sent(key, sha256, version, stat.st_size, stat.st_mtime)
        if previous is not None:
            self._warn_sent_again(name, version)

    def _warn_sent_again(self, name: str, version: int) -> None:
        """Downstream results of the earlier version are stale: the user must know."""
        self.sent_again.append({"file": name, "version": version})
        self.log.warning(
            "%s changed since it was sent; sent again as version %d",
            (self.directory / name).as_posix(),
            version,
        )

    def run(self) -> None:
        files = self._present()
        if not files and not self.params.watch:
            # a run reading the files present then sends nothing and ends: without this,
            # `lines_written 0` downstream was all an empty folder or a mistyped pattern showed
            # (as `xas.scan-files` says it)
            p = self.params
            self.log.warning(nothing_matches(self.directory, p.pattern, p.recursive))
        for path in files:
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
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    continue  # gone between listing and stat: told of at the next look
                size_mtime = (stat.st_size, stat.st_mtime)
                if self.sent.get(name) == size_mtime:
                    continue  # sent as it is now
                previous = seen.get(name)
                if previous is None or previous[:2] != size_mtime:
                    seen[name] = (*size_mtime, now)
                elif now - previous[2] >= self.params.settle_seconds:
                    seen.pop(name, None)
                    self._send(path)  # a new file, or a new version of one sent
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

    def summary(self) -> dict[str, Any]:
        if not self.sent_again:
            return {}
        return {"sent_again": self.sent_again[-SUMMARY_ITEMS:]}
