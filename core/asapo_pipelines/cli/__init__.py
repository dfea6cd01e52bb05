"""The `pipeline` command.

Subcommands live in their own modules and are imported only when used (a lazy click group), so
`pipeline list-units` does not pay for the transport, the YAML loader or the executors.
Errors meant for users are printed as one sentence without a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from asapo_pipelines import CORE_DISTRIBUTION, __version__

#: command name -> "module:attribute"; each module holds what its name says.
COMMANDS: dict[str, str] = {
    "list-units": "asapo_pipelines.cli.units:list_units",
    "show-unit": "asapo_pipelines.cli.units:show_unit",
    "plugins": "asapo_pipelines.cli.units:plugins",
    "new-unit": "asapo_pipelines.cli.new_unit:new_unit",
    "new": "asapo_pipelines.cli.new:new",
    "validate": "asapo_pipelines.cli.validate:validate",
    "schema": "asapo_pipelines.cli.schema:schema",
    "graph": "asapo_pipelines.cli.graph:graph",
    # one path through the Executor interface for every executor (cli/executors.py)
    "plan": "asapo_pipelines.cli.executors:plan",
    "deploy": "asapo_pipelines.cli.executors:deploy",
    "start": "asapo_pipelines.cli.executors:start",
    "stop": "asapo_pipelines.cli.executors:stop",
    "status": "asapo_pipelines.cli.executors:status",
    "logs": "asapo_pipelines.cli.executors:logs",
    "runs": "asapo_pipelines.cli.runs:runs",
    # commands that belong to a default plugin, known here by import string only
    "run": "asapo_pipelines.local.commands:run",
    "reprocess": "asapo_pipelines.local.commands:reprocess",
    "view": "asapo_pipelines.viewer.command:view",
    # what Nomad tasks run
    "worker": "asapo_pipelines.cli.worker:worker",
    "streams": "asapo_pipelines.cli.streams:streams",
    "tail": "asapo_pipelines.cli.tail:tail",
    "prune": "asapo_pipelines.cli.streams:prune",
    # the inbox of agents' plan suggestions (the bluesky plugin's bridge)
    "suggestions": "asapo_pipelines.cli.suggestions:suggestions",
}

DEBUG_ENV = "ASAPO_PIPELINES_DEBUG"


class LazyGroup(click.Group):
    _plugins_added = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module_name, _, attr = COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attr)
            assert isinstance(command, click.Command)
            return command
        found = super().get_command(ctx, cmd_name)
        if found is None and not self._plugins_added:
            self._add_plugin_commands()
            found = super().get_command(ctx, cmd_name)
        return found

    def _add_plugin_commands(self) -> None:
        """Let plugins add their commands (`register_commands`). Only for a name that is not a
        core command, and for `--help`: the core's commands never pay for loading plugins."""
        if self._plugins_added:
            return
        self._plugins_added = True
        from asapo_pipelines.catalog import installed_sources
        from asapo_pipelines.plugin_manager import collect_commands

        scratch = click.Group()
        for problem in collect_commands(installed_sources(), scratch):
            from asapo_pipelines.cli.output import warn

            warn(problem)
        for name, command in scratch.commands.items():
            if name not in COMMANDS:  # a plugin cannot replace a core command
                self.add_command(command, name)

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


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from asapo_pipelines.listing import load_listing

    click.echo(f"{CORE_DISTRIBUTION} {__version__}")
    for record in load_listing(strict=False).plugins:
        if record["distribution"] == CORE_DISTRIBUTION:
            continue
        status = "" if record["status"] == "ok" else " (broken)"
        click.echo(f"  {record['distribution']} {record['version']}{status}")
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


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the console script: maps every failure to one sentence and an exit code."""
    from asapo_pipelines.errors import PipelinesError

    try:
        # without standalone mode click returns the code of `ctx.exit(code)` instead of exiting
        result = cli.main(args=argv, prog_name="pipeline", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        # click's own usage errors: keep its one-line message and the usage hint
        exc.show()
        sys.exit(exc.exit_code)
    except PipelinesError as exc:
        _error(exc.message)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted.", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # `pipeline list-units | head`: the reader went away, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except OSError as exc:
        if os.environ.get(DEBUG_ENV) or not exc.filename:
            raise
        # a file or directory this user cannot reach (a folder it may not enter, a full or
        # read-only disk): a fact about the machine, said in one sentence, not a bug
        _error(_os_error(exc))
        sys.exit(1)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        from asapo_pipelines.plugin_manager import describe_exception

        _error(
            f"internal error ({describe_exception(exc)}); this is a bug, please report it "
            f"with the output of the same command run with {DEBUG_ENV}=1"
        )
        sys.exit(70)
    sys.exit(result if isinstance(result, int) else 0)


def _os_error(exc: OSError) -> str:
    from asapo_pipelines import storage

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
    from asapo_pipelines.cli.output import label

    click.echo(label("error: ", "red") + message, err=True)
