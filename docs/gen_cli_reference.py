"""Write docs/cli.md from the `pipeline` command's own help, or check that it is current.

python docs/gen_cli_reference.py          # rewrite docs/cli.md
python docs/gen_cli_reference.py --check  # exit 1 when docs/cli.md is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from asapo_pipelines.cli import cli

TARGET = Path(__file__).with_name("cli.md")


def render() -> str:
    parts = [
        "# Command-line reference\n",
        "Generated from the `pipeline` command itself by `docs/gen_cli_reference.py`;"
        " a check in the docs session fails when it is stale.\n",
    ]
    settings = {
        "help_option_names": ["-h", "--help"],
        "terminal_width": 100,
        "max_content_width": 100,
    }
    root = click.Context(cli, info_name="pipeline", **settings)
    parts.append("## pipeline\n\n```text\n" + cli.get_help(root) + "\n```\n")
    for name in cli.list_commands(root):
        command = cli.get_command(root, name)
        assert command is not None
        ctx = click.Context(command, info_name=name, parent=root, **settings)
        parts.append(f"## pipeline {name}\n\n```text\n{command.get_help(ctx)}\n```\n")
    return "\n".join(parts)


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is stale: run `python docs/gen_cli_reference.py`", file=sys.stderr)
            return 1
        print(f"{TARGET} is current")
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
