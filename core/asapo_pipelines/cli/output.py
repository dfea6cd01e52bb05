"""Shared output helpers: JSON for tools, rich tables for people, warnings on stderr."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from asapo_pipelines.listing import Listing


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def console() -> Console:
    """A rich console on stdout; imported lazily because rich costs start-up time."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def warn(message: str) -> None:
    click.echo(click.style("warning: ", fg="yellow", bold=True) + message, err=True)


def warn_broken_plugins(listing: Listing) -> None:
    for p in listing.broken:
        errors = p["errors"]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        warn(
            f"plugin {p['name']} ({p['distribution']} {p['version']}) is broken: "
            f"{errors[0]}{more}; see `pipeline plugins`"
        )
