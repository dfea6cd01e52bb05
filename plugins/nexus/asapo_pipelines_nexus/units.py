"""The runtime class of `nexus.writer`: a sink around `NexusWriter`.

Only a worker imports this module (h5py and numpy come with it). Each message is written by the
content type of the port it arrived on, under its identity: the producer's provenance key plus
the run and configuration fingerprint that produced it. A message delivered twice, or sent again
by a restarted upstream unit, is stored once; a result of new parameters, or of another run, gets
its own entry.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import Message, Sink, UnitStorageError
from asapo_pipelines_nexus.errors import FileGone, ForeignFile, NexusWriterError
from asapo_pipelines_nexus.recovery import NOT_HDF5, swmr_format_problem
from asapo_pipelines_nexus.writer import (
    NexusWriter,
    file_id_at,
    iso_time,
    nothing_merged,
    readable_start,
)


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


#: what the key of a later version of a scan file adds to the file's name (`xas.scan-files`:
#: `20K_GOE_Fe_K_240.00001.xdi@383535-1765...`, the size and the modification time in ns it
#: was read at), so that the worker's de-duplication does not drop the new version
_VERSION_SUFFIX = re.compile(r"@\d+-\d+$")


def _scan_file(scan: Any) -> str | None:
    """The file of one entry of a merge's `scans`: its scan id is the scan message's key,
    which ends in the file (`...key:<file>`), and for a later version of the file in the
    size and time it was read at, which are no part of the file's name: a reader citing the
    merge's files must find them in the scan directory."""
    if isinstance(scan, dict) and scan.get("scan"):
        return _VERSION_SUFFIX.sub("", str(scan["scan"]).rpartition("key:")[2])
    return None


def _judged_scans(body: dict[str, Any]) -> list[Any]:
    """The scans of the merge an agent's decision (`plan/suggestion`) judged, as a merge's
    `scans` lists them: its `arguments` carry the merge's `accepted` scan ids and, with them,
    the rejected ones (`bad_scans`). Read from the decision's own message, not from the
    merge's entry: the merge may come later, be in another session's or pipeline's file, or
    be written again on a rebuild. None of them for a decision that names no accepted scans
    (another agent's, or one of before xas.convergence-agent named them)."""
    arguments = body.get("arguments")
    if not isinstance(arguments, dict) or not isinstance(arguments.get("accepted"), list):
        return []
    bad = arguments.get("bad_scans")
    return [
        *({"scan": scan, "accepted": True} for scan in arguments["accepted"]),
        *(
            {"scan": scan.get("scan"), "accepted": False}
            for scan in (bad if isinstance(bad, list) else ())
            if isinstance(scan, dict)
        ),
    ]


def _scans(body: dict[str, Any]) -> list[Any]:
    """The scans a merge lists (`scans`), or those of the merge a decision judged."""
    return list(body.get("scans") or ()) or _judged_scans(body)


def source_files(body: dict[str, Any]) -> list[str]:
    """The scan files a scan, spectrum, merge or decision came from, as far as its message
    says. A merge's data come from its accepted scans only: a rejected one (a duplicate, a
    truncated scan) is not in its spectrum, so a reader citing these files must not cite it.
    A decision cites those of the merge it judged (`_judged_scans`)."""
    found: list[str] = []
    meta = body.get("metadata")
    if isinstance(meta, dict) and meta.get("file"):
        found.append(str(meta["file"]))
    for scan in _scans(body):
        # a merge message without the flag (an older one) names only what it merged
        file = _scan_file(scan)
        if file and scan.get("accepted", True) is not False:
            found.append(file)
    return list(dict.fromkeys(found))


def rejected_source_files(body: dict[str, Any]) -> list[str]:
    """The files of the scans a merge screened out (kept apart from `source_files`); of a
    decision, those the merge it judged screened out. A file the merge took a later version
    of is not among them: its earlier version was replaced, not screened out, and the file
    is in the merge (`source_files`), which a file cannot be and be rejected too."""
    cited = set(source_files(body))
    found = [
        _scan_file(scan)
        for scan in _scans(body)
        if isinstance(scan, dict) and scan.get("accepted") is False
    ]
    return list(dict.fromkeys(f for f in found if f and f not in cited))


