"""The runtime classes of the XAS units: thin wrappers that make the scientific core stream.

Only a worker imports this module (the descriptors in `plugin.py` name these classes by import
string), so it may import numpy and xraylarch at the top. Each class turns messages into the
core's objects, calls the core (readers, `normalize_scan`, `Merger`, `ConvergenceAgent`) and turns
the result back into a message; each keeps a short `summary()` for the end of a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import (
    Agent,
    DirectoryEvents,
    Message,
    PlanItem,
    Processor,
    Source,
    Suggestion,
    nothing_matches,
)
from asapo_pipelines_xas import merge, normalize, temperature
from asapo_pipelines_xas.agent import ConvergenceAgent as Advisor
from asapo_pipelines_xas.agent import reprocess_command
from asapo_pipelines_xas.errors import ScanFileError, XasError
from asapo_pipelines_xas.merge import Merger, label_conflict_text, only_by_label_conflict
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.readers import Scan, load_tables, scan_bytes
from asapo_pipelines_xas.scanfiles import (
    ScanFileWatcher,
    Signature,
    list_scan_files,
    parse_for_params,
    signature,
)

#: how often watch mode looks at the directory (seconds); settling is timed separately
WATCH_POLL = 0.2
#: summaries list at most this many items (the final status record stays small)
SUMMARY_ITEMS = 50


def message_key(message: Message) -> str:
    """What identifies a message across redeliveries and upstream restarts: its producer's
    provenance key, else its address."""
    prov = message.provenance or {}
    if prov.get("key"):
        return str(prov["key"])
    return f"{message.data_source}/{message.stream}/{message.id}"


def _round(value: Any, digits: int = 6) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def _sig(value: Any, digits: int = 4) -> Any:
    """Noise figures (1e-4 and below) keep their significant digits in summaries."""
    return float(f"{value:.{digits}g}") if isinstance(value, float) else value


def _version_suffix(read_as: Signature | None) -> str:
    """What a later version's key adds to the file name: the size and time it was read at."""
    return f"@{read_as[0]}-{read_as[1]}" if read_as is not None else ""


