"""Options shared by several commands."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from asapo_pipelines.errors import UsageError
from asapo_pipelines.pipeline import DEFAULT_DATA_DIR

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.pipeline.loader import Document
    from asapo_pipelines.runs import Run, RunStore

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table."
)
strict_option = click.option(
    "--strict",
    is_flag=True,
    envvar="ASAPO_PIPELINES_STRICT",
    help="Fail (exit 1) when any plugin is broken. Also set by ASAPO_PIPELINES_STRICT=1.",
)


def complete_unit_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Shell completion of unit names from the listing (cached: no plugin is imported)."""
    from click.shell_completion import CompletionItem

    from asapo_pipelines.listing import load_listing

    try:
        units = load_listing(strict=False).units
    except Exception:  # completion must never print a traceback into the shell
        return []
    return [
        CompletionItem(u["name"], help=u["summary"])
        for u in units
        if u["name"].startswith(incomplete)
    ]


def complete_stream_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Shell completion of the streams named in the pipeline file given before, or the one
    file here (and `errors`); as the first of `[FILE] STREAM`, the pipeline files here too."""
    from click.shell_completion import CompletionItem

    names = {"errors"}
    try:
        from ruamel.yaml import YAML

        # `tail [FILE] STREAM` holds FILE in its arguments; without it, the one file here
        given = ctx.params.get("file") or next(iter(ctx.params.get("args") or ()), None)
        here = sorted(Path.cwd().glob("*.pipeline.yaml"))
        path = Path(str(given)) if given else here[0] if len(here) == 1 else None
        doc = YAML(typ="safe").load(path.read_text()) if path is not None else {}
        for spec in (doc.get("units") or {}).values():
            for side in ("inputs", "outputs"):
                names.update(str(v) for v in (spec.get(side) or {}).values())
        if param.name == "args" and not ctx.params.get("args"):
            names.update(p.name for p in here)  # the first word may be FILE too
    except Exception:  # no file yet, or not readable: offer what is known
        pass
    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Where the local executor keeps its jobs' state and logs, under runs/<job> (default: "
    f"the pipeline's embedded transport directory, or {DEFAULT_DATA_DIR} next to FILE); run "
    "records live on the transport (`pipeline runs`).",
)
run_dir_option = click.option(
    "--run-dir", type=click.Path(file_okay=False), help="A run directory (<data>/runs/<job>)."
)


def files_here(what: str = "the pipeline file") -> list[Path]:
    """The pipeline files of the current directory, sorted, for commands called without FILE;
    none is one sentence, `what` naming what else the command would take."""
    found = sorted(Path.cwd().glob("*.pipeline.yaml"))
    if not found:
        raise UsageError(f"give {what} (there is no *.pipeline.yaml here)")
    return found


def find_file(what: str = "the pipeline file") -> Path:
    """The one pipeline file in the current directory, for commands called without FILE;
    `what` names what else the command would take."""
    found = files_here(what)
    if len(found) == 1:
        return checked_file(found[0])
    names = ", ".join(p.name for p in found)
    raise UsageError(f"give {what} (there are several here: {names})")


def usage_error(command: str, synopsis: str, meaning: str) -> UsageError:
    """What a command called without what it needs says (`logs`, `tail`, `prune`): its usage
    and what its arguments are, in one sentence, exit code 2. An argument click requires would
    say `Missing argument` under a usage block instead, in a different shape per command."""
    return UsageError(f"usage: pipeline {command} {synopsis}, {meaning}")


def file_and_name(
    args: tuple[str, ...], command: str, name: str, wanted: str
) -> tuple[str | None, str]:
    """FILE (None when not given) and NAME of `pipeline COMMAND [FILE] NAME`, read from one
    click argument of nargs=-1 (an optional argument cannot come before a required one).
    A pipeline file given alone is refused, naming `wanted` (`the unit whose log to print`):
    it would be taken for a NAME called like it. None or more than two words: its usage
    (`usage_error`), as click's `Missing argument` block would say it, in one sentence."""
    if len(args) not in (1, 2):
        raise usage_error(
            command,
            f"[FILE] {name}",
            f"{name} being {wanted} and FILE the pipeline file (by default the one here)",
        )
    if len(args) == 2:
        return args[0], args[1]
    (value,) = args
    if value.endswith((".yaml", ".yml")) and Path(value).is_file():
        raise UsageError(f"name {wanted}: pipeline {command} {value} {name}")
    return None, value


