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
)
from asapo_pipelines_xas import merge, normalize
from asapo_pipelines_xas.agent import ConvergenceAgent as Advisor
from asapo_pipelines_xas.errors import ScanFileError, XasError
from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.readers import Scan
from asapo_pipelines_xas.scanfiles import (
    ScanFileWatcher,
    list_scan_files,
    read_for_params,
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


class ScanFiles(Source):
    """`xas.scan-files`: one `xas/scan` message per file; in watch mode, each new file once it
    is complete, and a file that changed after it was read once more, as a new version."""

    def on_start(self) -> None:
        self.directory = Path(self.params.directory)
        if not self.directory.is_dir():
            raise XasError(f"the scan directory {self.params.directory} does not exist")
        self.sent: list[str] = []
        self.malformed: list[dict[str, str]] = []
        self.versions: list[dict[str, Any]] = []
        #: file name -> (key, digest of the scan) of the version this process sent last
        self._last: dict[str, tuple[str, str]] = {}
        #: the same, of what earlier runs sent (`restore`)
        self._earlier: dict[str, tuple[str, str]] = {}
        #: file names this process reported as malformed
        self._reported: set[str] = set()

    def _send(self, path: Path, watcher: ScanFileWatcher | None = None) -> None:
        name = path.relative_to(self.directory).as_posix()
        read_as = watcher.sent.get(path) if watcher is not None else None
        scan: Scan | None = None
        error: XasError | None = None
        try:
            scan = read_for_params(path, self.params)
        except XasError as exc:
            error = exc
        except OSError as exc:
            error = ScanFileError(name, exc.strerror or str(exc))
        if watcher is not None and read_as is not None:
            try:
                now = signature(path)
            except OSError:
                now = None
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
        suffix = f"@{read_as[0]}-{read_as[1]}" if read_as is not None else ""
        if error is not None:
            key = name + suffix if name in self._reported or known else name
            # a malformed file is reported with its reason and the others go on
            self.report_error(error, key=key)
            self._reported.add(name)
            self.malformed.append({"file": name, "reason": str(error)})
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
        metadata.update(path=name, scan_digest=digest)
        key = name
        if previous is None and name in self._earlier:
            previous = self._earlier[name]
            if previous[1] == digest:
                key, previous = previous[0], None  # sent by an earlier run: the worker skips it
        if previous is not None:
            key = name + suffix
            version = watcher.version(path) if watcher is not None else 0
            # downstream tells the versions apart: the merge rejects the earlier, partial
            # one on its energy coverage once this one is there
            body["metadata"]["replaces"] = metadata["replaces"] = previous[0]
            metadata["file_version"] = version
            self.log.warning(
                "scan file %s changed after it was read and sent: sending it again "
                "(version %d, %d bytes, %d points); on a file system without events "
                "settle_seconds must exceed the writer's longest pause",
                name,
                version,
                read_as[0] if read_as else 0,
                len(scan),
            )
            self.versions.append({"file": name, "version": version, "points": len(scan)})
        self.emit("scans", body, metadata=metadata, key=key)
        self._last[name] = (key, digest)
        self.sent.append(name)

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
        if isinstance(name, str) and isinstance(digest, str) and key is not None:
            self._earlier[name] = (key, digest)

    def run(self) -> None:
        p = self.params
        if not p.watch:
            for path in list_scan_files(
                self.directory, p.pattern, recursive=p.recursive, order=p.order
            ):
                if self.stopping:
                    return
                self._send(path)
            return
        watcher = ScanFileWatcher(
            self.directory, p.pattern, recursive=p.recursive, settle_seconds=p.settle_seconds
        )
        # events tell when a file is complete (its writer closed it, or it was renamed in) on
        # local file systems, and which files are being written: those are never settled. The
        # timed look still runs for files without events (NFS, GPFS, present at start).
        events = DirectoryEvents(self.directory, writes=True) if not p.recursive else None
        complete: set[str] = set()
        written: set[str] = set()
        try:
            while True:
                for path in watcher.poll(complete, written):
                    if self.stopping:
                        return
                    self._send(path, watcher)
                if events is None or not events.available:
                    if self.wait(WATCH_POLL):
                        return
                    continue
                complete, written = events.wait_changes(WATCH_POLL)  # then `stopping` is looked at
                if events.overflowed:  # events were lost: settle what was seen being written
                    events.overflowed = False
                    watcher.events_lost()
                if self.stopping:
                    return
        finally:
            if events is not None:
                events.close()

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scans_sent": len(self.sent), "directory": str(self.directory)}
        if self.malformed:
            out["malformed"] = self.malformed[-SUMMARY_ITEMS:]
        if self.versions:
            out["sent_again"] = self.versions[-SUMMARY_ITEMS:]
        return out


class Normalize(Processor):
    """`xas.normalize`: one `xas/spectrum` per `xas/scan` (xraylarch pre_edge, autobk, noise)."""

    def on_start(self) -> None:
        normalize.load_larch()  # while the worker says "loading", not in the first scan
        self.results: list[dict[str, Any]] = []

    def process(self, message: Message) -> dict[str, Any]:
        spectrum = normalize_scan(Scan.from_json(message.value), self.params)
        # the merge recognises a redelivered scan by this identity (see Merger.add)
        spectrum.metadata["scan_id"] = message_key(message)
        values = spectrum.values
        self.results = [r for r in self.results if r["file"] != spectrum.metadata.get("file")]
        self.results.append(
            {
                "file": spectrum.metadata.get("file"),
                "e0": _round(values.get("e0"), 2),
                "edge_step": _round(values.get("edge_step"), 4),
                "noise": _sig(values.get("epsilon_k")),
            }
        )
        del self.results[:-SUMMARY_ITEMS]
        return spectrum.to_json()

    def summary(self) -> dict[str, Any]:
        # by file, not by arrival: scans come in any order (a transport promises none), and
        # repeats' file names count up
        scans = sorted(self.results, key=lambda r: str(r["file"]))
        return {"spectra": len(self.results), "scans": scans}


class Merge(Processor):
    """`xas.merge`: after every spectrum, the merge of its group (sample, element, edge, mode)."""

    #: a restarted merge gets the spectra it merged before (the worker calls `restore`)
    restores_state = True

    def on_start(self) -> None:
        merge.load_larch()  # while the worker says "loading", not in the first spectrum
        self.merger = Merger(self.params)
        self.groups: dict[str, dict[str, Any]] = {}

    def restore(self, message: Message) -> None:
        # Merger.add is idempotent per scan: a spectrum that comes back later replaces itself
        self._add(message)

    def process(self, message: Message) -> dict[str, Any]:
        return self._add(message)

    def _add(self, message: Message) -> dict[str, Any]:
        merged = self.merger.add(message.value).to_json()
        group = merged["group"]
        values = merged["values"]
        self.groups["/".join(str(v) for v in group.values())] = {
            "scans": merged["n_scans"],
            "merged": merged["n_merged"],
            "rejected": len(merged["rejected"]),
            "e0": _round(values.get("e0"), 2),
            "edge_step": _round(values.get("edge_step"), 4),
            "noise": _sig(values.get("epsilon_k")),
            "single_scan_noise": [_sig(s.get("epsilon_k")) for s in merged["scans"]],
        }
        return merged

    def summary(self) -> dict[str, Any]:
        return {"groups": len(self.groups), "merges": dict(self.groups)}


def target_label(group: dict[str, Any]) -> str:
    """A suggestion's target as one string: sample/element/edge/mode."""
    return "/".join(str(v) for v in group.values() if v not in (None, "")) or "unknown"


class ConvergenceAgent(Agent):
    """`xas.convergence-agent`: a plan suggestion (more scans, stop, change parameters) for every
    merge, in the SDK's suggestion schema; the core's details go under `arguments`."""

    def on_start(self) -> None:
        self.advisor = Advisor(self.params)
        self.decisions: dict[str, dict[str, Any]] = {}
        self.count = 0
        self.queue_updates = 0
        self.late = 0

    def process(self, message: Message) -> None:
        if message.port == "queue":
            # the queue's word on a suggestion: rejected/failed/held repeats are not coming
            if not isinstance(message.value, dict):
                raise XasError("a plan/status message must be a JSON object")
            if self.advisor.update_queue(message.value):
                self.queue_updates += 1
            return
        if self.advisor.take_late(message.value):
            # a newer merge of this group was decided on already (messages come in any order)
            self.late += 1
            return
        decision = self.advisor.decide(message.value)
        group = dict(decision["target"])
        item = decision.get("item")
        suggestion = Suggestion(
            action=decision["action"],
            target=target_label(group),
            arguments={
                **decision["arguments"],
                "group": group,
                "bad_scans": decision["bad_scans"],
                "latest": decision["latest"],
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
            **(
                {"floor": _sig(metrics["noise_model"]["floor"])} if "noise_model" in metrics else {}
            ),
            "reason": suggestion.reason,
        }

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"suggestions": self.count, "decisions": dict(self.decisions)}
        if self.queue_updates:
            out["queue_updates"] = self.queue_updates
        if self.late:
            out["late_merges"] = self.late
        return out