class ScanFiles(Source):
    """`xas.scan-files`: one `xas/scan` message per file; in watch mode, each new file once it
    is complete, and a file that changed after it was read once more, as a new version."""

    def on_start(self) -> None:
        self.directory = Path(self.params.directory)
        if not self.directory.is_dir():
            raise XasError(f"the scan directory {self.params.directory} does not exist")
        load_tables()  # while the worker says "loading", not at the first file
        #: files whose message this process sent (not those an earlier process sent)
        self.sent: list[str] = []
        #: scan messages an earlier process of this run sent (`restore` counts them): the
        #: summary's `scans_sent` counts on from them
        self.sent_before = 0
        self.malformed: list[dict[str, str]] = []
        #: files whose header and name disagree on the element or edge (`label_conflict`)
        self.label_conflicts: list[dict[str, Any]] = []
        #: watch mode's watcher (None until `run` starts watching)
        self.watcher: ScanFileWatcher | None = None
        # the files sent again before this process (a restart, an earlier session of the
        # run), as its last summary listed them: `carried_summary`
        again = self.context.carried_summary.get("sent_again")
        self.versions: list[dict[str, Any]] = (
            [dict(v) for v in again if _is(v)] if isinstance(again, list) else []
        )
        #: file name -> (key, digest of the scan, version) of the version this process sent last
        self._last: dict[str, tuple[str, str, int]] = {}
        #: the same, of what earlier runs sent (`restore`)
        self._earlier: dict[str, tuple[str, str, int]] = {}
        #: file names this process reported as malformed
        self._reported: set[str] = set()
        #: file name -> points of the version this process sent last (`sent_again`)
        self._points: dict[str, int] = {}
        #: watch mode: the files whose last version sent was taken at its writer's close
        self._read_at_close: set[Path] = set()
        #: watch mode: file name -> (path, signature read, error) of each file whose last read
        #: held too few rows to be a scan, waiting for more (`_wait_for_rows`)
        self._short: dict[str, tuple[Path, Signature | None, ScanFileError]] = {}
        #: watch mode: file name -> (size, SHA-256) of the bytes of the version sent last
        self._heads: dict[str, tuple[int, str]] = {}
        #: file name -> (signature, SHA-256 of the bytes, points) of the version an earlier
        #: run sent (`restore`), for `_skip_unread`: absent for a message of an older version
        #: of this unit, which did not record them (such a file is read and hashed as before)
        self._earlier_file: dict[str, tuple[Signature, str, int]] = {}
        #: files an earlier run sent that this process found unchanged and did not open
        self.skipped_unread = 0

    def _grew(self, name: str, content: bytes | None) -> bool:
        """Whether the file's new `content` is the version sent last with more written after
        it (a writer appending), not other content (the file rewritten); unknown counts as
        grown, the wording of before."""
        head = self._heads.get(name)
        if head is None or content is None:
            return True
        size, digest = head
        return len(content) > size and hashlib.sha256(content[:size]).hexdigest() == digest

    def _relative(self, path: Path) -> str:
        """What a scan file is called: its path under the directory (`recursive`: day1/x.xdi
        and day2/x.xdi are two scans), as its key and messages name it."""
        return path.relative_to(self.directory).as_posix()

    def _skip_unread(self, name: str, taken: Signature | None) -> bool:
        """Whether `name` is a file an earlier run sent whose size and modification time (ns)
        are what they were when it was read (`taken`: now): it is not opened again. Before, a
        resumed source read and parsed every file it had sent to find it unchanged, at the
        speed of new files (2,000 files: 5 minutes before the first new scan). It becomes the
        version this process sent last, so a later change is told as one (grown, rewritten)."""
        earlier = self._earlier_file.get(name)
        if name in self._last or earlier is None or taken is None or earlier[0] != taken:
            return False
        signature_read, digest, points = earlier
        self._last[name] = self._earlier[name]
        self._heads[name] = (signature_read[0], digest)
        self._points[name] = points
        self.skipped_unread += 1
        self.already_sent()
        return True

    def _say_skipped(self, before: int) -> None:
        """One line for the files `_skip_unread` passed over since `before` were counted."""
        if self.skipped_unread > before:
            self.log.info(
                "%d files already sent, skipped unread (unchanged since an earlier run sent them)",
                self.skipped_unread - before,
            )

    def _send(self, path: Path, watcher: ScanFileWatcher | None = None) -> None:
        name = self._relative(path)
        read_as = watcher.sent.get(path) if watcher is not None else None
        # the size and time of the bytes about to be read (watch mode: those the watcher saw
        # settle, checked again after the read), recorded with the scan for `_skip_unread`
        taken = read_as
        if watcher is None:
            with contextlib.suppress(OSError):
                taken = signature(path)
        if self._skip_unread(name, taken):
            return
        scan: Scan | None = None
        raw: bytes | None = None
        error: XasError | None = None
        try:
            # the scan is called by its path under the directory, as its key is: with
            # `recursive`, day1/x.xdi and day2/x.xdi are two scans wherever a person reads them
            raw = scan_bytes(path, name)
            scan = parse_for_params(raw, self.params, name)
        except XasError as exc:
            error = exc
        except OSError as exc:
            error = ScanFileError(name, exc.strerror or str(exc))
        # watch mode: the bytes parsed, to tell a file that grew from one rewritten (`_grew`)
        content = raw if watcher is not None else None
        if watcher is not None and read_as is not None:
            try:
                now = signature(path)
            except OSError:
                now = None
            if now is None and not path.exists():
                self._gone_unread(path)
                watcher.gone_unread(path)
                return
            if now != read_as:
                # written to while it was read: what was read may be neither version
                watcher.unready(path)
                return
        # the first version of a file is keyed by its name (a restarted source does not send
        # it twice); a later one (the file changed after it was read: read too early on a file
        # system without events) by name, size and time, so that it is not taken for the first
        known = name in self._last or name in self._earlier
        if read_as is None and known:
            with contextlib.suppress(OSError):
                read_as = signature(path)
        suffix = _version_suffix(read_as)
        waited = self._short.pop(name, None) is not None  # this read replaces the last
        if isinstance(error, ScanFileError) and error.too_short and watcher is not None:
            self._wait_for_rows(name, path, read_as, error, said=waited)
            return
        if error is not None:
            self._report(
                name,
                error,
                read_as,
                known,
                "not processed unless it changes" if watcher is not None else "it is not processed",
            )
            return
        assert scan is not None
        body = scan.to_json()
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
        previous = self._last.get(name)
        if previous is not None and previous[1] == digest:
            return  # touched, or rewritten with the same content: nothing new to send
        meta = scan.metadata
        metadata = {k: meta.get(k) for k in ("file", "sample", "element", "edge")}
        # what a restarted source learns of this version (`restore`)
        metadata.update(path=name, scan_digest=digest, points=len(scan))
        if taken is not None and raw is not None:
            # what a restarted source compares without reading the file (`_skip_unread`)
            metadata.update(
                file_size=taken[0],
                file_mtime_ns=taken[1],
                file_sha256=hashlib.sha256(raw).hexdigest(),
            )
        key, version = name, 1
        earlier = previous is None and name in self._earlier
        duplicate = False
        if earlier:
            previous = self._earlier[name]
            if previous[1] == digest:
                # sent by an earlier run: the worker skips it (`sent_before` counted it)
                key, version, previous, duplicate = previous[0], previous[2], None, True
        if previous is not None:
            key, version = name + suffix, previous[2] + 1
            # downstream tells the versions apart: the merge leaves the earlier one out
            body["metadata"]["replaces"] = metadata["replaces"] = previous[0]
            body["metadata"]["file_version"] = metadata["file_version"] = version
            before = None if earlier else self._points.get(name)
            closed = not earlier and watcher is not None and path in self._read_at_close
            rewritten = not earlier and not self._grew(name, content)
            if rewritten:
                self._warn_rewritten(name, version, len(scan))
            elif closed:
                self._warn_closed_between_chunks(name, version, before, len(scan))
            else:
                self._warn_new_version(name, version, read_as, len(scan), earlier=earlier)
            again: dict[str, Any] = {"file": name, "version": version, "points": len(scan)}
            if before is not None:
                # how far the earlier read got: a fragment, which is marked superseded
                again["replaced_points"] = before
            if closed:
                again["first_read"] = "at its writer's close"
            if rewritten:
                again["rewritten"] = True
            self.versions.append(again)
        self._points[name] = len(scan)
        if watcher is not None:
            # how this version was taken: a file growing after a read at its writer's close
            # was closed between chunks
            self._read_at_close.discard(path)
            if path in watcher.closed_when_read:
                self._read_at_close.add(path)
        self._warn_label_conflict(name, meta)
        self.emit("scans", body, metadata=metadata, key=key)
        self._last[name] = (key, digest, version)
        if content is not None:
            self._heads[name] = (len(content), hashlib.sha256(content).hexdigest())
        if not duplicate:
            self.sent.append(name)
        if any(bad["file"] == name for bad in self.malformed):
            # read too early (a DAQ that closes the file between blocks): its error record
            # stays, but the summary lists only files still unreadable, and the log says so
            self.malformed = [bad for bad in self.malformed if bad["file"] != name]
            self.log.info("scan file %s, unreadable before, reads now: sent", name)

    def _warn_label_conflict(self, name: str, meta: Mapping[str, Any]) -> None:
        """The header and the file name disagree on the element or edge (`label_conflict`):
        the header's label groups the scan, and a file saved under another series' name would
        otherwise start a group of its own without a word (its scan carries the field, which
        normalize's summary lists)."""
        conflict = meta.get("label_conflict")
        if not isinstance(conflict, Mapping):
            return
        self.log.warning(
            "scan file %s: its header says %s but its file name says %s: it is grouped as the "
            "header says (%s); if the file was saved under another scan's name, rename it",
            name,
            conflict.get("header"),
            conflict.get("file_name"),
            conflict.get("header"),
        )
        self.label_conflicts = [c for c in self.label_conflicts if c["file"] != name]
        self.label_conflicts.append({"file": name, **dict(conflict)})

    def _report(
        self, name: str, error: XasError, read_as: Signature | None, known: bool, outcome: str
    ) -> None:
        """A malformed file is reported with its reason and the others go on; said in the log
        too, which the scientist watches, not only on the error stream."""
        key = name + _version_suffix(read_as) if name in self._reported or known else name
        self.log.warning("%s: %s (on the error stream)", error, outcome)
        self.report_error(error, key=key)
        self._reported.add(name)
        self.malformed.append({"file": name, "reason": str(error)})

    def _wait_for_rows(
        self,
        name: str,
        path: Path,
        read_as: Signature | None,
        error: ScanFileError,
        *,
        said: bool,
    ) -> None:
        """Watch mode read a file with too few rows to be a scan (its header alone, one row):
        a DAQ that closes the file after every row looks like that until the scan is done, so
        it is not reported, as an empty file is not. The watcher hands it out again once it
        changed and settled; one that stays so is reported when the watch ends
        (`_report_short_files`)."""
        self._short[name] = (path, read_as, error)
        if not said:  # once per file, not per read of a file growing row by row
            self.log.info(
                "scan file %s: %s so far: waiting for more rows (watch mode)", name, error.reason
            )

    def _report_short_files(self, watcher: ScanFileWatcher) -> None:
        """The watch ends (the source is stopped): a file still too short to be a scan is
        reported now, once, as a finished directory's would be. Not one still being written
        (changed since it was read, or open for writing here): a restarted source reads it."""
        short, self._short = self._short, {}
        unchanged: dict[Path, tuple[str, Signature | None, ScanFileError]] = {}
        growing: list[str] = []
        for name, (path, read_as, error) in sorted(short.items()):
            try:
                now: Signature | None = signature(path)
            except OSError:
                continue  # deleted since: nothing left to process or to report
            if now == read_as:
                unchanged[path] = (name, read_as, error)
            else:
                growing.append(name)
        busy = watcher.open_for_writing(list(unchanged)) if unchanged else set()
        growing += [unchanged.pop(path)[0] for path in busy]
        for name in sorted(growing):
            self.log.info(
                "scan file %s is still being written as the watch ends: read when the source "
                "runs again",
                name,
            )
        for name, read_as, error in unchanged.values():
            known = name in self._last or name in self._earlier
            self._report(name, error, read_as, known, "still so when the watch ended")

    def _vanished(self, path: Path) -> None:
        """A file seen in watch mode disappeared before it was complete: say that this scan is
        not processed (it may have been deleted while being written, or renamed away)."""
        self.log.warning(
            "scan file %s disappeared before it was complete (deleted or renamed while being "
            "written): it is not processed",
            self._relative(path),
        )

    def _gone_unread(self, path: Path) -> None:
        """A file seen complete (its close, a listing) was gone when it was to be read: copied
        in and removed at once (an archiving tool that moves files away). Nothing was sent for
        it, which the scientist must hear of: before, such a file left no trace."""
        name = self._relative(path)
        if name in self._last:
            self.log.warning(
                "scan file %s changed and was removed before its new version could be read: "
                "nothing more was sent for it",
                name,
            )
            return
        self.log.warning(
            "scan file %s appeared and was removed before it could be read: nothing was sent "
            "for it",
            name,
        )

    def _warn_rewritten(self, name: str, version: int, points: int) -> None:
        """The file was read, and then rewritten with other content (not the earlier content
        with more after it): neither a fragment nor a writer closing between chunks, so the
        advice of `_warn_closed_between_chunks` and `_warn_new_version` does not apply."""
        self.log.warning(
            "scan file %s was rewritten after it was read, with different content: sending it "
            "again (version %d, %d points), which supersedes version %d (left out of the merge, "
            "marked superseded in the NeXus file)",
            name,
            version,
            points,
            version - 1,
        )

    def _warn_new_version(
        self, name: str, version: int, read_as: Any, points: int, *, earlier: bool
    ) -> None:
        if earlier:
            # rewritten while the pipeline was stopped: no sign of a file read too early
            self.log.warning(
                "scan file %s changed since an earlier run read and sent it: sending it again "
                "(version %d, %d points)",
                name,
                version,
                points,
            )
            return
        self.log.warning(
            "scan file %s changed after it was read and sent: sending it again "
            "(version %d, %d bytes, %d points); on a file system without events "
            "settle_seconds must exceed the writer's longest pause",
            name,
            version,
            read_as[0] if read_as else 0,
            points,
        )

    def _warn_closed_between_chunks(
        self, name: str, version: int, before: int | None, points: int
    ) -> None:
        """The file grew after it was read at its writer's close: the writer closes the file
        between chunks (a DAQ appending a block of points at a time), and watch mode takes
        each close for the end of the scan (the documented design), so the settle_seconds
        advice of `_warn_new_version` does not apply. Says what to change at the DAQ;
        downstream leaves the earlier read out of the merge, and the NeXus file marks it
        superseded."""
        got = f" after {before} points" if before is not None else ""
        self.log.warning(
            "scan file %s was closed by its writer%s and written to again: sending it again "
            "(version %d, %d points); each close counts as the end of a scan, so the earlier "
            "read was a fragment (left out of the merge, marked superseded in the NeXus file): "
            "have the DAQ close the file only when the scan is complete, or write it under a "
            "hidden name and rename it",
            name,
            got,
            version,
            points,
        )

    #: a restarted source learns which version of each file an earlier run sent
    restores_state = True

    def restore(self, message: Message) -> None:
        # a file that changed since an earlier run read it (too early, and the pipeline was
        # stopped before the rest was written) is then sent again as a new version that
        # replaces the one sent, instead of being taken for it and skipped as a duplicate
        name, digest, key = (
            message.metadata.get("path"),
            message.metadata.get("scan_digest"),
            message.key,
        )
        version = message.metadata.get("file_version", 1)  # the first is sent without one
        if isinstance(name, str) and isinstance(digest, str) and key is not None:
            self._earlier[name] = (key, digest, version if isinstance(version, int) else 1)
            self.sent_before += 1
            self._earlier_file.pop(name, None)  # an older version of this message's file
            fields = ("file_size", "file_mtime_ns", "file_sha256", "points")
            size, mtime, sha, points = (message.metadata.get(k) for k in fields)
            # a message of an older version of this unit has none of these: its file is read
            # and hashed again to know whether it changed (`_skip_unread`)
            if all(isinstance(v, int) for v in (size, mtime, points)) and isinstance(sha, str):
                self._earlier_file[name] = ((size, mtime), sha, points)

    def run(self) -> None:
        p = self.params
        if not p.watch:
            files = list_scan_files(self.directory, p.pattern, recursive=p.recursive, order=p.order)
            if not files:
                # a non-watching run then sends nothing and ends: without this, `scans_sent 0`
                # was all a mistyped pattern or directory showed
                said = nothing_matches(self.directory, p.pattern, p.recursive, "scan file")
                self.log.warning(said)
            for path in files:
                if self.stopping:
                    break
                self._send(path)
            self._say_skipped(0)
            return
        self.watcher = watcher = ScanFileWatcher(
            self.directory,
            p.pattern,
            recursive=p.recursive,
            settle_seconds=p.settle_seconds,
            on_vanished=self._vanished,
            on_gone_unread=self._gone_unread,
        )
        # events tell when a file is complete (its writer closed it, or it was renamed in) on
        # local file systems, and which files are being written: those are never settled. The
        # timed look still runs for files without events (NFS, GPFS, present at start).
        events = DirectoryEvents(self.directory, writes=True) if not p.recursive else None
        try:
            self._watch(watcher, events)
        finally:
            if events is not None:
                events.close()
        # stopped: the end of the watch is the end of the files it waited on for more rows
        self._report_short_files(watcher)

    def _watch(self, watcher: ScanFileWatcher, events: DirectoryEvents | None) -> None:
        """Send each file the watcher hands out, until the source is stopped."""
        # no events yet: the first look lists the folder (then `DirectoryEvents.wait_changes`)
        changes: tuple[Iterable[str], ...] = ()
        while True:
            skipped = self.skipped_unread
            ready = watcher.poll(*changes)
            # new files first: one an earlier run sent that changed since is read again (to
            # tell a grown file from a rewritten one), and new scans do not wait behind it
            for path in sorted(ready, key=lambda p: self._relative(p) in self._earlier):
                if self.stopping:
                    return
                self._send(path, watcher)
            self._say_skipped(skipped)
            if events is None or not events.available:
                if self.wait(WATCH_POLL):
                    return
                continue
            changes = events.wait_changes(WATCH_POLL)  # then `stopping` is looked at
            if events.overflowed:  # events were lost: settle what was seen being written
                events.overflowed = False
                watcher.events_lost()
            if self.stopping:
                return

    def summary(self) -> dict[str, Any]:
        # messages, in the whole run: a restarted source does not count again what it re-reads
        sent = self.sent_before + len(self.sent)
        out: dict[str, Any] = {"scans_sent": sent, "directory": str(self.directory)}
        if self.skipped_unread:
            # files an earlier run sent, unchanged since: this process did not open them
            out["skipped_unread"] = self.skipped_unread
        if self.malformed:
            out["malformed"] = self.malformed[-SUMMARY_ITEMS:]
        if self.versions:
            out["sent_again"] = self.versions[-SUMMARY_ITEMS:]
        if self.label_conflicts:
            out["label_conflicts"] = self.label_conflicts[-SUMMARY_ITEMS:]
        if self._short:
            # not malformed (yet): files being written row by row look like this until done
            out["waiting_for_rows"] = [
                {"file": name, "reason": error.reason}
                for name, (_, _, error) in sorted(self._short.items())[:SUMMARY_ITEMS]
            ]
        return out


