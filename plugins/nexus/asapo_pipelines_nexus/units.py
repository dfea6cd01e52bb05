"""The runtime class of `nexus.writer`: a sink around `NexusWriter`.

Only a worker imports this module (h5py and numpy come with it). Each message is written by the
content type of the port it arrived on, under its identity: the producer's provenance key plus
the run and configuration fingerprint that produced it. A message delivered twice, or sent again
by a restarted upstream unit, is stored once; a result of new parameters, or of another run, gets
its own entry.
"""

from __future__ import annotations

import time
from typing import Any

from asapo_pipelines.sdk import Message, Sink
from asapo_pipelines_nexus.errors import NexusWriterError
from asapo_pipelines_nexus.writer import NexusWriter, iso_time


def message_key(message: Message) -> str:
    """The producer's provenance key (stable across upstream restarts), else the address."""
    prov = message.provenance or {}
    if prov.get("key"):
        return str(prov["key"])
    return f"{message.data_source}/{message.stream}/{message.id}"


def run_identity(label: Any, run: dict[str, Any] | None, started: Any = None) -> str:
    """The producing run as `r1@<start time>`. The label alone is not unique: run ids start
    again at r1 when a store is deleted, and a new r1 must not pass for the old one.
    `started` is the producing run's start as its record says (`Message.producer`); without
    it only the writer's own run's start is known: a message of another run (the source
    messages a reprocess replays) keeps the label, which the writer matches against any run
    of it."""
    if started is None and (run or {}).get("run") == label:
        started = (run or {}).get("started")
    stamp = iso_time(started)
    return f"{label}@{stamp}" if stamp else str(label)


def entry_key(message: Message, run: dict[str, Any] | None = None) -> str:
    """Input identity plus the producing run and fingerprint: what one entry stands for.
    `run` is the writer's run (`context.run`): its start makes the run part unique when the
    producer's run start is not known and the message is of the writer's own pipeline."""
    prov = message.provenance or {}
    key = message_key(message)
    if prov.get("run") or prov.get("fingerprint"):
        started = (message.producer or {}).get("run_started")
        mine = _of_writers_pipeline(prov, run or {})
        identity = run_identity(prov.get("run"), run if mine else None, started)
        key += f"|run:{identity}|fp:{prov.get('fingerprint')}"
    return key


def _scan_file(scan: Any) -> str | None:
    """The file of one entry of a merge's `scans`: its scan id is the scan message's key,
    which ends in the file (`...key:<file>`)."""
    if isinstance(scan, dict) and scan.get("scan"):
        return str(scan["scan"]).rpartition("key:")[2]
    return None


def source_files(body: dict[str, Any]) -> list[str]:
    """The scan files a scan, spectrum or merge came from, as far as its message says. A
    merge's data come from its accepted scans only: a rejected one (a duplicate, a truncated
    scan) is not in its spectrum, so a reader citing these files must not cite it."""
    found: list[str] = []
    meta = body.get("metadata")
    if isinstance(meta, dict) and meta.get("file"):
        found.append(str(meta["file"]))
    for scan in body.get("scans") or ():
        # a merge message without the flag (an older one) names only what it merged
        file = _scan_file(scan)
        if file and scan.get("accepted", True) is not False:
            found.append(file)
    return list(dict.fromkeys(found))


def rejected_source_files(body: dict[str, Any]) -> list[str]:
    """The files of the scans a merge screened out (kept apart from `source_files`)."""
    found = [
        _scan_file(scan)
        for scan in body.get("scans") or ()
        if isinstance(scan, dict) and scan.get("accepted") is False
    ]
    return list(dict.fromkeys(f for f in found if f))


def producing_pipeline(prov: dict[str, Any]) -> str | None:
    """The pipeline whose unit wrote a message: its provenance's unit label is
    `<pipeline>/<instance>` (another pipeline's, for a stream read as external)."""
    pipeline, slash, _ = str(prov.get("unit") or "").partition("/")
    return pipeline if slash and pipeline else None


def _of_writers_pipeline(prov: dict[str, Any], run: dict[str, Any]) -> bool:
    """Whether a message comes from the writer's own pipeline (a run label names a run only
    within its pipeline: an external stream's r1 is not the writer's r1). A writer whose run
    names no pipeline (one built by hand) takes every message as its own."""
    writer = run.get("pipeline")
    return writer is None or producing_pipeline(prov) in (None, writer)