def asked_run(store: RunStore, run_id: str) -> Run:
    """The run the user named (`tail --run`, `reprocess --from`, `prune --run`): an unknown
    one is a name given wrong, as an unknown stream or unit is, so one sentence naming the
    runs there are (`RunStore.get`) with the exit code of a command called wrongly (2)."""
    from asapo_pipelines.runs import RunsError

    try:
        return store.get(run_id)
    except RunsError as exc:
        raise UsageError(str(exc)) from None


def checked_file(path: Path) -> Path:
    """`path` when it is a file to read as a command's FILE; else the one sentence every command
    says: `no such file` for a missing one, and for the rest `check_readable`'s."""
    try:
        path.stat()
    except FileNotFoundError:  # missing, or a link to nothing
        from asapo_pipelines.pipeline.loader import pipeline_file_meant

        raise UsageError(f"no such file: {path}{pipeline_file_meant(path)}") from None
    except OSError:  # said by `check_readable`
        pass
    return check_readable(path)


def check_readable(path: Path) -> Path:
    """`path` unless it is there but cannot be read as a file: for a directory, a symlink loop
    or a path under a folder this user may not enter, the loader's P001 problem, as `pipeline
    validate` reports it (a missing file is left to the command, whose sentence names what it
    wanted)."""
    mode: int | None
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, PermissionError):
        # missing, a link to nothing, or under a folder this user may not enter: the
        # command's own sentence says which, and what to do
        return path
    except OSError:  # a symlink loop
        mode = None
    if mode is None or stat.S_ISDIR(mode):
        _raise_unreadable(path)
    return path


def _raise_unreadable(path: Path) -> None:
    """Raise the loader's P001 problem for a FILE that cannot be read."""
    from asapo_pipelines.pipeline.loader import LoadFailed, read_document

    try:
        read_document(path)
    except LoadFailed as exc:
        raise _invalid(path, list(exc.problems)) from None
    # readable after all (it changed under us): the command's own loading goes on from here


def read_pipeline_document(path: Path) -> Document:
    """FILE's YAML read as the other commands read it (size limit, UTF-8, duplicate keys), for
    commands that need only a few of its keys: a file that does not read is its P00x problems
    at their lines, never the YAML library's own report, and one that is empty or not a
    mapping is `pipeline validate`'s P108."""
    from asapo_pipelines.pipeline.loader import LoadFailed, read_document

    checked_file(path)
    try:
        document, problems = read_document(path)
    except LoadFailed as exc:
        raise _invalid(path, list(exc.problems)) from None
    if any(p.severity == "error" for p in problems):
        raise _invalid(path, problems)
    if not isinstance(document.data, dict):
        raise _not_a_mapping(document, problems)
    return document


def _not_a_mapping(document: Document, problems: list[Any]) -> Exception:
    """The P108 problem `pipeline validate` reports for a document that is not a mapping, from
    the validation itself so the sentence and its place stay the same. The catalog is an empty
    one: validation refuses such a document before it looks up any unit."""
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.validate import PipelineInvalid, validate_document

    report, _ = validate_document(document, Catalog({}, []), problems)
    return PipelineInvalid(report)


def _invalid(path: Path, problems: list[Any]) -> Exception:
    from asapo_pipelines.pipeline.problems import Report
    from asapo_pipelines.pipeline.validate import PipelineInvalid

    return PipelineInvalid(Report(str(path), problems))


class PipelineFile(click.Path):
    """A FILE argument, checked by `check_readable` when the command line is read, so every
    command says the same sentence for a directory or a symlink loop (click's own check prints
    a usage block, and a loop failed `is_file()` checks as a missing file)."""

    def __init__(self, path_type: type[Any] | None = None) -> None:
        super().__init__(path_type=path_type)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        converted = super().convert(value, param, ctx)
        check_readable(Path(os.fsdecode(converted)))
        return converted
