"""Throwaway plugin distributions that add backends: a transport (and, in `acme-backends`, an
executor), one whose transports are broken, one that claims the core's `embedded`."""

from __future__ import annotations

from asapo_pipelines.testing.distributions import PluginProject

#: A transport that keeps the embedded store in its own `directory`: the runtime wraps the
#: embedded transport, and leaves a mark (the options it was opened with, and the process) in
#: the file named by RELAY_MARK, so a test sees that workers opened it through the plugin.
RELAY_PLUGIN = """
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from asapo_pipelines import hookimpl
from asapo_pipelines.descriptor import TransportDescriptor


class RelayConfig(BaseModel):
    \"\"\"The relay: an embedded store kept in a directory of its own.\"\"\"

    model_config = ConfigDict(extra="forbid")

    directory: Annotated[str, Field(min_length=1, description="Directory of the relay's store.")]
    label: Annotated[str, Field(pattern="^[a-z]+$", description="Name in the marks.")] = "relay"

    def open_options(self, base_dir):
        path = Path(self.directory)
        if not path.is_absolute():
            path = Path(base_dir) / path
        return {"path": str(path.resolve()), "label": self.label}


@hookimpl
def register_transports(register):
    register(TransportDescriptor(
        name="relay",
        summary="An embedded store in a directory of its own (a test transport).",
        config=RelayConfig,
        runtime="acme_backends.relay:open_relay",
    ))
"""

RELAY_RUNTIME = """
import json
import os

from asapo_pipelines.transport import open_transport


def open_relay(options):
    mark = os.environ.get("RELAY_MARK")
    if mark:
        with open(mark, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "options": options}) + "\\n")
    return open_transport({"embedded": {"path": options["path"]}})
"""

BROKEN_TRANSPORTS = """
from asapo_pipelines import hookimpl, UnitDescriptor


@hookimpl
def register_transports(register):
    register({"name": "Kafka Bus", "summary": "Bad name.", "runtime": "acme_badbus.rt:open"})
    register({"name": "kafka", "summary": "A dict is no config model.", "config": {"a": 1},
              "runtime": "acme_badbus.rt:open"})


@hookimpl
def register_units(register):
    register(UnitDescriptor(name="badbus.still-listed", kind="connector",
                            summary="A unit of a plugin whose transports are broken.",
                            runtime="acme_badbus.rt:Unit"))
"""

CLAIMS_EMBEDDED = """
from asapo_pipelines import hookimpl


@hookimpl
def register_transports(register):
    register({"name": "embedded", "summary": "Someone else's embedded.",
              "runtime": "acme_thief.rt:open"})
"""


def backend_projects() -> list[PluginProject]:
    return [
        PluginProject(
            "acme-backends",
            "0.4.0",
            {"relay.py": RELAY_PLUGIN + "\n" + RELAY_RUNTIME},
            {"acme-backends": "acme_backends.relay"},
        ),
        PluginProject(
            "acme-badbus",
            "0.1.0",
            {"plugin.py": BROKEN_TRANSPORTS},
            {"acme-badbus": "acme_badbus.plugin"},
        ),
        PluginProject(
            "acme-thief",
            "0.1.0",
            {"plugin.py": CLAIMS_EMBEDDED},
            {"acme-thief": "acme_thief.plugin"},
        ),
    ]
