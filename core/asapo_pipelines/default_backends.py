"""The core's own transports, registered through the same hook as a third-party backend's.

Like datasette's default plugins: nothing in the core knows the embedded store or ASAP::O by
name except this registration; `open_transport`, validation of the `transport:` section and the
editor schema all go through the catalog. The config models are the sections' schemas; the
runtimes (`asapo_pipelines.transport:open_embedded` ...) are imported only when a pipeline opens
its transport, so listing the catalog imports neither SQLite's store nor the asapo wheels.
"""

from __future__ import annotations

from asapo_pipelines.descriptor import TransportDescriptor
from asapo_pipelines.hookspecs import RegisterTransport, hookimpl
from asapo_pipelines.pipeline.model import AsapoTransport, EmbeddedTransport

EMBEDDED = TransportDescriptor(
    name="embedded",
    summary="The on-disk store of one machine (SQLite and files); the default.",
    description="Needs no service: the store is a directory, by default `.pipeline-data` next "
    "to the pipeline file. For `pipeline run` on one machine, tests and first pipelines.",
    config=EmbeddedTransport,
    runtime="asapo_pipelines.transport:open_embedded",
)

ASAPO = TransportDescriptor(
    name="asapo",
    summary="A facility's ASAP::O (needs the asapo client wheels, extra `asapo`).",
    description="Streams live in a beamtime's data sources; the token is read from a file or "
    "an environment variable, never written in the pipeline file.",
    config=AsapoTransport,
    runtime="asapo_pipelines.transport:open_asapo",
)

#: the default transports, in the order of their branches (the first one is the default)
TRANSPORTS = {d.name: d for d in (EMBEDDED, ASAPO)}


@hookimpl
def register_transports(register: RegisterTransport) -> None:
    for descriptor in TRANSPORTS.values():
        register(descriptor)
