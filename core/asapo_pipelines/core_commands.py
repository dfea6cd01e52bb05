"""The core's own commands of the `pipeline` command line, by import string.

A light module (it imports nothing): the CLI shell reads it to find a command's module, and the
catalog to refuse a plugin's command that claims one of these names. Plugins' commands, the
default plugin's `run`, `reprocess` and `view` among them, come from the catalog
(`register_commands`).
"""

from __future__ import annotations

#: command name -> "module:attribute"; each module holds what its name says.
CORE_COMMANDS: dict[str, str] = {
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
    # `run`, `reprocess` and `view` belong to the core's default plugin and come, like any
    # plugin's commands, from the catalog (`register_commands`, `default_backends.COMMANDS`)
    # what Nomad tasks run
    "worker": "asapo_pipelines.cli.worker:worker",
    "streams": "asapo_pipelines.cli.streams:streams",
    "tail": "asapo_pipelines.cli.tail:tail",
    "prune": "asapo_pipelines.cli.streams:prune",
    # the inbox of agents' plan suggestions (the bluesky plugin's bridge)
    "suggestions": "asapo_pipelines.cli.suggestions:suggestions",
}
