"""`pipeline streams` (what the transport holds) and `pipeline prune` (retention)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import click

from asapo_pipelines.cli.options import (
    asked_run,
    find_file,
    json_option,
    read_pipeline_document,
    usage_error,
)
from asapo_pipelines.cli.output import console, error, print_json, wide
from asapo_pipelines.errors import UsageError
from asapo_pipelines.pipeline import DEFAULT_DATA_DIR

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.transport import Transport

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """'45s', '30m', '12h', '7d', '2w' -> seconds. A number alone is refused: `prune
    --older-than 3` read as 3 seconds dropped every stream of a store at once, where the user
    may have meant 3 days (an outside tester)."""
    match = _AGE.match(text)
    if not match:
        raise UsageError(f"cannot read the age {text!r}; write e.g. 45s, 30m, 12h, 7d or 2w")
    number, unit = match.groups()
    if not unit:
        raise UsageError(
            f"the age {text.strip()!r} has no unit; write {number}s, {number}m (minutes), "
            f"{number}h, {number}d or {number}w"
        )
    return float(number) * _UNIT_SECONDS[unit]


def transport_spec(target: str, then: str) -> tuple[dict[str, Any], str]:
    """The transport spec for a store directory or a pipeline file, and a label for it; a
    pipeline file that does not validate now is read as `pipeline runs` reads it (a warning
    saying `then`, `load_for_records`)."""
    path = Path(target).expanduser()
    if path.is_dir():
        if not (path / "store.json").exists():
            raise UsageError(
                f"{path} holds no embedded transport store (no store.json); give the store "
                "directory or a pipeline file"
            )
        return {"embedded": {"path": str(path.absolute()), "create": False}}, str(path)
    if not path.is_file() and not path.is_symlink():
        from asapo_pipelines.pipeline.loader import pipeline_file_meant

        meant = pipeline_file_meant(path)
        raise UsageError(
            f"{target} does not exist; give a store directory or a pipeline file{meant}"
        )
    return _file_transport(path, then)


def _file_transport(path: Path, then: str) -> tuple[dict[str, Any], str]:
    """The transport a pipeline file gives. The core's transports need only their section,
    read without validating the rest (a file with no units yet still lists its store); a
    plugin's transport needs the catalog to resolve its options, so the file is read as
    `pipeline runs` reads it (`load_for_records`): after a plugin upgrade renamed a unit's
    param, what its runs left is still listed and pruned, with a warning saying `then`."""
    doc = read_pipeline_document(path).data  # a mapping: anything else is the file's P108
    section = doc.get("transport") or {"embedded": {"path": DEFAULT_DATA_DIR}}
    if not isinstance(section, dict) or len(section) != 1:
        raise UsageError(f"{path}: transport must name exactly one transport")
    ((kind, options),) = section.items()
    options = dict(options or {})
    if kind == "embedded":
        return _embedded(path, options)
    if kind == "asapo":
        return {"asapo": options}, f"ASAP::O at {options.get('endpoint')}"
    from asapo_pipelines.cli.executors import load_for_records

    pipeline, _ = load_for_records(path, then)
    return pipeline.transport.spec(), f"the {kind} transport"


def _embedded(path: Path, options: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The embedded store a pipeline file names, which a run must have made already."""
    store = Path(options.get("path") or DEFAULT_DATA_DIR).expanduser()
    if not store.is_absolute():
        store = path.absolute().parent / store
    if not (store / "store.json").exists():
        _check_store_path(store)
        if store.is_dir() and any(store.iterdir()):
            # a store whose marker went (removed by hand, a partial copy): its data are there,
            # and `run` writes the marker again; listing or pruning a folder that may not be a
            # store is left until then
            raise UsageError(
                f"the pipeline's store {store} has lost store.json, the file that marks it as a "
                f"store; `pipeline run {path.name}` writes it again and keeps what the store holds"
            )
        raise UsageError(f"the pipeline's store {store} does not exist yet (nothing has run)")
    return {"embedded": {**options, "path": str(store), "create": False}}, str(store)


