"""The core's own transports, executors, payload formats and commands, registered through the
same hooks as a third-party backend's.

Like datasette's default plugins: nothing in the core knows the embedded store or ASAP::O by
name except this registration; `open_transport`, validation of the `transport:` section and the
editor schema all go through the catalog. The config models are the sections' schemas; the
runtimes (`asapo_pipelines.transport.embedded:open_embedded` ...) are imported only when a
pipeline opens its transport, so listing the catalog imports neither SQLite's store nor the
asapo wheels.
"""

from __future__ import annotations

from typing import Any

from asapo_pipelines.descriptor import (
    CommandDescriptor,
    ExecutorDescriptor,
    FormatDescriptor,
    TransportDescriptor,
)
from asapo_pipelines.hookspecs import (
    RegisterCommand,
    RegisterExecutor,
    RegisterFormat,
    RegisterTransport,
    ReportFinding,
    hookimpl,
)
from asapo_pipelines.pipeline import DEFAULT_DATA_DIR
from asapo_pipelines.pipeline.model import (
    AsapoTransportConfig,
    EmbeddedTransportConfig,
    LocalConfig,
    NomadConfig,
)

EMBEDDED = TransportDescriptor(
    name="embedded",
    summary="The on-disk store of one machine (SQLite and files); the default.",
    description=f"Needs no service: the store is a directory, by default `{DEFAULT_DATA_DIR}` next "
    "to the pipeline file. For `pipeline run` on one machine, tests and first pipelines.",
    config=EmbeddedTransportConfig,
    runtime="asapo_pipelines.transport.embedded:open_embedded",
)

ASAPO = TransportDescriptor(
    name="asapo",
    summary="A facility's ASAP::O (needs the asapo client wheels, extra `asapo`).",
    description="Streams live in a beamtime's data sources; the token is read from a file or "
    "an environment variable, never written in the pipeline file.",
    config=AsapoTransportConfig,
    runtime="asapo_pipelines.transport.asapo:open_asapo",
    # what `transport.asapo._load_libs` imports when the transport opens
    requires=("asapo_consumer", "asapo_producer"),
    install="pip install -e '.[asapo]' in the asapo-pipelines checkout",
)

#: the default transports, in the order of their branches (the first one is the default)
TRANSPORTS = {d.name: d for d in (EMBEDDED, ASAPO)}


@hookimpl
def register_transports(register: RegisterTransport) -> None:
    for descriptor in TRANSPORTS.values():
        register(descriptor)


@hookimpl
def check_online(pipeline: Any, catalog: Any, report: ReportFinding) -> None:
    """`validate --online`, and `run` and `deploy` before they start anything, of a file on
    ASAP::O: whether the service takes the file's token for its beamtime. Its broker passes the
    authorizer's refusal on as "service unavailable", which sent an operator to the network
    instead of the token: refused is P501 at the token's option, not asked P502 at
    `endpoint`."""
    if pipeline.transport.kind != "asapo":
        return
    from asapo_pipelines.import_strings import import_runtime
    from asapo_pipelines.transport.errors import CredentialsError, TransportError

    options = dict(pipeline.transport.spec()["asapo"])
    token = next((k for k in ("token_file", "token_env") if options.get(k)), None)
    try:
        with import_runtime(ASAPO.runtime)(options) as transport:
            transport.data_sources()  # a read every token for the beamtime may make
    except CredentialsError as exc:
        report(("transport", "asapo", *([token] if token else [])), "P501", exc.message)
    except TransportError as exc:
        report(("transport", "asapo", "endpoint"), "P502", exc.message)


# -- executors ---------------------------------------------------------------------------------
LOCAL = ExecutorDescriptor(
    name="local",
    summary="Runs the pipeline's units as processes on this machine (`pipeline run`).",
    description="A supervisor runs the compiled job's tasks as subprocesses, restarting them "
    "as Nomad would; `pipeline deploy` with `deploy: {local: {}}` starts it in the background.",
    config=LocalConfig,
    runtime="asapo_pipelines.local.pipeline_executor:LocalPipelineExecutor",
)

NOMAD = ExecutorDescriptor(
    name="nomad",
    summary="Submits the pipeline as one Nomad job (one task group per unit).",
    description="Connection settings come from NOMAD_ADDR, NOMAD_TOKEN and the other NOMAD_* "
    "variables; `deploy.nomad` gives datacenters, namespace, driver and the tasks' Python.",
    config=NomadConfig,
    runtime="asapo_pipelines.nomad.executor:NomadExecutor",
)

EXECUTORS = {d.name: d for d in (LOCAL, NOMAD)}


@hookimpl
def register_executors(register: RegisterExecutor) -> None:
    for descriptor in EXECUTORS.values():
        register(descriptor)


# -- payload formats ---------------------------------------------------------------------------
#: the core's formats; their runtimes are known without a catalog too (`transport.formats`)
FORMATS = {
    d.name: d
    for d in (
        FormatDescriptor(
            name="json",
            summary="JSON text; numpy numbers and arrays are written as numbers and lists.",
            runtime="asapo_pipelines.transport.formats:JSON",
        ),
        FormatDescriptor(
            name="json_arrays",
            summary=(
                "JSON whose long lists of numbers and numpy arrays travel as packed binary; "
                "decodes to the value json gives."
            ),
            runtime="asapo_pipelines.transport.formats:JSON_ARRAYS",
        ),
        FormatDescriptor(
            name="bytes",
            summary="Raw bytes, as the unit gave them.",
            runtime="asapo_pipelines.transport.formats:BYTES",
        ),
        FormatDescriptor(
            name="seedee",
            summary="numpy arrays in DESY's seedee format (needs numpy and seedee).",
            runtime="asapo_pipelines.transport.formats:SEEDEE",
        ),
    )
}


@hookimpl
def register_formats(register: RegisterFormat) -> None:
    for descriptor in FORMATS.values():
        register(descriptor)


# -- commands ----------------------------------------------------------------------------------
#: the local executor's and the viewer's commands: the CLI shell does not know them by name
COMMANDS = {
    d.name: d
    for d in (
        CommandDescriptor(
            name="run",
            summary="Run FILE's pipeline on this machine until it ends (batch) or Ctrl-C.",
            runtime="asapo_pipelines.local.commands:run",
        ),
        CommandDescriptor(
            name="reprocess",
            summary="Replay RUN's source messages, as stored, through FILE's current "
            "configuration as a new run, and compare old with new.",
            runtime="asapo_pipelines.local.commands:reprocess",
        ),
        CommandDescriptor(
            name="view",
            summary="Serve a live web page of a running pipeline: graph, rates, streams, plots, "
            "errors.",
            runtime="asapo_pipelines.viewer.command:view",
        ),
    )
}


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    for descriptor in COMMANDS.values():
        register(descriptor)
