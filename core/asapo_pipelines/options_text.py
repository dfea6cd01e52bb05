"""Command-line words a run is repeated with, light enough for any plugin's runtime to use
(the SDK exports `set_options`): a sentence that advises a command gives the run's own
`--set` overrides again, quoted as the CLI reads them."""

from __future__ import annotations

from typing import Any


def set_options(recorded: dict[str, Any]) -> str:
    """` --set KEY=VALUE ...` (shell-quoted, each value as JSON, which YAML reads back as the
    same value) that give a run's recorded overrides (`flat`) again: the commands a sentence
    advises repeat them, or the next session would run under the file's settings instead."""
    import json
    import shlex

    return "".join(
        f" --set {shlex.quote(f'{key}={json.dumps(value)}')}"
        for key, value in sorted(recorded.items())
    )