def _check_store_path(store: Path) -> None:
    """A store path naming a file is the sentence `pipeline run` says for it, not a store
    that no run has made yet."""
    from asapo_pipelines.storage import not_a_directory

    why = not_a_directory(store, "the embedded store", "the embedded transport's `path`")
    if why is not None:
        raise UsageError(why)


def _open(target: str, then: str, *, read_only: bool = False) -> tuple[Transport, str]:
    from asapo_pipelines.transport import open_transport

    spec, label = transport_spec(target, then)
    return open_transport(spec, read_only=read_only), label


def _collect(transport: Transport, only: str | None) -> list[dict[str, Any]]:
    describe = getattr(transport, "describe", None)
    if callable(describe):  # backends that count and size their own data (embedded, redis)
        described: dict[str, list[Any]] = describe()
        names = [only] if only else sorted(described)
        if only and only not in described:
            raise UsageError(
                f"no data source {only!r}; there are: {', '.join(sorted(described)) or 'none'}"
            )
        return [{"name": n, "streams": _in_order(described[n])} for n in names]
    out = []
    for name in [only] if only else transport.data_sources():
        with transport.consumer(name, "pipeline-streams") as consumer:
            out.append({"name": name, "streams": _in_order(consumer.streams())})
    return out


def _in_order(streams: Iterable[Any]) -> list[dict[str, Any]]:
    """A data source's streams, `default` first, then by name with numbers in their order
    (`r2` before `r10`): the backends give them in the order they were made, which for the
    status streams of units started together changes from run to run."""

    def key(info: dict[str, Any]) -> tuple[bool, list[Any]]:
        name = str(info["name"])
        # text and digits alternate from a text part on: same positions hold the same type
        parts = re.split(r"(\d+)", name)
        return name != "default", [int(p) if p.isdigit() else p for p in parts]

    return sorted((s.to_dict() for s in streams), key=key)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    age = max(0.0, time.time() - ts)
    for limit, unit, div in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if age < limit:
            return f"{age / div:.0f} {unit} ago"
    return f"{age / 86400:.0f} d ago"


@click.command("streams")
@click.argument("target", metavar="[PATH_OR_PIPELINE]", required=False)
@click.option("--source", "only", metavar="NAME", help="Only this data source.")
@click.option(
    "--all",
    "every",
    is_flag=True,
    help="With a pipeline file: every pipeline's data sources in its store, not only its own.",
)
@json_option
def streams(target: str | None, only: str | None, every: bool, as_json: bool) -> None:
    """List data sources and their streams: messages, size, last id, state and group lag.

    PATH_OR_PIPELINE is an embedded store directory (every pipeline's data sources) or a
    pipeline file (its transport is used; only that pipeline's data sources and the external
    streams it reads, unless --all); without it, the one pipeline file here. Lag is the number
    of messages a consumer group has not acknowledged yet.
    """
    from asapo_pipelines.transport import holds_data_source

    if target is None:  # the one pipeline file here, as `status`, `runs` and `logs` find it
        # by its name, as a user would have given it (sentences repeat it)
        target = find_file("a store directory or the pipeline file").name

    # read alone: a store archived on a read-only file system is still listed
    transport, label = _open(target, "listing what its transport holds", read_only=True)
    try:
        if only is not None:
            holds_data_source(transport, only)  # a lost one is its sentence, not "no such"
        lost = {} if only else _lost(transport)
        _say_whose(transport, target, lost)
        sources = _collect(transport, only)
    finally:
        transport.close()
    others: list[str] = []
    scope = None if every or only else _scope(target)
    if scope is not None:
        sources, others = _of_pipeline(sources, *scope)
        lost = {n: why for n, why in lost.items() if _in_scope(n, *scope)}
    if as_json:
        listed: dict[str, Any] = {"transport": transport.kind, "location": label}
        if scope is not None:
            listed |= {"pipeline": scope[0], "other_pipelines": others}
        print_json({**listed, "data_sources": sources, "lost_data_sources": sorted(lost)})
        _say_lost(lost)
        return
    sources = _worth_listing(sources, only)
    out = console()
    if scope is not None:
        label = f"{label} (pipeline {scope[0]})"
    if not sources:
        out.print(f"{label}: no data sources yet")
    elif not wide(out):
        _print_narrow(out, label, sources)
    else:
        _print_table(out, label, sources)
    for line in _damage_lines(sources):
        out.print(line, style="red", markup=False, highlight=False)
    if others:
        out.print(
            f"the store holds other data sources too ({', '.join(others)}): "
            f"`pipeline streams {target} --all` lists them",
            markup=False,
            highlight=False,
        )
    _say_lost(lost)


