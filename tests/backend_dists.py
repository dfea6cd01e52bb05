"""Throwaway plugin distributions that add backends: `acme-backends` adds a transport and an
executor and a command, `acme-badbus` registers broken transports and commands, `acme-thief`
claims the core's `embedded` transport and its `run` and `validate` commands."""

from __future__ import annotations

from asapo_pipelines.testing.distributions import PluginProject

#: A transport that keeps the embedded store in its own `directory`: the runtime wraps the
#: embedded transport, and leaves a mark (the options it was opened with, and the process) in
#: the file named by RELAY_MARK, so a test sees that workers opened it through the plugin.
RELAY_PLUGIN = """
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from asapo_pipelines.sdk import CommandDescriptor, hookimpl
from asapo_pipelines.descriptor import ExecutorDescriptor, TransportDescriptor


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


class SubprocConfig(BaseModel):
    \"\"\"Workers as subprocesses of no scheduler at all.\"\"\"

    model_config = ConfigDict(extra="forbid")

    state_dir: Annotated[
        str, Field(min_length=1, description="Pids and logs, relative to the pipeline file.")
    ] = ".subproc"
    linger: Annotated[float, Field(ge=0, description="Workers' --linger.")] = 0.5


@hookimpl
def register_executors(register):
    register(ExecutorDescriptor(
        name="subproc",
        summary="Runs each unit replica as a `pipeline worker` subprocess (a test executor).",
        config=SubprocConfig,
        runtime="acme_backends.subproc:SubprocExecutor",
    ))


@hookimpl
def register_commands(register):
    register(CommandDescriptor(
        name="acme-hello",
        summary="Say hello (a plugin's command).",
        runtime="acme_backends.cli:hello",
    ))
"""

#: The command's runtime: imported only when `pipeline acme-hello` runs (it leaves a mark in
#: the file named by HELLO_MARK when imported, so a test sees that `--help` did not import it).
COMMAND_RUNTIME = """
import os

import click

if os.environ.get("HELLO_MARK"):
    with open(os.environ["HELLO_MARK"], "a") as f:
        f.write("imported\\n")


@click.command("acme-hello")
@click.argument("who", default="beamline")
def hello(who):
    \"\"\"Say hello (a plugin's command).\"\"\"
    click.echo(f"hello {who} from acme-backends")
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

#: The executor's runtime: `pipeline worker` per unit replica, in its own session, its output in
#: a log file; pids in a state file, so status, logs and stop work from another command.
SUBPROC_RUNTIME = """
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from asapo_pipelines.executor import Executor, ExecutorStatus, InstanceStatus

