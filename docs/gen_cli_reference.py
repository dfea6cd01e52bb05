"""Write docs/cli.md from the `pipeline` command's own help, or check that it is current.

python docs/gen_cli_reference.py          # rewrite docs/cli.md
python docs/gen_cli_reference.py --check  # exit 1 when docs/cli.md is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from asapo_pipelines.cli.app import cli

TARGET = Path(__file__).with_name("cli.md")

COMPLETION = """## Shell completion

`pipeline` completes its commands, options, unit names (`show-unit`, `new -u`) and a pipeline
file's streams (`tail FILE STREAM`) in bash, zsh and fish. Add one line to your shell's start-up
file:

```bash
eval "$(_PIPELINE_COMPLETE=bash_source pipeline)"    # ~/.bashrc
eval "$(_PIPELINE_COMPLETE=zsh_source pipeline)"     # ~/.zshrc
_PIPELINE_COMPLETE=fish_source pipeline | source     # ~/.config/fish/completions/pipeline.fish
```

Colour is off when the output is not a terminal or when `NO_COLOR` is set; tables turn into
lines below 120 columns, so `pipeline list-units | less` and an 80-column terminal read well.
"""


def render() -> str:
    parts = [
        "# Command-line reference\n",
        "Generated from the `pipeline` command itself by `docs/gen_cli_reference.py`;"
        " a check in the docs session fails when it is stale.\n",
        COMPLETION,
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


def write_or_check(target: Path, text: str, script: str) -> int:
    """Write a generated page, or with `--check` say whether it is current (exit status 1 when
    stale); the docs generators share it."""
    if "--check" in sys.argv[1:]:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is stale: run `python docs/{script}`", file=sys.stderr)
            return 1
        print(f"{target} is current")
        return 0
    target.write_text(text)
    print(f"wrote {target}")
    return 0


def main() -> int:
    return write_or_check(TARGET, render(), Path(__file__).name)


if __name__ == "__main__":
    sys.exit(main())
