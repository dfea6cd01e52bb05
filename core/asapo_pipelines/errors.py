"""The exceptions users see. Each carries one clear sentence; the CLI prints it without a
traceback and exits with the exception's code."""

from __future__ import annotations

import re
from typing import Any


class PipelinesError(Exception):
    """Base of every error meant for a user: the message is the whole story."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(PipelinesError):
    """The command was called wrongly (missing file, bad option value)."""

    exit_code = 2


class ExecutorUnreachable(PipelinesError):
    """An executor's scheduler cannot be asked from here: its agent or controller does not
    answer, or its tools are missing or not configured. An executor's errors of that kind
    subclass it, so the core can tell "could not ask" from what the scheduler answered (a
    `status` with no local run says both then, `cli.executors._no_local_run`)."""


class ConfigurationError(PipelinesError):
    """The configuration is wrong in a way a restart cannot fix (bad params, a missing
    directory, a unit that does not import). Exits with 78 (EX_CONFIG), which the local
    executor takes as "fail now, with this reason" instead of restarting the task."""

    exit_code = 78


class PluginError(PipelinesError):
    """A plugin could not be loaded or registered something invalid."""


class CatalogError(PipelinesError):
    """The catalog is inconsistent (strict mode) or a unit cannot be found."""


class UnknownUnitError(CatalogError):
    def __init__(self, name: str, suggestion: str | None = None) -> None:
        hint = f"; did you mean {suggestion}?" if suggestion else "; see `pipeline list-units`"
        super().__init__(f"unknown unit {name}{hint}")
        self.name = name
        self.suggestion = suggestion


#: one frame of a formatted traceback: `  File "/path/x.py", line 10, in process`
_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)', re.M)


def error_reason(err: dict[str, Any]) -> str:
    """An error record's reason, for `pipeline tail FILE errors` and the unit's log. The core's
    own errors are sentences that say what and where; any other exception is named by its
    type and the line that raised it (the last frame of its traceback), as the worker names
    it at start-up: a unit's `KeyError` alone reads `'value'`, which tells its author neither
    what failed nor where."""
    text = str(err.get("error"))
    exception = str(err.get("exception") or "")
    if not exception or exception.startswith("asapo_pipelines."):
        return text
    name = exception.rpartition(".")[2]  # builtins.KeyError -> KeyError
    frames = _FRAME.findall(str(err.get("traceback") or ""))
    hook = f"in {err['hook']}" if err.get("hook") else ""
    where = f"{frames[-1][0]}:{frames[-1][1]}" if frames else ""
    at = ", ".join(x for x in (hook, where) if x)
    return f"{name}: {text}" + (f" ({at})" if at else "")