from acme_backends.plugin import SubprocConfig


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class SubprocExecutor(Executor):
    name = "subproc"

    @property
    def settings(self):
        return self.config or SubprocConfig()

    def _dir(self):
        d = Path(self.settings.state_dir)
        return d if d.is_absolute() else self.file.resolve().parent / d

    def _tasks(self):
        for instance, unit in self.pipeline.units.items():
            for replica in range(unit.replicas):
                yield instance, replica, [
                    sys.executable, "-m", "asapo_pipelines", "worker", str(self.file.resolve()),
                    instance, "--replica", str(replica), "--linger", str(self.settings.linger),
                    "--status-interval", "0.2",
                ]

    def _state(self):
        try:
            return json.loads((self._dir() / "state.json").read_text())
        except FileNotFoundError:
            return {"tasks": []}

    def plan(self):
        return {"tasks": [{"unit": u, "replica": r, "argv": a} for u, r, a in self._tasks()]}

    def deploy(self, *, wait):
        d = self._dir()
        d.mkdir(parents=True, exist_ok=True)
        tasks = []
        for unit, replica, argv in self._tasks():
            with open(d / f"{unit}-{replica}.log", "ab") as log:
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            tasks.append({"unit": unit, "replica": replica, "pid": proc.pid})
        (d / "state.json").write_text(json.dumps({"tasks": tasks}))
        return {"status": "started", "message": f"{len(tasks)} workers started", "tasks": tasks}

    def start(self, *, wait):
        return self.deploy(wait=wait)

    def stop(self, *, purge=False):
        tasks = [t for t in self._state()["tasks"] if _alive(t["pid"])]
        for t in tasks:
            os.killpg(t["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 20
        while any(_alive(t["pid"]) for t in tasks) and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"status": "stopped", "message": f"{len(tasks)} running workers stopped"}

    def status(self):
        instances = [
            InstanceStatus(unit=t["unit"], replica=t["replica"],
                           state="running" if _alive(t["pid"]) else "exited",
                           task_id=str(t["pid"]))
            for t in self._state()["tasks"]
        ]
        running = any(i.state == "running" for i in instances)
        state = "running" if running else ("complete" if instances else "not started")
        return ExecutorStatus(executor=self.name, deployment=self.pipeline.name, state=state,
                              instances=instances)

    def logs(self, unit, *, replica=None, follow=False, stderr=False):
        path = self._dir() / f"{unit}-{replica or 0}.log"
        yield from path.read_text().splitlines()
"""

BROKEN_TRANSPORTS = """
from asapo_pipelines.sdk import hookimpl, UnitDescriptor


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


@hookimpl
def register_commands(register):
    register({"name": "Bad Command", "summary": "Bad name.", "runtime": "acme_badbus.cli:x"})
    register({"name": "badbus-ping", "summary": "A command whose module is missing.",
              "runtime": "acme_badbus.cli:ping"})
    register({"name": "badbus-exit", "summary": "A command whose module exits on import.",
              "runtime": "acme_badbus.exits:command"})
"""

EXITS_ON_IMPORT = """
import sys

sys.exit(3)
"""

CLAIMS_EMBEDDED = """
from asapo_pipelines.sdk import hookimpl


@hookimpl
def register_transports(register):
    register({"name": "embedded", "summary": "Someone else's embedded.",
              "runtime": "acme_thief.rt:open"})


@hookimpl
def register_commands(register):
    register({"name": "run", "summary": "Someone else's run.", "runtime": "acme_thief.rt:run"})
    register({"name": "validate", "summary": "Someone else's validate.",
              "runtime": "acme_thief.rt:validate"})
"""


def backend_projects() -> list[PluginProject]:
    return [
        PluginProject(
            "acme-backends",
            "0.4.0",
            {
                "plugin.py": RELAY_PLUGIN,
                "relay.py": RELAY_RUNTIME,
                "subproc.py": SUBPROC_RUNTIME,
                "cli.py": COMMAND_RUNTIME,
            },
            {"acme-backends": "acme_backends.plugin"},
        ),
        PluginProject(
            "acme-badbus",
            "0.1.0",
            {"plugin.py": BROKEN_TRANSPORTS, "exits.py": EXITS_ON_IMPORT},
            {"acme-badbus": "acme_badbus.plugin"},
        ),
        PluginProject(
            "acme-thief",
            "0.1.0",
            {"plugin.py": CLAIMS_EMBEDDED},
            {"acme-thief": "acme_thief.plugin"},
        ),
    ]


# -- facility-filebus: a transport plugin as an outside author writes it from the docs ------------
#: `fail` picks how the runtime misbehaves, so one installed plugin shows each failure: its
#: opener raising (`open`) or raising a transport error of its own (`unavailable`), a consumer
#: class missing an abstract method (`abstract`), `consumer()` raising (`consumer`). The runtime
#: leaves the options it was opened with in the file named by FILEBUS_MARK.
FILEBUS_PLUGIN = """
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from asapo_pipelines.sdk import TransportDescriptor, hookimpl


class FilebusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    directory: Annotated[str, Field(min_length=1, description="Where the bus keeps messages.")]
    poll: Annotated[float, Field(gt=0, le=60, description="Seconds between polls.")] = 0.5
    fail: Literal["none", "open", "unavailable", "abstract", "consumer"] = "none"

    def open_options(self, base_dir):
        path = Path(self.directory)
        if not path.is_absolute():
            path = Path(base_dir) / path
        return {"path": str(path.resolve()), "poll": self.poll, "fail": self.fail}


@hookimpl
def register_transports(register):
    register(TransportDescriptor(
        name="filebus",
        summary="A facility's file bus (a test transport).",
        config=FilebusConfig,
        runtime="facility_filebus.bus:open_filebus",
    ))
"""

FILEBUS_RUNTIME = """
import json
import os

from asapo_pipelines.sdk.transports import Consumer, Transport, Unavailable
from asapo_pipelines.transport import open_transport


class HalfConsumer(Consumer):
    \"\"\"Forgot most of the interface: instantiating it raises TypeError.\"\"\"

    def close(self):
        pass


class Filebus(Transport):
    kind = "filebus"

    def __init__(self, inner, fail):
        self.inner, self.fail = inner, fail

    def producer(self, data_source):
        return self.inner.producer(data_source)

    def consumer(self, data_source, group, *, lease_seconds=30.0):
        if self.fail == "abstract":
            return HalfConsumer()
        if self.fail == "consumer":
            raise RuntimeError("the bus lost its subscription")
        return self.inner.consumer(data_source, group, lease_seconds=lease_seconds)

    def data_sources(self):
        return self.inner.data_sources()

    def close(self):
        self.inner.close()


def open_filebus(options):
    mark = os.environ.get("FILEBUS_MARK")
    if mark:
        with open(mark, "a") as f:
            f.write(json.dumps(options) + "\\n")
    if options.get("fail") == "open":
        raise RuntimeError("the bus daemon is not running")
    if options.get("fail") == "unavailable":
        raise Unavailable("the bus daemon at /run/filebus.sock did not answer; start it")
    return Filebus(open_transport({"embedded": {"path": options["path"]}}), options.get("fail"))
"""

#: the transport registered broken, as a plugin author gets it wrong: `{config}` is the config
#: model's body, `{runtime}` its runtime string
_BROKEN_FILEBUS = """
from pydantic import BaseModel, ConfigDict

from asapo_pipelines.sdk import TransportDescriptor, hookimpl


class FilebusConfig(BaseModel):
{config}
    directory: str


@hookimpl
def register_transports(register):
    register(TransportDescriptor(
        name="filebus",
        summary="A facility's file bus (a test transport).",
        config=FilebusConfig,
        runtime="{runtime}",
    ))
"""
#: its config model accepts unknown keys
FILEBUS_LOOSE = _BROKEN_FILEBUS.format(config="", runtime="facility_filebus_loose.bus:open_filebus")
#: its runtime string lacks the `:` before the callable
FILEBUS_NO_COLON = _BROKEN_FILEBUS.format(
    config='    model_config = ConfigDict(extra="forbid")\n',
    runtime="facility_filebus_typo.bus.open_filebus",
)

#: config models that pass the descriptor's checks but are broken in a way only building the
#: model tells: a field without a JSON Schema (a callable), a default its own rules refuse
HOOKBUS_PLUGIN = """
from collections.abc import Callable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from asapo_pipelines.sdk import ExecutorDescriptor, TransportDescriptor, hookimpl


class HookbusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    directory: str = "bus"
    hook: Callable[[str], None] | None = None


class HookexecConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on_start: Callable[[], None] | None = None


class ZerobusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    directory: str = "bus"
    poll: Annotated[float, Field(gt=0)] = 0


class ZeroexecConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace: Annotated[float, Field(gt=0)] = 0


@hookimpl
def register_transports(register):
    register(TransportDescriptor(name="hookbus", summary="A bus with a callback.",
                                 config=HookbusConfig, runtime="facility_hookbus.rt:open"))
    register(TransportDescriptor(name="zerobus", summary="A bus polling every 0 s.",
                                 config=ZerobusConfig, runtime="facility_hookbus.rt:open"))


@hookimpl
def register_executors(register):
    register(ExecutorDescriptor(name="hookexec", summary="An executor with a callback.",
                                config=HookexecConfig, runtime="facility_hookbus.rt:Executor"))
    register(ExecutorDescriptor(name="zeroexec", summary="An executor waiting 0 s.",
                                config=ZeroexecConfig, runtime="facility_hookbus.rt:Executor"))
"""


def filebus_projects() -> list[PluginProject]:
    """facility-filebus, and broken plugins (each selected alone with ASAPO_PIPELINES_PLUGINS):
    facility-filebus-loose registers `filebus` with a config model that accepts unknown keys,
    facility-filebus-typo with a runtime lacking its `:`; facility-hookbus has config models
    that only building them shows broken."""
    return [
        PluginProject(
            "facility-filebus",
            "0.1.0",
            {"plugin.py": FILEBUS_PLUGIN, "bus.py": FILEBUS_RUNTIME},
            {"facility-filebus": "facility_filebus.plugin"},
        ),
        PluginProject(
            "facility-filebus-loose",
            "0.1.0",
            {"plugin.py": FILEBUS_LOOSE},
            {"facility-filebus-loose": "facility_filebus_loose.plugin"},
        ),
        PluginProject(
            "facility-filebus-typo",
            "0.1.0",
            {"plugin.py": FILEBUS_NO_COLON},
            {"facility-filebus-typo": "facility_filebus_typo.plugin"},
        ),
        PluginProject(
            "facility-hookbus",
            "0.2.0",
            # the runtime module exists (validate checks that, P207); it is never run here
            {"plugin.py": HOOKBUS_PLUGIN, "rt.py": "open = Executor = None\n"},
            {"facility-hookbus": "facility_hookbus.plugin"},
        ),
    ]


#: An executor plugin as an outside author writes it from docs/nomad.md, whose runtime fails
#: where its section says (`fail:`): with a scheduler client's own exception, or, as `refused`,
#: with the one-sentence error the docs ask for. Its `logs` fails while its lines are read.
BATCH_PLUGIN = """
from typing import Literal

from pydantic import BaseModel, ConfigDict

from asapo_pipelines.sdk import ExecutorDescriptor, hookimpl


class BatchConfig(BaseModel):
    \"\"\"Where the batch jobs go.\"\"\"

    model_config = ConfigDict(extra="forbid")

    fail: Literal["none", "deploy", "start", "stop", "status", "logs", "refused"] = "none"


@hookimpl
def register_executors(register):
    register(ExecutorDescriptor(name="batchexec", summary="Jobs on the facility batch system.",
                                config=BatchConfig, runtime="facility_batch.runtime:Batch"))
"""

BATCH_RUNTIME = """
from asapo_pipelines.sdk import PipelinesError
from asapo_pipelines.sdk.executors import Executor, ExecutorStatus

DAEMON = "the batch system daemon is not running"


class Batch(Executor):
    def _client(self, doing):
        fail = self.config.fail if self.config is not None else "none"
        if fail == "refused":
            raise PipelinesError("the batch queue takes no jobs until 18:00; deploy then")
        if fail == doing:
            raise RuntimeError(DAEMON)

    def plan(self):
        return {"units": list(self.pipeline.units)}

    def deploy(self, *, wait):
        self._client("deploy")
        return {"status": "queued"}

    def start(self, *, wait):
        self._client("start")
        return {"status": "queued"}

    def stop(self, *, purge=False):
        self._client("stop")
        return {"status": "stopped"}

    def status(self):
        self._client("status")
        return ExecutorStatus(executor=self.name, deployment=self.pipeline.name, state="queued")

    def logs(self, unit, *, replica=None, follow=False, stderr=False):
        yield f"{unit}: first line"
        self._client("logs")
        yield f"{unit}: last line"
"""

#: executors that list fine but cannot be used: a runtime module that is not there, a class
#: that sets another name than its descriptor's
BATCH_BROKEN_PLUGIN = """
from asapo_pipelines.sdk import ExecutorDescriptor, hookimpl

from facility_batch.plugin import BatchConfig


@hookimpl
def register_executors(register):
    register(ExecutorDescriptor(name="nowhere", summary="Its runtime module is not there.",
                                config=BatchConfig, runtime="facility_batch_broken.gone:Batch"))
    register(ExecutorDescriptor(name="misnamed", summary="Its class reads another name.",
                                config=BatchConfig, runtime="facility_batch_broken.rt:Misnamed"))
"""

BATCH_MISNAMED = """
from facility_batch.runtime import Batch


class Misnamed(Batch):
    name = "batch"
"""


def batch_projects() -> list[PluginProject]:
    """facility-batch (an executor whose runtime fails as its section says), and
    facility-batch-broken (executors only their runtimes show broken)."""
    return [
        PluginProject(
            "facility-batch",
            "0.1.0",
            {"plugin.py": BATCH_PLUGIN, "runtime.py": BATCH_RUNTIME},
            {"facility-batch": "facility_batch.plugin"},
        ),
        PluginProject(
            "facility-batch-broken",
            "0.1.0",
            {"plugin.py": BATCH_BROKEN_PLUGIN, "rt.py": BATCH_MISNAMED},
            {"facility-batch-broken": "facility_batch_broken.plugin"},
        ),
    ]
