"""Appending scans and results to a NeXus (HDF5) file that readers may open while it grows.

The root (NXroot) carries file_name, file_time, creator, HDF5_Version, h5py_version and
`default`: the entry a viewer plots first (the newest merge, else the newest normalised
spectrum, else the newest entry), kept current as entries are written and when a writer reopens
the file; each entry's `default` names its NXdata. Newest is by the entry's message: the later
run's, in one stream the higher message id, across streams the later written; not the order the
writer got them in (a message redelivered after a crash comes after later ones). Titles lead
with the pipeline and run (`p65 r1: ...`; with the run's start when the file holds another run
of that id, `p65 r1 (started 2026-12-04 03:58:32 UTC): ...`); a merge's says its message id in
its stream (`merge 7 of ...`).
Times the writer makes are ISO 8601 in UTC; a time copied from a scan file is kept as written,
with `time_zone = "unknown"` when the file states no UTC offset.

Each raw scan (`xas/scan`) becomes an NXentry following the NXxas application definition:

    /entryN                       NXentry   definition="NXxas", title, start_time, end_time
        instrument                NXinstrument
            source                NXsource        type, name (when known), probe="x-ray"
            monochromator         NXmonochromator energy [eV]
            incoming_beam         NXdetector      data (I0)
            absorbed_beam         NXdetector      data (the `mode` param's: It in transmission,
                                                  If in fluorescence; in auto It, else If,
                                                  else mu), signal=1
            reference_beam        NXdetector      data (Iref), when measured
            fluorescence          NXdetector      data (If), when measured and not absorbed_beam
            transmitted_beam      NXdetector      data (It), when measured and not absorbed_beam
        sample                    NXsample        name (+ element, edge)
        monitor                   NXmonitor       mode, preset (when known), data (I0)
        data                      NXdata          links: energy, absorbed_beam

Each processed result (`xas/spectrum`, `xas/merged`) becomes an NXentry with an NXprocess
(program, version, parameters as an NXnote, scalar results) and NXdata groups: mu(E), norm and
flat on the energy grid (with `mu_errors` for a merge of two scans or more: a single scan has no
spread) and chi(k). A merge's results hold
`alignment_shift` (eV), the shift it added to each merged scan's energy, in the order of its
`accepted` scans, and `glitches` (JSON, only when the merge found any: each repeat's energies
that deviate from the other repeats, and whether they were left out of the mean; the rule and
threshold are its parameters' `deglitch`). A merge of no scan (`nothing_merged`: every scan
rejected, or no majority) becomes an NXentry without NXdata and without `default`, whose title
and `notes` (NXnote) say that nothing was merged and why; as the newest merge it is the root's
`default` (see `_fill_nothing_merged` for why). An agent's decision (`plans`, content type
`plan/suggestion`) becomes an NXentry without data (`write_decision`): `decision`
(NXcollection: action, count, reason, confidence, metrics, target, time, and `based_on`, the
merge entry it answers, filled in when that merge is written after the decision), `plan`
(NXnote: the whole message) and its provenance, whose `source_files` are those of the merge it
judged.

The file is opened with `libver="latest"` and switched to SWMR mode, so readers open it with
`h5py.File(path, "r", swmr=True, locking=False)` while the writer holds it (a plain open fails:
HDF5 marks the file "open for write" until the writer closes it) (without
`locking=False` a reader holds HDF5's lock, and a writer starting meanwhile waits for it to close
the file, `READER_WAIT`); every entry is flushed before the write returns. Each entry carries
the message's provenance key (`asapo_key`); a key already in the file is not written again, so a
message delivered twice appears once.

A raw scan or spectrum of a scan file's earlier version (read before its writer finished it and
sent again once it changed: `file_version` 2, 3, ... in the later one's metadata) is marked
when a later version of the same file is written in the same run: attributes `superseded_by`
(the newest version's entry), `superseded_by_version` and `superseded` (a sentence), and its
title ends `(superseded by version N, entryM)`. Its data stay as they were read.

Runs are kept apart: the key holds the run (id and start) and the fingerprint of the unit that
produced the message, the entry's attributes `asapo_pipeline`, `asapo_run`, `asapo_run_started`
and `asapo_fingerprint` repeat them (every pipeline has a run r1, and a new store another),
and every entry written from a pipeline has an NXprocess `provenance`:

    /entryN/provenance            NXprocess
        program, version          asapo-pipelines and its version
        date                      when the entry was written (ISO 8601)
        pipeline                  the pipeline whose unit produced the message
        unit, instance            the producing unit (e.g. xas.normalize) and its instance name
        distribution, distribution_version
        parameters                NXnote, type application/json: the unit's resolved params
        pipeline_file, pipeline_sha256, run, run_started, fingerprint
                                  of the producing unit's run and session, from its
                                  pipeline's run record (another pipeline's, for a stream
                                  read as external); absent when that record is not there
        session_started           when the producing session began (its key in the run's
                                  record: `pipeline runs --json`, `session_list`)
        overrides                 NXnote (JSON): that session's `--set` overrides ({} for none)
        host                      the host whose worker computed the result
        job                       NXnote (JSON): the executor's job that computed it:
                                  `executor` (slurm, nomad, local) and `pid`; Slurm's job
                                  `id`, `node` (and `array_job`, `array_task`), or Nomad's
                                  job `id`, `alloc` and `task`
        writer_pipeline, writer_run   the pipeline and run of the writer that stored it
        inputs                    NXnote (JSON): the input message ids that produced it;
                                  a spectrum's, merge's or decision's also `raw_scans`, the
                                  raw scan entries of this file it comes from (`raw_entries`:
                                  a reprocess's are the replayed run's)
        source_files              NXnote (JSON): the scan files it comes from (a merge: the
                                  scans it accepted; a decision: those of the merge it
                                  judged, as its message names them, `arguments.accepted`)
        rejected_source_files     NXnote (JSON), a merge with rejected scans only: the files
                                  of the scans it screened out (not in its data); a decision:
                                  those the merge it judged screened out (`bad_scans`)
        source_file_checksums     NXnote (JSON), when known: a list of {file, path, size,
                                  sha256} of the raw scan files it comes from, in the order
                                  of `source_files`: a raw scan's from its message (as
                                  xas.scan-files read the file), a result's from the raw
                                  scan entries of this file it cites (`source_checksums`),
                                  completed when such an entry is written after it
        message_time              when the producer wrote the message (ISO 8601)
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import errno
import fcntl
import functools
import json
import logging
import os
import re
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from asapo_pipelines.sdk import UnitStorageError, storage
from asapo_pipelines_nexus.errors import FileGone, FileHeldOpen, ForeignFile, NexusWriterError
from asapo_pipelines_nexus.recovery import (
    RecoveryError,
    SalvageView,
    clear_status_flags,
    damage,
    swmr_format_problem,
)
from asapo_pipelines_nexus.unwritable import cause_and_remedy

#: Free space kept on the file's disk beyond what an entry needs: HDF5 must never meet a full
#: disk half-way through an entry (it would leave metadata pointing past the end of the file).
SPACE_MARGIN = 1024 * 1024

#: How long the writer waits for another process to close the file before it gives up. HDF5
#: locks a file that a program opens without `locking=False` (a viewer, `h5py.File(path)`), and
#: closing that program is all it takes: long enough for a script or a viewer glanced into to
#: close it, short enough that a foreground run, which shows only the final error, says within
#: a minute what to close.
READER_WAIT = 60.0
#: how often the writer tries to open the file again while it waits
READER_POLL = 0.5
#: how readers open the file so that the writer is never locked out (see the README)
READER_RECIPE = 'h5py.File(path, "r", swmr=True, locking=False)'

KEY_ATTR = "asapo_key"
#: NXroot's attribute naming this one file (set when the writer first opens it): a file put at
#: the path later, even one holding copies of its entries, has another (`file_id_at`)
FILE_ID_ATTR = "asapo_file_id"
CONTENT_ATTR = "asapo_content_type"
#: the provenance NXnote holding the SHA-256, size and path of each raw scan file an entry
#: comes from (`NexusWriter.source_checksums`)
CHECKSUMS_NOTE = "source_file_checksums"
#: an agent's decisions (`plans`): written as entries without data (`write_decision`)
PLAN_CONTENT = "plan/suggestion"
#: the NXcollection that makes an entry a decision (`is_decision`)
DECISION_GROUP = "decision"
PIPELINE_ATTR = "asapo_pipeline"
#: the start of the entry's run (ISO 8601, UTC): with the pipeline and run id, it names one run
RUN_STARTED_ATTR = "asapo_run_started"
#: the unit label (`<pipeline>/<instance>`) a provenance key starts with
_KEY_UNIT = re.compile(r"^([a-z][a-z0-9-]*)/[a-z][a-z0-9_-]*\|")
log = logging.getLogger("asapo_pipelines.nexus")
_ENTRY = re.compile(r"entry(\d+)$")
#: the start time a key's run label carries (`|run:r1@<start>|`, see `units.entry_key`)
_RUN_START = re.compile(r"(\|run:[^|@]*)@[^|]*")

#: the attribute naming the entry of the newest version of an entry's scan file, on an entry
#: of an earlier version (`NexusWriter._mark_superseded`)
SUPERSEDED_BY_ATTR = "superseded_by"
#: what `_mark_superseded` adds to a title (taken off again when a newer version comes)
_SUPERSEDED_TITLE = re.compile(r" \(superseded by version \d+, entry\d+\)$")

#: the units of the scalar results of a spectrum or merge, as NeXus writes them (UDUNITS)
RESULT_UNITS = {
    "e0": "eV",
    "e0_ref": "eV",
    "energy_shift": "eV",
    "kmax_suggest": "1/angstrom",
    "noise_kmin": "1/angstrom",
    "noise_kmax": "1/angstrom",
    # the ranges xraylarch used where the settings left them to it (`xas.normalize`)
    "pre1": "eV",
    "pre2": "eV",
    "norm1": "eV",
    "norm2": "eV",
    "autobk_rbkg": "angstrom",
    "autobk_kmin": "1/angstrom",
    "autobk_kmax": "1/angstrom",
}


#: the first stream of every data source (ASAP::O's name for it, `worker.naming.FIRST_STREAM`):
#: a merge in it is numbered by its id alone
FIRST_STREAM = "default"

#: what a viewer opening the file shows first (NXroot's `default`), most wanted first: the
#: newest merge, else the newest normalised scan, else the newest entry of any kind but a
#: decision
DEFAULT_PREFERENCE = ("xas/merged", "xas/spectrum")


def is_decision(entry: h5py.Group | None) -> bool:
    """Whether an entry holds an agent's decision (its `decision` NXcollection) rather than a
    scan, spectrum or merge: such an entry has no NXdata, and a reader that plots or compares
    the file's spectra leaves it out. Told by what the entry holds, so it also answers for a
    copy of the file made without the writer's attributes."""
    group = entry.get(DECISION_GROUP) if entry is not None else None
    return isinstance(group, h5py.Group) and _text(group.attrs.get("NX_class")) == "NXcollection"


def loose_key(key: str) -> str:
    """A key without its run's start time: the identity a message of another run has when
    the writer does not know when that run started (a reprocess's replayed source messages)."""
    return _RUN_START.sub(r"\1", key)


