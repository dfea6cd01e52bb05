"""The one import door for plugin authors: everything a unit, transport or executor plugin
writes against. Internal modules may move; these names stay.

Light names (safe in a plugin's registration module): `Params`, `NoParams`, `Port`,
`Resources`, `UnitDescriptor`, `PlotHint`, `TransportDescriptor`, `ExecutorDescriptor`,
`FormatDescriptor`, `CommandDescriptor`, `hookimpl` and the hooks' callback types
(`RegisterUnit`, `RegisterTransport`, `RegisterExecutor`, `RegisterFormat`, `RegisterCommand`,
`ReportFinding`), `describe`, `inp`,
`out`, `Suggestion`, `PlanItem`, and the errors a plugin raises with one sentence
(`PipelinesError`, `UsageError`; an executor's "cannot ask its scheduler" subclasses
`ExecutorUnreachable`; a `deploy` or `start` that failed as a unit failed for good within its
wait raises `SubmissionFailed` with the result it would have returned). Runtime names (import
them in the runtime module): `Source`,
`Sink`, `Processor`, `Agent`, `Message`, `Stream`, `ReplayedRun` (what `self.context.replays`
gives in a `pipeline reprocess`), `DirectoryEvents`, `files_open_for_writing` and
`nothing_matches` (watching and reading a directory), `storage` (durable file writes),
`set_options` (a run's `--set` overrides as a command repeats them), for
executors `Executor`, `ExecutorStatus`, `InstanceStatus`, and for payload formats
`PayloadFormat` (what a format's runtime provides). Transport and executor runtimes import the
rest of what they build on from the doors beside this one, `asapo_pipelines.sdk.transports` and
`asapo_pipelines.sdk.executors`. See docs/unit-authors.md and docs/hooks.md.
"""

# no `from __future__ import annotations` here: it would be a public name of this door
from asapo_pipelines import storage
from asapo_pipelines.descriptor import (
    CommandDescriptor,
    ExecutorDescriptor,
    FormatDescriptor,
    NoParams,
    Params,
    PlotHint,
    Port,
    Resources,
    TransportDescriptor,
    UnitDescriptor,
)
from asapo_pipelines.errors import (
    ExecutorUnreachable,
    PipelinesError,
    SubmissionFailed,
    UsageError,
)
from asapo_pipelines.executor import Executor, ExecutorStatus, InstanceStatus
from asapo_pipelines.hookspecs import (
    RegisterCommand,
    RegisterExecutor,
    RegisterFormat,
    RegisterTransport,
    RegisterUnit,
    ReportFinding,
    hookimpl,
)
from asapo_pipelines.options_text import set_options
from asapo_pipelines.sdk.dirwatch import DirectoryEvents, files_open_for_writing, nothing_matches
from asapo_pipelines.sdk.ports import describe, inp, out
from asapo_pipelines.sdk.suggestions import SUGGESTION_CONTENT_TYPE, PlanItem, Suggestion
from asapo_pipelines.sdk.units import (
    Agent,
    BadMessage,
    Message,
    Processor,
    ReplayedRun,
    Sink,
    Source,
    Stream,
    Unit,
    UnitStorageError,
    UnitUsageError,
)
from asapo_pipelines.transport.formats import PayloadFormat

__all__ = [
    "SUGGESTION_CONTENT_TYPE",
    "Agent",
    "BadMessage",
    "CommandDescriptor",
    "DirectoryEvents",
    "Executor",
    "ExecutorDescriptor",
    "ExecutorStatus",
    "ExecutorUnreachable",
    "FormatDescriptor",
    "InstanceStatus",
    "Message",
    "NoParams",
    "Params",
    "PayloadFormat",
    "PipelinesError",
    "PlanItem",
    "PlotHint",
    "Port",
    "Processor",
    "RegisterCommand",
    "RegisterExecutor",
    "RegisterFormat",
    "RegisterTransport",
    "RegisterUnit",
    "ReplayedRun",
    "ReportFinding",
    "Resources",
    "Sink",
    "Source",
    "Stream",
    "SubmissionFailed",
    "Suggestion",
    "TransportDescriptor",
    "Unit",
    "UnitDescriptor",
    "UnitStorageError",
    "UnitUsageError",
    "UsageError",
    "describe",
    "files_open_for_writing",
    "hookimpl",
    "inp",
    "nothing_matches",
    "out",
    "set_options",
    "storage",
]
