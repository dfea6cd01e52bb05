"""The plugin API: every hook a plugin may implement, one per concern.

A plugin package declares an entry point in the group ``asapo_pipelines`` that points at a light
module (import nothing heavy at module level) and implements some of these hooks::

    from asapo_pipelines.sdk import UnitDescriptor, hookimpl

    @hookimpl
    def register_units(register):
        register(UnitDescriptor(name="acme.denoise", kind="processor", ...))

Core code never calls these hooks directly: it goes through the typed facade in
`asapo_pipelines.plugin_manager`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from asapo_pipelines import PROJECT

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.descriptor import (
        CommandDescriptor,
        ExecutorDescriptor,
        FormatDescriptor,
        TransportDescriptor,
        UnitDescriptor,
    )

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: What `register_units` receives: call it once per unit, with a descriptor or a mapping of its
#: fields. Each call is validated on its own, so one bad descriptor does not hide the others.
RegisterUnit = Callable[["UnitDescriptor | Mapping[str, Any]"], None]


@hookspec
def register_units(register: RegisterUnit) -> None:
    """Register the units (connectors, processors, agents) this plugin provides.

    Call ``register(descriptor)`` once per unit. The descriptor's ``version`` and
    ``distribution`` are filled in by the catalog from the plugin's distribution; its runtime
    is given as an import string and must not be imported here.
    """


#: What `check_online` and `check_pipeline` receive to report a finding: the YAML path of the
#: value at fault (e.g. ``("units", "queue", "params", "plan", "name")``), a code (`check_online`:
#: `P501` refused, `P502` could not ask; `check_pipeline`: its own list) and one sentence.
ReportFinding = Callable[[tuple[str, ...], str, str], None]


@hookspec
def check_online(pipeline: Any, catalog: Any, report: ReportFinding) -> None:
    """Check a valid pipeline against the live services it names: e.g. that a queue server
    allows the plans the file names, or that a cluster has the partition its `deploy:` section
    names. `pipeline validate --online` reports the findings as located problems; `pipeline
    run`, `pipeline reprocess` and `pipeline deploy` ask before they start anything (the
    pipeline with its `--set` overrides applied) and refuse to start on a `P501`, and warn and
    go on for a `P502`.

    Called only for plugins the pipeline uses: whose units it names, whose transport it
    travels on, and whose executor it starts on (`validate --online`: every executor its
    `deploy:` section names). `pipeline.params_for(instance, catalog)` gives a unit's params,
    `pipeline.deploy.config(name)` an executor's section. Every request must have a deadline;
    report a service that does not answer with `P502` rather than raising.
    """


@hookspec
def check_pipeline(pipeline: Any, catalog: Any, report: ReportFinding) -> None:
    """Check a pipeline's units together, offline: a unit's params that contradict those of a
    unit it reads from, which neither unit's own params model can see (a unit that needs a
    channel its source switches off). `pipeline validate`, and every command that loads the
    file (`pipeline run` first of all, again with its `--set`s applied), report each finding as
    a located problem (its code below) once the file passed every other stage; a check that
    raises is a warning (`P315`): a plugin's bug does not refuse a file.

    Called only for plugins whose units the pipeline names, or (by `pipeline validate` and
    `pipeline run`) whose transport it travels on. `pipeline.params_for(instance, catalog)`
    gives a unit's params,
    `pipeline.units[instance].inputs` and `.outputs` its wiring (port -> stream),
    `pipeline.transport.options()` the transport's options with paths made absolute as its
    workers get them. Report the path of the value to change, e.g. ``("units", "normalize",
    "params", "calibrate")``, with one of these codes (every finding is an error; any other
    code is reported as `P314`):

    - `P314`: the units' params contradict each other (the default);
    - `P111`: a file the transport section names (a password file, a TLS certificate) does
      not exist where the workers read it.

    The codes and their meanings are listed in docs/pipeline-files.md.
    """


#: What `register_transports` receives: call it once per transport.
RegisterTransport = Callable[["TransportDescriptor | Mapping[str, Any]"], None]


@hookspec
def register_transports(register: RegisterTransport) -> None:
    """Register the transports this plugin provides (`transport: {<name>: {...}}`).

    Call ``register(TransportDescriptor(name=..., summary=..., config=ConfigModel,
    runtime="pkg.module:open_transport"))`` once per transport. The config model is the section's
    schema in validation and in the editor; the runtime, imported only when a pipeline opens the
    transport, is a callable taking the resolved options and returning a `Transport` (from the
    transport authors' door, `asapo_pipelines.sdk.transports`) that passes the transport contract
    suite shipped with the core, `asapo_pipelines.testing.transport_contract`: import its cases
    into a test module of your plugin and give them a ``backend`` fixture that opens your
    transport with ``open_transport({<name>: {...}})``, from the same door (the suite needs
    pytest: ``pip install pytest``, or the core's ``test`` extra). docs/transports.md, "Adding a
    transport", lists the methods to implement and what the suite checks.

    The options are the config model's ``open_options(base_dir)`` when it defines one (relative
    paths made absolute against the pipeline file's folder), else its
    ``model_dump(mode="json", exclude_none=True)``; workers receive the same dict. A name the
    core already registers (``embedded``, ``asapo``) stays the core's.
    """


#: What `register_executors` receives: call it once per executor.
RegisterExecutor = Callable[["ExecutorDescriptor | Mapping[str, Any]"], None]


@hookspec
def register_executors(register: RegisterExecutor) -> None:
    """Register the executors this plugin provides (`deploy: {<name>: {...}}`).

    Call ``register(ExecutorDescriptor(name=..., summary=..., config=ConfigModel,
    runtime="pkg.module:MyExecutor"))``; the runtime is a subclass of `Executor` (from
    `asapo_pipelines.sdk`), through which `pipeline plan/deploy/start/stop/status/logs`
    dispatch when the file's ``deploy:`` section names the executor (or the command is given
    ``--executor NAME``). `status` shows the executor's view of the tasks beside the
    counters the workers published on the transport. What each command prints has a generic
    default an executor may override (``show_status``, ``print_logs``, ``show_stop``,
    ``show_submitted``, ``show_plan``); command options beyond the interface's own (such as
    ``--run-dir``) reach it in ``self.given`` when it names them in ``options``, and any other
    is refused in one sentence. A failure the user can fix is a `PipelinesError` with one
    sentence; any other exception of the runtime ends the command with one sentence naming the
    executor, its plugin and what it was doing (exit 1). The runtime imports what it builds on
    from the executor authors' door, `asapo_pipelines.sdk.executors` (the interface, the
    delivered pipeline file, the job type, the workers' Python and its install script, the
    restart policy and tracker, the workers' environment variables), as the Slurm plugin does.
    docs/executors.md, "Adding an executor", describes each method, the state words that end a
    run, and a complete example.
    """


#: What `register_formats` receives: call it once per payload format.
RegisterFormat = Callable[["FormatDescriptor | Mapping[str, Any]"], None]


@hookspec
def register_formats(register: RegisterFormat) -> None:
    """Register payload formats (the ``format`` of a unit's port: ``json``, ``bytes``, ...).

    Call ``register(FormatDescriptor(name=..., summary=..., runtime="pkg.module:NPY"))`` once
    per format. The runtime (an object, or a class made once per process) follows
    `asapo_pipelines.sdk.PayloadFormat`: ``encode(value)`` returns the bytes, or the bytes and
    JSON-ready metadata the decoder needs; ``decode(payload, metadata)`` returns the value. It is
    imported when a unit first encodes or decodes a message of the format. A unit whose port
    names a format no installed plugin registers is not loaded (its plugin is reported broken).
    The core's ``json``, ``json_arrays``, ``bytes`` and ``seedee`` are registered the same way.
    """


#: What `register_commands` receives: call it once per command.
RegisterCommand = Callable[["CommandDescriptor | Mapping[str, Any]"], None]


@hookspec
def register_commands(register: RegisterCommand) -> None:
    """Register commands of the ``pipeline`` command line (`pipeline <name> ...`).

    Call ``register(CommandDescriptor(name="acme-hello", summary=..., runtime=
    "acme.cli:hello"))`` once per command. The runtime is a `click.Command`, imported only when
    the command runs or its own ``--help`` is asked for: ``pipeline --help`` lists the name and
    summary from the catalog's listing without importing any plugin, and the core's own
    commands (``validate``, ``status``...) never load plugins. A command named like one of the
    core's (``validate``, ``run``...) is not loaded, and `pipeline plugins` says why. The core's
    ``run``, ``reprocess`` and ``view`` are registered through this hook by its default plugin,
    like a third party's.
    """
