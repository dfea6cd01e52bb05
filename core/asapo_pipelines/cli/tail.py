"""`pipeline tail FILE STREAM`: a stream's messages, decoded, without consuming them.

`pipeline streams` counts messages; this prints them: the agent's suggestions, a unit's
spectra, or the error records (`errors`, every unit's, or `errors.INSTANCE`). Messages are read by
id, outside every consumer group, so tailing never takes a message from a unit.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from asapo_pipelines.cli.options import (
    asked_run,
    checked_file,
    complete_stream_names,
    file_and_name,
    find_file,
    json_option,
)
from asapo_pipelines.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.pipeline.model import Pipeline
    from asapo_pipelines.runs import Run, RunStore
    from asapo_pipelines.transport import Consumer, Message, Transport

ERRORS = "errors"
#: the narrowest --width: the time, the stream and the id, with room for a few characters
MIN_WIDTH = 20

#: whether a decoded record is one to print
Keep = Callable[[dict[str, Any]], bool]


def _plain(value: Any) -> Any:
    """A decoded value as JSON: arrays as lists, bytes as their length."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": len(value)}
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _short(value: Any) -> Any:
    """A short picture for people: long lists cut to their first items and their length,
    numbers to 6 digits, each mapping's long fields last (`_short_first`)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"<array {value.dtype} {tuple(value.shape)}>"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, list | tuple):
        if len(value) > 4:
            return [*(_short(v) for v in value[:3]), f"... {len(value)} values"]
        return [_short(v) for v in value]
    if isinstance(value, dict):
        return _short_first({str(k): _short(v) for k, v in value.items()})
    return value


#: a field rendered longer than this goes after the shorter ones in `pipeline tail`'s lines
LONG_FIELD = 160


def _short_first(fields: dict[str, Any], *, top: bool = False) -> dict[str, Any]:
    """A line is cut at the terminal's width: a spectrum's values (E0, edge step) must not
    hide behind its scan file's header, nor a plan's action behind its arguments. A message's
    own fields go in the unit's order, but its tables of numbers first (a spectrum's or a
    merge's E0, edge step, noise: what a person reads the line for) and fields rendered longer
    than `LONG_FIELD` last (a file's header, a merge's scans, a plan's reasoning); within a
    field, the long fields last. Sorting by kind and length instead put an agent's `uid` and
    `time` before its plan's `target`, in an order no unit wrote."""
    size = {key: len(json.dumps(value, default=str)) for key, value in fields.items()}
    if not top:
        return dict(sorted(fields.items(), key=lambda item: size[item[0]] > LONG_FIELD))
    return dict(
        sorted(fields.items(), key=lambda item: (not _figures(item[1]), size[item[0]] > LONG_FIELD))
    )


def _figures(value: Any) -> bool:
    """Whether a field is a table of numbers: a mapping of numbers, some of them perhaps
    missing (None: a spectrum measured without a reference foil has no `e0_ref`, and its
    values went behind the scan file's header, cut off at any width)."""
    if not isinstance(value, dict):
        return False
    numbers = [v for v in value.values() if v is not None]
    return bool(numbers) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in numbers
    )


def _record(msg: Message, source: str) -> dict[str, Any]:
    from asapo_pipelines.transport import CorruptPayload
    from asapo_pipelines.transport.formats import decode_message

    meta = {k: v for k, v in msg.metadata.items() if not k.startswith("_")}
    record: dict[str, Any] = {
        "source": source,
        "stream": msg.stream,
        "id": msg.id,
        "time": msg.timestamp,
        "metadata": meta,
    }
    try:
        record["value"] = decode_message(msg)
    except CorruptPayload as exc:
        # bytes that do not decode with their recorded format are damage as much as bytes the
        # store cannot read back: printed in place and counted for `_check_damage`
        record["value"] = None
        record["damaged"] = str(exc)
    except Exception as exc:  # a format's library missing here: the message itself is whole
        record["value"] = None
        record["decode_error"] = str(exc)
    return record


