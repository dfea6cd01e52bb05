"""Options shared by several commands."""

from __future__ import annotations

import click

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table."
)
strict_option = click.option(
    "--strict",
    is_flag=True,
    envvar="ASAPO_PIPELINES_STRICT",
    help="Fail (exit 1) when any plugin is broken. Also set by ASAPO_PIPELINES_STRICT=1.",
)