def raw_file(message: Message, body: dict[str, Any]) -> dict[str, Any] | None:
    """The raw file a scan message was read from, as its source's message metadata says it
    (xas.scan-files: `path`, as read, relative to its directory or absolute; `file_size` in
    bytes; `file_sha256` of the bytes parsed): what lets a data manager check that an archived
    scan file is the one processed. None for a message without them (another source, or one of
    before xas.scan-files sent them)."""
    meta = message.user_metadata
    sha, size = meta.get("file_sha256"), meta.get("file_size")
    if not isinstance(sha, str) or not isinstance(size, int) or isinstance(size, bool):
        return None
    body_meta = body.get("metadata")
    name = body_meta.get("file") if isinstance(body_meta, dict) else None
    path = meta.get("path")
    return {
        "file": str(name or path or ""),
        "path": None if path is None else str(path),
        "size": size,
        "sha256": sha,
    }


def source_scans(body: dict[str, Any]) -> list[str]:
    """The scan ids (the scan messages' keys) of the scans behind `source_files`: a spectrum's
    scan, a merge's accepted scans, those of the merge a decision judged. The writer finds each
    one's raw file checksum among the raw scans it wrote (`NexusWriter.source_checksums`): a
    merge's message names its scans, not their files' checksums."""
    found: list[str] = []
    meta = body.get("metadata")
    if isinstance(meta, dict) and meta.get("scan_id"):
        found.append(str(meta["scan_id"]))
    for scan in _scans(body):
        if isinstance(scan, dict) and scan.get("scan") and scan.get("accepted", True) is not False:
            found.append(str(scan["scan"]))
    return list(dict.fromkeys(found))


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
        # where it was computed: the producing worker's host and executor's job
        "host": producer.get("host"),
        "job": producer.get("job"),
        "message": message.ref(),
        "inputs": list(prov.get("inputs") or []),
        "source_files": source_files(body),
        "rejected_source_files": rejected_source_files(body),
        "raw_file": raw_file(message, body),
        "source_scans": source_scans(body),
        "message_time": message.timestamp or None,
        "run_started": producer.get("run_started") or mine.get("started"),
        "writer_pipeline": run.get("pipeline"),
        "writer_run": run.get("run"),
        "written": time.time(),
    }


def _not_hdf5_now(path: Path) -> str | None:
    """What another program made of the run's file in place when it is no HDF5 file now
    (`: > file`, a text written over it), as the end of "<path> ...". A file of the run's
    always starts with HDF5's superblock (the writer flushes it on opening), even one left
    damaged by a crash, which opening salvages: this is not one."""
    try:
        if path.stat().st_size == 0:
            return "was emptied"
    except OSError:
        return None
    if swmr_format_problem(path) == NOT_HDF5:
        return "was overwritten with a file that is not HDF5"
    return None


def _entries(n: int) -> str:
    return f"{n} {'entry' if n == 1 else 'entries'}"


def _pipeline_file(run: dict[str, Any]) -> str:
    # the file of this session, where the user runs the pipeline now: the run's first session
    # may have run from another place (a project folder moved or copied since), and that
    # folder's file would act on that folder's store and NeXus file
    return str(run.get("session_pipeline_file") or run.get("pipeline_file") or "PIPELINE_FILE")


def _resume_command(run: dict[str, Any]) -> str:
    return f"pipeline run --resume {_pipeline_file(run)}"


def in_folder(path: Path | str, folder: Path | str) -> str:
    """`path` as seen from `folder` (the pipeline file's folder, where a worker works): what
    stays the same when the project folder holding both is moved or copied, which changes
    every absolute path (the runs store and the local executor know a moved folder the same
    way)."""
    return os.path.relpath(Path(path).resolve(), Path(folder).resolve())