def _sources(pipeline: Pipeline, stream: str, run: str | None) -> list[str]:
    """The transport data sources STREAM names: a pipeline stream (in run `run`, its own name
    when declared external or when no run is recorded), or its error streams."""
    from asapo_pipelines.worker.naming import data_source_for, errors_source

    if stream == ERRORS or stream.startswith(ERRORS + "."):
        _check_unit(pipeline, stream)
        return [errors_source(pipeline.name)]
    known = set(pipeline.streams)
    for unit in pipeline.units.values():
        known.update(unit.outputs.values())
        known.update(unit.inputs.values())
    if stream not in known:
        import difflib

        near = difflib.get_close_matches(stream, sorted(known), n=1)
        hint = f"; did you mean {near[0]}?" if near else ""
        choices = ", ".join(sorted(known)) or "none"
        raise UsageError(
            f"pipeline {pipeline.name} has no stream {stream!r}{hint} (its streams: {choices}; "
            f"and `{ERRORS}` for the error records)"
        )
    declared = pipeline.streams.get(stream)
    if run is None or (declared is not None and declared.external):
        return [data_source_for(stream)]
    return [data_source_for(stream, pipeline.name, run)]


def _shown_run(store: RunStore, run_id: str | None) -> Run | None:
    """The run whose streams to read: the one asked for (an unknown one is a sentence naming
    the runs there are), else the current one. Not the highest id: after a reprocess (`r2`),
    `pipeline run` resumes `r1`, whose new results are the ones to show."""
    if run_id is not None:
        return asked_run(store, run_id)
    return store.current()


def run_named(run: Run, run_ids: list[str]) -> str:
    """The run shown, named when that tells something: a reprocess ("run r3, a reprocess of
    r1"), or one of several runs. "" for a pipeline's only run, which needs no name."""
    origin = run.start.get("from_run")
    if not origin and run_ids == [run.id]:
        return ""
    return f"run {run.id}" + (f", a reprocess of {origin}" if origin else "")


def _shown_note(store: RunStore, run: Run | None, stream: str, run_id: str | None) -> str:
    """Which run the messages are of, when tail chose it: after a reprocess the run whose last
    session started last is the replay, not the night's run, and its messages look alike.
    "" when that needs no saying (a pipeline's only run, a run asked for with --run)."""
    if run is None or run_id is not None or not _says_empty(stream, run_id):
        return ""
    named = run_named(run, store.run_ids())
    if not named:
        return ""
    origin = run.start.get("from_run")
    other = f"{origin}'s" if origin else "another's (`pipeline runs` lists them)"
    return f"{named} (the run last started or resumed); --run {origin or 'RUN'} shows {other}"


def _say_empty(pipeline: Pipeline, run: Run | None, stream: str) -> None:
    """Nothing to print: say in which run, on stderr, in one line. After a reprocess or a
    deploy that failed before its workers started, that run is the current one and holds
    nothing, and an empty output read as "the pipeline made no plans". Without any run
    recorded (none yet, or its records were deleted), the stream was read outside any run,
    which is said instead."""
    if run is None:
        declared = pipeline.streams.get(stream)
        if declared is None or not declared.external:
            click.echo(
                f"pipeline {pipeline.name} has no run recorded in its store (`pipeline runs` "
                f"lists none), and stream {stream} holds no messages outside a run",
                err=True,
            )
        return
    origin = run.start.get("from_run")
    if origin:
        hint = f"; it is a reprocess of {origin}, --run {origin} shows {origin}'s"
    elif run.number > 1:
        hint = "; `pipeline runs` lists the runs, --run picks one"
    else:
        hint = ""
    click.echo(f"run {run.id} ({run.state}) holds no messages in stream {stream}{hint}", err=True)