class _Damaged(Exception):
    """HDF5 failed to open the file with no cause of the OS's: the file is damaged."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclasses.dataclass(frozen=True)
class Salvaged:
    """A damaged file found on opening: where it was kept, why it was damaged, and how many
    complete entries were copied from it into the fresh file at its path."""

    damaged: Path
    cause: str
    entries: int


class NexusWriter:
    """Appends entries to one NeXus file; one instance per running `nexus.writer` unit."""

    def __init__(
        self,
        path: str | Path,
        *,
        source_name: str = "PETRA III",
        source_type: str = "Synchrotron X-ray Source",
        beamline: str = "P65",
        mode: str = "auto",
        monitor_mode: str = "timer",
        monitor_preset: float | None = None,
        compression: str = "none",
        reader_wait: float = READER_WAIT,
    ) -> None:
        self.path = Path(path)
        self.reader_wait = reader_wait
        self.source_name = source_name
        self.source_type = source_type
        self.beamline = beamline
        #: `auto`, `transmission` or `fluorescence`: which channel is a raw scan's absorbed
        #: beam (`absorbed_role`)
        self.mode = mode
        self.monitor_mode = monitor_mode
        self.monitor_preset = monitor_preset
        self.compression = None if compression == "none" else compression
        self._file: h5py.File | None = None
        self._keys: dict[str, str] = {}
        #: `pipeline run` -> how many of the keys are that run's (`runs_in_file`)
        self._run_counts: dict[str, int] = {}
        #: every key without its run start (see `loose_key`), for messages of unknown runs
        self._loose: set[str] = set()
        #: (run label, scan identity) -> the spectrum entry of that scan, for merges' provenance
        self._spectra: dict[tuple[str, str], dict[str, Any]] = {}
        #: scan id (the scan message's key) -> run (`r1@<start>`) -> its raw scan's entry
        #: (`entry`, `pipeline`, `run`, `run_started`, `message`) and raw file (`checksum`:
        #: `file`, `path`, `size`, `sha256`, as that entry records it, None when it records
        #: none): the raw entries and checksums a spectrum, merge or decision citing that scan
        #: records (`raw_entries`, `source_checksums`)
        self._raw_scans: dict[str, dict[str, dict[str, Any]]] = {}
        #: scan id -> (entry, run) of the results written before their run's raw entry of that
        #: scan (a race between units): completed when it is written (`_complete_citers`)
        self._citing_unwritten: dict[str, list[tuple[str, str]]] = {}
        #: (pipeline, run label) -> the starts of the runs of that label the file holds: two
        #: starts are two runs with one id (a deleted store), whose titles then name the start
        self._run_starts: dict[tuple[str, str], set[str]] = {}
        #: (pipeline, run, group) -> how many merges of that group the file holds (titles)
        self._merges: dict[tuple[str, str, str], int] = {}
        #: (pipeline, run, content type, scan file) -> file version -> its raw scan or spectrum
        #: entry: the entries of a version a later one replaced are marked (`_mark_superseded`)
        self._reads: dict[tuple[str, str, str, str], dict[int, str]] = {}
        #: content type ("" for any) -> (position, name) of its newest complete entry: newest
        #: by its message's place in its run and stream (`_Position`), not by when it arrived
        self._newest: dict[str, tuple[_Position, str]] = {}
        #: entry number -> content type of every complete entry (one with its key): what the
        #: file holds, which a restarted sink's summary is corrected by (`newest_contents`)
        self._contents: dict[int, str] = {}
        #: the entry numbers of the complete merges of no scan (`nothing_merged`) among them
        self._without_data: set[int] = set()
        #: the address of the message each entry was written from -> that entry (the newest):
        #: the merge a decision answers (`_entry_of_message`). Made at the first decision, not
        #: at every open, which would read every entry's provenance for a file of no decision
        self._by_message: dict[str, str] | None = None
        #: the decisions written before the merge they answer (`based_on` still empty), by the
        #: address of that merge's message: filled in when its entry is written (`_answered`)
        self._waiting: dict[str, list[str]] = {}
        self._next = 1
        #: the pipelines whose entries the file holds (`asapo_pipeline`, else from the key)
        self.pipelines: set[str] = set()
        self._lock_fd: int | None = None
        #: who writes: `pipeline`, `run`, `unit` (instance), written into the lock file with
        #: the host and process id while this writer holds it, so that a second writer refused
        #: the file can say which pipeline holds it (`_held_by`); set before `open`
        self.holder: dict[str, Any] = {}
        #: how this writer's run writes its entries again, kept for it in the lock file's
        #: ledger (`ledger`): `from` (the run a `pipeline reprocess` replays, else the run
        #: itself), `overrides` (its `--set` overrides), `pipeline_file`; set before `open`
        self.run_settings: dict[str, Any] = {}
        #: the lock file's ledger as this writer last wrote it (or found it, on opening)
        self._ledger: dict[str, Any] = {}
        #: how many keys the file had when the ledger was brought up to it (`_note_ledger`)
        self._ledger_keys = -1
        #: set when a write failed half-way: nothing more may reach the file (see `_freeze`)
        self._frozen: str | None = None
        #: what became of a damaged file found on opening (its readable entries copied back)
        self.salvaged: Salvaged | None = None
        #: the provenance of the entry being written (`write(..., provenance=...)`)
        self._entry_provenance: Mapping[str, Any] | None = None
        #: the key of the entry being written (its run is `_run_of` it)
        self._entry_key = ""
        #: in a `pipeline reprocess`, the run it replays (`r1@<start>`, `run_identity`): the
        #: run whose raw scan entries its results cite (`raw_entries`); set before writing
        self.replays = ""
        #: (descriptor, (st_dev, st_ino)) of the open file: what the path must still name
        self._opened: tuple[int, tuple[int, int]] | None = None
        #: (st_size, st_mtime_ns) of the open file as this writer's last write left it: any
        #: other change is another program's (see `_changed_in_place`)
        self._left: tuple[int, int] | None = None
        #: what became of the file when the path stopped naming it, whether it is still
        #: somewhere, and whether another program changed it in place (see `check_file`)
        self._gone: tuple[str, bool, bool] | None = None
        #: the file's own name (`FILE_ID_ATTR`), kept after it is closed; None before opening
        self.file_id: str | None = None

    @classmethod
    def from_params(cls, params: Any, base: Path | None = None) -> NexusWriter:
        """From a `NexusWriterParams`; a relative `file` is taken relative to `base`."""
        path = Path(params.file)
        if base is not None and not path.is_absolute():
            path = base / path
        return cls(
            path,
            source_name=params.source_name,
            source_type=params.source_type,
            beamline=params.beamline,
            mode=params.mode,
            monitor_mode=params.monitor_mode,
            monitor_preset=params.monitor_preset,
            compression=params.compression,
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self, pause: Callable[[float], bool] | None = None) -> NexusWriter:
        """Open (or create) the file for writing. While another process holds HDF5's lock on
        it, wait up to `reader_wait` seconds, each pause by `pause(seconds)`, which returns
        True when the caller is asked to stop (a unit's `wait`)."""
        if self._file is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NexusWriterError(f"cannot create the folder of {self.path}: {exc}") from None
        self._lock()
        try:
            self._refuse_foreign_format()
            handle = self._open_or_salvage(pause or _sleep)
        except BaseException:
            self._unlock()
            raise
        try:
            self._prepare(handle)
        except (OSError, RuntimeError) as exc:
            # e.g. the disk is still full: the file is as it was; say what to do
            with contextlib.suppress(Exception):
                handle.close()
            self._unlock()
            raise NexusWriterError(
                storage.describe("opening the NeXus file for writing", self.path, exc)
            ) from None
        self._file = handle
        self._opened = _identity(handle)
        self._note_own_writes()
        self.file_id = _text(handle.attrs.get(FILE_ID_ATTR, "")) or None
        self._note_ledger()
        return self

    def _open_or_salvage(self, pause: Callable[[float], bool]) -> h5py.File:
        """The file opened for writing, salvaged first when it is damaged."""
        # a file shorter than its superblock says is never opened in place: HDF5 refuses it
        # for writing, and a reader in SWMR mode would retry reading past its end for minutes
        broken = damage(self.path)
        if broken is not None:
            return self._salvage(broken)
        try:
            handle = self._open_file(pause)
        except _Damaged as exc:
            return self._salvage(exc.cause)
        try:
            self._check_readable(handle)
        except (OSError, RuntimeError, KeyError) as exc:
            handle.close()
            return self._salvage(exc)
        return handle

    def _refuse_foreign_format(self) -> None:
        """A file HDF5 cannot write in SWMR mode (not HDF5, or HDF5's default old format) is
        not ours to convert: said before opening it, which would already change it."""
        problem = swmr_format_problem(self.path)
        if problem is not None:
            raise ForeignFile(self.path.absolute(), problem)

    def _prepare(self, handle: h5py.File) -> None:
        # an entry of ours without its key was cut short by a crash: drop it, it comes again
        for name in [n for n, g in handle.items() if _incomplete(g)]:
            del handle[name]
        # the index of what is already there: provenance keys and the highest entry number
        for name, group in handle.items():
            match = _ENTRY.match(name)
            if match:
                self._next = max(self._next, int(match.group(1)) + 1)
            key = group.attrs.get(KEY_ATTR) if isinstance(group, h5py.Group) else None
            if key is not None:
                identity = _legacy_identity(group, _text(key))
                self._index(name, identity)
                self._index_run(group, identity)
                self._index_spectrum(name, group)
                self._index_raw_file(name, group, identity)
                self._note_citing_unwritten(name, group, identity)
                self._index_merge(group, identity)
                self._index_read(name, group, identity)
                self._note_newest(name, group)
                self._note_content(name, group)
                self._note_waiting(name, group)
                self.pipelines.update(_pipeline_of(group, _text(key)))
        # a decision whose merge a crash, or a writer before decisions were filled in,
        # left unnamed while the merge's entry is here
        self._answer_waiting(handle)
        # a result whose raw scan's entry came after it, and a crash before it was completed
        for scan in [s for s in self._citing_unwritten if s in self._raw_scans]:
            self._complete_citers(handle, scan)
        # an entry whose later version a crash kept from being marked, or a file written
        # before entries were marked: what the file holds decides
        for slot in self._reads:
            self._mark_superseded(handle, slot)
        _root_attributes(handle, self.path)
        # a file written before the writer named its files gets its name now
        handle.attrs.setdefault(FILE_ID_ATTR, uuid.uuid4().hex)
        # a file written before the root named its default, or whose newest entry was just
        # dropped: point it at what is there now
        self._point_default(handle)
        handle.flush()
        handle.swmr_mode = True

    def close(self) -> None:
        if self._file is not None:
            if self._frozen is None:
                self._note_ledger()
                self._file.close()
            else:
                # HDF5's state after a failed write can crash the process (SIGSEGV) in closing
                # the file, before the worker has said why it stops: the file is left open,
                # its descriptor on /dev/null (`_freeze`), until the process exits without
                # HDF5's clean-up (`_exit_without_hdf5_cleanup`)
                _ABANDONED.append(self._file)
            self._file = None
            self._opened = None  # its descriptor may name another file from now on
            self._left = None
        self._unlock()

    # -- recovery --------------------------------------------------------------------------------
    @staticmethod
    def _check_readable(handle: h5py.File) -> None:
        """Open every top-level object: a damaged file fails here, not half-way (`items()`
        would hide a link to an object header that never reached the disk as None)."""
        for name in handle:
            group = handle[name]
            if isinstance(group, h5py.Group):
                group.attrs.get(KEY_ATTR)
                # every object header below it: one overwritten fails its checksum here
                group.visit(_nothing)

    def _salvage(self, cause: BaseException | str) -> h5py.File:
        """A file left damaged (truncated, bytes overwritten, a writer killed mid-write): move
        it aside, start the file afresh and copy back every complete entry still readable, so
        the results acknowledged before the damage are kept and the writer can go on. A file
        whose top level cannot be read at all is refused (`ForeignFile`): moving it aside is
        the remedy."""
        cause = _said(cause) if isinstance(cause, BaseException) else cause
        stamp = time.strftime("%Y%m%dT%H%M%S")
        damaged = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        fresh = self.path.with_name(f".{self.path.name}.salvage")
        fresh.unlink(missing_ok=True)
        try:
            self._guard_space(self.path.stat().st_size // 2)
        except UnitStorageError as exc:
            raise NexusWriterError(
                f"{self.path} is damaged ({cause}) and copying its complete entries into a "
                f"fresh file needs room: {exc}"
            ) from None
        with contextlib.ExitStack() as stack:
            old = self._read_damaged(cause, stack)
            try:
                with h5py.File(fresh, "w", libver="latest") as new:
                    _copy_root_attributes(old, new)
                    copied = _copy_entries(old, new)
                    new.flush()
                os.replace(self.path, damaged)
                os.replace(fresh, self.path)
            except (OSError, RuntimeError) as exc:
                fresh.unlink(missing_ok=True)
                raise NexusWriterError(
                    f"{self.path} is damaged ({cause}) and could not be salvaged ({exc}); move "
                    "it aside to start a new file"
                ) from None
        self.salvaged = Salvaged(damaged, str(cause), copied)
        log.debug("salvaged %s: %d complete entries copied", self.path, copied)
        return h5py.File(self.path, "a", libver="latest")

    def _read_damaged(self, cause: BaseException | str, stack: contextlib.ExitStack) -> h5py.File:
        """The damaged file open for reading as if whole (`_read_only`), closed with `stack`;
        `ForeignFile` when even its top level cannot be read: nothing of it can be copied."""
        try:
            old = stack.enter_context(_read_only(self.path))
            len(old)  # the root group's links are readable
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise ForeignFile(
                self.path.absolute(),
                f"is damaged ({cause}) so badly that none of it can be read ({_said(exc)})",
            ) from None
        return old

    def _guard_space(self, nbytes: int) -> None:
        """Refuse an entry the disk cannot take, before HDF5 writes any of it."""
        need = 2 * nbytes + SPACE_MARGIN
        try:
            info = os.statvfs(self.path.parent)
        except OSError:
            return
        free = info.f_bavail * info.f_frsize
        if free < need:
            raise UnitStorageError(
                f"nexus.writer stops before writing {self.path}: {free:,} bytes are free and an "
                f"entry needs about {need:,}; " + storage.remedy(storage.FULL, self.path.parent)
            )

    def _freeze(self, exc: BaseException) -> UnitStorageError:
        """A write failed half-way (a full disk despite the guard, a mount gone read-only):
        HDF5 holds metadata that points at data that never reached the disk, and flushing it
        would damage the file. Point its file descriptor elsewhere, so that nothing more
        reaches the file: it stays as the last flush (the last acknowledged entry) left it, and
        a restarted writer opens it (salvaging it when HDF5 had already written part of the
        failed entry's metadata)."""
        path = self.path.absolute()
        reason, remedy = cause_and_remedy(path, exc, unknown=storage.FULL)
        if self._frozen is None:
            atexit.register(_exit_without_hdf5_cleanup)
        self._frozen = reason
        with contextlib.suppress(Exception):
            handle = self._file.id.get_vfd_handle() if self._file is not None else None
            if isinstance(handle, int) and handle >= 0:
                # /dev/null, not a read-only descriptor: HDF5's later writes (flush, close, the
                # release of objects) then succeed into nothing, and it closes the file without
                # an error state (a failing close left the library to crash at exit)
                _detach(handle)
        # HDF5's own words, with its traceback, for `--log-level debug`
        log.debug("the failed write on %s", path, exc_info=exc)
        return UnitStorageError(
            f"nexus.writer cannot write {path}: {reason}; the file is kept as its last complete "
            f"entry left it and nothing more is acknowledged; {remedy}"
        )

    def _entry(self, key: str, content_type: str, fill: Any) -> str:
        """Fill a new entry and commit it; a storage failure is the unit's, not the message's.

        HDF5 also writes when h5py releases an object, where a failure is only printed
        ("Exception ignored in ObjectID.__dealloc__"): those are caught here too, so the first
        failed write, wherever it happens, stops the writer before anything else is flushed."""
        with _released_failures() as failures:
            try:
                name, entry = self._new_entry(key, content_type)
            except (OSError, RuntimeError) as exc:
                raise self._freeze(exc) from None
            try:
                fill(entry)
            except (OSError, RuntimeError) as exc:
                raise self._freeze(exc) from None
            except BaseException:
                try:
                    self._discard(name)
                except (OSError, RuntimeError) as exc:
                    raise self._freeze(exc) from None
                raise
            del entry  # released here, where a failed write it causes is still caught
            if failures:
                raise self._freeze(failures[0]) from None
            try:
                name = self._commit(name, key)
            except (OSError, RuntimeError) as exc:
                raise self._freeze(exc) from None
            finally:
                if failures and self._frozen is None:
                    raise self._freeze(failures[0]) from None
            self._note_own_writes()
            return name

    def _lock(self) -> None:
        # HDF5 gives up its own file lock in SWMR mode, so one writer per file is enforced here;
        # the lock also tells a restarted writer that the previous one is really gone
        lock_path = self._lock_path()
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise NexusWriterError(f"cannot create the lock file {lock_path}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = _read_holder(fd)
            finally:
                os.close(fd)
            raise NexusWriterError(self._held_by(holder, lock_path)) from None
        self._lock_fd = fd
        found = _read_holder(fd).get("ledger")
        self._ledger = found if isinstance(found, dict) else {}
        self._ledger_keys = -1
        self._write_lock_record()

    def _write_lock_record(self) -> None:
        """Who holds the lock, for a second writer to name (the lock is the flock, not this
        text), and the ledger of the runs whose entries the file holds (`ledger`)."""
        if self._lock_fd is None:
            return
        record = {
            **{k: v for k, v in self.holder.items() if v},
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            **({"ledger": self._ledger} if self._ledger else {}),
        }
        with contextlib.suppress(OSError):
            data = (json.dumps(record, sort_keys=True) + "\n").encode()
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, data, 0)

    def ledger(self) -> dict[str, Any]:
        """The lock file's ledger, read without taking the lock: the id of the file it was
        last written for (`file_id`) and, by `pipeline run`, how many of that file's entries
        the run wrote and how it writes them again (`runs`: {"p65-xas r2": {"entries": 6,
        "from": "r1", "overrides": {...}, "pipeline_file": ...}}). It stays beside the path
        when the file is moved or removed: a resume that finds the file lost says from it
        which other runs' entries went with it (the run's own summary knows only its own).
        {} when there is none (a lock file of a writer before the ledger, or none)."""
        try:
            found = json.loads(self._lock_path().read_text(encoding="utf-8")).get("ledger")
        except (OSError, ValueError, AttributeError):
            return {}
        return found if isinstance(found, dict) else {}

    def _lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def _note_ledger(self) -> None:
        """Bring the ledger up to the file's entries (at opening, each flush, closing): what
        the file held when the last writer left it is known after the file is gone."""
        if self.file_id is None or self._frozen is not None:
            return
        same = self._ledger.get("file_id") == self.file_id
        if same and self._ledger_keys == len(self._keys):
            return  # no entry since: counting every key at each flush is for nothing
        self._ledger_keys = len(self._keys)
        before = self._ledger.get("runs") if same else None
        known: dict[str, Any] = before if isinstance(before, dict) else {}
        own = f"{self.holder.get('pipeline')} {self.holder.get('run')}"
        runs: dict[str, Any] = {}
        for label, entries in sorted(self.runs_in_file().items()):
            info = known.get(label)
            runs[label] = dict(info) if isinstance(info, dict) else {}
            if label == own:
                runs[label].update(self.run_settings)
            runs[label]["entries"] = entries
        ledger = {"file_id": self.file_id, "runs": runs}
        if ledger != self._ledger:
            self._ledger = ledger
            self._write_lock_record()

    def _held_by(self, holder: Mapping[str, Any], lock_path: Path) -> str:
        """The refusal of a second writer: who holds the file (the lock file's record) and
        what to do about it, in one sentence."""
        pipeline, run, unit = (holder.get(k) for k in ("pipeline", "run", "unit"))
        who = f"pipeline {pipeline}" if pipeline else "another nexus.writer"
        details = []
        if run:
            details.append(f"run {run}")
        if unit:
            details.append(f"unit {unit}")
        if holder.get("pid"):
            on = f" on {holder['host']}" if holder.get("host") else ""
            details.append(f"process {holder['pid']}{on}")
        if holder.get("since"):
            details.append(f"since {str(holder['since']).replace('T', ' ')}")
        if details:
            who += f" ({', '.join(details)})"
        mine = self.holder.get("pipeline")
        elsewhere = (
            f"set the `file` param of pipeline {mine}'s nexus.writer to another file"
            if mine
            else "write to another file"
        )
        return (
            f"nexus.writer cannot write {self.path.absolute()}: {who} is writing it (it holds "
            f"{lock_path.name}), and one file takes one writer at a time; wait until that run ends "
            f"or is stopped, or {elsewhere}"
        )

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _open_file(self, pause: Callable[[float], bool]) -> h5py.File:
        """Open the file for writing; `_Damaged` when HDF5 finds it damaged."""
        try:
            return self._open_unlocked(pause)
        except OSError as exc:
            if "already open for write" not in str(exc):
                raise self._cannot_open(exc) from None
        # we hold the writers' lock, so the writer that left the mark is dead (killed): clear the
        # mark as `h5clear -s` would, and open again
        try:
            clear_status_flags(self.path)
        except (OSError, RecoveryError) as exc:
            raise NexusWriterError(
                f"cannot reopen {self.path} after a writer crashed: {exc}"
            ) from None
        try:
            return h5py.File(self.path, "a", libver="latest")
        except OSError as exc:
            raise self._cannot_open(exc) from None

    def _cannot_open(self, exc: OSError) -> NexusWriterError | _Damaged:
        """One sentence for a file that cannot be opened for writing when the OS says why (a
        read-only attribute, a permission, a full disk); a failure with no cause of the OS is
        HDF5's finding the file damaged (a metadata checksum, an object header): `_Damaged`."""
        path = self.path.absolute()
        reason, remedy = cause_and_remedy(path, exc, unknown=storage.OTHER)
        if reason == storage.reason(exc):  # no errno to say more by
            return _Damaged(exc)
        log.debug("opening %s failed", path, exc_info=exc)
        return NexusWriterError(f"cannot open {path} for writing: {reason}; {remedy}")

    def _open_unlocked(self, pause: Callable[[float], bool]) -> h5py.File:
        """Open the file once no other process holds HDF5's lock on it. A viewer or a notebook
        that opened it without `locking=False` holds it, and closing it is the remedy, not a
        change of configuration: say so, and wait a while for it rather than fail at once."""
        deadline = time.monotonic() + self.reader_wait
        waiting = False
        while True:
            try:
                handle = h5py.File(self.path, "a", libver="latest")
            except OSError as exc:
                if not _locked_by_another(exc):
                    raise
            else:
                if waiting:
                    log.info("the other process closed %s; nexus.writer goes on", self.path)
                return handle
            if time.monotonic() >= deadline:
                raise FileHeldOpen(
                    f"another process still has {self.path} open after {self.reader_wait:.0f} "
                    f"s ({_HELD_BY}); close it there (a restarted writer waits again); readers "
                    f"that stay open while the pipeline writes open it with {READER_RECIPE}"
                )
            if not waiting:
                waiting = True
                log.warning(
                    "another process has %s open (%s); nexus.writer waits up to %.0f s for it "
                    "to be closed: close it there; readers that stay open while the pipeline "
                    "writes open it with %s",
                    self.path,
                    _HELD_BY,
                    self.reader_wait,
                    READER_RECIPE,
                )
            if pause(READER_POLL):
                raise NexusWriterError(
                    f"stopped while waiting for another process to close {self.path}"
                )

    def __enter__(self) -> NexusWriter:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def file(self) -> h5py.File:
        if self._file is None:
            self.open()
        assert self._file is not None
        return self._file

    def has(self, key: str) -> bool:
        """Whether the message of this key is in the file. A key with its run's start time
        matches only that run (a later run with the same label, after the store was deleted,
        is new); a key without one (run unknown) matches any run of that label."""
        if key in self._keys:
            return True
        return key == loose_key(key) and key in self._loose

    def _index(self, name: str, key: str) -> None:
        if key not in self._keys and (label := _run_label(key)) is not None:
            # counted as indexed: the ledger asks at every flush (`_note_ledger`)
            self._run_counts[label] = self._run_counts.get(label, 0) + 1
        self._keys[key] = name
        self._loose.add(loose_key(key))

    def _index_run(self, group: h5py.Group, key: str) -> None:
        """Remember the start of the run an entry is of (a key without one: run unknown)."""
        label, _, start = _run_of(key).partition("@")
        if start:
            pipeline = next(iter(_pipeline_of(group, key)), "")
            self._run_starts.setdefault((pipeline, label), set()).add(start)

    def run_starts(self, pipeline: str, label: str) -> set[str]:
        """The starts (ISO 8601, UTC) of the runs `label` of `pipeline` the file holds."""
        return set(self._run_starts.get((pipeline, label), ()))

    def _titled(self, key: str, title: str) -> str:
        """An entry's title led by its pipeline and run (`p65 r2: ...`): two runs in one file
        (a `--fresh` run, a reprocess) write the same scans, spectra and merges, which their
        titles alone do not tell apart, and every pipeline has an r1 (a reprocessing pipeline
        beside the beamline's). The pipeline leads every title, not only once another
        pipeline's entries are in the file: a title must not change style partway through a
        pipeline's entries, and a bare `r1` names no run once a second pipeline writes. When
        the file holds another run of the pipeline with the same id (run ids start again at r1
        in a new store), the start tells them apart: `p65 r1 (started 2026-12-04 03:58:32
        UTC): ...`. An entry written outside a pipeline has no run; one of a run whose
        pipeline is not known (a message without a unit label) leads with the run alone."""
        label, _, start = _run_of(key).partition("@")
        if not label:
            return title
        pipeline = self._producer(key)
        others = self.run_starts(pipeline, label) - {start}
        if start and others:
            label = f"{label} (started {readable_start(start)})"
        if pipeline:
            label = f"{pipeline} {label}"
        return f"{label}: {title}"

    def _producer(self, key: str) -> str:
        """The pipeline whose unit produced the entry being written, "" when unknown."""
        pipeline = str((self._entry_provenance or {}).get("pipeline") or "")
        if not pipeline:
            match = _KEY_UNIT.match(key)
            pipeline = match.group(1) if match else ""
        return pipeline

    def _index_spectrum(self, name: str, group: h5py.Group) -> None:
        """Remember a spectrum entry by its run and scan, so that a merge can name it."""
        if _text(group.attrs.get(CONTENT_ATTR, "")) != "xas/spectrum":
            return
        with contextlib.suppress(KeyError, ValueError, TypeError):
            meta = json.loads(_text(group["asapo/metadata"][()]))
            message = json.loads(_text(group["provenance/inputs/data"][()])).get("message")
            run = _run_of(_text(group.attrs[KEY_ATTR]))
            start = _text(group["start_time"][()])
            measured = "note" not in group["start_time"].attrs
            self._spectra[(run, str(meta["scan_id"]))] = {
                "entry": name,
                "message": message,
                "start_time": start if measured else None,
            }

    def _index_raw_file(self, name: str, group: h5py.Group, key: str) -> None:
        """Remember a raw scan's entry and file checksum by its scan id (the message key its
        entry key starts with) and run, so that the results citing that scan can name them."""
        if _text(group.attrs.get(CONTENT_ATTR, "")) != "xas/scan":
            return
        checksum = None
        with contextlib.suppress(KeyError, ValueError, TypeError, IndexError):
            found = json.loads(_dataset_text(group, f"provenance/{CHECKSUMS_NOTE}/data") or "[]")
            if found and isinstance(found[0], dict) and found[0].get("sha256"):
                checksum = found[0]
        label = _run_of(key).partition("@")[0]
        started = group.attrs.get(RUN_STARTED_ATTR)
        self._raw_scans.setdefault(key.partition("|run:")[0], {})[_run_of(key)] = {
            "entry": name,
            "pipeline": next(iter(_pipeline_of(group, key)), None),
            "run": label or None,
            "run_started": None if started is None else _text(started),
            "message": _message_ref(group) or None,
            "checksum": checksum,
        }

    def source_checksums(self, prov: Mapping[str, Any], run: str = "") -> list[dict[str, Any]]:
        """The checksums of the raw files an entry comes from: a raw scan's from its own
        message; a spectrum's, merge's or decision's from the raw scans of this file it cites
        (`source_scans`), the same run's first (`run`, as the entry's key names it: a run id
        and its start, as two stores have an r1 each) or, for a reprocess, the run it replays
        (`_cited_runs`), else one the file holds of that scan id when all its copies agree.
        A scan whose raw entry the file does not hold (yet) is left out: its checksum is known
        only to the scan's message, which the merge's does not carry; when that entry of the
        same run is written later, the result's list is completed (`_complete_citers`)."""
        own = prov.get("raw_file")
        if isinstance(own, Mapping):
            return [dict(own)]
        found = []
        for scan in prov.get("source_scans") or ():
            held = self._raw_scans.get(str(scan), {})
            runs = {r: raw["checksum"] for r, raw in held.items() if raw["checksum"] is not None}
            cited = self._cited_runs(held, run)
            info = held[cited[0]]["checksum"] if len(cited) == 1 else None
            if info is None and len({r.get("sha256") for r in runs.values()}) == 1:
                info = next(iter(runs.values()))
            if info is not None:
                found.append(dict(info))
        return found

    def raw_entries(self, prov: Mapping[str, Any], run: str = "") -> list[dict[str, Any]] | None:
        """The raw scan entries of this file a spectrum, merge or decision comes from (its
        `source_scans`), each with the pipeline, run and message it was written from: the
        same run's (`run`: a run id and its start); else, for a reprocess, which replays an
        earlier run's raw scan messages into its own streams and stores none of them again
        (they are that run's entries already), the entries of the run it replays
        (`replays`), so that the result's inputs, messages of the reprocess's run that have no
        entry, lead to one (`_cited_runs`). A scan the file holds no raw entry of (yet) is
        listed with `entry` None. None for a raw scan (its own message is its source) and for
        a message citing no scan."""
        if isinstance(prov.get("raw_file"), Mapping) or not prov.get("source_scans"):
            return None
        found: list[dict[str, Any]] = []
        for scan in prov["source_scans"]:
            runs = self._raw_scans.get(str(scan), {})
            held = [runs[r] for r in self._cited_runs(runs, run)]
            for raw in held or [{"entry": None}]:
                found.append(
                    {"scan": str(scan), **{k: v for k, v in raw.items() if k != "checksum"}}
                )
        return found

    def _cited_runs(self, runs: Mapping[str, Any], run: str) -> list[str]:
        """Of the runs (`r1@<start>`) that hold a raw entry of one scan, those a result of
        `run` cites: its own run's; else the run a reprocess replays (`replays`, or its label
        alone for an entry keyed without its run's start); else, when the writer is not told
        which run it replays, every one of them, in order. Two runs of the same scans each
        hold an entry of it, and a reprocess of the first must not cite the second's."""
        if run in runs:
            return [run]
        if self.replays:
            label = self.replays.partition("@")[0]
            replayed = [r for r in (self.replays, label) if r in runs]
            if replayed:
                return replayed[:1]
        return sorted(runs)

    def _note_citing_unwritten(self, name: str, group: h5py.Group, key: str) -> None:
        """Remember a result whose run's raw entry of a scan it cites is not written yet (its
        `raw_scans` lists the scan without an entry): `_complete_citers` names it then."""
        if _text(group.attrs.get(CONTENT_ATTR, "")) == "xas/scan":
            return  # a raw scan cites its own message, and raw scans are most of a file
        for raw in _inputs_note(group).get("raw_scans") or ():
            if isinstance(raw, dict) and raw.get("scan") and raw.get("entry") is None:
                waiting = self._citing_unwritten.setdefault(str(raw["scan"]), [])
                if (name, _run_of(key)) not in waiting:
                    waiting.append((name, _run_of(key)))

    def _complete_citers(self, handle: h5py.File, scan: str) -> bool:
        """The raw entry of `scan` is in the file now: the results of its run written before
        it (a merge that came before its raw scan, from another unit) get it in their
        `raw_scans` and its checksum in `source_file_checksums`, in place, as a decision gets
        its `based_on`: the result's entry is complete already. Whether any changed."""
        runs = self._raw_scans.get(scan, {})
        waiting = self._citing_unwritten.get(scan, [])
        done = [(name, run) for name, run in waiting if run in runs]
        for name, run in done:
            waiting.remove((name, run))
            group = handle.get(name)
            if isinstance(group, h5py.Group) and "provenance/inputs" in group:
                self._cite_again(group, run)
        if not waiting:
            self._citing_unwritten.pop(scan, None)
        return bool(done)

    def _cite_again(self, group: h5py.Group, run: str) -> None:
        """Write a result's `raw_scans` and `source_file_checksums` again from the raw
        entries the file holds now, in the order of its scans as first written."""
        inputs = _inputs_note(group)
        scans = list(dict.fromkeys(str(r["scan"]) for r in inputs.get("raw_scans") or ()))
        prov = {"source_scans": scans}
        inputs["raw_scans"] = self.raw_entries(prov, run)
        process = group["provenance"]
        process["inputs/data"][()] = json.dumps(inputs, sort_keys=True, default=str)
        checksums = self.source_checksums(prov, run)
        if CHECKSUMS_NOTE in process:
            process[f"{CHECKSUMS_NOTE}/data"][()] = json.dumps(
                checksums, sort_keys=True, default=str
            )
        elif checksums:
            _note(process, CHECKSUMS_NOTE, checksums)

    def _index_merge(self, group: h5py.Group, key: str) -> None:
        """Count the merges of each group per run, so that a merge's title says which it is."""
        if _text(group.attrs.get(CONTENT_ATTR, "")) != "xas/merged":
            return
        with contextlib.suppress(KeyError, ValueError, TypeError):
            merged = json.loads(_text(group["asapo/metadata"][()])).get("group") or {}
            pipeline = next(iter(_pipeline_of(group, key)), "")
            slot = _merge_slot(pipeline, key, merged)
            self._merges[slot] = self._merges.get(slot, 0) + 1

    def _index_read(
        self, name: str, group: h5py.Group, key: str
    ) -> tuple[str, str, str, str] | None:
        """Remember a raw scan or spectrum entry by its run and scan file, and the version of
        the file it was read from (`file_version`, 1 when absent); its slot in `_reads`."""
        content = _text(group.attrs.get(CONTENT_ATTR, ""))
        if content not in ("xas/scan", "xas/spectrum"):
            return None
        try:
            meta = json.loads(_text(group["asapo/metadata"][()]))
        except (KeyError, ValueError, TypeError):
            return None
        file, version = meta.get("file"), meta.get("file_version", 1)
        if not file or not isinstance(version, int) or isinstance(version, bool):
            return None
        pipeline = next(iter(_pipeline_of(group, key)), "")
        slot = (pipeline, _run_of(key), content, str(file))
        self._reads.setdefault(slot, {})[version] = name
        return slot

    def _mark_superseded(self, handle: h5py.File, slot: tuple[str, str, str, str]) -> None:
        """Mark the entries of a scan file's earlier versions (read before its writer finished
        it, sent again once it changed: the watch's `file_version`) as replaced by the newest,
        in the same run: an outside tester found a 158-point fragment stored as a raw scan
        titled like the scan, which anyone loading raw entries takes for one. Attributes added
        to the existing entry (`superseded_by`: the newest version's entry,
        `superseded_by_version`, `superseded`: the sentence) and its title, which viewers
        show, says it too; the entry's data stay as they were read."""
        versions = self._reads.get(slot, {})
        newest = max(versions, default=1)
        for version, name in versions.items():
            if version >= newest or name not in handle:
                continue
            entry, later = handle[name], versions[newest]
            if _text(entry.attrs.get(SUPERSEDED_BY_ATTR, "")) == later:
                continue
            note = (
                f"an earlier read of {slot[3]} (version {version}), replaced by version "
                f"{newest} of the same file ({later}): the file changed after this version was "
                "read, so this is an incomplete or outdated read, not a scan to analyse"
            )
            _set_text_attr(entry, SUPERSEDED_BY_ATTR, later)
            entry.attrs["superseded_by_version"] = newest
            _set_text_attr(entry, "superseded", note)
            if "title" in entry:
                title = _SUPERSEDED_TITLE.sub("", _text(entry["title"][()]))
                entry["title"][()] = f"{title} (superseded by version {newest}, {later})"

    def entry_for(self, key: str) -> str | None:
        return self._keys.get(key)

    # -- writing ---------------------------------------------------------------------------------
    def write(
        self,
        content_type: str,
        body: Mapping[str, Any],
        key: str,
        *,
        provenance: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Write one message by content type; returns the entry name, None for a duplicate.
        `provenance` (run, unit, params, inputs...) goes into the entry's NXprocess."""
        self._entry_provenance, self._entry_key = provenance, key
        try:
            if content_type == "xas/scan":
                return self.write_scan(body, key)
            if content_type == "xas/merged" and nothing_merged(body):
                return self.write_nothing_merged(body, key)
            if content_type in ("xas/spectrum", "xas/merged"):
                return self.write_result(body, key, content_type)
            if content_type == PLAN_CONTENT:
                return self.write_decision(body, key)
        finally:
            self._entry_provenance, self._entry_key = None, ""
        raise NexusWriterError(
            f"nexus.writer cannot store {content_type!r}; it stores xas/scan, xas/spectrum, "
            f"xas/merged and {PLAN_CONTENT}"
        )

    def write_decision(self, plan: Mapping[str, Any], key: str) -> str | None:
        """Append one decision of an agent (a `plans` message) as an NXentry without data:
        the record of an experiment says why more scans were measured, or why it stopped.
        Its `decision` (NXcollection) holds action, count, reason, confidence, metrics and the
        merge entry it was based on (`based_on`: the entry written from the merge message the
        decision answers; empty until this file holds it, and filled in then, by this writer
        or the next that opens the file: `_answered`); `plan` (NXnote) the whole message."""
        if self.has(key):
            return None
        arguments = plan.get("arguments") if isinstance(plan.get("arguments"), Mapping) else {}
        action = str(plan.get("action", ""))
        count = arguments.get("scans") if action == "more_scans" else None
        based_on = self._entry_of_message(_input_message(self._entry_provenance))
        target = str(plan.get("target") or "")
        metrics = arguments.get("metrics") if isinstance(arguments.get("metrics"), Mapping) else {}
        merged = metrics.get("n_merged")
        # two decisions on one group often say the same (more_scans 1): the merge tells them apart
        after = f" after {merged} merged scan{'' if merged == 1 else 's'}" if merged else ""
        told = f"{action}{f' {count}' if count is not None else ''}"
        title = self._titled(key, f"decision on {target}{after}: {told}")
        self._writable(0)

        def fill(entry: h5py.Group) -> None:
            _string(entry, "title", title)
            # when the agent decided (UTC, the suggestion's own time), else when written
            _start_time(entry, plan.get("time"), "decision")
            decision = _group(entry, DECISION_GROUP, "NXcollection")
            _string(decision, "action", action)
            if isinstance(count, int):
                decision.create_dataset("count", data=count)
            _string(decision, "reason", str(plan.get("reason", "")))
            confidence = plan.get("confidence")
            if isinstance(confidence, int | float):
                decision.create_dataset("confidence", data=float(confidence))
            _string(decision, "target", target)
            _string(decision, "metrics", json.dumps(metrics, default=str))
            _string(decision, "based_on", based_on or "")
            if plan.get("time"):
                _string(decision, "time", str(plan["time"]))
            _note(entry, "plan", dict(plan))
            self._provenance(entry, {"target": target})

        answered = _input_message(self._entry_provenance)
        name = self._entry(key, PLAN_CONTENT, fill)
        if based_on is None and answered:
            # its merge not written yet (late, or on another stream read later): named then
            self._waiting.setdefault(_address_key(answered), []).append(name)
        return name

    def _note_waiting(self, name: str, group: h5py.Group) -> None:
        """On opening: remember a decision whose `based_on` is still empty (`_waiting`)."""
        if _text(group.attrs.get(CONTENT_ATTR, "")) != PLAN_CONTENT:
            return
        if _dataset_text(group, f"{DECISION_GROUP}/based_on"):
            return
        answered = _input_message(_inputs_note(group))
        if answered:
            self._waiting.setdefault(_address_key(answered), []).append(name)

    def _answer_waiting(self, handle: h5py.File) -> None:
        """On opening: name in each waiting decision the merge entry the file now holds."""
        if not self._waiting:
            return
        by_message = self._message_entries(handle)
        for address in [a for a in self._waiting if a in by_message]:
            self._answered(handle, address, by_message[address])

    def _answered(self, handle: h5py.File, address: str, merge: str) -> None:
        """The entry `merge` was written from the message at `address`: the decisions that
        answer that message, written before it, name it in their `based_on` now. In place,
        as an earlier read is marked superseded: the decision's entry is complete already,
        and a reader of the file sees the link once it is flushed."""
        for name in self._waiting.pop(address, []):
            decision = handle.get(f"{name}/{DECISION_GROUP}")
            if isinstance(decision, h5py.Group) and "based_on" in decision:
                decision["based_on"][()] = merge

    def _entry_of_message(self, address: Mapping[str, Any] | None) -> str | None:
        """The entry written from the message at `address` (data_source, stream, id)."""
        if not address:
            return None
        return self._message_entries(self.file).get(_address_key(address))

    def _message_entries(self, handle: h5py.File) -> dict[str, str]:
        """`_by_message`, made from the file's entries the first time it is needed."""
        if self._by_message is None:
            self._by_message = {}
            for number in sorted(self._contents):  # the newest entry of an address last
                group = handle.get(f"entry{number}")
                if isinstance(group, h5py.Group):
                    self._remember_message(f"entry{number}", group)
        return self._by_message

    def _remember_message(self, name: str, group: h5py.Group) -> None:
        """Note which message entry `name` was written from (`_by_message`, once it is made)."""
        ref = _message_ref(group)
        if ref and self._by_message is not None:
            self._by_message[_address_key(ref)] = name

    def write_scan(self, scan: Mapping[str, Any], key: str) -> str | None:
        """Append one raw scan as an NXxas entry."""
        if self.has(key):
            return None
        meta = dict(scan.get("metadata", {}))
        channels = {k: _array(v, k) for k, v in dict(scan.get("channels", {})).items()}
        energy = _array(scan.get("energy"), "energy")
        for role, values in channels.items():
            if values.shape != energy.shape:
                raise NexusWriterError(
                    f"scan {key}: channel {role} has {values.size} points but energy has "
                    f"{energy.size}"
                )
        absorbed_role = self._absorbed_role(key, channels)
        if absorbed_role is None or "i0" not in channels:
            raise NexusWriterError(
                f"scan {key}: NXxas needs I0 and an absorbed beam (It, If or mu); the scan has "
                f"{', '.join(channels) or 'no channels'}"
            )
        self._writable(energy.nbytes * (1 + len(channels)))
        return self._entry(
            key,
            "xas/scan",
            lambda entry: self._fill_scan(entry, key, meta, energy, channels, absorbed_role),
        )

    def _absorbed_role(self, key: str, channels: Mapping[str, np.ndarray]) -> str | None:
        """The channel stored as NXxas's absorbed beam. The `mode` param names it (It in
        transmission, If in fluorescence): a P65 file carries both, and only the experiment
        says which one was measured for. In `auto`, It, else If, else a ready mu."""
        wanted = MODE_ROLES.get(self.mode)
        if wanted is None:
            return next((r for r in ("it", "if", "mu") if r in channels), None)
        if wanted not in channels:
            raise NexusWriterError(
                f"scan {key}: nexus.writer's mode is {self.mode}, which stores "
                f"{ROLE_NAMES[wanted]} as the absorbed beam, but the scan has "
                f"{', '.join(ROLE_NAMES.get(c, c) for c in channels) or 'no channels'}; set "
                "mode to the scan's measurement (or `auto`)"
            )
        return wanted

    def _fill_scan(
        self,
        entry: h5py.Group,
        key: str,
        meta: dict[str, Any],
        energy: np.ndarray,
        channels: dict[str, np.ndarray],
        absorbed_role: str,
    ) -> None:
        _string(entry, "definition", "NXxas")
        label = str(meta.get("title") or _scan_label(meta))
        _string(entry, "title", self._titled(key, _versioned(label, meta)))
        _start_time(entry, meta.get("start_time"), "scan file")
        if meta.get("end_time"):
            _measured_time(entry, "end_time", meta["end_time"])

        instrument = _group(entry, "instrument", "NXinstrument")
        _string(instrument, "name", str(meta.get("beamline") or self.beamline))
        source = _group(instrument, "source", "NXsource")
        _string(source, "type", self.source_type)
        facility = self._facility(meta)
        if facility is not None:
            _string(source, "name", facility)
        _string(source, "probe", "x-ray")
        mono = _group(instrument, "monochromator", "NXmonochromator")
        self._data(mono, "energy", energy, units="eV")
        if meta.get("mono"):
            crystal = _group(mono, "crystal", "NXcrystal")
            _string(crystal, "type", str(meta["mono"]))
        incoming = _group(instrument, "incoming_beam", "NXdetector")
        self._data(incoming, "data", channels["i0"], units="counts")
        absorbed = _group(instrument, "absorbed_beam", "NXdetector")
        self._absorbed(absorbed, channels[absorbed_role], absorbed_role, meta)
        if "iref" in channels:
            ref = _group(instrument, "reference_beam", "NXdetector")
            self._data(ref, "data", channels["iref"], units="counts")
        if "if" in channels and absorbed_role != "if":
            fluo = _group(instrument, "fluorescence", "NXdetector")
            self._data(fluo, "data", channels["if"], units="counts")
        if "it" in channels and absorbed_role != "it":
            # a fluorescence scan's transmitted beam, measured alongside
            transmitted = _group(instrument, "transmitted_beam", "NXdetector")
            self._data(transmitted, "data", channels["it"], units="counts")
        if "mu" in channels and absorbed_role != "mu":
            self._data(instrument, "mu", channels["mu"])

        sample = _group(entry, "sample", "NXsample")
        _string(sample, "name", str(meta.get("sample", "unknown")))
        for field in ("element", "edge"):
            if meta.get(field):
                _string(sample, field, str(meta[field]))

        monitor = _group(entry, "monitor", "NXmonitor")
        _string(monitor, "mode", self.monitor_mode)
        preset = self._preset(meta)
        if preset is not None:
            monitor.create_dataset("preset", data=preset)
            monitor["preset"].attrs["units"] = "s" if self.monitor_mode == "timer" else "counts"
        self._data(monitor, "data", channels["i0"], units="counts")

        data = _group(entry, "data", "NXdata")
        data.attrs["signal"] = "absorbed_beam"
        data.attrs["axes"] = "energy"
        # links, as NXxas asks: HDF5 hard links, marked with NeXus's `target` attribute
        for link, source in (("energy", mono["energy"]), ("absorbed_beam", absorbed["data"])):
            source.attrs["target"] = source.name
            data[link] = source
        _string(data, "mode", detection_mode(meta, absorbed_role, forced=self.mode != "auto"))
        entry.attrs["default"] = "data"
        self._provenance(entry, meta)

    def _preset(self, meta: Mapping[str, Any]) -> float | None:
        """NXmonitor/preset: the `monitor_preset` param, else in timer mode the scan's time per
        point (`count_time`); None when neither says one. A reader takes a number with units
        at face value, so an unknown preset is left out, never written as NaN seconds (NXxas
        asks for the field: nxvalidate then reports it missing, which is the truth)."""
        preset = self.monitor_preset
        if preset is None and self.monitor_mode == "timer":
            preset = meta.get("count_time")  # seconds per point, from the scan file
        try:
            value = float(preset) if preset is not None else None
        except (TypeError, ValueError):
            return None
        return value if value is not None and np.isfinite(value) else None

    def _facility(self, meta: Mapping[str, Any]) -> str | None:
        """NXsource/name: the facility the scan's header names; else `source_name`, the
        facility of the configured `beamline`, when the scan is of that beamline or names none
        (a P65 file without a facility line). A scan of another beamline without a facility
        (an XDI file with `Beamline.name: APS 13ID` alone) gets none: the configured one would
        be wrong, and guessing it from the beamline's name is not certain."""
        if meta.get("facility"):
            return str(meta["facility"])
        beamline = str(meta.get("beamline") or "").strip()
        if not beamline or beamline.casefold() == self.beamline.casefold():
            return self.source_name
        return None

    def _absorbed(
        self, group: h5py.Group, values: np.ndarray, role: str, meta: Mapping[str, Any]
    ) -> None:
        """NXxas's absorbed beam: a detector's counts (It, If), or a ready mu(E), which is
        an absorbance -ln(I/I0) and has no unit (NXxas gives the field no unit category)."""
        if role != "mu":
            self._data(group, "data", values, units="counts")
            return
        dataset = self._data(group, "data", values)
        column = dict(meta.get("columns", {})).get("mu") or "mu"
        dataset.attrs["long_name"] = f"mu(E), dimensionless, from the scan file's {column}"

    def write_result(
        self, result: Mapping[str, Any], key: str, content_type: str = "xas/spectrum"
    ) -> str | None:
        """Append one processed result (spectrum or merge) as NXentry/NXprocess + NXdata."""
        if self.has(key):
            return None
        arrays = {k: _array(v, k) for k, v in dict(result.get("arrays", {})).items()}
        values = dict(result.get("values", {}))
        if "energy" not in arrays or "mu" not in arrays:
            raise NexusWriterError(f"result {key}: it has no energy and mu arrays to store")
        meta = dict(result.get("metadata", {}))
        group = dict(result.get("group", {}))
        merged = content_type == "xas/merged"
        if merged:
            meta = self._merge_members(result, key, meta)
            title = self._merge_title(result, key, group)
        else:
            label = meta.get("file") or ", ".join(str(v) for v in group.values()) or key
            title = self._titled(key, _versioned(f"normalised {label}", meta))
        self._writable(sum(a.nbytes for a in arrays.values()))
        return self._entry(
            key,
            content_type,
            lambda entry: self._fill_result(
                entry, result, title, arrays, values, meta, group, merged
            ),
        )

    def write_nothing_merged(self, result: Mapping[str, Any], key: str) -> str | None:
        """Append a merge of no scan (`nothing_merged`): an entry saying so and why, with no
        spectrum (`_fill_nothing_merged`). It is the group's newest merge, and the root's
        `default` when it is the file's newest, as any merge: the group's earlier merges are
        not the merge unit's result any more."""
        if self.has(key):
            return None
        group = dict(result.get("group", {}))
        meta = self._merge_members(result, key, dict(result.get("metadata", {})))
        title = self._merge_title(result, key, group)
        self._writable(0)
        return self._entry(
            key,
            "xas/merged",
            lambda entry: self._fill_nothing_merged(entry, result, title, meta, group),
        )

    def _merge_title(self, result: Mapping[str, Any], key: str, group: dict[str, Any]) -> str:
        """`r1: merge 3 of <group> (2 of 3 scans)`: every scan of a group makes a merge, and
        two of them may hold as many scans (one rejected, one resumed under other settings), so
        each says which merge it is: the group's n-th in the run (`_merge_number`)."""
        label = ", ".join(str(v) for v in group.values()) or key
        if nothing_merged(result):
            # `r1: merge 3 of <group>: nothing merged (no majority: 2 scans disagree ...)`
            why = _nothing_merged_why(result)[0]
            number = self._merge_number(result, key, group)
            return self._titled(key, f"merge {number} of {label}: nothing merged ({why})")
        n_merged = int(result.get("n_merged", 0))
        n_scans, copies = _scans_measured(result, n_merged)
        counted = f"{n_merged} of {n_scans}" if n_scans > n_merged else str(n_merged)
        scans = f"{counted} scan{'' if n_scans == 1 else 's'}"
        if copies:
            scans += f"; {copies} cop{'y' if copies == 1 else 'ies'} of scans left out"
        return self._titled(
            key, f"merge {self._merge_number(result, key, group)} of {label} ({scans})"
        )

    def _merge_number(self, result: Mapping[str, Any], key: str, group: dict[str, Any]) -> str:
        """Which merge this is: the group's n-th in its run, as `xas.merge` numbers them
        (`number`), whatever order the writer gets them in (a merge redelivered after a crash
        comes after later ones). From a merge unit that does not number them: its message id,
        its place in the stream, which counts every group's merges, with the stream when it is
        not a data source's first. A merge written outside a pipeline, with neither, is counted
        among its group's merges in the file instead."""
        number = result.get("number")
        if isinstance(number, int) and not isinstance(number, bool) and number > 0:
            return str(number)
        message = (self._entry_provenance or {}).get("message")
        if not isinstance(message, Mapping):
            message = {}
        number = message.get("id")
        if isinstance(number, int) and not isinstance(number, bool) and number > 0:
            stream = str(message.get("stream") or FIRST_STREAM)
            return str(number) if stream == FIRST_STREAM else f"{number} in stream {stream}"
        slot = _merge_slot(self._producer(key), key, group)
        return str(self._merges.get(slot, 0) + 1)

    def _fill_result(
        self,
        entry: h5py.Group,
        result: Mapping[str, Any],
        title: str,
        arrays: dict[str, np.ndarray],
        values: dict[str, Any],
        meta: dict[str, Any],
        group: dict[str, Any],
        merged: bool,
    ) -> None:
        _string(entry, "title", title)
        _start_time(entry, meta.get("start_time"), "merged scans" if merged else "scan file")
        self._fill_process(entry, result, values, merged)

        data = _group(entry, "data", "NXdata")
        data.attrs["signal"] = "mu"
        data.attrs["axes"] = "energy"
        self._data(data, "energy", arrays["energy"], units="eV")
        self._data(data, "mu", arrays["mu"])
        if _known_errors(arrays.get("mu_stderr")):
            # NXdata's `<signal>_errors` is the signal's uncertainty, so it is there only when
            # known: a merge of one scan has no spread (xas.merge sends it all NaN), and the
            # writer leaves an unknown value out, as it does `monitor/preset`
            self._data(data, "mu_errors", arrays["mu_stderr"])
        auxiliary = []
        for field in ("norm", "flat", "bkg", "pre_edge_line", "post_edge"):
            if field in arrays and arrays[field].shape == arrays["energy"].shape:
                self._data(data, field, arrays[field])
                auxiliary.append(field)
        if auxiliary:
            data.attrs["auxiliary_signals"] = np.array(auxiliary, dtype=h5py.string_dtype())
        if "k" in arrays and "chi" in arrays:
            chi = _group(entry, "chi", "NXdata")
            chi.attrs["signal"] = "chi"
            chi.attrs["axes"] = "k"
            self._data(chi, "k", arrays["k"], units="1/angstrom")
            self._data(chi, "chi", arrays["chi"])
        entry.attrs["default"] = "data"
        self._provenance(entry, {**meta, **({"group": group} if group else {})})

    def _fill_nothing_merged(
        self,
        entry: h5py.Group,
        result: Mapping[str, Any],
        title: str,
        meta: dict[str, Any],
        group: dict[str, Any],
    ) -> None:
        """A merge of no scan: the entry says that nothing was merged and why, with the merge's
        process (n_merged 0, the rejected scans with their reasons, `no_majority`) and
        provenance like any merge, and no spectrum.

        It has no NXdata and no `default` of its own, and the root's `default` names it when it
        is the newest merge (`_point_default`, as for any merge). The merge unit no longer
        stands by the group's earlier merges: a root `default` left on one of them would show
        a viewer, or a reader following `default`, an old spectrum as the current result. An
        NXdata without data (empty arrays, or a `signal` naming no dataset) is no answer either:
        NeXus's NXdata holds plottable data, and readers that follow `default` into one would
        plot nothing, or fail on a `signal` that is not there. NeXus's "find the plottable
        data" reaches this entry, finds no `default` and no NXdata in it, and so nothing to
        plot, which is the truth; the entry's `title` and `notes` (an NXnote, the NXentry's
        place for free text) say why. h5py, silx (`silx.io.nxdata.get_default`: None) and
        nexusformat (the entry's `plottable_data`: None) read it without an error."""
        _string(entry, "title", title)
        _start_time(entry, meta.get("start_time"), "merged scans")
        self._fill_process(entry, result, {}, merged=True)
        notes = _group(entry, "notes", "NXnote")
        _string(notes, "type", "text/plain")
        _string(notes, "description", "nothing merged")
        _string(notes, "data", _nothing_merged_why(result, group)[1])
        self._provenance(entry, {**meta, **({"group": group} if group else {})})

    def _fill_process(
        self,
        entry: h5py.Group,
        result: Mapping[str, Any],
        values: Mapping[str, Any],
        merged: bool,
    ) -> None:
        """The entry's NXprocess `process`: program, parameters, scalar results (a merge's: how
        many it merged, which scans it accepted and rejected and why, their shifts)."""
        settings = dict(result.get("settings", {}))
        process = _group(entry, "process", "NXprocess")
        _string(process, "program", str(settings.get("program", "xraylarch")))
        if settings.get("version"):
            _string(process, "version", str(settings["version"]))
        process.create_dataset("sequence_index", data=2 if merged else 1)
        _string(process, "date", _now())
        note = _group(process, "parameters", "NXnote")
        _string(note, "type", "application/json")
        _string(note, "data", json.dumps(settings, sort_keys=True, default=str))
        # the scalar results: NXprocess defines no fields for them, NXcollection holds anything
        results = _group(process, "results", "NXcollection")
        for field, value in values.items():
            if value is not None:
                results.create_dataset(field, data=float(value))
        for field, unit in RESULT_UNITS.items():
            if field in results:
                results[field].attrs["units"] = unit
        if merged:
            results.create_dataset("n_merged", data=int(result.get("n_merged", 0)))
            _string(results, "accepted", json.dumps(list(result.get("accepted", []))))
            _string(results, "rejected", json.dumps(list(result.get("rejected", []))))
            _alignment_shifts(results, result)
            no_majority = result.get("no_majority")
            if isinstance(no_majority, Mapping) and no_majority.get("reason"):
                _string(results, "no_majority", str(no_majority["reason"]))
            if result.get("glitches"):
                # points of repeats the merge found deviating from the others (the rule and
                # threshold are in parameters, `deglitch`)
                _string(results, "glitches", json.dumps(list(result["glitches"])))

    def _merge_members(
        self, result: Mapping[str, Any], key: str, meta: dict[str, Any]
    ) -> dict[str, Any]:
        """A merge names the spectra it merged, not only the one whose arrival made it (its
        message's inputs): each accepted scan with its spectrum's message and entry, when
        this file holds it; and it was measured when its earliest member was."""
        run = _run_of(key)
        members = []
        for scan in result.get("accepted") or ():
            known = self._spectra.get((run, str(scan)), {})
            members.append({"scan": str(scan), **known})
        starts = [str(m["start_time"]) for m in members if m.get("start_time")]
        if starts and not meta.get("start_time"):
            meta = {**meta, "start_time": min(starts)}
        prov = dict(self._entry_provenance or {})
        inputs = list(prov.get("inputs") or [])
        for member in members:
            if member.get("message") and member["message"] not in inputs:
                inputs.append(member["message"])
        prov["inputs"] = inputs
        prov["merged"] = [{k: v for k, v in m.items() if k != "start_time"} for m in members]
        self._entry_provenance = prov
        return meta

    # -- helpers ---------------------------------------------------------------------------------
    def _writable(self, nbytes: int) -> None:
        if self._frozen is not None:
            raise UnitStorageError(
                f"nexus.writer stopped writing {self.path} after a failed write ({self._frozen})"
            )
        self.check_file()
        self._guard_space(nbytes + 64 * 1024)  # the arrays plus the entry's small fields

    def _new_entry(self, key: str, content_type: str) -> tuple[str, h5py.Group]:
        name = f"entry{self._next}"
        while name in self.file:
            self._next += 1
            name = f"entry{self._next}"
        entry = _group(self.file, name, "NXentry")
        entry.attrs[CONTENT_ATTR] = content_type
        return name, entry

    def _discard(self, name: str) -> None:
        # a failure half-way through an entry must not leave the half behind
        if name in self.file:
            del self.file[name]
            self.file.flush()
            self._note_own_writes()

    def _commit(self, name: str, key: str) -> str:
        # the key goes on last: an entry interrupted half-way has no key and is rewritten
        group = self.file[name]
        group.attrs[KEY_ATTR] = key
        self._note_newest(name, group)
        self._note_content(name, group)
        if self._waiting:
            self._answered(self.file, _address_key(_message_ref(group)), name)
        self._point_default(self.file)
        self.file.flush()
        self._index(name, key)
        self._index_run(group, key)
        self._index_spectrum(name, group)
        self._index_raw_file(name, group, key)
        self._note_citing_unwritten(name, group, key)
        scan = key.partition("|run:")[0]
        if scan in self._citing_unwritten and self._complete_citers(self.file, scan):
            self.file.flush()
        self._index_merge(group, key)
        slot = self._index_read(name, group, key)
        if slot is not None:
            self._mark_superseded(self.file, slot)
            self.file.flush()
        self._next += 1
        return name

    def _note_newest(self, name: str, group: h5py.Group) -> None:
        """Remember the newest complete entry, of any kind and of each content type. Newest is
        by the entry's message (`_Position`): a message redelivered after a crash arrives
        after later ones and must not pass for the newest. The position is read back from the
        entry, so a writer reopening the file finds the same newest entry."""
        position = _position(name, group)
        if position is None:
            return
        content = _text(group.attrs.get(CONTENT_ATTR, ""))
        # a decision holds nothing to plot: never the newest entry "of any kind" a viewer
        # is sent to (`_point_default`), even in a file of raw scans and decisions only
        for kind in ("", content) if content != PLAN_CONTENT else (content,):
            held = self._newest.get(kind)
            if held is None or position.after(held[0]):
                self._newest[kind] = (position, name)

    def _note_content(self, name: str, group: h5py.Group) -> None:
        match = _ENTRY.match(name)
        if match:
            content = _text(group.attrs.get(CONTENT_ATTR, ""))
            self._contents[int(match.group(1))] = content
            if self._by_message is not None:
                self._remember_message(name, group)
            if content == "xas/merged" and "data" not in group:
                self._without_data.add(int(match.group(1)))

    def check_file(self) -> None:
        """Raise `FileGone` when the path no longer names the file this writer has open
        (removed, moved, replaced): what is written into an unlinked file is in no file anyone
        can open, so nothing more may be written or acknowledged; or when another program
        changed the file in place (`_changed_in_place`). One stat and one fstat: cheap
        enough before every entry and every acknowledgement."""
        if self._gone is None and self._opened is not None:
            fd, identity = self._opened
            became = _what_became_of(self.path, fd, identity)
            self._gone = (*became, False) if became else self._changed_in_place(fd)
        if self._gone is not None:
            what, kept, changed = self._gone
            raise FileGone(
                self.path.absolute(), what, self.entries_in_file, kept=kept, changed=changed
            )

    def flush(self) -> None:
        """Flush the file, once the path is known to still name it unchanged (`check_file`)."""
        self.check_file()
        self.file.flush()
        self._note_own_writes()
        self._note_ledger()

    def _note_own_writes(self) -> None:
        """Remember the file's size and modification time as this writer's write left them.
        Called once each write of its own is flushed and the objects it wrote are released:
        HDF5 writes the file only within those calls, so any later change is another
        program's."""
        self._left = _size_and_mtime(self._opened[0]) if self._opened is not None else None

    def _changed_in_place(self, fd: int) -> tuple[str, bool, bool] | None:
        """What another program did to the open file itself (the path still names it): `: >
        file` truncated it, `cp other.nxs file` or `h5py.File(file, "w")` wrote another file
        into it. HDF5 keeps the file's metadata in memory and would write its next entry over
        what is there now, a file neither program can read. The file's size and modification
        time tell, from an fstat of the open descriptor, without reading the file: any write
        changes its mtime, also one that leaves the size as it was (the superblock's
        end-of-file address would miss a copy of a file as large, which two runs over the same
        scans write, and reading it is a read per entry). A `touch` is taken for a change too:
        the writer's restart finds its own file with its entries there and goes on."""
        if self._left is None or _size_and_mtime(fd) in (None, self._left):
            return None
        # nothing more of this writer's may reach that file, not even HDF5's writes on closing
        # it: its descriptor now names /dev/null (as after a failed write, `_freeze`)
        _detach(fd)
        return (
            "was changed in place by another program (emptied, or another file written or "
            "copied onto it)",
            True,
            True,
        )

    def runs_in_file(self) -> dict[str, int]:
        """`pipeline run` -> how many complete entries of that run the file holds, for the
        entries a pipeline wrote (their key names the unit and the run)."""
        return dict(self._run_counts)

    @property
    def entries_in_file(self) -> int:
        """How many complete entries the file holds (entries cut short by a crash are not)."""
        return len(self._contents)

    def newest_contents(self, count: int) -> list[str]:
        """The content types of the newest `count` complete entries: entries are numbered in
        the order written, so these are what was written after the file held the others."""
        if count <= 0:
            return []
        return [self._contents[n] for n in sorted(self._contents)[-count:]]

    def newest_without_data(self, count: int) -> int:
        """How many of the newest `count` complete entries are merges of no scan."""
        if count <= 0:
            return 0
        return sum(n in self._without_data for n in sorted(self._contents)[-count:])

    def _point_default(self, handle: h5py.File) -> None:
        """NXroot's `default`: the entry a viewer opening the file plots (each entry's own
        `default` names its NXdata). The newest merge is the best spectrum of the sample, the
        newest normalised scan the best before the first merge. A newest merge of nothing (an
        entry without NXdata, `_fill_nothing_merged`) is named too: the group's earlier merges
        are not the merge unit's result any more."""
        kind = next((k for k in (*DEFAULT_PREFERENCE, "") if k in self._newest), None)
        if kind is None:
            # nothing of ours yet: a default another program set stays, unless its entry is
            # gone (dropped unfinished, or not salvaged from a damaged file)
            stale = handle.attrs.get("default")
            if stale is not None and _text(stale) not in handle:
                del handle.attrs["default"]
            return
        name = self._newest[kind][1]
        if _text(handle.attrs.get("default", "")) != name:
            _set_text_attr(handle, "default", name)

    def _data(
        self, group: h5py.Group, name: str, values: np.ndarray, *, units: str | None = None
    ) -> h5py.Dataset:
        kwargs: dict[str, Any] = {}
        if self.compression and values.size > 1:
            kwargs = {"compression": self.compression, "chunks": True}
        dataset = group.create_dataset(name, data=values, **kwargs)
        if units:
            dataset.attrs["units"] = units
        return dataset

    def _provenance(self, entry: h5py.Group, meta: Mapping[str, Any]) -> None:
        notes = _group(entry, "asapo", "NXcollection")
        _string(notes, "metadata", json.dumps(dict(meta), sort_keys=True, default=str))
        if self._entry_provenance is not None:
            prov = dict(self._entry_provenance)
            prov["source_checksums"] = self.source_checksums(prov, _run_of(self._entry_key))
            prov["raw_scans"] = self.raw_entries(prov, _run_of(self._entry_key))
            write_provenance(entry, prov)


def _known_errors(errors: np.ndarray | None) -> bool:
    """Whether a result's uncertainties make an NXdata `mu_errors`: known for some points
    (all NaN is a merge of one scan, which has no spread)."""
    return errors is not None and bool(np.isfinite(errors).any())


def _filled(values: Any) -> bool:
    """An array of a message (a JSON list, or a numpy array) that holds values."""
    try:
        return values is not None and len(values) > 0
    except TypeError:
        return False


def has_data(result: Mapping[str, Any]) -> bool:
    """A spectrum or merge with the arrays an entry stores (energy and mu)."""
    arrays = result.get("arrays")
    return (
        isinstance(arrays, Mapping) and _filled(arrays.get("energy")) and _filled(arrays.get("mu"))
    )


def _scans_measured(result: Mapping[str, Any], n_merged: int) -> tuple[int, int]:
    """(the scans a merge counts, as the convergence agent counts the scans taken; the copies
    of scans it lists): a copy of another scan's data (`duplicate`) and an earlier read of a
    file that a later version replaces (`replaced`) are no measurements, and a title counting
    them read `2 of 11 scans` for two repeats beside nine copies of one of them."""
    rejected = [r for r in result.get("rejected", []) if isinstance(r, Mapping)]
    if not rejected and result.get("n_scans"):
        return int(result["n_scans"]), 0  # an older message that lists no rejections
    measured = [r for r in rejected if not r.get("duplicate") and not r.get("replaced")]
    copies = sum(1 for r in rejected if r.get("duplicate"))
    return n_merged + len(measured), copies


def nothing_merged(result: Mapping[str, Any]) -> bool:
    """A merge of no scan: every scan of the group rejected, or scans that disagree with no
    majority (`no_majority`). The merge unit sends it with `n_merged` 0 and no arrays; a merge
    that says it merged scans but has no arrays is not one (the writer refuses it)."""
    if has_data(result):
        return False
    try:
        return int(result.get("n_merged") or 0) == 0
    except (TypeError, ValueError):
        return False


def _scan_name(scan: Any) -> str:
    """A scan as people name it: its file (a scan id is the scan message's key, which ends in
    the file, `...key:<file>`)."""
    return str(scan).rpartition("key:")[2]


def _nothing_merged_why(
    result: Mapping[str, Any], group: Mapping[str, Any] | None = None
) -> tuple[str, str]:
    """Why a merge merged nothing: (a few words for its title, the whole account for its
    notes: the merge's reason and each scan's)."""
    rejected = [r for r in result.get("rejected") or () if isinstance(r, Mapping)]
    no_majority = result.get("no_majority")
    if isinstance(no_majority, Mapping):
        n = len(no_majority.get("scans") or ()) or len(rejected)
        short = f"no majority: {n} scan{'' if n == 1 else 's'} disagree in E0 or edge step"
        reason = str(no_majority.get("reason") or short)
    elif rejected and all(r.get("replaced") for r in rejected):
        # every file's version here was replaced by a later one, counted in another group
        short = reason = "no scan left: each replaced by a later version of its file"
    elif len(rejected) == 1:
        short = reason = (
            f"its one scan rejected: {'; '.join(map(str, rejected[0].get('reasons') or ()))}"
        )
    elif rejected:
        short = f"all {len(rejected)} scans rejected"
        reason = f"every one of the {len(rejected)} scans of the group was rejected"
    else:
        short = reason = "no scan to merge"
    label = ", ".join(str(v) for v in (group or {}).values()) or "the group"
    scans = "; ".join(
        f"{_scan_name(r.get('scan'))}: {'; '.join(map(str, r.get('reasons') or ())) or 'rejected'}"
        for r in rejected
    )
    full = (
        f"Nothing merged of {label}: {reason}. This merge holds no spectrum, and it replaces "
        "the group's earlier merges in this file as the merge's result: the merge unit no "
        "longer stands by them."
        + (f" The scans and why each was left out: {scans}." if scans else "")
    )
    return short, full


def _start_time(entry: h5py.Group, start: Any, origin: str) -> None:
    """NXentry's start_time: the measurement's, or the write time with a note saying so."""
    if start:
        _measured_time(entry, "start_time", start)
        return
    _string(entry, "start_time", _now())
    entry["start_time"].attrs["note"] = f"not in the {origin}: time the entry was written"


def _measured_time(entry: h5py.Group, name: str, value: Any) -> None:
    """A time from the scan file, as written. NX_DATE_TIME asks for a UTC offset, but one the
    file does not state is not invented: P65's and XDI's headers give the beamline's local time
    without a zone, and `time_zone = "unknown"` says so (ISO 8601 reads it as local time)."""
    text = str(value)
    _string(entry, name, text)
    if _utc_offset(text) is None:
        entry[name].attrs["time_zone"] = "unknown"


def _utc_offset(text: str) -> timedelta | None:
    """The UTC offset an ISO 8601 time states, None when it states none (or is no such time)."""
    try:
        return datetime.fromisoformat(text).utcoffset()
    except ValueError:
        return None


def _alignment_shifts(results: h5py.Group, merge: Mapping[str, Any]) -> None:
    """The energy shift the merge added to each merged scan before averaging (its alignment on
    the reference foil; 0 with `align: none`), one per scan in the order of `accepted` and of
    provenance's `merged`: with those spectra's energy and mu, what reproduces the merge. A
    merge message that carries no shifts (from before they were sent) gets none."""
    scans = {str(s.get("scan")): s for s in merge.get("scans") or () if isinstance(s, Mapping)}
    accepted = [scans.get(str(scan), {}) for scan in merge.get("accepted") or ()]
    if not accepted or not any("shift" in scan for scan in accepted):
        return
    for name, field in (("alignment_shift", "shift"), ("alignment_shift_errors", "shift_err")):
        values = [_float_or_nan(scan.get(field)) for scan in accepted]
        dataset = results.create_dataset(name, data=np.asarray(values, dtype=float))
        dataset.attrs["units"] = "eV"
    results["alignment_shift"].attrs["long_name"] = (
        "energy shift added to each merged spectrum's data/energy before averaging, one per "
        "scan of accepted, in that order"
    )


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def readable_start(start: str) -> str:
    """A run start as titles and the writer's warnings say it: `2026-12-04 03:58:32 UTC`."""
    try:
        stamp = datetime.fromisoformat(start).astimezone(UTC)
    except ValueError:
        return start
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def _versioned(title: str, meta: Mapping[str, Any]) -> str:
    """`title`, naming the version of its scan file when it is a later one (`file_version`:
    the file changed after it was read, and was sent again): the entries of two versions of
    one file had the same title, and which was current could not be told."""
    version = meta.get("file_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > 1:
        return f"{title} (version {version})"
    return title


def _scan_label(meta: Mapping[str, Any]) -> str:
    """A scan as `<sample> <file>`, or the file alone when its name starts with the sample
    (the name, not a subdirectory it is in: xas.scan-files' `recursive` says `day1/<file>`)."""
    sample, file = str(meta.get("sample") or "scan"), str(meta.get("file") or "")
    return file if Path(file).name.startswith(sample) else f"{sample} {file}".strip()


@dataclasses.dataclass(frozen=True)
class _Position:
    """Where an entry's message stands among those the writer stores, as the entry records it:
    the start of the run that produced it, its address (data source and stream, id) and when
    its producer wrote it; the entry's number (the order written) only where these do not
    tell."""

    run_start: str = ""
    stream: tuple[str, str] = ("", "")
    id: int = 0
    time: str = ""
    entry: int = 0

    def after(self, other: _Position) -> bool:
        """Whether this message came after `other`'s: a later run's does (each run's streams
        number their messages from 1 again), in one stream the higher id, across streams the
        one written later."""
        if self.run_start and other.run_start and self.run_start != other.run_start:
            return self.run_start > other.run_start
        if self.id and other.id and self.stream == other.stream and self.id != other.id:
            return self.id > other.id
        if self.time and other.time and self.time != other.time:
            return self.time > other.time
        return self.entry > other.entry


def _position(name: str, group: h5py.Group) -> _Position | None:
    """An entry's `_Position`, from its key and provenance (None for a group not an entry)."""
    match = _ENTRY.match(name)
    if not match:
        return None
    key = _text(group.attrs.get(KEY_ATTR, ""))
    # run starts are all ISO 8601 in UTC with milliseconds (`_iso`): as text they sort in time
    run_start = _run_of(key).partition("@")[2] or _dataset_text(group, "provenance/run_started")
    message = _message_ref(group)
    number = message.get("id")
    return _Position(
        run_start=run_start,
        stream=(str(message.get("data_source", "")), str(message.get("stream", ""))),
        id=number if isinstance(number, int) and not isinstance(number, bool) else 0,
        time=_dataset_text(group, "provenance/message_time"),
        entry=int(match.group(1)),
    )


def _input_message(prov: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The address of the (first) input message a message was made from: for a decision,
    the merge it answers."""
    inputs = (prov or {}).get("inputs") or []
    first = inputs[0] if inputs else None
    return dict(first) if isinstance(first, Mapping) else None


def _address_key(address: Mapping[str, Any]) -> str:
    """A message's address (data_source, stream, id) as a dictionary key."""
    return json.dumps(dict(address), sort_keys=True, default=str)


def _inputs_note(group: h5py.Group) -> dict[str, Any]:
    """An entry's `provenance/inputs` note (its message, and that message's inputs), or {}."""
    try:
        note = json.loads(_dataset_text(group, "provenance/inputs/data") or "{}")
    except ValueError:
        return {}
    return note if isinstance(note, dict) else {}


def _message_ref(group: h5py.Group) -> dict[str, Any]:
    """The address of the message an entry was written from (`provenance/inputs`), or {}."""
    message = _inputs_note(group).get("message")
    return message if isinstance(message, dict) else {}


def _dataset_text(group: h5py.Group, path: str) -> str:
    """A string dataset's text, "" when the entry has none there."""
    try:
        return _text(group[path][()])
    except (KeyError, TypeError, ValueError):
        return ""


def _merge_slot(pipeline: str, key: str, group: Mapping[str, Any]) -> tuple[str, str, str]:
    """What merges are counted under: the pipeline, the run (with its start) and the group."""
    return pipeline, _run_of(key), json.dumps(dict(group), sort_keys=True, default=str)


def _root_attributes(handle: h5py.File, path: Path) -> None:
    """NXroot's attributes. Those that describe the file's creation stay as they were; a file
    from before they were written gets `file_time` from its oldest entry."""
    attrs = handle.attrs
    attrs.setdefault("NX_class", "NXroot")
    # absolute: a relative name says nothing once the file is copied away from the worker
    attrs.setdefault("file_name", str(Path(path).absolute()))
    if "file_time" not in attrs:
        attrs["file_time"] = _first_written(handle) or _now()
    attrs.setdefault("creator", "asapo-pipelines nexus.writer")
    attrs.setdefault("creator_version", _version("asapo-pipelines-nexus"))
    attrs.setdefault("HDF5_Version", h5py.version.hdf5_version)
    attrs.setdefault("h5py_version", h5py.version.version)


def file_id_at(path: Path) -> str | None:
    """The `FILE_ID_ATTR` of the file at `path`, "" for a file without one; None when no file
    is there or it cannot be read (a damaged file: opening it for writing salvages it)."""
    try:
        with _read_only(path) as handle:
            return _text(handle.attrs.get(FILE_ID_ATTR, ""))
    except (OSError, RuntimeError, ValueError, KeyError):
        return None


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[h5py.File]:
    """The file at `path` open for reading, never in SWMR mode: a reader in SWMR mode retries
    every read that fails a checksum, sleeping longer each time, and a damaged file kept it
    minutes in opening. A file of the writer's format is read through `SalvageView` (the
    "open for write" mark of a killed writer, which a plain open refuses, is ignored; a
    missing end reads as zeros); another (the old format: no mark to ignore) as it is."""
    try:
        view: SalvageView | None = SalvageView(path)
    except RecoveryError:
        view = None
    try:
        with h5py.File(view if view is not None else path, "r", locking=False) as handle:
            yield handle
    finally:
        if view is not None:
            view.close()


def _identity(handle: h5py.File) -> tuple[int, tuple[int, int]] | None:
    """(descriptor, (st_dev, st_ino)) of an open file; None where HDF5's driver has no
    descriptor to ask (then the path is not checked)."""
    try:
        fd = handle.id.get_vfd_handle()
        info = os.fstat(fd)
    except (OSError, RuntimeError, TypeError, ValueError):
        return None
    return fd, (info.st_dev, info.st_ino)


def _size_and_mtime(fd: int) -> tuple[int, int] | None:
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _detach(fd: int) -> None:
    """Point the descriptor `fd` at /dev/null: HDF5's later writes then go nowhere."""
    with contextlib.suppress(OSError):
        sink = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        os.dup2(sink, fd)
        os.close(sink)


def _what_became_of(path: Path, fd: int, identity: tuple[int, int]) -> tuple[str, bool] | None:
    """What happened to the open file (`fd`, `identity`) if `path` no longer names it: the
    middle of a sentence ("was removed"), and whether the file is still in some folder (it
    was moved). None while the path names it, or when the path cannot be looked at (a folder
    that denies access: HDF5's own error, if any, says so)."""
    try:
        kept = os.fstat(fd).st_nlink > 0
    except OSError:
        return None
    try:
        now = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if not path.parent.is_dir():
            gone = "moved away" if kept else "removed"
            return f"was {gone} with its folder {path.parent.absolute()}", kept
        return ("was moved or renamed" if kept else "was removed"), kept
    except OSError:
        return None
    if (now.st_dev, now.st_ino) == identity:
        return None
    if kept:
        return "was moved aside and another file put in its place", kept
    return "was replaced by another file", kept


def _first_written(handle: h5py.File) -> str | None:
    """When the oldest entry of a file was written, as its provenance or process says."""
    found: list[tuple[datetime, str]] = []
    for group in handle.values():
        for path in ("provenance/date", "process/date"):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                text = _text(group[path][()])
                stamp = datetime.fromisoformat(text)
                if stamp.utcoffset() is not None:
                    found.append((stamp, text))
                break
    return min(found)[1] if found else None


def _set_text_attr(obj: h5py.Group, name: str, value: str) -> None:
    """Change a string attribute in place where HDF5 can (a variable-length string): a reader
    in SWMR mode then never finds it missing, as between a delete and a create."""
    attrs = obj.attrs
    if name in attrs:
        info = h5py.check_string_dtype(attrs.get_id(name).dtype)
        if info is not None and info.length is None:
            attrs.modify(name, value)
            return
    attrs[name] = value


@functools.cache
def _version(distribution: str) -> str:
    """An installed distribution's version: looked up once, not for every entry written (the
    lookup scans the environment's distributions)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:  # pragma: no cover - a source checkout without metadata
        return "unknown"


#: who holds HDF5's lock on a file, as the messages about it say
_HELD_BY = (
    "HDF5 locks a file that a program opens without locking=False, such as a viewer or "
    "h5py.File(path)"
)


def _locked_by_another(exc: OSError) -> bool:
    """Whether HDF5 could not take its lock on the file because another process holds one
    (EAGAIN), not because the file system has no locks (ENOSYS) or any other failure."""
    text = str(exc)
    held = exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) or "errno = 11," in text
    return held and "unable to lock file" in text.lower()


def _said(exc: BaseException) -> str:
    """What an error says, without the quotes `str` puts around a KeyError's words."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def _nothing(_name: str) -> None:
    return None


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def _pipeline_of(group: h5py.Group, key: str) -> list[str]:
    """The pipeline an entry came from: its `asapo_pipeline`, else (an entry written before
    the attribute) the unit label its provenance key starts with; none when neither says."""
    name = group.attrs.get(PIPELINE_ATTR)
    if name is not None:
        return [_text(name)]
    match = _KEY_UNIT.match(key)
    return [match.group(1)] if match else []


def _run_label(key: str) -> str | None:
    """`pipeline run` of an entry a pipeline wrote (its key names the unit and the run)."""
    match, run = _KEY_UNIT.match(key), _run_of(key).partition("@")[0]
    return f"{match.group(1)} {run}" if match and run else None


def _run_of(key: str) -> str:
    """The run identity in an entry key (`r1@<start>`, or the label alone)."""
    _, found, rest = key.partition("|run:")
    return rest.partition("|")[0] if found else ""


def _legacy_identity(group: h5py.Group, key: str) -> str:
    """The key of an entry written before keys carried the run's start time, with that start
    added from its provenance (the writer's run, when it made the entry): a resumed run then
    still finds its own entries, and a later run with the same label does not."""
    if "|run:" not in key or key != loose_key(key):
        return key
    try:
        prov = group["provenance"]
        run, writer_run = _text(prov["run"][()]), _text(prov["writer_run"][()])
        started = _text(prov["run_started"][()])
    except (KeyError, TypeError):
        return key
    if run != writer_run:
        return key
    return key.replace(f"|run:{run}|", f"|run:{run}@{started}|", 1)


def iso_time(ts: Any) -> str | None:
    """A Unix time as ISO 8601 with milliseconds (how run starts are written and keyed)."""
    return _iso(ts)


def _iso(ts: Any) -> str | None:
    if not isinstance(ts, int | float) or not ts:
        return None
    return datetime.fromtimestamp(float(ts), UTC).isoformat(timespec="milliseconds")


def _note(parent: h5py.Group, name: str, value: Any) -> None:
    note = _group(parent, name, "NXnote")
    _string(note, "type", "application/json")
    _string(note, "data", json.dumps(value, sort_keys=True, default=str))


def write_provenance(entry: h5py.Group, prov: Mapping[str, Any]) -> None:
    """The entry's NXprocess `provenance` (layout in the module's docstring)."""
    process = _group(entry, "provenance", "NXprocess")
    _string(process, "program", "asapo-pipelines")
    _string(process, "version", _version("asapo-pipelines"))
    process.create_dataset("sequence_index", data=0)
    _string(process, "date", _now())
    for field in (
        "pipeline",
        "unit",
        "instance",
        "distribution",
        "distribution_version",
        "pipeline_file",
        "pipeline_sha256",
        "run",
        "fingerprint",
        "writer_pipeline",
        "writer_run",
        "host",
    ):
        if prov.get(field) is not None:
            _string(process, field, str(prov[field]))
    for field in ("run_started", "session_started", "message_time"):
        stamp = _iso(prov.get(field))
        if stamp is not None:
            _string(process, field, stamp)
    _note(process, "parameters", prov.get("params"))
    if prov.get("overrides") is not None:  # the producing session's `--set`s, maybe none
        _note(process, "overrides", prov["overrides"])
    if prov.get("job") is not None:  # the executor's job that computed it (with `host`)
        _note(process, "job", prov["job"])
    message = prov.get("message")
    inputs: dict[str, Any] = {"message": message, "inputs": list(prov.get("inputs") or [])}
    if prov.get("merged") is not None:  # a merge: every scan it merged (`_merge_members`)
        inputs["merged"] = list(prov["merged"])
    if prov.get("raw_scans") is not None:  # the raw scan entries it comes from (`raw_entries`)
        inputs["raw_scans"] = list(prov["raw_scans"])
    _note(process, "inputs", inputs)
    _note(process, "source_files", list(prov.get("source_files") or []))
    if prov.get("rejected_source_files"):
        _note(process, "rejected_source_files", list(prov["rejected_source_files"]))
    if prov.get("source_checksums"):  # each raw file's SHA-256 and size, where known
        _note(process, CHECKSUMS_NOTE, list(prov["source_checksums"]))
    # a run label alone names a run only within its pipeline (every pipeline has an r1), and
    # within it only until the store is deleted (run ids start again at r1): its start with it
    for attr in ("pipeline", "run", "fingerprint"):
        if prov.get(attr) is not None:
            entry.attrs[f"asapo_{attr}"] = str(prov[attr])
    started = _iso(prov.get("run_started"))
    if started is not None:
        entry.attrs[RUN_STARTED_ATTR] = started


#: NXxas's enumeration of NXdata/mode, by the channel stored as the absorbed beam.
DETECTION_MODES = {"it": "Transmission", "if": "Fluorescence Yield"}
NXXAS_MODES = (
    "Total Electron Yield",
    "Partial Electron Yield",
    "Auger Electron Yield",
    "Fluorescence Yield",
    "Transmission",
)


#: nexus.writer's `mode` param -> the channel it stores as the absorbed beam
MODE_ROLES = {"transmission": "it", "fluorescence": "if"}
ROLE_NAMES = {"i0": "I0", "it": "It", "if": "If", "iref": "Iref", "mu": "mu"}


def detection_mode(meta: Mapping[str, Any], absorbed_role: str, *, forced: bool = False) -> str:
    """NXxas's NXdata/mode: the scan's own `detection_mode` if it names one, else from the
    channel (It: transmission, If: fluorescence; a ready mu: from its column name). `forced`:
    the channel was chosen by nexus.writer's `mode` param, which then decides."""
    if forced and absorbed_role in DETECTION_MODES:
        return DETECTION_MODES[absorbed_role]
    given = str(meta.get("detection_mode", ""))
    for mode in NXXAS_MODES:
        if given.lower() == mode.lower():
            return mode
    if absorbed_role in DETECTION_MODES:
        return DETECTION_MODES[absorbed_role]
    column = str(dict(meta.get("columns", {})).get("mu", "")).lower()
    return "Fluorescence Yield" if "fl" in column else "Transmission"


def _read_holder(fd: int) -> dict[str, Any]:
    """The record of the writer holding a lock file (`NexusWriter._lock`), {} when it has
    none or it cannot be read (an older writer's empty lock file, one being written)."""
    try:
        # the whole record: with the ledger of a file of many runs it outgrows a page
        found = json.loads(os.pread(fd, max(os.fstat(fd).st_size, 4096), 0).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _exit_without_hdf5_cleanup() -> None:
    """After a failed write the HDF5 library's own state is damaged, and its clean-up at exit
    crashes the process (SIGSEGV) instead of letting it exit with its error. The file needs
    nothing more (it was frozen), so the process leaves here, with the failure's exit status,
    once Python's output is flushed."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(1)


#: files left open after a failed write (`NexusWriter.close`): never released before the exit
_ABANDONED: list[h5py.File] = []


@contextlib.contextmanager
def _released_failures() -> Iterator[list[BaseException]]:
    """Collect the errors h5py swallows when it releases an object (HDF5 writes then)."""
    failures: list[BaseException] = []
    previous, previous_print = sys.unraisablehook, sys.excepthook

    def hook(info: Any) -> None:
        if "h5py" in repr(info.object) and info.exc_value is not None:
            failures.append(info.exc_value)
        else:
            previous(info)

    def printed(kind: Any, value: Any, tb: Any) -> None:
        # Cython prints the whole traceback of a failing `__dealloc__` (through this hook)
        # before it reports the error as unraisable: that one is collected above and said in
        # one sentence (`_freeze`), not as a traceback per object in the unit's log
        if not any("h5py" in frame.filename for frame in traceback.extract_tb(tb)):
            previous_print(kind, value, tb)

    sys.unraisablehook, sys.excepthook = hook, printed
    try:
        yield failures
    finally:
        sys.unraisablehook, sys.excepthook = previous, previous_print


def _copy_root_attributes(old: h5py.File, new: h5py.File) -> None:
    """The root's attributes, the file's id among them, as far as they can be read."""
    with contextlib.suppress(OSError, RuntimeError, KeyError):
        for key, value in old.attrs.items():
            with contextlib.suppress(Exception):
                new.attrs[key] = value


def _copy_entries(old: h5py.File, new: h5py.File) -> int:
    """Copy the complete entries of a damaged file, by name (iterating its top level may be
    what fails): entry1, entry2, ... until many names in a row are missing."""
    copied, missing, number = 0, 0, 1
    while missing < 1000:
        name = f"entry{number}"
        number += 1
        try:
            group = old[name]
            complete = isinstance(group, h5py.Group) and group.attrs.get(KEY_ATTR) is not None
            if complete:
                old.copy(group, new, name=name)
                copied += 1
            missing = 0
        except (KeyError, OSError, RuntimeError, ValueError):
            missing += 1
            with contextlib.suppress(KeyError, OSError, RuntimeError):
                if name in new:
                    del new[name]
    return copied


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def _string(group: h5py.Group, name: str, value: str) -> None:
    group.create_dataset(name, data=value, dtype=h5py.string_dtype())


def _incomplete(group: Any) -> bool:
    return (
        isinstance(group, h5py.Group)
        and CONTENT_ATTR in group.attrs
        and KEY_ATTR not in group.attrs
    )


def _array(values: Any, name: str) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.astype(float)
    if values is None:
        raise NexusWriterError(f"{name} is missing")
    try:
        array = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    except (TypeError, ValueError):
        raise NexusWriterError(f"{name} is not a list of numbers") from None
    return array


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