def _lost(transport: Transport) -> dict[str, str]:
    """The data sources the store lost (`lost_data_sources`: an index emptied or deleted
    while it held data), each with its sentence. Not listed, nor pruned, with the others: a
    lost one made `streams` and every `prune` fail for the whole store, also for good after
    `pipeline run --fresh` had left its run behind."""
    from asapo_pipelines.transport import IndexLost, check_not_lost, lost_data_sources

    found: dict[str, str] = {}
    for name in lost_data_sources(transport):
        try:
            check_not_lost(transport, name)
        except IndexLost as exc:  # its sentence, said after the rest
            found[name] = str(exc)
    return found


def _say_lost(lost: dict[str, str]) -> None:
    """After a listing or a prune of the rest: each lost data source in one line on stderr,
    and exit 78 (`IndexLost`), so that neither a person nor a script takes the store for
    whole. `pipeline prune FILE --run RUN` removes a run that `--fresh` left behind."""
    from asapo_pipelines.transport import IndexLost

    if not lost:
        return
    for name in sorted(lost):
        error(lost[name])
    click.get_current_context().exit(IndexLost.exit_code)


def _scope(target: str) -> tuple[str, frozenset[str]] | None:
    """For a pipeline file: its name and the external streams it reads (data sources named as
    the streams); None for a store directory, which lists every pipeline's. An outside tester
    ran two pipelines in one folder and `streams FILE` listed both, where `runs`, `tail` and
    `prune` with the file keep to its own."""
    path = Path(target).expanduser()
    if path.is_dir():
        return None
    doc = read_pipeline_document(path).data  # read once: the name and the streams
    name = doc.get("pipeline") if isinstance(doc, dict) else None
    if not isinstance(name, str) or not name:
        return None  # a file with no name yet lists its whole store, as `_say_whose` does
    declared = doc.get("streams")
    external = frozenset(
        str(stream)
        for stream, spec in (declared.items() if isinstance(declared, dict) else ())
        if isinstance(spec, dict) and spec.get("external") is True
    )
    return name, external