def entry_provenance(message: Message, body: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """What an entry records about how it was made (see `NexusWriter.write`)."""
    prov = message.provenance or {}
    producer = dict(message.producer or {})
    # of the writer's own run, its file and start are the producer's too (the file's hash
    # and the overrides are per session: only the producer's record says them)
    mine = run if _of_writers_pipeline(prov, run) and prov.get("run") == run.get("run") else {}
    return {
        "pipeline": producing_pipeline(prov),
        "unit": producer.get("unit"),
        "instance": producer.get("instance") or str(prov.get("unit", "")).rpartition("/")[2],
        "distribution": producer.get("distribution"),
        "distribution_version": producer.get("version"),
        "params": producer.get("params"),
        "fingerprint": prov.get("fingerprint"),
        "run": prov.get("run"),
        # the producer's session, from its pipeline's run record: never the writer's, which
        # may be another session of the run or another pipeline (`writer_pipeline`)
        "pipeline_file": producer.get("pipeline_file") or mine.get("pipeline_file"),
        "pipeline_sha256": producer.get("pipeline_sha256"),
        "overrides": producer.get("overrides"),
        "session_started": producer.get("session_started"),
        "message": message.ref(),
        "inputs": list(prov.get("inputs") or []),
        "source_files": source_files(body),
        "rejected_source_files": rejected_source_files(body),
        "message_time": message.timestamp or None,
        "run_started": producer.get("run_started") or mine.get("started"),
        "writer_pipeline": run.get("pipeline"),
        "writer_run": run.get("run"),
        "written": time.time(),
    }


class NexusWriterSink(Sink):
    """`nexus.writer`: raw scans as NXxas entries, spectra and merges as NXprocess entries."""

    def on_start(self) -> None:
        # a relative `file` is relative to the working directory: the worker runs next to the
        # pipeline file
        self.writer = NexusWriter.from_params(self.params).open(pause=self.wait)
        self._warn_of_other_pipelines()
        self.written, self.duplicates = self._carried()
        self.closed = False

    def _carried(self) -> tuple[dict[str, int], int]:
        """Entries written by port and duplicates skipped before this process in this run
        (`carried_summary`), which it counts on from. The entries a process killed in this
        session wrote after its last summary was published are in the file, not in that
        summary: they are counted from the file, which only this sink writes to (their
        messages, delivered again, are skipped as duplicates). Entries added after an earlier
        session ended are another writer's: not this run's."""
        carried = self.context.carried_summary
        if carried.get("file") != str(self.writer.path.resolve()):
            return {}, 0  # a fresh run, or another file
        written = {
            port.name: n
            for port in self.descriptor.inputs
            if isinstance(n := carried.get(f"{port.name}_written"), int)
        }
        in_file = carried.get("entries_in_file")
        # a summary of before this count, or the earlier sessions': as it says
        if isinstance(in_file, int) and self.context.carried_after_restart:
            ports = {port.content_type: port.name for port in self.descriptor.inputs}
            later = self.writer.entries_in_file - in_file
            for content_type in self.writer.newest_contents(later):
                if content_type in ports:
                    written[ports[content_type]] = written.get(ports[content_type], 0) + 1
        duplicates = carried.get("duplicates_skipped")
        return written, duplicates if isinstance(duplicates, int) else 0

    def _warn_of_other_pipelines(self) -> None:
        """Two pipelines writing one file is allowed (a reprocessing pipeline beside the
        beamline's), but their run labels overlap (both have an r1): say so once."""
        own = (self.context.run or {}).get("pipeline")
        others = sorted(self.writer.pipelines - {own}) if own else []
        if others:
            self.log.warning(
                "%s already holds entries of pipeline %s; those of pipeline %s go beside "
                "them: tell them apart by the entries' asapo_pipeline attribute, then asapo_run",
                self.writer.path,
                ", ".join(others),
                own,
            )

    def process(self, message: Message) -> None:
        port = self.descriptor.input(message.port)
        if port is None:  # the worker feeds only declared ports; a clear sentence otherwise
            raise NexusWriterError(f"nexus.writer has no input port {message.port!r}")
        body = message.value
        if not isinstance(body, dict):
            raise NexusWriterError(
                f"message {message.data_source}/{message.stream}/{message.id} is not a JSON "
                f"object; nexus.writer stores {port.content_type} messages"
            )
        name = self.writer.write(
            port.content_type,
            body,
            entry_key(message, self.context.run),
            provenance=entry_provenance(message, body, self.context.run),
        )
        if name is None:
            self.duplicates += 1
        else:
            self.written[port.name] = self.written.get(port.name, 0) + 1

    def flush(self) -> None:
        # every entry is flushed when written; flushing again makes the promise explicit
        if not self.closed:
            self.writer.file.flush()

    def on_shutdown(self) -> None:
        self.writer.close()
        self.closed = True

    def summary(self) -> dict[str, Any]:
        return {
            "file": str(self.writer.path.resolve()),
            "entries_written": sum(self.written.values()),
            **{f"{port}_written": n for port, n in sorted(self.written.items())},
            "duplicates_skipped": self.duplicates,
            # what a process restarted in this one's place corrects its counts by (`_carried`)
            "entries_in_file": self.writer.entries_in_file,
        }