class Normalize(Processor):
    """`xas.normalize`: one `xas/spectrum` per `xas/scan` (xraylarch pre_edge, autobk, noise)."""

    def on_start(self) -> None:
        normalize.load_larch()  # while the worker says "loading", not in the first scan
        # the summary counts on from what the run normalized before this process (a restart,
        # an earlier session of the run): `carried_summary`
        carried = self.context.carried_summary
        scans = carried.get("scans")
        #: file -> its result, the last SUMMARY_ITEMS files by arrival (what the summary lists)
        self.results: dict[Any, dict[str, Any]] = {
            r.get("file"): dict(r) for r in (scans if isinstance(scans, list) else []) if _is(r)
        }
        #: the settings in force (those not xas.normalize's defaults, flat): the newest
        self.newest = own_settings(self.params)
        #: file -> the settings its listed result was made with (None: not known, a summary
        #: of an older version of the unit), to mark those made with other than the newest
        self.made_with = {
            file: carried_settings(carried.get("settings"), r.pop("earlier_settings", None))
            for file, r in self.results.items()
        }
        #: files normalized before this process: those listed, and as many again not listed
        self.listed_before = set(self.results)
        self.before = max(_count(carried.get("spectra")), len(self.listed_before))
        #: files this process normalized that the carried summary does not list
        self.new_files: set[Any] = set()
        #: whether the noise window past the end of the data was warned of (once a process)
        self.warned_window = False

    def process(self, message: Message) -> dict[str, Any]:
        body = json_object(message, self.descriptor.name, "xas/scan")
        spectrum = normalize_scan(Scan.from_json(body), self.params)
        # the merge averages only spectra normalised by the same code: a plugin upgraded
        # between sessions of a run must not be averaged with what the old one made
        d = self.descriptor
        spectrum.settings["normalizer"] = {
            "unit": d.name,
            "distribution": d.distribution,
            "version": d.version,
        }
        # the merge recognises a redelivered scan by this identity (see Merger.add)
        spectrum.metadata["scan_id"] = message_key(message)
        values = spectrum.values
        file = spectrum.metadata.get("file")
        self._warn_noise_window(file, spectrum.arrays.get("k"), values.get("noise_kmax"))
        # a file normalized again (a new version, a redelivery) replaces its entry
        self.results.pop(file, None)
        self.results[file] = {
            "file": file,
            "e0": _round(values.get("e0"), 2),
            "edge_step": _round(values.get("edge_step"), 4),
            "noise": _sig(values.get("epsilon_k")),
        }
        inferred = _inferred(spectrum.metadata)
        if inferred:
            self.results[file]["edge"] = inferred
        conflict = spectrum.metadata.get("label_conflict")
        if isinstance(conflict, Mapping):
            # beside its E0 in the run's summary: the group it is in is the header's label
            self.results[file]["label_conflict"] = (
                f"header {conflict.get('header')}, file name {conflict.get('file_name')}"
            )
        note = spectrum.metadata.get("reference")
        if note:
            # normalised without its foil, or with points of it dropped: beside the file in the
            # run's summary, not only in the spectrum's metadata; what happened, not what it
            # means (the warning and the metadata say that)
            head, sep, _ = str(note).partition("): ")
            self.results[file]["reference"] = head + ")" if sep else str(note)
        self.made_with[file] = dict(self.newest)
        while len(self.results) > SUMMARY_ITEMS:
            self.made_with.pop(next(iter(self.results)), None)
            del self.results[next(iter(self.results))]
        if file not in self.listed_before:
            # a file counted before but no longer listed would count twice (the carried
            # summary lists SUMMARY_ITEMS of them): only a new version of an old file does
            self.new_files.add(file)
        return spectrum.to_json()

    def _warn_noise_window(self, file: Any, k: Any, kmax: Any) -> None:
        """Warn, once per process, when a `noise.kmax` given runs the noise window past the
        end of a scan's chi(k): the window then covers k without data and epsilon_k comes out
        biased low (11 and 8 % for the goethite repeats with Larch's 20 Å⁻¹), by a different
        amount from scan to scan, so the merge's noise and the agent's decision to stop rest
        on it. The setting is the user's (a noise on Larch's default scale), so it is kept."""
        if self.params.noise.kmax is None or k is None or len(k) == 0 or kmax is None:
            return
        end = float(max(k))
        if float(kmax) <= end or self.warned_window:
            return
        self.warned_window = True
        self.log.warning(
            "noise.kmax %g runs the noise window past the end of the data of %s (its chi(k) "
            "ends at k = %.2f Å⁻¹): epsilon_k is then biased low, so the merged noise and the "
            "agent's decisions rest on it; leave noise.kmax unset (max(k) - 0.5) or set it "
            "inside the data",
            float(kmax),
            file,
            end,
        )

    def summary(self) -> dict[str, Any]:
        # by file, not by arrival: scans come in any order (a transport promises none), and
        # repeats' file names count up; `spectra` counts every file, not only those listed
        scans = sorted(
            (self._marked(file, r) for file, r in self.results.items()),
            key=lambda r: str(r["file"]),
        )
        return {
            "spectra": self.before + len(self.new_files),
            # first: the edge steps below are on these settings, but those marked otherwise
            "settings": self.newest or DEFAULTS,
            "scans": scans,
        }

    def _marked(self, file: Any, result: dict[str, Any]) -> dict[str, Any]:
        """A file's summary entry, with `earlier_settings` when it was normalised with other
        settings than the newest (a `--resume --set normalize...` after it): its E0, edge step
        and noise are on those settings, and beside the newest ones they read as a scan a few
        per cent off. Each setting that differs, as it was then."""
        own = self.made_with.get(file)
        if own is None or own == self.newest:
            return result
        keys = sorted(k for k in set(own) | set(self.newest) if own.get(k) != self.newest.get(k))
        return {**result, "earlier_settings": {k: own.get(k, DEFAULT) for k in keys}}