def _of_pipeline(
    sources: list[dict[str, Any]], pipeline: str, external: frozenset[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """`sources` of `pipeline` (its namespace and the external streams it reads), and the
    names of the other pipelines (or other data sources) the store holds."""
    mine = [s for s in sources if _in_scope(s["name"], pipeline, external)]
    others = sorted({s["name"].partition(".")[0] for s in sources if s not in mine})
    return mine, others


def _in_scope(source: str, pipeline: str, external: frozenset[str]) -> bool:
    """Whether `source` is in `pipeline`'s namespace or one of the external streams it reads."""
    from asapo_pipelines.worker.naming import namespace_prefix

    return source.startswith(namespace_prefix(pipeline)) or source in external


def _worth_listing(sources: list[dict[str, Any]], only: str | None) -> list[dict[str, Any]]:
    """The data sources a person reads, without a run's empty `<pipeline>.<run>._processed`.
    That one holds the restore records of units that keep state (docs/runs.md), written only
    for inputs that gave no output: its worker opens it at start, so most runs of such a unit
    left it listed as "no streams", read as a stream of the pipeline that stayed empty. With
    records it is listed, each stream a unit instance's; `--source` and `--json` show it
    always, as the store holds it."""
    from asapo_pipelines.worker.naming import PROCESSED

    if only is not None:
        return sources
    return [s for s in sources if s["streams"] or s["name"].rpartition(".")[2] != PROCESSED]


def _print_table(out: Any, label: str, sources: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=f"streams in {label}", title_justify="left")
    for col, justify in (
        ("data source", "left"),
        ("stream", "left"),
        ("messages", "right"),
        ("size", "right"),
        ("last id", "right"),
        ("state", "left"),
        ("last write", "right"),
        ("group lag", "left"),
    ):
        table.add_column(col, justify=justify, no_wrap=col != "group lag")  # type: ignore[arg-type]
    for source in sources:
        if not source["streams"]:
            table.add_row(source["name"], "[dim]no streams[/dim]", *[""] * 6)
        for s in source["streams"]:
            lag = ", ".join(
                f"{g}: [{'red' if n else 'green'}]{n}[/]" for g, n in sorted(s["group_lag"].items())
            )
            table.add_row(
                source["name"],
                s["name"],
                "-" if s["message_count"] is None else str(s["message_count"]),
                _size(s["size_bytes"]),
                str(s["last_id"]),
                _state(s),
                _ago(s["last_timestamp"]),
                lag or "-",
            )
    out.print(table)


class _Prunable(Protocol):
    def drop_stream(self, data_source: str, stream: str) -> int: ...

    def prune(self, older_than: float, data_source: str | None = None) -> Any: ...


def _check_prunable(transport: Transport) -> _Prunable:
    """The embedded store and transports of plugins that offer `drop_stream` and `prune` (the
    embedded store's signatures) can be pruned from here; ASAP::O manages its own retention."""
    if not (
        callable(getattr(transport, "prune", None))
        and callable(getattr(transport, "drop_stream", None))
    ):
        raise UsageError(
            f"the {transport.kind or 'chosen'} transport manages its own retention; "
            "prune works on embedded stores and on transports that offer it (redis)"
        )
    return cast(_Prunable, transport)


def _prune_run(
    transport: Transport,
    prunable: _Prunable,
    name: str,
    run_id: str,
    live: list[_LiveRun],
    as_json: bool,
) -> None:
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.worker.naming import data_source_for, runs_source

    store = RunStore(transport, name)
    run = asked_run(store, run_id)  # one sentence, as `tail --run` says
    for running in live:
        if (running.pipeline, running.run) == (name, run.id):
            raise UsageError(f"{running.describe()} is running; {running.stop_first()}")
        if (running.pipeline, running.replays) == (name, run.id):
            # its comparison, once the replay ends, reads what the old run sent: pruned under
            # it, the old run was said to have sent nothing
            raise UsageError(
                f"run {run.id} of pipeline {name} is replayed by {running.describe()} "
                f"(`pipeline reprocess`), which is running and compares its results with "
                f"{run.id}'s at its end; let it finish, or {running.stop_first()}"
            )
    prefix = data_source_for("", name, run.id)
    sources = [s for s in transport.data_sources() if s.startswith(prefix)]
    lost = [s for s in _lost(transport) if s.startswith(prefix)]
    for source in sources + lost:  # all refused before any is dropped
        _check_not_read(source, f"{source} of run {run.id} of pipeline {name}", live)
    dropped: list[list[str]] = []
    freed = 0
    for source in sources:
        with transport.consumer(source, "prune") as consumer:
            names = [info.name for info in consumer.streams()]
        for stream in names:
            freed += prunable.drop_stream(source, stream)
            dropped.append([source, stream])
    removed = _drop_sources(transport, sources)
    for source in lost:  # what `pipeline run --fresh` left behind, which nothing else reads
        freed += transport.drop_lost_source(source)  # type: ignore[attr-defined]
    # the record goes last: the run index keeps its number, so no later run is given it again
    freed += prunable.drop_stream(runs_source(name), run.id)
    dropped.append([runs_source(name), run.id])
    if as_json:
        print_json(
            {
                "run": run.id,
                "dropped_streams": dropped,
                "dropped_sources": removed,
                "removed_lost_sources": lost,
                "freed_bytes": freed,
            }
        )
        return
    click.echo(
        f"run {run.id} of pipeline {name} pruned: {len(dropped)} streams dropped, "
        f"{_size(freed)} of payload files freed"
        + (f"; removed its data sources whose index was lost: {', '.join(lost)}" if lost else "")
    )


def _drop_sources(transport: Transport, sources: list[str]) -> list[str]:
    """Remove a pruned run's emptied data sources where the transport can (the embedded
    store): left behind, `pipeline streams` lists each as a source with no streams."""
    drop_source = getattr(transport, "drop_source", None)
    if not callable(drop_source):
        return []
    for source in sources:
        drop_source(source)
    return list(sources)


def _state(stream: dict[str, Any]) -> str:
    """`open`, `finished`, or `finished -> <next stream>`; `, N damaged` after it when
    messages of it cannot be read (`StreamInfo.damaged`)."""
    state = "finished" if stream["finished"] else "open"
    state = f"{state} -> {stream['next_stream']}" if stream["next_stream"] else state
    return f"{state}, {stream['damaged']} damaged" if stream.get("damaged") else state


def _damage_lines(sources: list[dict[str, Any]]) -> list[str]:
    """A sentence per damaged stream, below the listing: `pipeline tail` stops on such a
    stream and sends the reader here, where a count in a column is easy to miss."""
    lines = []
    for source in sources:
        for s in source["streams"]:
            n = s.get("damaged")
            if n:
                lines.append(
                    f"stream {s['name']} of data source {source['name']} is damaged: {n} of its "
                    f"message{'s' if n != 1 else ''} cannot be read (the payload file is gone "
                    "or shorter than recorded)"
                )
    return lines


def _print_narrow(out: Any, label: str, sources: list[dict[str, Any]]) -> None:
    """80 columns or a pipe: a block per data source, a line per stream, instead of a table
    whose eight columns would each be cut to a few letters."""
    from rich.text import Text

    text = Text(f"streams in {label}\n")
    for source in sources:
        text.append(source["name"], style="bold")
        text.append("\n")
        if not source["streams"]:
            text.append("  no streams\n", style="dim")
        for s in source["streams"]:
            count = "-" if s["message_count"] is None else str(s["message_count"])
            text.append(
                f"  {s['name']}: {count} messages, {_size(s['size_bytes'])}, last id "
                f"{s['last_id']}, {_state(s)}, written {_ago(s['last_timestamp'])}\n"
            )
            for group, lag in sorted(s["group_lag"].items()):
                text.append(f"    lag of {group}: ")
                text.append(str(lag), style="red" if lag else "green")
                text.append("\n")
    out.print(text, end="")


@click.command("prune")
# not required for click, whose "Missing argument" came under a usage block: the command says
# what to give (`usage_error`). Unlike `streams`, it never takes the one file here: it deletes
@click.argument("target", metavar="PATH_OR_PIPELINE", required=False)
@click.option(
    "--older-than",
    "older_than",
    metavar="AGE",
    help="Drop streams idle and data written longer ago than AGE (e.g. 30m, 12h, 7d).",
)
@click.option("--source", "only", metavar="NAME", help="Only this data source.")
@click.option(
    "--drop-stream", metavar="NAME", help="Drop this one stream (needs --source) whatever its age."
)
@click.option(
    "--run",
    "run_id",
    metavar="RUN",
    help="Drop one run of the pipeline FILE: its streams, its data sources and its record (see "
    "`pipeline runs`).",
)
@json_option
def prune(
    target: str | None,
    older_than: str | None,
    only: str | None,
    drop_stream: str | None,
    run_id: str | None,
    as_json: bool,
) -> None:
    """Retention for an embedded store (or a plugin's transport that offers it, such as redis):
    delete old streams and payloads to free space, or one run of a pipeline (`--run`)."""
    if target is None:
        raise usage_error(
            "prune",
            "PATH_OR_PIPELINE --older-than AGE | --run RUN | --source NAME --drop-stream NAME",
            "PATH_OR_PIPELINE being the pipeline file or store directory to prune (never "
            "guessed: prune deletes data)",
        )
    if sum(x is not None for x in (older_than, drop_stream, run_id)) != 1:
        raise UsageError("give exactly one of --older-than AGE, --drop-stream NAME or --run RUN")
    transport, label = _open(target, "pruning what its transport holds")
    try:
        _prune(transport, label, target, older_than, only, drop_stream, run_id, as_json)
    finally:
        transport.close()


def _prune(
    transport: Transport,
    label: str,
    target: str,
    older_than: str | None,
    only: str | None,
    drop_stream: str | None,
    run_id: str | None,
    as_json: bool,
) -> None:
    store = _check_prunable(transport)
    pipeline = _pipeline_name(target)
    if pipeline is not None:
        from asapo_pipelines.cli.executors import say_whose_runs

        # what a file prunes is in its pipeline's namespace: through a copy, the owner's runs
        say_whose_runs(transport, pipeline, Path(target), refuse=True)
    if only and _holds_run_records(only) and run_id is None:
        # a record dropped alone leaves its run's streams behind, and a running run's its
        # workers: one run goes with its streams, and only once it is not running (`--run`)
        kept = "age retention keeps" if older_than is not None else "are not dropped one by one"
        raise UsageError(
            f"{only} holds run records, which {kept}; drop one run (its streams and its "
            "record) with `pipeline prune FILE --run RUN`"
        )
    # every pipeline's running runs, whatever the selection: another pipeline's run may read
    # this one's streams as external ones, and a dropped stream is lost to a reader behind
    live = _live_runs(transport, _pipelines_in(transport))
    if run_id is not None:
        if pipeline is None:
            raise UsageError("--run needs the pipeline file (its runs live in its namespace)")
        _prune_run(transport, store, pipeline, run_id, live, as_json)
        return
    if only is not None:
        _check_source(only, pipeline, live)
    if drop_stream is not None:
        if not only:
            raise UsageError("--drop-stream needs --source NAME")
        freed = store.drop_stream(only, drop_stream)
        result: dict[str, Any] = {
            "dropped_streams": [[only, drop_stream]],
            "deleted_messages": None,
            "freed_bytes": freed,
        }
    else:
        assert older_than is not None
        names = [only] if only else _own_sources(transport, pipeline)
        result = _prune_by_age(transport, store, parse_age(older_than), names, live)
    # a --source is opened, and a lost one refused with its sentence; without, the rest is
    # pruned and the lost ones of the selection are said after it
    lost = {} if only else _lost(transport)
    if pipeline is not None:
        lost = {n: why for n, why in lost.items() if _in_scope(n, pipeline, frozenset())}
    if as_json:
        print_json({"location": label, **result, "lost_data_sources": sorted(lost)})
    else:
        _print_pruned(label, result)
    _say_lost(lost)


def _print_pruned(label: str, result: dict[str, Any]) -> None:
    dropped = ", ".join(f"{s}/{n}" for s, n in result["dropped_streams"]) or "none"
    count = result["deleted_messages"]
    kept = ", ".join(result.get("kept_sources") or [])
    click.echo(
        f"{label}: dropped streams: {dropped}"
        + (f"; deleted {count} messages" if count is not None else "")
        + f"; freed {_size(result['freed_bytes'])} of payload files"
        + (
            f"; kept the run records {kept} (`pipeline prune FILE --run RUN` drops one)"
            if kept
            else ""
        )
    )
    for running in result.get("kept_running") or []:
        run = f"run {running['run']} of pipeline {running['pipeline']}"
        whose = (
            f"of {', '.join(running['reads'])}, read by {run}"
            if running.get("reads")
            else f"of {run}"
        )
        n = running["streams"]
        click.echo(
            f"kept {n} stream{'' if n == 1 else 's'} {whose}, which is running; {running['hint']}"
        )


def _pipeline_name(target: str) -> str | None:
    """The `pipeline:` name of a pipeline file; None for a store directory (every pipeline)."""
    path = Path(target).expanduser()
    if path.is_dir():
        return None
    doc = read_pipeline_document(path).data
    name = doc.get("pipeline") if isinstance(doc, dict) else None
    if not isinstance(name, str) or not name:
        raise UsageError(f"{target} names no pipeline (`pipeline: NAME` at the top)")
    return name


def _say_whose(transport: Transport, target: str, lost: dict[str, str]) -> None:
    """`say_whose_runs` when the target is a pipeline file that names its pipeline (a file
    with no name yet still lists its store, as a store directory lists every pipeline's).
    Run records the store lost (`lost`) cannot say: they are said below the listing."""
    from asapo_pipelines.cli.executors import say_whose_runs
    from asapo_pipelines.worker.naming import runs_source

    try:
        name = _pipeline_name(target)
    except UsageError:
        return
    if name is not None and runs_source(name) not in lost:
        say_whose_runs(transport, name, Path(target))


def _pipelines_in(transport: Transport) -> list[str]:
    """The pipelines whose run records a store holds, or lost (`lost_data_sources`): which
    of its runs are running cannot be told then, and reading them says so (`IndexLost`)
    rather than prune streams a running run may write or read."""
    from asapo_pipelines.transport import lost_data_sources

    names = transport.data_sources() + lost_data_sources(transport)
    return [s.partition(".")[0] for s in names if _holds_run_records(s)]


def _own_sources(transport: Transport, pipeline: str | None) -> list[str]:
    """The data sources a prune may look at: with a pipeline file only its own namespace, as
    other pipelines (and projects) share an embedded store directory or a redis-server; with a
    store directory all of them."""
    from asapo_pipelines.worker.naming import namespace_prefix

    names = transport.data_sources()
    if pipeline is None:
        return names
    return [n for n in names if n.startswith(namespace_prefix(pipeline))]


def _check_source(source: str, pipeline: str | None, live: list[_LiveRun]) -> None:
    """Refuse a `--source` outside the file's namespace, or one a running run of any pipeline
    uses: dropped under running workers, its streams start again at id 1 and sinks take the
    new messages for ones they already hold; dropped under a reader, what it has not read yet
    is lost."""
    from asapo_pipelines.worker.naming import namespace_prefix

    if pipeline is not None and not source.startswith(namespace_prefix(pipeline)):
        raise UsageError(
            f"{source} is not a data source of pipeline {pipeline}; prune it with the file of "
            "the pipeline that writes it (or, on an embedded store, with its directory)"
        )
    for running in live:
        if running.uses(source) and not running.reads(source):
            raise UsageError(
                f"{source} is used by {running.describe()}, which is running; "
                f"{running.stop_first()}"
            )
    _check_not_read(source, source, live)


def _check_not_read(source: str, what: str, live: list[_LiveRun]) -> None:
    """Refuse to drop `source` (called `what`) while a running run of any pipeline reads it
    as an external stream: a reader behind would lose what it has not read yet."""
    for running in live:
        if running.reads(source):
            raise UsageError(
                f"{what} is read by {running.describe()}, which is running; {running.stop_first()}"
            )


@dataclass(frozen=True)
class _LiveRun:
    """A run whose record says it is running (`Run.state`, as `pipeline runs` shows it and
    `runs.lifecycle` decides it), on whatever executor: its workers write its own data sources
    and the pipeline's errors and status, and read its external streams."""

    pipeline: str
    run: str
    file: str | None
    external: frozenset[str]
    #: the run a running `pipeline reprocess` replays, whose sent messages it compares its
    #: own with when it ends: its data sources are in use too
    replays: str | None = None

    def uses(self, source: str) -> bool:
        from asapo_pipelines.worker.naming import data_source_for, errors_source, status_source

        shared = {errors_source(self.pipeline), status_source(self.pipeline), *self.external}
        runs = [self.run] if self.replays is None else [self.run, self.replays]
        return source in shared or any(
            source.startswith(data_source_for("", self.pipeline, run)) for run in runs
        )

    def reads(self, source: str) -> bool:
        """Whether `source` is one of the run's external streams (another pipeline's, say)."""
        return source in self.external

    def describe(self) -> str:
        return f"run {self.run} of pipeline {self.pipeline}"

    def stop_first(self) -> str:
        where = f"`pipeline stop {self.file}`" if self.file else "`pipeline stop`"
        return f"stop it first with {where}"


def _live_runs(transport: Transport, pipelines: list[str]) -> list[_LiveRun]:
    from asapo_pipelines.runs import RunStore

    live = []
    for pipeline in pipelines:
        for run in RunStore(transport, pipeline).runs():
            if run.state == "running":
                # the file of the session going on: a run resumed under an edited file reads
                # what the edit says, not what its first session did
                external = _external_streams(run.text)
                start = run.start
                replays = start.get("from_run") if start.get("mode") == "reprocess" else None
                live.append(_LiveRun(pipeline, run.id, start.get("file"), external, replays))
    return live


def _external_streams(text: Any) -> frozenset[str]:
    """The streams a run's pipeline file declares `external: true` (their data sources are
    their names); none when the recorded text does not read."""
    from ruamel.yaml import YAML, YAMLError

    try:
        doc = YAML(typ="safe").load(text) if isinstance(text, str) else None
    except YAMLError:
        return frozenset()
    streams = doc.get("streams") if isinstance(doc, dict) else None
    if not isinstance(streams, dict):
        return frozenset()
    return frozenset(
        str(name)
        for name, spec in streams.items()
        if isinstance(spec, dict) and spec.get("external")
    )


def _holds_run_records(source: str) -> bool:
    """Whether `source` is a pipeline's run records (`<pipeline>.runs`): pipeline names have no
    dots, a run's own data sources (`<pipeline>.<run>.<stream>`) have two."""
    from asapo_pipelines.pipeline.model import PIPELINE_NAME_PATTERN
    from asapo_pipelines.worker.naming import runs_source

    pipeline = source.partition(".")[0]
    return source == runs_source(pipeline) and re.match(PIPELINE_NAME_PATTERN, pipeline) is not None


def _prune_by_age(
    transport: Transport, store: _Prunable, age: float, names: list[str], live: list[_LiveRun]
) -> dict[str, Any]:
    """Age retention of `names` but the pipelines' run records and what running runs use.

    Run records say what ran and number the runs, so dropping them would let run ids start
    again at r1 and a new run pass for an old one; they are small, and `prune --run` removes
    a run's record with its data. A running run's streams, dropped under its workers, would
    be re-created with ids from 1 again, which sinks take for messages they already hold."""
    kept = [n for n in names if _holds_run_records(n)]
    in_use = {n: r for n in names if (r := _user(n, live)) is not None}
    result: dict[str, Any] = {"dropped_streams": [], "deleted_messages": 0, "freed_bytes": 0}
    for name in names:
        if name in kept or name in in_use:
            continue
        report = store.prune(age, name)
        result["dropped_streams"] += [list(x) for x in report.dropped_streams]
        result["deleted_messages"] += report.deleted_messages
        result["freed_bytes"] += report.freed_bytes
    return {**result, "kept_sources": kept, "kept_running": _kept_running(transport, in_use)}


def _user(source: str, live: list[_LiveRun]) -> _LiveRun | None:
    """The running run that writes `source`, else one that reads it as an external stream."""
    users = [r for r in live if r.uses(source)]
    writers = [r for r in users if not r.reads(source)]
    return next(iter(writers or users), None)


def _kept_running(transport: Transport, in_use: dict[str, _LiveRun]) -> list[dict[str, Any]]:
    """Per running run, how many streams of the data sources it writes were kept, and apart
    from those, of the external streams it reads (`reads` names their data sources)."""
    counted: dict[tuple[_LiveRun, bool], tuple[int, list[str]]] = {}
    for source, running in in_use.items():
        key = (running, running.reads(source))
        with transport.consumer(source, "prune") as consumer:
            streams, reads = counted.get(key, (0, []))
            counted[key] = (streams + len(consumer.streams()), reads + [source] * key[1])
    return [
        {
            "pipeline": r.pipeline,
            "run": r.run,
            "streams": n,
            "reads": reads,
            "hint": r.stop_first(),
        }
        for (r, _), (n, reads) in counted.items()
    ]