def gone_sentence(gone: FileGone, run: dict[str, Any], others: dict[str, int] | None = None) -> str:
    """What became of the file, of its entries, and how a resume writes them again."""
    label = run.get("run") or "this run"
    command = _resume_command(run)
    held, are = _entries(gone.entries), "is" if gone.entries == 1 else "are"
    if gone.changed:  # the other program may have left them or not: only it knows
        fate = f"the {held} it held may be gone from it"
    elif gone.kept is None:  # found gone by a restarted writer: where it went is not known
        fate = f"the {held} it held {are} not at that path any more"
    elif gone.kept:
        fate = f"the {held} it held {are} in it, wherever it is now"
    else:
        fate = f"the {held} it held {are} in no file any more"
    if gone.path.exists():
        remedy = (
            f"move the file now at {gone.path} aside unless it is meant to take them, then "
            f"`{command}` writes every entry of run {label} into the file at that path"
        )
    else:
        remedy = f"`{command}` writes every entry of run {label} into a new file there"
    sentence = (
        f"nexus.writer stops: {gone.path} {gone.what} while run {label} wrote it; {fate}, and "
        f"nothing more is acknowledged; {remedy} from the run's stored inputs"
    )
    other = {k: n for k, n in (others or {}).items() if k != f"{run.get('pipeline')} {label}"}
    if other and gone.kept is False and not gone.changed:
        runs = ", ".join(f"{_entries(n)} of {k}" for k, n in sorted(other.items()))
        sentence += (
            f"; the entries of other runs it held ({runs}) are not part of this run: "
            "reprocessing those runs (`pipeline reprocess`) writes them again"
        )
    return sentence


def foreign_sentence(foreign: ForeignFile, run: dict[str, Any]) -> str:
    """Why the file at the path cannot take the run's entries, and how they get a file."""
    label = run.get("run") or "this run"
    return (
        f"nexus.writer cannot write {foreign.path}: it {foreign.problem}; move that file aside "
        f"(rename it), then `{_resume_command(run)}` writes every entry of run {label} into a "
        "new file there from the run's stored inputs"
    )


