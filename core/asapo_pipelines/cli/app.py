"""The `pipeline` command's shell, run by its entry point (`cli.main`, which installs the
Ctrl-C guard before this is imported).

Subcommands live in their own modules and are imported only when used (a lazy click group), so
`pipeline list-units` does not pay for the transport, the YAML loader or the executors.
Errors meant for users are printed as one sentence without a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from asapo_pipelines import CORE_DISTRIBUTION, __version__, interrupts
from asapo_pipelines.core_commands import CORE_COMMANDS
from asapo_pipelines.import_strings import import_runtime

DEBUG_ENV = "ASAPO_PIPELINES_DEBUG"


class LazyGroup(click.Group):
    """The core's commands by import string (`CORE_COMMANDS`), and the commands plugins register
    (`register_commands`, the core's default plugin's `run`, `reprocess` and `view` among them)
    by their descriptors in the catalog's listing: a command's module is imported only when it
    runs, and `pipeline --help` shows plugins' commands by their registered summaries."""

    _plugin_commands: dict[str, dict[str, Any]] | None = None

    def plugin_commands(self) -> dict[str, dict[str, Any]]:
        """name -> the listing's record of each plugin command (nothing imported: the listing
        is cached). The catalog has refused any that claims a name of `CORE_COMMANDS`."""
        if self._plugin_commands is None:
            from asapo_pipelines.listing import load_listing

            self._plugin_commands = {r["name"]: r for r in load_listing(strict=False).commands}
        return self._plugin_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *CORE_COMMANDS, *self.plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in CORE_COMMANDS:
            return _import_command(CORE_COMMANDS[cmd_name])
        record = self.plugin_commands().get(cmd_name)
        if record is None:
            return super().get_command(ctx, cmd_name)
        try:
            return _import_command(record["runtime"])
        except Exception as exc:
            from asapo_pipelines.errors import PluginError
            from asapo_pipelines.interrupts import reraise_if_interrupted
            from asapo_pipelines.plugin_manager import describe_exception

            # a Ctrl-C while the command's module builds a validator (pydantic-core wraps
            # it in its SchemaError) is the user's, not a broken plugin's
            reraise_if_interrupted(exc)
            raise PluginError(
                f"command {cmd_name} of {record['distribution']} {record['version'] or '-'} "
                f"cannot be loaded: {describe_exception(exc)}"
            ) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The core's commands by their own short help, plugins' by their descriptors'
        summaries: listing them imports no plugin, and one that is broken is still listed."""
        names = self.list_commands(ctx)
        if not names:
            return
        plugins = self.plugin_commands()
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            if name in plugins:
                # cut as click cuts a command's own help
                summary = click.Command(name, help=plugins[name]["summary"])
                rows.append((name, summary.get_short_help_str(limit)))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # Suggest the nearest command instead of click's bare "No such command".
        name = args[0] if args else None
        if name is not None and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            near = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            hint = f"; did you mean {near[0]}?" if near else "; see `pipeline --help`"
            raise click.UsageError(f"unknown command {name}{hint}", ctx)
        return super().resolve_command(ctx, args)


def _import_command(target: str) -> click.Command:
    """The `click.Command` named by an import string."""
    command = import_runtime(target)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is a {type(command).__name__}, not a click command")
    return command


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from asapo_pipelines.listing import load_listing

    click.echo(f"{CORE_DISTRIBUTION} {__version__}")
    for record in load_listing(strict=False).plugins:
        if record["distribution"] == CORE_DISTRIBUTION:
            continue
        status = "" if record["status"] == "ok" else " (broken)"
        # a distribution without a version (built by hand) shows "-", as in `list-units`
        click.echo(f"  {record['distribution']} {record['version'] or '-'}{status}")
    ctx.exit(0)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the core's version and the installed plugins' versions.",
)
def cli() -> None:
    """Build, check and run near-real-time data pipelines from one YAML file."""


def run(argv: list[str] | None) -> int:
    """The exit code of the command `argv` names, every failure said in one sentence."""
    from asapo_pipelines.cli.output import guarded_stdout

    with guarded_stdout():
        # what is still buffered is written before exit, while a failure can be reported: a
        # lost last line (`> /dev/full`) is not a success
        return _flushed(_run(argv))


def _run(argv: list[str] | None) -> int:
    """The command's exit code; every failure said in one sentence on stderr."""
    from asapo_pipelines.cli.output import OutputError
    from asapo_pipelines.errors import PipelinesError

    try:
        # a Ctrl-C raises KeyboardInterrupt only in the command (`interrupts`); click turns it
        # into Abort (with the line break after the terminal's `^C`). Without standalone mode
        # click returns the code of `ctx.exit(code)` instead of exiting
        with interrupts.Raised():
            result = cli.main(args=argv, prog_name="pipeline", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo(interrupts.ABORTED, err=True)
        return interrupts.EXIT_CODE
    except click.ClickException as exc:
        # click's own usage errors: keep its one-line message and the usage hint
        exc.show()
        return exc.exit_code
    except OutputError as exc:
        _error(exc.message)
        _silence_stdout()  # what is still buffered would fail again at exit
        return exc.exit_code
    except PipelinesError as exc:
        _debug_cause(exc)
        _error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        return interrupts.say_aborted()
    except BrokenPipeError:
        # `pipeline list-units | head`: the reader went away; quiet, and exit 1 as Python's
        # documentation (and rich, which prints the tables) do
        _silence_stdout()
        return 1
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        if interrupts.raised_once():
            # a Ctrl-C that a library turned into an error of its own: not a bug to report
            return interrupts.say_aborted()
        if isinstance(exc, OSError):
            # a file or directory this user cannot reach (a folder it may not enter, a full or
            # read-only disk): a fact about the machine, said in one sentence, not a bug
            _error(_os_error(exc))
            return 1
        from asapo_pipelines.plugin_manager import describe_exception

        _error(
            f"internal error ({describe_exception(exc)}); this is a bug, please report it "
            f"with the output of the same command run with {DEBUG_ENV}=1"
        )
        return 70
    return result if isinstance(result, int) else 0


def _debug_cause(exc: BaseException) -> None:
    """With ASAPO_PIPELINES_DEBUG=1, the traceback of the exception a sentence was made from
    (a plugin's own, `ExecutorFailed` or a transport's): its author needs where it was raised,
    as an internal error shows it. Nothing for a sentence raised on purpose."""
    cause = exc.__cause__
    if not os.environ.get(DEBUG_ENV) or cause is None:
        return
    import traceback

    traceback.print_exception(cause, file=sys.stderr)


def _flushed(code: int) -> int:
    """`code` once stdout is flushed: a failed flush turns a success into the failure it
    is."""
    from asapo_pipelines.cli.output import OutputError

    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return code or 1
    except OutputError as exc:
        _error(exc.message)
        _silence_stdout()
        return code or exc.exit_code
    return code


def _silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so the flush at interpreter exit of what is still
    buffered does not fail again (with Python's own "Exception ignored" lines)."""
    from asapo_pipelines.cli.output import silence_stdout

    silence_stdout()


def _os_error(exc: OSError) -> str:
    from asapo_pipelines import storage

    if not exc.filename:
        # raised where no file name was at hand (a socket, a library's own I/O): still one
        # sentence, with the way to find out where
        return (
            f"an operation of the system failed: {storage.reason(exc)}; run the same command "
            f"with {DEBUG_ENV}=1 to see where"
        )

    kind = storage.kind_of(exc)
    if kind in (storage.FULL, storage.READ_ONLY):
        return storage.describe("using", exc.filename, exc)
    if kind == storage.DENIED:
        return (
            f"cannot use {exc.filename}: {exc.strerror}; this user (uid {os.getuid()}) may not "
            "read or enter it (or a folder above it); ask for access or use another path"
        )
    return f"cannot use {exc.filename}: {exc.strerror or exc}"


def _error(message: str) -> None:
    from asapo_pipelines.cli.output import error

    error(message)