def _check_unit(pipeline: Pipeline, stream: str) -> None:
    """`errors.INSTANCE` names a unit instance of the file: a misspelt one would otherwise
    print nothing, as if that unit had no errors."""
    import difflib

    instance = _stream_filter(stream)
    if instance is None or instance in pipeline.units:
        return
    names = sorted(pipeline.units)
    near = difflib.get_close_matches(instance, names, n=1)
    hint = f"; did you mean {ERRORS}.{near[0]}?" if near else ""
    raise UsageError(
        f"pipeline {pipeline.name} has no unit {instance!r}{hint} (its units: "
        f"{', '.join(names)}; `{ERRORS}` shows the error records of all of them)"
    )


def _stream_filter(stream: str) -> str | None:
    """`errors.normalize` reads only that unit's error stream."""
    return stream.split(".", 1)[1] if stream.startswith(ERRORS + ".") else None


def _read_new(
    consumer: Consumer,
    source: str,
    seen: dict[str, int],
    only: str | None,
    last: int | None,
    keep: Keep | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Messages after `seen` of each stream (the newest `last` of each on the first read), those
    `keep` accepts; and how many messages the first read of a stream left out for `last`."""
    found = []
    left_out = 0
    for info in consumer.streams():
        if only is not None and info.name != only:
            continue
        start = seen.get(info.name)
        if start is None and keep is not None:
            # the newest `last` of those kept: read the stream from its start, then cut
            records = _read_range(consumer, source, info.name, 0, info.last_id, keep)
            shown = records[len(records) - last :] if last is not None else records
            found += shown
            left_out += len(records) - len(shown)
        else:
            if start is None:
                start = 0 if last is None else max(0, info.last_id - last)
                # the store's count when it has one: a message removed by retention is not
                # one left out
                held = info.message_count if info.message_count is not None else info.last_id
                left_out += 0 if last is None else max(0, held - last)
            found += _read_range(consumer, source, info.name, start, info.last_id, keep)
        seen[info.name] = max(start or 0, info.last_id)
    found.sort(key=lambda r: (r["time"] or 0, r["stream"], r["id"]))
    return found, left_out


def _read_range(
    consumer: Consumer, source: str, stream: str, after: int, upto: int, keep: Keep | None
) -> list[dict[str, Any]]:
    """The records of `stream` with ids after `after` up to `upto` that `keep` accepts."""
    from asapo_pipelines.transport import CorruptPayload, TransportError

    records = []
    for mid in range(after + 1, upto + 1):
        try:
            record = _record(consumer.get_by_id(stream, mid), source)
        except CorruptPayload as exc:
            # shown whatever `keep` says: a damaged store is news to every reader, and its
            # metadata (the run it names) may be what could not be read
            records.append(_damaged(exc, source, stream, mid))
            continue
        except TransportError:
            continue  # pruned or not written yet
        if keep is None or keep(record):
            records.append(record)
    return records


def _damaged(exc: Exception, source: str, stream: str, mid: int) -> dict[str, Any]:
    """A message the store holds but cannot hand out whole: printed in its place, as far as it
    could be read, and counted for the sentence that ends the command (`_check_damage`)."""
    from asapo_pipelines.transport import Message

    msg = getattr(exc, "damaged", None)
    if isinstance(msg, Message):
        record = {**_record(msg, source), "value": None}
        record.pop("decode_error", None)
    else:
        record = {"source": source, "stream": stream, "id": mid, "time": None, "metadata": {}}
        record["value"] = None
    return {**record, "damaged": str(exc)}


def _check_damage(records: list[dict[str, Any]], stream: str, run: Run | None) -> None:
    """After the damaged messages were printed in their places: one sentence and a failure,
    since a damaged stream is not one that holds fewer messages."""
    from asapo_pipelines.transport import CorruptPayload

    damaged = [r for r in records if "damaged" in r]
    if not damaged:
        return
    where = f"stream {stream}" + (f" of run {run.id}" if run is not None else "")
    n = len(damaged)
    raise CorruptPayload(
        f"{where} is damaged: {n} message{'s' if n != 1 else ''} cannot be read (the first: "
        f"{damaged[0]['damaged']}); `pipeline streams FILE` shows what the store holds"
    )


def _run_of(record: dict[str, Any]) -> str | None:
    """The run an error record was written in (its provenance names it)."""
    from asapo_pipelines.worker.dedupe import provenance_run

    return provenance_run(record["metadata"])


def _errors_filter(stream: str, run_id: str | None, run: Run | None) -> Keep | None:
    """Which error records to print. The error stream is the pipeline's, written by every run,
    and without --run all of it is shown (but pruned runs', `_PrunedRuns`): a bad input
    reported in one run is still bad in the next, each line names its run, and `pipeline run`
    points at `tail FILE errors` after any run. An explicit --run shows that run's records
    only (a record written outside any run belongs to none)."""
    if not stream.startswith(ERRORS) or run_id is None or run is None:
        return None
    wanted = run.id
    return lambda record: _run_of(record) == wanted


class _PrunedRuns:
    """Leaves out the error records of pruned runs and counts them. The error stream is the
    pipeline's, so `pipeline prune --run` cannot drop a run's records from it; printed, they
    would name a run that `pipeline runs` no longer lists and `--run` refuses."""

    def __init__(self, gone: set[str]) -> None:
        self.gone = gone
        self.left_out = 0
        self._told = 0

    def __call__(self, record: dict[str, Any]) -> bool:
        if _run_of(record) in self.gone:
            self.left_out += 1
            return False
        return True

    def tell(self) -> None:
        """One line on stderr for the records left out since the last one said."""
        new = self.left_out - self._told
        if new:
            click.echo(
                f"{new} error record{'s' if new != 1 else ''} of pruned runs not shown "
                "(`pipeline runs` no longer lists those runs)",
                err=True,
            )
        self._told = self.left_out


def _pruned_filter(stream: str, run_id: str | None, store: RunStore) -> _PrunedRuns | None:
    """For the error records of every run, a filter of those of pruned runs; None when no run
    was pruned (the newest records are then read without reading the whole stream)."""
    if not stream.startswith(ERRORS) or run_id is not None:
        return None
    gone = store.pruned_ids()
    return _PrunedRuns(gone) if gone else None


def _open_present(transport: Transport, sources: list[str], consumers: dict[str, Consumer]) -> None:
    """Open a consumer of each of `sources` the store holds by now (with --follow, a source
    written after tail started is read from then on). Only those: opening a consumer of the
    embedded store creates its data source, and a read must not write (`pipeline streams`
    would list a source the run never wrote). One the store lost (its index emptied or
    deleted) raises its sentence: read as not written yet, a lost stream of 30 messages was
    "no messages" and lost error records printed nothing. A transport that cannot list its
    data sources is read as it is."""
    from asapo_pipelines.transport import check_not_lost

    missing = [source for source in sources if source not in consumers]
    if not missing:
        return
    try:
        present = set(transport.data_sources())  # one listing per look, not one per source
    except NotImplementedError:
        present = set(missing)
    for source in missing:
        if source in present:
            consumers[source] = transport.consumer(source, "pipeline-tail")
        else:
            check_not_lost(transport, source)  # from this look's listing, not a new one


def _print(record: dict[str, Any], as_json: bool, width: int) -> None:
    if as_json:
        click.echo(json.dumps({**record, "value": _plain(record["value"])}, default=str))
        return
    when = time.strftime("%H:%M:%S", time.localtime(record["time"] or 0))
    head = f"{when} {record['stream']}#{record['id']}"
    if "damaged" in record:
        body = f"<damaged: {record['damaged']}>"
    elif "decode_error" in record:
        body = f"<cannot decode: {record['decode_error']}>"
    elif record["source"].endswith(".errors") and isinstance(record["value"], dict):
        err = record["value"]
        run = _run_of(record)
        # `reason` names an exception of the unit's own by type and line; older records
        # have only the exception's text
        reason = err.get("reason") or err.get("error")
        body = f"{err.get('unit')}{f' ({run})' if run else ''}: {reason}"
    else:
        value = _short(record["value"])
        if isinstance(value, dict):
            value = _short_first(value, top=True)
        body = json.dumps(value, default=str, ensure_ascii=False)
    line = f"{head}  {body}"
    click.echo(line if not width or len(line) <= width else line[: width - 3] + "...")


@click.command("tail", short_help="Print a stream's messages, decoded.")
# `[FILE] STREAM`: an optional argument before a required one, read as `logs [FILE] UNIT` is;
# not required for click, whose `Missing argument` came under a usage block (`file_and_name`)
@click.argument("args", nargs=-1, metavar="[FILE] STREAM", shell_complete=complete_stream_names)
@click.option(
    "--last",
    "-n",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many of the newest messages of each scan to print first.",
)
@click.option("--all", "everything", is_flag=True, help="Every message, from the first.")
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep printing new messages until the run ends (Ctrl-C stops sooner).",
)
@click.option(
    "--width",
    # a line is cut to WIDTH - 3 characters and "...": below that nothing of it would be left
    type=click.IntRange(min=MIN_WIDTH),
    default=None,
    help="Cut lines to this width (default: the terminal's; lines written to a file or a pipe "
    "are not cut).",
)
@click.option(
    "--run",
    "run_id",
    metavar="RUN",
    default=None,
    help="The run whose stream to print (`r2`; `pipeline runs` lists them). Default: the run "
    "whose last session started last; for `errors`, the records of every run.",
)
@json_option
def tail(
    args: tuple[str, ...],
    last: int,
    everything: bool,
    follow: bool,
    width: int | None,
    run_id: str | None,
    as_json: bool,
) -> None:
    """Print the messages of STREAM of the pipeline in FILE (without FILE: the one pipeline
    file here), decoded, oldest first.

    STREAM is a stream named in the file (`spectra`, `plans`), or `errors` for every unit's
    error records (`errors.INSTANCE` for one unit's). Messages are read, never consumed. With
    --json, one JSON object per line: source, stream (scan), id, time, metadata and value
    (arrays as lists). A pipeline's own streams are read in one run: --run, or the run whose
    last session started last (a run resumed after a reprocess, not the reprocess), named on
    stderr when the store holds several runs or it is a reprocess. The error records are
    those of every run, each naming its run (in its provenance with --json), but runs pruned
    with `pipeline prune --run` (a line on stderr counts theirs); with --run, only that
    run's. A stream the run has not written yet prints nothing (--follow waits for it); tail
    never creates it in the store. --follow ends (exit 0, a line on stderr) once the run it
    reads has ended and its messages are printed; an external stream, or one read with no run
    recorded, is followed until Ctrl-C.
    """
    import shutil

    file, stream = _file_and_stream(args)
    _refuse_all_with_last(everything)
    from asapo_pipelines.cli.executors import load_for_records, say_whose_runs
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import open_transport

    pipeline, catalog = load_for_records(file, "reading what its runs left on its transport")
    only = _stream_filter(stream)
    # cut for a person at a terminal; a file or a pipe (`> errors.txt`, `| grep`) gets whole
    # lines: an error record's reason cut at 100 characters was lost there
    shown_width = width or (shutil.get_terminal_size().columns if sys.stdout.isatty() else 0)
    transport = open_transport(pipeline.transport.spec(), catalog, read_only=True)
    try:
        say_whose_runs(transport, pipeline.name, file, "messages")
        store = RunStore(transport, pipeline.name)
        run = _shown_run(store, run_id)
        sources = _sources(pipeline, stream, run.id if run is not None else None)
        pruned = _pruned_filter(stream, run_id, store)
        note = _shown_note(store, run, stream, run_id)
    except BaseException:
        transport.close()
        raise
    keep = _errors_filter(stream, run_id, run) or pruned
    seen: dict[str, dict[str, int]] = {s: {} for s in sources}
    consumers: dict[str, Consumer] = {}
    followed = _followed_run(pipeline, stream, run) if follow else None
    try:
        first = True
        while True:
            # looked at before the read: what the run wrote before it ended is read below
            ended = _ended(store, followed)
            _open_present(transport, sources, consumers)
            printed: list[dict[str, Any]] = []
            left_out = 0
            for source, consumer in consumers.items():
                limit = None if everything or not first else last
                records, skipped = _read_new(consumer, source, seen[source], only, limit, keep)
                left_out += skipped
                for record in records:
                    if note:  # named once, before its first message (stdout stays messages)
                        click.echo(note, err=True)
                        note = ""
                    _print(record, as_json, shown_width)
                    printed.append(record)
            if pruned is not None:
                pruned.tell()
            _check_damage(printed, stream, run)
            if first and not printed and left_out:
                # `-n 0`: the stream is not empty, its messages were not asked for
                named = run if _says_empty(stream, run_id) else None
                _say_left_out(stream, named, left_out, follow)
            elif first and not printed and _says_empty(stream, run_id):
                _say_empty(pipeline, run, stream)  # names the run itself
                note = ""
            first = False
            if not follow:
                return
            if ended is not None:
                click.echo(f"run {ended.id} has ended ({ended.state}); stopped following", err=True)
                return
            time.sleep(0.3)
    # a Ctrl-C ends a follow as it ends every command (`aborted.`, exit 130, as `logs
    # --follow`): the readers are closed on the way out
    finally:
        for consumer in consumers.values():
            consumer.close()
        transport.close()


def _say_left_out(stream: str, run: Run | None, n: int, follow: bool) -> None:
    """The first read printed nothing because `-n 0` asked for none: say so, not that the
    stream is empty."""
    where = f"stream {stream}" + (f" of run {run.id}" if run is not None else "")
    plural = "s" if n != 1 else ""
    if follow:
        click.echo(f"following {where}; {n} earlier message{plural} not shown (-n 0)", err=True)
    else:
        click.echo(
            f"{where} holds {n} message{plural}, none printed with -n 0 (-n N or --all prints "
            f"{'them' if plural else 'it'})",
            err=True,
        )


def _followed_run(pipeline: Pipeline, stream: str, run: Run | None) -> Run | None:
    """The run whose end ends `--follow`: the run shown (for the error records, the run going
    on), whose workers write the stream. None follows for ever (until Ctrl-C): no run is
    recorded, or the stream is an external one, written by others than the run."""
    if run is None:
        return None
    declared = pipeline.streams.get(stream)
    if declared is not None and declared.external:
        return None
    return run


def _ended(store: RunStore, run: Run | None) -> Run | None:
    """`run` as recorded now when its last session has ended, else None."""
    from asapo_pipelines.runs import RunsError

    if run is None:
        return None
    try:
        now = store.get(run.id)
    except RunsError:  # pruned meanwhile: it writes nothing more either
        return run
    return now if now.ended is not None else None


def _file_and_stream(args: tuple[str, ...]) -> tuple[Path, str]:
    """FILE and STREAM of `tail [FILE] STREAM`: without FILE, the one pipeline file here (as
    `logs`, `status` and `runs` find it)."""
    file, stream = file_and_name(args, "tail", "STREAM", "the stream whose messages to print")
    return (find_file() if file is None else checked_file(Path(file))), stream


def _says_empty(stream: str, run_id: str | None) -> bool:
    """Whether an empty read names its run: every stream read in one run, not the error
    records of every run."""
    return not stream.startswith(ERRORS) or run_id is not None


def _refuse_all_with_last(everything: bool) -> None:
    """--all and --last N ask for different messages: refuse both rather than drop one."""
    from click.core import ParameterSource

    given = click.get_current_context().get_parameter_source("last")
    if everything and given not in (None, ParameterSource.DEFAULT):
        raise UsageError("give either --all or --last N (-n N), not both")