#: how the normalize summary writes a setting left at xas.normalize's default
DEFAULT = "the default"
#: its `settings` when every one is
DEFAULTS = "xas.normalize's defaults"


def own_settings(params: Any) -> dict[str, Any]:
    """The settings that are not xas.normalize's defaults, flat (`pre_edge.norm1`): what the
    normalize summary says the spectra were made with."""
    mine = merge.flat_settings(params.model_dump(mode="json"))
    default = merge.flat_settings(type(params)().model_dump(mode="json"))
    return {k: v for k, v in mine.items() if default.get(k) != v}


def carried_settings(newest: Any, earlier: Any) -> dict[str, Any] | None:
    """The settings a file listed in a carried normalize summary was made with: its summary's
    `settings`, but for those its `earlier_settings` names; None when that summary says none
    (an older version of the unit's)."""
    if isinstance(newest, str) and newest == DEFAULTS:
        own: dict[str, Any] = {}
    elif isinstance(newest, dict):
        own = dict(newest)
    else:
        return None
    for key, value in (earlier if isinstance(earlier, dict) else {}).items():
        if value == DEFAULT:
            own.pop(key, None)
        else:
            own[key] = value
    return own


def _inferred(metadata: Mapping[str, Any]) -> str | None:
    """The element and edge a file did not name, as the summary says them: `V K (from the
    reference foil E0; also fits La L3)`. A label taken from E0 can be another element's edge,
    and the group, the agent's plan and the NeXus file all carry it."""
    identity = metadata.get("identity")
    if not isinstance(identity, Mapping) or not identity.get("inferred"):
        return None
    text = f"{metadata.get('element')} {metadata.get('edge')} (from the {identity.get('from')}"
    also = identity.get("also_fits")
    if also:
        text += f"; also fits {', '.join(str(a) for a in also)}"
    return text + ")"


