"""`core.jsonl-sink`: appends one JSON object per message to a file, each message once."""

from __future__ import annotations

import base64
import json
import math
import os
from pathlib import Path
from typing import IO, Any

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.sdk.units import BadMessage, Message, Sink

#: what each line records of the unit that produced its message (`Message.producer`), as the
#: NeXus writer does: the run record holding them may be pruned, the file stays; and the host
#: and executor's job that computed it, which no run record holds
PRODUCER_FIELDS = (
    "unit",
    "instance",
    "distribution",
    "version",
    "params",
    "fingerprint",
    "run",
    "run_started",
    "session_started",
    "pipeline_file",
    "pipeline_sha256",
    "overrides",
    "host",
    "job",
)


def dedup_key(record: dict[str, Any]) -> str:
    """What makes two deliveries the same message: the producer's provenance key when there is
    one (it survives re-sending by a restarted upstream), else the message's own address; plus
    the run and configuration fingerprint that produced it, so new parameters (or another run)
    give new lines instead of being taken for duplicates."""
    prov = (record.get("metadata") or {}).get("provenance") or {}
    if not isinstance(prov, dict):
        prov = {}
    made = f"|run:{prov['run']}|fp:{prov.get('fingerprint')}" if prov.get("run") else ""
    if prov.get("key"):
        return f"key:{prov['key']}{made}"
    return f"ref:{record.get('data_source')}|{record.get('stream')}|{record.get('id')}{made}"


def _where(message: Message) -> str:
    return f"message {message.data_source}/{message.stream}/{message.id}"


def _decoded(message: Message) -> Any:
    """The message's value as JSON holds it: arrays as lists, NaN and infinities as null (as
    `json_arrays` carries gaps). A `bytes` payload has no value beyond its bytes."""
    from asapo_pipelines.transport import CorruptPayload

    try:
        value = message.value
    except CorruptPayload as exc:
        raise BadMessage(str(exc)) from None
    if isinstance(value, bytes | bytearray | memoryview):
        raise BadMessage(
            f"{_where(message)} is raw bytes (format bytes), which have no decoded value; "
            "use `payload: text` or `payload: base64` for such messages"
        )
    return _plain(value)


def _plain(value: Any) -> Any:
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), default=str) + "\n"


class JsonLinesSink(Sink):
    def on_start(self) -> None:
        self.path = Path(self.params.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
            # a path that cannot be: said as such, not as Python's exception (a full or
            # read-only disk is the runtime's to say, and restarts apply once it is put right)
            raise PipelinesError(
                f"cannot make the folder {self.path.parent} of its file {self.path}: "
                f"{exc.strerror} ({exc.filename})"
            ) from None
        self.resolved = str(self.path.resolve())
        self.seen: set[str] = set()
        #: input streams whose first skip was logged (one line per stream, not per message)
        self.skipped_in: set[tuple[str, str]] = set()
        self.lines = 0
        self._repair_and_load()
        self.written, self.duplicates = self._carried()
        self.file: IO[str] = self.path.open("a", encoding="utf-8")
        self.dirty = False

    def _carried(self) -> tuple[int, int]:
        """Lines written and duplicates skipped before this process in this run (see
        `carried_summary`). The lines a process killed in this session wrote after its last
        summary was published are in the file, not in that summary: they are counted from the
        file, which only this sink appends to (their messages, delivered again, are skipped as
        duplicates). Lines added after an earlier session ended are another writer's (a
        reprocess writing the same file): not this run's."""
        carried = self.context.carried_summary
        keys = ("lines_written", "duplicates_skipped", "lines_in_file")
        counts = [n for k in keys if isinstance(n := carried.get(k), int)]
        if carried.get("file") != self.resolved or len(counts) != len(keys):
            return 0, 0  # a fresh run, or another file
        written, duplicates, lines = counts
        if not self.context.carried_after_restart:
            return written, duplicates
        return written + max(0, self.lines - lines), duplicates

    def _repair_and_load(self) -> None:
        """Read what earlier runs wrote; drop a last line cut short by a crash."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with self.path.open("r+b") as f:
                f.truncate(end)
        for number, line in enumerate(data[:end].splitlines(), start=1):
            if not line.strip():
                continue
            why = ""
            try:
                record = json.loads(line)
            except ValueError as exc:
                record, why = None, f" ({getattr(exc, 'msg', exc)})"
            if not isinstance(record, dict):
                # only a crash's last line is repaired by itself; a broken line inside the file
                # is damage the user must look at (the de-duplication depends on every line)
                raise PipelinesError(
                    f"{self.path} line {number} is not a JSON object{why}; repair or remove "
                    "that line, or move the file aside to start a new one"
                )
            self.seen.add(dedup_key(record))
            self.lines += 1

    def process(self, message: Message) -> None:
        record: dict[str, Any] = {
            "data_source": message.data_source,
            "stream": message.stream,
            "id": message.id,
            "port": message.port,
            "metadata": message.metadata,
        }
        key = dedup_key(record)
        if key in self.seen:
            self._skip(message, key)
            return
        if message.producer:
            record["producer"] = {
                k: message.producer[k] for k in PRODUCER_FIELDS if k in message.producer
            }
        self._add_payload(record, message)
        # one write per line: a crash leaves at most one partial last line, repaired at start
        self.file.write(_line(record))
        self.seen.add(key)
        self.written += 1
        self.lines += 1
        self.dirty = True

    def _add_payload(self, record: dict[str, Any], message: Message) -> None:
        """The payload as `params.payload` asks; a message it cannot be written so goes to the
        error stream (BadMessage) instead of a line that looks right and lost its data."""
        mode = self.params.payload
        if mode == "value":
            record["value"] = _decoded(message)
            return
        payload = bytes(message.payload) if message.payload is not None else None
        if payload is None or mode == "omit":
            return
        if mode == "base64":
            record["payload"] = base64.b64encode(payload).decode("ascii")
            return
        try:
            record["payload"] = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            fmt = message.metadata.get("format", "bytes")
            raise BadMessage(
                f"the payload of {_where(message)} (format {fmt}) is not UTF-8 text (byte "
                f"{exc.start}), so `payload: text` cannot write it; use `payload: value` for "
                "its decoded value or `payload: base64` for its bytes"
            ) from None

    def _skip(self, message: Message, key: str) -> None:
        """A message whose key the file already holds is not written again, visibly: a
        redelivery is harmless, but a stream re-created under a running pipeline (its ids start
        again at 1) would otherwise lose every new message without a word."""
        self.duplicates += 1
        where = (message.data_source, message.stream)
        if where in self.skipped_in:
            return
        self.skipped_in.add(where)
        self.log.info(
            "skipped message %s/%s/%s: %s already holds a message with its key %s; further "
            "skips in this stream are counted in duplicates_skipped of the unit's summary",
            message.data_source,
            message.stream,
            message.id,
            self.path,
            key,
        )

    def flush(self) -> None:
        if self.dirty:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.dirty = False

    def on_shutdown(self) -> None:
        self.flush()
        self.file.close()

    def summary(self) -> dict[str, Any]:
        # the unit cannot reach the worker's counters: its skips are reported here, where
        # `pipeline run` and `pipeline status` show the units' summaries
        # lines_written counts this session's lines, across worker restarts (`_carried`)
        return {
            "file": self.resolved,
            "lines_written": self.written,
            "duplicates_skipped": self.duplicates,
            "lines_in_file": self.lines,
        }
