"""Shared output helpers: JSON for tools, rich tables for people, warnings on stderr."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from asapo_pipelines.errors import PipelinesError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from asapo_pipelines.listing import Listing


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


#: why a foreground `pipeline run` stops when its standard output is closed (`| head -1`)
OUTPUT_CLOSED = "its output was closed: broken pipe"


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr); imported lazily because rich costs start-up time.
    rich itself honours NO_COLOR and, when piped, writes no colour and a width of 80."""
    return _console_class()(highlight=False, soft_wrap=False, stderr=stderr)


@functools.cache
def _console_class() -> type[Console]:
    from rich.console import Console

    class _Console(Console):
        """rich's console, but a closed pipe raises BrokenPipeError instead of rich's
        SystemExit(1): `pipeline run | head` must stop its run cleanly, recorded as stopped
        because of its output, not end on an exit no one can tell from any other."""

        def on_broken_pipe(self) -> None:
            self.quiet = True  # nothing more to print
            silence_stdout(self.file)
            raise BrokenPipeError("output closed")

    return _Console


def silence_stdout(stream: Any = None) -> None:
    """Point standard output's file descriptor (or `stream`'s) at /dev/null, so the flush at
    interpreter exit of what is still buffered does not fail again (with Python's own
    "Exception ignored" lines)."""
    # the stream may be no file (a test's StringIO): then nothing is flushed at exit
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), (stream or sys.stdout).fileno())


#: listings narrower than this (an 80-column terminal, a pipe) print a block per item instead
#: of a table whose many columns would each be cut to a few letters
TABLE_WIDTH = 120


def wide(out: Console) -> bool:
    """Whether `out` has room for a listing's table."""
    return out.width >= TABLE_WIDTH


def no_color() -> bool:
    """NO_COLOR set to anything but empty turns colour off, even on a terminal (no-color.org)."""
    return bool(os.environ.get("NO_COLOR"))


def label(text: str, color: str) -> str:
    """`text` in bold `color`, unless NO_COLOR asks for none (click strips colour itself only
    when the output is not a terminal)."""
    return text if no_color() else click.style(text, fg=color, bold=True)


def warn(message: str) -> None:
    click.echo(label("warning: ", "yellow") + message, err=True)


def error(message: str) -> None:
    """A failure said in one line on stderr, as `pipeline` says the one that ends a command;
    for a command that goes on with the rest before it exits non-zero."""
    click.echo(label("error: ", "red") + message, err=True)


def warn_broken_plugins(listing: Listing) -> None:
    for p in listing.broken:
        errors = p["errors"]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        warn(
            f"plugin {p['name']} ({p['distribution']} {p['version'] or '-'}) is broken: "
            f"{errors[0]}{more}; see `pipeline plugins`"
        )


def warn_plugin_list_typos() -> list[str]:
    """Warn of each name in ASAPO_PIPELINES_PLUGINS or ..._DISABLE_PLUGINS that names no
    installed plugin (a typo there loads, or disables, nothing without a word); return them.
    Said by the commands that say broken plugins (`plugins`, `list-units`, `validate`)."""
    from asapo_pipelines.catalog import plugin_list_typos

    typos = plugin_list_typos()
    for typo in typos:
        warn(typo)
    return typos


# -- output that could not be written --------------------------------------------------------
class OutputError(PipelinesError):
    """Standard output could not be written (a full disk it is redirected to, a broken
    terminal): what the user asked for is lost, so the command fails with one sentence."""


def stdout_failure(exc: OSError) -> OutputError:
    from asapo_pipelines import storage

    if storage.kind_of(exc) == storage.FULL:
        remedy = "free space where the output is redirected to, or redirect it elsewhere"
    else:
        remedy = "check where the output goes (the file, pipe or terminal) and run again"
    return OutputError(f"cannot write to standard output: {storage.reason(exc)}; {remedy}")


class _GuardedStream:
    """A stream (sys.stdout, or its binary buffer) whose failed writes name standard output:
    an OSError from a write carries no file name, so without this the CLI could not tell a
    full disk under `> out.txt` from any other failure. A closed pipe (`| head`) stays a
    BrokenPipeError, which the CLI and rich end quietly."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: Any) -> Any:
        try:
            return self._stream.write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise stdout_failure(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise stdout_failure(exc) from None

    @property
    def buffer(self) -> _GuardedStream:
        return _GuardedStream(self._stream.buffer)

    def __getattr__(self, name: str) -> Any:
        # everything else (isatty, encoding, fileno) as the real stream has it, for click
        # and rich; `_stream` itself is missing only in a half-built copy (no recursion)
        if name == "_stream":
            raise AttributeError(name)
        return getattr(self._stream, name)


@contextmanager
def guarded_stdout() -> Iterator[None]:
    """sys.stdout guarded for the time of a command; the real one restored after (callers in
    the same process, tests among them, keep theirs)."""
    original = sys.stdout
    guarded = _GuardedStream(original)
    sys.stdout = guarded
    try:
        yield
    finally:
        # click wraps stdout itself after a closed pipe, so that the flush at exit stays quiet:
        # that wrapper is kept
        if sys.stdout is guarded:
            sys.stdout = original


def write_file(path: Path, text: str) -> None:
    """Write a file the user named (`--output`). A failure to open it names the file already
    (the CLI says it in one sentence); one while writing or closing it, a full disk, does not,
    so it is said here with the file's name."""
    from asapo_pipelines import storage

    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        if exc.filename:  # opening it failed: the CLI says so with the name the error has
            raise
        raise PipelinesError(storage.describe("writing", path, exc)) from None