def _is(item: Any) -> bool:
    """A carried summary's list entry with a file (one made by an earlier process)."""
    return isinstance(item, dict) and "file" in item


def _count(value: Any) -> int:
    """A carried summary's count; 0 for anything that is not one."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class Merge(Processor):
    """`xas.merge`: after every spectrum, the merge of its group (sample, element, edge, mode)."""

    #: a restarted merge gets the spectra it merged before (the worker calls `restore`)
    restores_state = True

    def on_start(self) -> None:
        merge.load_larch()  # while the worker says "loading", not in the first spectrum
        self.merger = Merger(self.params)
        #: group label -> its latest merge, sent or restored (what the summary shows)
        self.groups: dict[str, dict[str, Any]] = {}
        #: group label -> (its merge as `restore` rebuilt it, the stream of its last input),
        #: until `on_restored` sends it
        self._restored: dict[str, tuple[dict[str, Any], str]] = {}
        #: group filed by `restore` -> (the scan its merge names as latest, the stream of its
        #: last input, its merge when already made), until `_merge_restored` makes the merges
        self._pending: dict[tuple[str, ...], tuple[str, str, dict[str, Any] | None]] = {}
        #: addresses of the inputs `restore` got: their merges were sent by an earlier run
        self._restored_inputs: set[tuple[str, str, int]] = set()
        #: (group, code) of scans left out for being normalised by other code, warned of
        self._warned_code: set[tuple[str, str]] = set()
        #: temperatures in the files that are no temperature read (grouped by text), warned of
        self._warned_temperature: set[str] = set()
        #: group label -> (digest of the last merge sent in the run, how many were sent)
        self._sent: dict[str, tuple[str, int]] = {}
        #: (group, scan(s), energies) of glitches warned of: once each, not at every merge
        self._warned_glitches: set[tuple[str, str, str]] = set()

    def restore_sent(self, message: Message) -> None:
        # the merges the run sent, from their keys alone: which was each group's last
        sent = sent_merge(message.key)
        if sent is not None:
            label, digest = sent
            self._sent[label] = (digest, self._sent.get(label, ("", 0))[1] + 1)

    def restore(self, message: Message) -> None:
        # Merger.file is idempotent per scan: a spectrum that comes back later replaces itself.
        # Filed, not merged: each group's merge is made once, when it is needed
        # (`_merge_restored`); merging after each spectrum made a restart of a group of n
        # scans cost n merges of up to n scans. Nothing is sent here: under the parameters of
        # the earlier run this is the merge it sent, under changed ones (a resume with another
        # max_e0_shift) a new one, sent by `on_restored` (its key tells the worker which).
        # (a new version of a file in another group changes the old version's group too)
        self._warn_temperature(message.value)
        spectrum = made(message)
        meta = spectrum.get("metadata") if isinstance(spectrum, dict) else None
        if isinstance(meta, dict) and meta.get("replaces") is not None:
            # it changes what the merges of the groups it does not join say of the version it
            # replaces: theirs are the merges made before it, as the earlier session sent them
            self._merge_pending()
        for key, latest in self.merger.file(spectrum):
            # a group's first merge fixes the noise scale of its later ones: made as it was
            first = not self.merger.scale_fixed(key)
            merged = self.merger.remerge(key, latest).to_json() if first else None
            self._pending[key] = (latest, message.stream, merged)
        self._restored_inputs.add((message.data_source, message.stream, message.id))

    def _merge_pending(self) -> None:
        """Make the merges of the restored groups not made yet, as the groups stand now."""
        for key, (latest, stream, merged) in self._pending.items():
            if merged is None:
                made_now = self.merger.remerge(key, latest).to_json()
                self._pending[key] = (latest, stream, made_now)

    def _merge_restored(self) -> None:
        """The restored groups' merges, for `on_restored` to send, and in the summary: made
        when something needs them (the session's start, a first new spectrum, the summary)."""
        if not self._pending:
            return
        self._merge_pending()
        pending, self._pending = self._pending, {}
        for _latest, stream, merged in pending.values():
            assert merged is not None  # made by `_merge_pending`
            self._restored[group_label(merged)] = (merged, stream)
            # the summary shows the group's merge as it stands (a restarted or resumed merge
            # that said `groups 0` until it sent one was taken by reprocess for a change)
            self._note_group(merged)

    def process(self, message: Message) -> None:
        self._merge_restored()  # from the restored groups as they were, before this one
        if (message.data_source, message.stream, message.id) in self._restored_inputs:
            # delivered again after a restart (not acknowledged before it): restored already,
            # and its merge was sent then, or by `on_restored` under changed parameters
            return
        self._warn_temperature(json_object(message, self.descriptor.name, "xas/spectrum"))
        sent = dict(self._sent)
        try:
            # its group's merge, after that of the group a new version of a file left, if any
            for merged in self.merger.add_all(made(message)):
                body = merged.to_json()
                if not self._send(body):
                    self._say_copy_left_out(body)
        except BaseException:
            # a retry of this message sends them again: the runner dropped what was emitted
            self._sent = sent
            raise

    def on_restored(self) -> None:
        """Send the restored merges at the start of the session, not at the next scan (in
        watch mode there may be none: the agent said stop): one the earlier run sent has the
        same key and the worker skips it; one the parameters now in force changed (a resume
        with another max_e0_shift) is a new result for the stream, the NeXus file and the
        agent, as the status already shows it."""
        self._merge_restored()
        restored, self._restored = self._restored, {}
        for merged, stream in restored.values():
            # on the stream of the group's inputs, where `process` sends its merges
            self._send(merged, stream=stream)

    def _warn_temperature(self, spectrum: Any) -> None:
        """Warn once per text of a file's temperature that groups by its text (no unit, not a
        number), when the merge groups by temperature: such files are repeats only of files
        that spell it alike."""
        if "temperature" not in self.params.group_by:
            return
        meta = spectrum.metadata if hasattr(spectrum, "metadata") else spectrum.get("metadata")
        text = (meta or {}).get("temperature")
        if not temperature.unreadable(text) or str(text).strip() in self._warned_temperature:
            return
        self._warned_temperature.add(str(text).strip())
        self.log.warning(
            "Sample.temperature %r is %s: its scans are grouped by that text, apart from "
            "scans at a temperature read in kelvin, and no plan is asked to set it; write it "
            "as e.g. `100 K` to group it by temperature",
            str(text).strip(),
            temperature.problem(text),
        )

    def _say_copy_left_out(self, merged: dict[str, Any]) -> None:
        """A copy of a scan changes nothing merged and is not sent (`measured_digest`): the
        log says it was left out, and why, when it comes; the group's next merge lists it."""
        copy = next(
            (r for r in merged["rejected"] if r["scan"] == merged["latest"] and r.get("duplicate")),
            None,
        )
        if copy is None:
            return
        self.log.warning(
            "merge of %s leaves out %s, %s; the merge is unchanged, so no new merge is sent",
            group_label(merged),
            copy["scan"].rpartition("|key:")[2],
            copy["reasons"][0],
        )

    def _send(self, merged: dict[str, Any], stream: str | None = None) -> bool:
        """Send a group's merge unless it is the last one the run sent for the group (a
        redelivered spectrum; a restart; a resume whose changed settings leave it as it was),
        numbered: the group's n-th merge in the run. The number makes a merge made again after
        an excursion (a resume back to the limit of two sessions ago) a new message, with a key
        of its own and a digest the agent has not decided on: the last merge the agent and the
        NeXus file got was the one in between. A merge that differs from the last one sent only
        by copies of scans it lists (`measured_digest`) is not sent: nothing merged changed, and
        every copy made a new entry in the NeXus file with the same spectrum. Whether it was
        sent."""
        label = group_label(merged)
        digest = measured_digest(merged)
        last, count = self._sent.get(label, ("", 0))
        sending = digest != last
        if sending:
            number = count + 1
            self.emit(
                "merged",
                {**merged, "number": number},
                key=f"merge:{label}:{digest}:{number}",
                stream=stream,
            )
            self._sent[label] = (digest, number)
        self._note_group(merged)
        return sending

    def _warn_glitches(self, merged: dict[str, Any]) -> None:
        """Warn once of each repeat's points that deviate from the other repeats (a glitch):
        its noise estimate hardly sees them, and merged they are a bump in the result."""
        label = group_label(merged)
        for glitch in merged.get("glitches", []):
            names = glitch.get("file") or " and ".join(glitch.get("files", []))
            energies = ", ".join(f"{e:.1f}" for e in glitch["energies"])
            key = (label, names, energies)
            if key in self._warned_glitches:
                continue
            self._warned_glitches.add(key)
            if glitch["excluded"]:
                self.log.warning(
                    "merge of %s: %s has a glitch at %s eV (up to %.0f times its spread from "
                    "the other repeats' median); those points are left out of the merge, the "
                    "rest of the scan is merged",
                    label,
                    names,
                    energies,
                    glitch["deviation"],
                )
            else:
                self.log.warning(
                    "merge of %s: %s differ at %s eV (up to %.0f times their spread); with 2 "
                    "repeats the merge cannot tell which one has the glitch, so both are "
                    "merged: look at the scans, or measure a third repeat",
                    label,
                    names,
                    energies,
                    glitch["deviation"],
                )

    def _note_group(self, merged: dict[str, Any]) -> None:
        """What the summary shows of a group: its latest merge."""
        values = merged["values"]
        self._warn_glitches(merged)
        other_code = self._warn_other_code(merged)
        # a copy of a scan (another name, the same data) is no measurement: counted apart, as
        # the NeXus title counts it ("2 scans; 1 copy of scans left out")
        copies = len(copies_of(merged))
        earlier = _earlier(merged)
        self.groups[group_label(merged)] = {
            "scans": merged["n_scans"] - copies,
            "merged": merged["n_merged"],
            "rejected": len(merged["rejected"]) - copies,
            **({"copies_left_out": copies} if copies else {}),
            "e0": _round(values.get("e0"), 2),
            "edge_step": _round(values.get("edge_step"), 4),
            "noise": _sig(values.get("epsilon_k")),
            # the merged scans' own: a superseded or rejected scan's noise (other settings, a
            # beam loss) beside the merge's would read as one of the scans averaged
            "single_scan_noise": [
                _sig(s.get("epsilon_k")) for s in merged["scans"] if s.get("accepted")
            ],
            **({"normalised_by_other_version": other_code} if other_code else {}),
            # made with other settings than the newest (a `--resume --set normalize...`): not
            # faulty, measured, and merged once reprocessed; "rejected 2" alone read as bad scans
            **({"rejected_for_earlier_settings": earlier} if earlier else {}),
            # points of repeats left out of the mean (or, of 2 repeats, reported) as glitches
            **(
                {"glitches": [g.get("file") or g.get("files") for g in merged["glitches"]]}
                if merged.get("glitches")
                else {}
            ),
            # the merge analyses with its own settings: its noise and the scans' beside it are
            # on that scale, not on that of the noise xas.normalize lists for each file
            **(
                {
                    "noise_settings": "xas.merge's for the merge and each scan "
                    f"({merged['noise_by_merge']})"
                }
                if merged.get("noise_by_merge")
                else {}
            ),
            # nothing merged: the scans disagree and none of them is the group's result
            **(
                {"no_majority": merged["no_majority"]["reason"]}
                if merged.get("no_majority")
                else {}
            ),
            **_conflict_note(merged),
        }

    def _warn_other_code(self, merged: dict[str, Any]) -> int:
        """Warn once per group and version of scans left out for being normalised by other code
        than the newest (a plugin upgraded between sessions); how many there are."""
        label = group_label(merged)
        left_out = [r for r in merged["rejected"] if r.get("normalised_by")]
        for code in sorted({str(r["normalised_by"]) for r in left_out}):
            if (label, code) in self._warned_code:
                continue
            self._warned_code.add((label, code))
            count = sum(1 for r in left_out if r["normalised_by"] == code)
            self.log.warning(
                "merge of %s leaves out %d scan(s) normalised by %s, not by the code that "
                "normalised the newest scans (spectra made by other code are not averaged); "
                "reprocess them to include them",
                label,
                count,
                code,
            )
        return len(left_out)

    def summary(self) -> dict[str, Any]:
        self._merge_restored()  # a merge restored and not sent yet is shown as it stands
        return {"groups": len(self.groups), "merges": dict(self.groups)}


def _earlier(merged: dict[str, Any]) -> int:
    """The scans a merge left out only for being normalised with other settings than the newest
    (not by other code, which `normalised_by_other_version` counts; not a replaced version of a
    file nor a copy)."""
    return sum(
        1
        for r in merged["rejected"]
        if r.get("superseded")
        and not (r.get("replaced") or r.get("duplicate") or r.get("normalised_by"))
    )


def _conflict_note(merged: dict[str, Any]) -> dict[str, Any]:
    """The merge summary's `label_conflict` of a group with scans whose header and file name
    name different edges, and whether the group exists only because of them (nobody planned
    it: the agent asks for no scans of it)."""
    text = label_conflict_text(merged)
    if not text:
        return {}
    if only_by_label_conflict(merged):
        text += " (every scan of the group: it exists only because of this conflict)"
    return {"label_conflict": text}


def json_object(message: Message, unit: str, kind: str) -> dict[str, Any]:
    """The message's body when it is a JSON object; else that message's error, in a sentence
    that names it (the first `.get` on a list or on bytes of a message without a format said
    only "'bytes' object has no attribute 'get'", with the unit's retries before it)."""
    body = message.value
    if not isinstance(body, dict):
        where = f"{message.data_source}/{message.stream}/{message.id}"
        raise XasError(
            f"message {where} is not a JSON object (it holds {type(body).__name__}); "
            f"{unit} takes {kind} messages"
        )
    return body


def made(message: Message) -> Any:
    """A spectrum message's body with when it was made: its time in the transport (`made_at`
    in its metadata), the same when it is redelivered or restored. The merge averages the
    spectra normalised with the settings of the one made last (see `Merger._newest`): a
    session going back to earlier settings makes them the newest again, and an old spectrum
    delivered again or late does not. Not stamped by xas.normalize: its spectra are the same
    in a reprocess that changes nothing."""
    body = message.value
    if (
        not isinstance(body, dict)
        or not message.timestamp
        or not isinstance(body.get("metadata"), dict)
    ):
        return body
    return {**body, "metadata": {**body["metadata"], "made_at": float(message.timestamp)}}


def _address(message: Message) -> tuple[str, str, int]:
    """Where a message is in its data source: the same for its replay and its redelivery."""
    return message.data_source, message.stream, message.id


def group_label(merged: dict[str, Any]) -> str:
    """A merge's group as one string: sample/element/edge/mode."""
    return "/".join(str(v) for v in merged["group"].values())


def merge_digest(merged: dict[str, Any]) -> str:
    """What tells one merge's content from another's."""
    text = json.dumps(merged, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def copies_of(merged: dict[str, Any]) -> set[str]:
    """The scans a merge rejects as copies of another scan's data (`duplicate`)."""
    return {str(r["scan"]) for r in merged.get("rejected", []) if r.get("duplicate")}


def measured_digest(merged: dict[str, Any]) -> str:
    """A merge's digest without the copies of scans it rejects (`duplicate`) and without which
    scan came last: the same for two merges whose measurements, screening and result are the
    same, however many copies of a scan came between them."""
    copies = copies_of(merged)
    view = {k: v for k, v in merged.items() if k not in ("latest", "latest_accepted")}
    if copies:
        view["rejected"] = [r for r in merged["rejected"] if str(r["scan"]) not in copies]
        view["scans"] = [s for s in merged.get("scans", []) if str(s["scan"]) not in copies]
        view["n_scans"] = int(merged.get("n_scans", 0)) - len(copies)
    return merge_digest(view)


def sent_merge(key: str | None) -> tuple[str, str] | None:
    """(group label, digest) of a merge sent under `key` (`merge:<group>:<digest>:<n>`); a key
    of an earlier version (`merge:<group>:<digest>`) gives its digest too."""
    if not key or not key.startswith("merge:"):
        return None
    head, _, tail = key[len("merge:") :].rpartition(":")
    if tail.isdigit() and ":" in head:  # numbered: the digest is before the number
        head, _, tail = head.rpartition(":")
    return (head, tail) if head else None


def target_label(group: dict[str, Any]) -> str:
    """A suggestion's target as one string: sample/element/edge/mode."""
    return "/".join(str(v) for v in group.values() if v not in (None, "")) or "unknown"


class ConvergenceAgent(Agent):
    """`xas.convergence-agent`: a plan suggestion (more scans, stop, change parameters) for every
    merge, in the SDK's suggestion schema; the core's details go under `arguments`."""

    #: a restarted agent replays the merges it decided on (the worker calls `restore`), then
    #: every queue status of the run: a status leaves no output, yet says that the repeats of
    #: a rejected, failed or held suggestion are not coming
    restores_state = True
    restore_ports = ("queue",)

    def on_start(self) -> None:
        # uids are made from the merges decided on: the same data and settings in another run,
        # or another agent of the pipeline, must not make the same uids (a shared queue server
        # inbox takes a known uid for a suggestion it has); a resumed run keeps its uids
        ctx = self.context
        run = f"{ctx.run.get('run', '')}@{ctx.run.get('started', '')}"
        self.advisor = Advisor(
            self.params,
            scope=f"{ctx.pipeline}/{run}/{ctx.instance}[{ctx.replica}]",
            reprocess=reprocess_command(ctx.run),
        )
        # the summary counts on from what the run decided before this process (a restart, an
        # earlier session of the run): a merge decided on before is restored and redelivered
        # merges are not decided again (`decide` returns None), so nothing counts twice
        carried = self.context.carried_summary
        decisions = carried.get("decisions")
        self.decisions: dict[str, dict[str, Any]] = {
            str(k): dict(v)
            for k, v in (decisions if isinstance(decisions, dict) else {}).items()
            if isinstance(v, dict)
        }
        self.count = _count(carried.get("suggestions"))
        #: statuses about this agent's suggestions counted before this process (the summary
        #: it carries on from), and those `restore` replayed, by address
        self.carried_updates = _count(carried.get("queue_updates"))
        self.restored_updates: set[tuple[str, str, int]] = set()
        #: statuses about its suggestions this process took first in `process`
        self.new_updates = 0
        self.late = _count(carried.get("late_merges"))

    @property
    def queue_updates(self) -> int:
        """Statuses about this agent's suggestions, each once: the worker replays every status
        of the run to `restore`, so those are all the earlier processes took (the carried count
        may lag behind them, or count a status not acknowledged yet, which comes to `process`
        again); the carried count stands alone when the restored decisions no longer name
        them (other settings make other uids)."""
        return max(self.carried_updates, len(self.restored_updates)) + self.new_updates

    def process(self, message: Message) -> None:
        if message.port == "queue":
            # the queue's word on a suggestion: rejected/failed/held repeats are not coming
            if not isinstance(message.value, dict):
                raise XasError("a plan/status message must be a JSON object")
            ours = self.advisor.update_queue(message.value)
            if ours and _address(message) not in self.restored_updates:
                # one `restore` took already is applied again (idempotent), not counted again
                self.new_updates += 1
            return
        if self.advisor.take_late(message.value):
            # a newer merge of this group was decided on already (messages come in any order)
            self.late += 1
            return
        decision = self.advisor.decide(message.value)
        if decision is None:
            # nothing to say: the advisor said already why it cannot judge this group, or
            # decided on this very merge before a restart (redelivered, not acknowledged)
            return
        group = dict(decision["target"])
        restarted = decision["metrics"].get("noise_history_restarted")
        if restarted:
            # the decision's reason says it too; the log tells the operator watching the run
            self.log.warning("%s: %s", target_label(group), restarted["reason"])
        item = decision.get("item")
        suggestion = Suggestion(
            action=decision["action"],
            target=target_label(group),
            arguments={
                **decision["arguments"],
                "group": group,
                "bad_scans": decision["bad_scans"],
                "latest": decision["latest"],
                # the merge's scans the decision was judged on (the rejected ones are in
                # bad_scans): a results file cites their files, whatever order it gets
                # the merge and the decision in
                "accepted": decision["accepted"],
                "metrics": decision["metrics"],
            },
            reason=decision["reason"],
            confidence=decision["confidence"],
            plan=PlanItem.model_validate(item) if item else None,
            # the queue's status messages name this uid; the advisor counts its repeats
            uid=decision["uid"],
        )
        self.suggest(suggestion)
        self.count += 1
        metrics = decision["metrics"]
        self.decisions[suggestion.target] = {
            "action": suggestion.action,
            **(
                {"scans": decision["arguments"]["scans"]}
                if "scans" in decision["arguments"]
                else {}
            ),
            "noise": _sig(metrics.get("epsilon_k")),
            "target_noise": metrics.get("target_noise"),
            "merged": metrics.get("n_merged"),
            # a floor the fit cannot support is not used, so not shown as the group's floor
            **(
                {"floor": _sig(metrics["noise_model"]["floor"])}
                if metrics.get("noise_model", {}).get("floor_used")
                else {}
            ),
            "reason": suggestion.reason,
        }

    def restore(self, message: Message) -> None:
        # its noise history and the scans it asked for, as an uninterrupted run has them; the
        # worker replays the statuses after the merges, so each reaches the suggestion it names
        # (a status not yet acknowledged comes again to `process`: update_queue takes it twice,
        # the count once)
        if not isinstance(message.value, dict):
            return
        if message.port == "queue":
            if self.advisor.update_queue(message.value):
                self.restored_updates.add(_address(message))
        else:
            self.advisor.restore(message.value)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"suggestions": self.count, "decisions": dict(self.decisions)}
        if self.queue_updates:
            out["queue_updates"] = self.queue_updates
        if self.late:
            out["late_merges"] = self.late
        return out