class NexusWriterSink(Sink):
    """`nexus.writer`: raw scans as NXxas entries, spectra and merges as NXprocess entries."""

    def on_start(self) -> None:
        # a relative `file` is relative to the working directory: the worker runs next to the
        # pipeline file
        self.writer = NexusWriter.from_params(self.params)
        run = self.context.run or {}
        # named in the lock file: a second writer refused the file says who holds it
        self.writer.holder = {
            "pipeline": run.get("pipeline") or self.context.pipeline,
            "run": run.get("run"),
            "unit": self.context.instance,
        }
        # a reprocess's results cite the raw entries of the run it replays, not those of every
        # run of the same scans the file holds
        replays = self.context.replays
        if replays is not None:
            self.writer.replays = run_identity(replays.run, None, replays.started)
        self.writer.run_settings = {
            "from": replays.run if replays is not None else run.get("run"),
            "pipeline_file": run.get("session_pipeline_file") or run.get("pipeline_file"),
            **({"overrides": run["overrides"]} if isinstance(run.get("overrides"), dict) else {}),
        }
        # looked at before opening, which would put a new file where a removed one was
        lost = self._lost_since_last_session()
        #: the entries of other runs the lost file held, by `pipeline run`, with how each run
        #: writes them again (the lock file's ledger, read before opening rewrites it)
        self._others_lost = self._other_runs_in(lost) if lost is not None else {}
        if lost is not None and self.context.carried_after_restart:
            # the run wrote into a file that was taken away under it: whether the file now at
            # the path (or a new one) should get the run's entries is for a person to decide
            # (`--resume`), not for a restart: it could be another experiment's file
            raise NexusWriterError(gone_sentence(lost, self.context.run))
        try:
            self.writer.open(pause=self.wait)
        except ForeignFile as foreign:
            raise NexusWriterError(foreign_sentence(foreign, self.context.run)) from None
        self._warn_of_other_pipelines()
        self._warn_of_same_run_id()
        #: in mode auto: raw scans with It and If (stored as Transmission) and spectra computed
        #: in fluorescence this process wrote; both, and the file contradicts itself (`_mode`)
        self._both_channels = self._fluorescence_spectra = 0
        self._mode_told = False
        self.written, self.duplicates, self.merges_without_data = self._carried()
        self.closed = False
        self.rebuilt = 0
        self._salvage_untold = False
        #: (entries found, entries the run left) when the run's own file came back with fewer
        #: entries; said once they are rebuilt (`summary`)
        self._fewer_untold: tuple[int, int] | None = None
        #: entries `restore` wrote of messages not acknowledged before: when they come again
        #: (`process`), they count as written, not as duplicates
        self._rebuilt_keys: set[str] = set()
        if lost is not None:
            self._rebuild(lost)
        elif self.writer.salvaged is not None:
            self._rebuild_salvaged()
        else:
            self._rebuild_older_copy()

    def _lost_since_last_session(self) -> FileGone | None:
        """Whether the file this run wrote before is gone from the path, or another is there
        (the file's own id, `FILE_ID_ATTR`, is not the one the run's summary names)."""
        carried = self.context.carried_summary
        was = carried.get("file_id")
        path = self.writer.path.absolute()
        if not self._wrote_this_file() or not isinstance(was, str):
            return None  # a fresh run, another file, or a summary from before files had ids
        entries = carried.get("entries_in_file")
        held = entries if isinstance(entries, int) else 0
        if not path.exists():
            return FileGone(path, "was removed or moved away", held)
        overwritten = _not_hdf5_now(path)
        if overwritten is not None:
            return FileGone(path, overwritten, held)
        now = file_id_at(path)
        if now is None or now == was:
            return None  # the same file, or a damaged one: opening it salvages it
        return FileGone(path, "was replaced by another file", held)

    def _wrote_this_file(self) -> bool:
        """The run wrote the file at this path before (its carried summary names it): by its
        absolute path, or, in a project folder moved or copied since (the pipeline file, its
        store and the results together), by its path seen from the pipeline file's folder.
        Compared by absolute path alone, the run's own file in a moved or copied folder
        passed for another file: a resume after it was lost rebuilt nothing and called the
        empty new file complete. A copy's file is the copy's own (its path resolves in the
        copy's folder, never in the original's); whether it is still the file the run wrote
        is then its id's to say (`_lost_since_last_session`)."""
        carried = self.context.carried_summary
        here = self.writer.path.resolve()
        if carried.get("file") == str(here):
            return True
        seen = carried.get("file_in_folder")
        if not isinstance(seen, str):
            seen = self._in_folder_before(carried.get("file"))
        return seen is not None and seen == in_folder(here, Path.cwd())

    def _in_folder_before(self, file: Any) -> str | None:
        """For a summary written before summaries named the file's place in the folder: the
        file as seen from the folder of the pipeline file the run started with (its record
        names it), where that session's worker worked."""
        started = (self.context.run or {}).get("pipeline_file")
        if not isinstance(file, str) or not isinstance(started, str):
            return None
        return os.path.relpath(file, Path(started).parent)

    def _replay_inputs(self) -> None:
        """Have the worker hand `restore` every message of this run's inputs (they are in the
        store): each one whose entry the file lacks is written again. Only when entries of
        the run were lost: reading every input costs as much as the run did."""
        # per instance: the class's default (no restore) is every other start's
        self.restores_state = True
        self.restore_ports = tuple(port.name for port in self.descriptor.inputs)

    def _other_runs_in(self, lost: FileGone) -> dict[str, dict[str, Any]]:
        """The other runs whose entries the lost file held, from the lock file's ledger when it
        was written for that file (its id is the one the run's summary names): the run's own
        summary counts only the entries it left, and a later run's (a `pipeline reprocess`)
        entries in the same file would go without a word."""
        ledger = self.writer.ledger()
        runs = ledger.get("runs")
        if ledger.get("file_id") != self.context.carried_summary.get("file_id"):
            return {}  # a ledger of another file, or none
        run = self.context.run or {}
        own = f"{run.get('pipeline') or self.context.pipeline} {run.get('run')}"
        return {
            label: info
            for label, info in sorted(runs.items() if isinstance(runs, dict) else [])
            if label != own and isinstance(info, dict) and isinstance(info.get("entries"), int)
        }

    def _rebuild(self, lost: FileGone) -> None:
        """A resume after the file was taken away: every entry of the run is written again;
        the other runs' entries it held are named, with what writes them again."""
        self._replay_inputs()
        self.log.warning(
            "%s %s since run %s last wrote it, with %s; nexus.writer writes every entry of "
            "the run into it again from the run's stored inputs%s",
            lost.path,
            lost.what,
            self.context.run.get("run") or "this run",
            _entries(lost.entries),
            self._others_sentence(),
        )

    def _others_sentence(self) -> str:
        """`; ...` naming the other runs' entries the lost file held, which a resume of this
        run does not write, each with the command that does; "" when there were none."""
        if not self._others_lost:
            return ""
        own_file = _pipeline_file(self.context.run or {})
        told = []
        for label, info in self._others_lost.items():
            pipeline, _, run = label.rpartition(" ")
            file = info.get("pipeline_file") or own_file
            if isinstance(info.get("overrides"), dict) and info.get("from"):
                from asapo_pipelines.sdk import set_options  # the CLI's own quoting

                again = (
                    f"`pipeline reprocess {file} --from {info['from']}"
                    f"{set_options(info['overrides'])}` writes them again"
                )
            else:  # written by a writer that kept no settings: the run's record has them
                again = (
                    f"`pipeline runs {file}` shows run {run}'s settings, and `pipeline "
                    f"reprocess` with them writes them again"
                )
            told.append(
                f"{_entries(info['entries'])} of run {run} of pipeline {pipeline} ({again})"
            )
        return (
            f"; the lost file also held {_entries(self._lost_of_others())} of other runs, "
            f"which this resume does not write: {'; '.join(told)}"
        )

    def _rebuild_salvaged(self) -> None:
        """The file was found damaged and salvaged on opening: the entries of this run the
        salvage could not copy are written again from the run's inputs, when this run wrote
        the file before (a resume, a restart); `on_restored` then says what became of it."""
        if self._wrote_this_file():
            self._replay_inputs()
            # said once the rebuilt entries are counted: the worker asks for the unit's
            # summary right after the last `restore`, before any new message (`summary`)
            self._salvage_untold = True
        else:
            self._say_salvaged()  # a new run: none of its entries were in the file

    def _rebuild_older_copy(self) -> None:
        """The run's own file (its id) holding fewer complete entries than the run left in it:
        an older copy put back (a backup restored, a copy taken mid-run), or entries deleted by
        another program. Unlike another file at the path, it is the run's: its missing entries
        are written again from the run's stored inputs, on a resume as on a restart (otherwise
        their inputs, acknowledged long ago, never come back and the entries are lost without
        a word)."""
        carried = self.context.carried_summary
        left = carried.get("entries_in_file")
        if (
            not self._wrote_this_file()
            or carried.get("file_id") != self.writer.file_id
            or not isinstance(left, int)
            or self.writer.entries_in_file >= left
        ):
            return
        self._replay_inputs()
        self._fewer_untold = (self.writer.entries_in_file, left)

    def _say_fewer(self) -> None:
        """One line once the run's entries are rebuilt: what was missing, what is back, and
        what only reprocessing other runs brings back."""
        assert self._fewer_untold is not None
        found, left = self._fewer_untold
        self._fewer_untold = None
        label = self.context.run.get("run") or "this run"
        still = left - self.writer.entries_in_file
        self.log.warning(
            "%s held %s where run %s left %d when it last wrote it (an older copy put back, "
            "or entries deleted): %s of run %s written again from its stored inputs%s",
            self.writer.path,
            _entries(found),
            label,
            left,
            _entries(self.rebuilt),
            label,
            f"; {_entries(still)} of other runs are still missing: reprocessing those runs "
            "(`pipeline reprocess`) writes them again"
            if still > 0
            else "",
        )

    def _say_salvaged(self) -> None:
        """One line: how many entries were salvaged, how many rebuilt, where the damaged file
        is."""
        salvaged = self.writer.salvaged
        assert salvaged is not None
        self._salvage_untold = False
        self.log.warning(
            "%s was damaged (%s): %s salvaged into a fresh file at that path, %s of run %s "
            "rebuilt from the run's stored inputs; the damaged file is kept as %s",
            self.writer.path,
            salvaged.cause,
            _entries(salvaged.entries),
            _entries(self.rebuilt),
            self.context.run.get("run") or "this run",
            salvaged.damaged,
        )

    def restore(self, message: Message) -> None:
        # called only while rebuilding (`_rebuild`); an entry the file has is skipped before
        # its payload is decoded
        if self.writer.has(entry_key(message, self.context.run)):
            return
        try:
            key, name = self._store(message)
        except NexusWriterError:
            return  # a message the writer refused when it came: in the error stream since
        if name is not None:
            self.rebuilt += 1
            self._rebuilt_keys.add(key)

    def _carried(self) -> tuple[dict[str, int], int, int]:
        """Entries written by port, duplicates skipped and merges of no scan written before
        this process in this run (`carried_summary`), which it counts on from. The entries a
        process killed in this session wrote after its last summary was published are in the
        file, not in that summary: they are counted from the file, which only this sink writes
        to (their messages, delivered again, are skipped as duplicates). Entries added after an
        earlier session ended are another writer's: not this run's."""
        carried = self.context.carried_summary
        if not self._wrote_this_file():
            return {}, 0, 0  # a fresh run, or another file
        empty = carried.get("merges_without_data")
        without_data = empty if isinstance(empty, int) else 0
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
            without_data += self.writer.newest_without_data(later)
        duplicates = carried.get("duplicates_skipped")
        return written, duplicates if isinstance(duplicates, int) else 0, without_data

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

    def _warn_of_same_run_id(self) -> None:
        """Run ids start again at r1 when a store is deleted (or another store runs the same
        pipeline): a file already holding entries of another run with this run's id would
        mix the two under one `asapo_run`. Say so once, naming both starts; the entries tell
        them apart by their start (`asapo_run_started`, and titles that name it)."""
        run = self.context.run or {}
        pipeline, label, started = run.get("pipeline"), run.get("run"), iso_time(run.get("started"))
        if not (pipeline and label and started):
            return
        others = sorted(self.writer.run_starts(str(pipeline), str(label)) - {started})
        if others:
            self.log.warning(
                "%s already holds entries of another run %s of pipeline %s, started %s; this "
                "run %s started %s (run ids start again at r1 in a new store): its entries' "
                "titles lead with `%s %s (started %s):` and their asapo_run_started attribute "
                "is %s, which tells the runs apart",
                self.writer.path,
                label,
                pipeline,
                " and ".join(readable_start(s) for s in others),
                label,
                readable_start(started),
                pipeline,
                label,
                readable_start(started),
                started,
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
        key, name = self._store(message)
        if name is None and key not in self._rebuilt_keys:
            self.duplicates += 1
            return
        self._rebuilt_keys.discard(key)
        self.written[port.name] = self.written.get(port.name, 0) + 1
        self._mode(port.content_type, body)
        if port.content_type == "xas/merged" and nothing_merged(body):
            # a merge of nothing (every scan rejected, or scans that disagree with no
            # majority): its entry says so and why, and holds no spectrum (the writer's
            # `write_nothing_merged`); counted among the merges written, and apart
            self.merges_without_data += 1

    def _mode(self, content_type: str, body: dict[str, Any]) -> None:
        """Say once when the `mode` param is `auto` and the raw scans carry both It and If
        (stored as a Transmission measurement) while xas.normalize computes in fluorescence:
        the raw entries then name the wrong measurement, and `mode: fluorescence` is the fix."""
        if self.params.mode != "auto" or self._mode_told:
            return
        if content_type == "xas/scan":
            channels = body.get("channels")
            if isinstance(channels, dict) and {"it", "if"} <= set(channels):
                self._both_channels += 1
        elif content_type == "xas/spectrum":
            meta = body.get("metadata")
            if isinstance(meta, dict) and meta.get("mode") == "fluorescence":
                self._fluorescence_spectra += 1
        if self._both_channels and self._fluorescence_spectra:
            self._mode_told = True
            self.log.warning(
                "the spectra %s stores are computed in fluorescence (If/I0), but its raw scan "
                "entries say Transmission with It as the absorbed beam: the scans carry It and "
                "If, and nexus.writer's mode is auto; set the writer's `mode: fluorescence` so "
                "that they name the measurement",
                self.writer.path,
            )

    def _store(self, message: Message) -> tuple[str, str | None]:
        """Write one message: its key, and its entry's name (None when the file has it)."""
        port = self.descriptor.input(message.port)
        assert port is not None  # checked by `process`; `restore` gets declared ports only
        key = entry_key(message, self.context.run)
        try:
            name = self.writer.write(
                port.content_type,
                message.value,
                key,
                provenance=entry_provenance(message, message.value, self.context.run),
            )
        except FileGone as gone:
            raise self._stopped(gone) from None
        return key, name

    def _stopped(self, gone: FileGone) -> UnitStorageError:
        """The file was taken away mid-run: the worker stops without acknowledging."""
        return UnitStorageError(gone_sentence(gone, self.context.run, self.writer.runs_in_file()))

    def flush(self) -> None:
        # every entry is flushed when written; flushing again makes the promise explicit, and
        # the path must still name the file, unchanged by others: an entry in an unlinked or
        # overwritten file is not durable
        if not self.closed:
            try:
                self.writer.flush()
            except FileGone as gone:
                raise self._stopped(gone) from None

    def on_shutdown(self) -> None:
        self.writer.close()
        self.closed = True

    def _lost_of_others(self) -> int:
        return sum(info["entries"] for info in self._others_lost.values())

    def summary(self) -> dict[str, Any]:
        if self._salvage_untold:
            self._say_salvaged()
        if self._fewer_untold is not None:
            self._say_fewer()
        return {
            "file": str(self.writer.path.resolve()),
            "entries_written": sum(self.written.values()),
            **{f"{port}_written": n for port, n in sorted(self.written.items())},
            "duplicates_skipped": self.duplicates,
            # of the merges written, those that merged no scan: entries without a spectrum
            **(
                {"merges_without_data": self.merges_without_data}
                if self.merges_without_data
                else {}
            ),
            # which file the run wrote: a later session finds out whether it is still there
            "file_id": self.writer.file_id,
            # how a later session knows the file as the run's after the project folder was
            # moved or copied (`_wrote_this_file`): the worker works in the pipeline file's
            # folder
            "file_in_folder": in_folder(self.writer.path, Path.cwd()),
            # a resume that found the file gone wrote these again (`_rebuild`)
            **({"entries_rebuilt_in_file": self.rebuilt} if self.rebuilt else {}),
            # the entries of other runs the lost file held, which the resume did not write
            # (`_others_sentence` names the runs and what writes them again)
            **({"entries_of_other_runs_lost": lost} if (lost := self._lost_of_others()) else {}),
            # what a process restarted in this one's place corrects its counts by (`_carried`)
            "entries_in_file": self.writer.entries_in_file,
        }
