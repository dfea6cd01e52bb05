"""Shared output helpers: JSON for tools, rich tables for people, warnings on stderr."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from asapo_pipelines.listing import Listing


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr); imported lazily because rich costs start-up time.
    rich itself honours NO_COLOR and, when piped, writes no colour and a width of 80."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, stderr=stderr)


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


def warn_broken_plugins(listing: Listing) -> None:
    for p in listing.broken:
        errors = p["errors"]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        warn(
            f"plugin {p['name']} ({p['distribution']} {p['version']}) is broken: "
            f"{errors[0]}{more}; see `pipeline plugins`"
        )
