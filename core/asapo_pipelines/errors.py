"""The exceptions users see. Each carries one clear sentence; the CLI prints it without a
traceback and exits with the exception's code."""

from __future__ import annotations

import traceback
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


class SubmissionFailed(PipelinesError):
    """An executor's `deploy` or `start` failed because a unit failed for good within the
    wait (its sentence), carrying the document the command would have returned (`result`,
    with ``failed``: unit instance -> why). Under --json the core prints that document on
    stdout before the sentence on stderr, so a script still reads one document
    (`cli.deployments.failed_document`)."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


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


def reason_of(exc: BaseException, hook: str) -> str:
    """What a unit's failure is said as (its error record's `reason`, `pipeline tail FILE
    errors`, the unit's log). A `PipelinesError` is a sentence meant for the user already;
    any other exception is named by its type and the line that raised it (the last frame of
    its traceback), as the worker names it at start-up: a unit's `KeyError` alone reads
    `'value'`, which tells its author neither what failed nor where."""
    if isinstance(exc, PipelinesError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f", {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {exc} (in {hook}{where})"
