"""The workers' Python: which `pipeline` a job runs, and how a fresh environment is installed.

The section it is read from (`python:` under `deploy.nomad`, `deploy.slurm`...) is the same for
every executor (`asapo_pipelines.pipeline.model.PythonEnvConfig`); what differs is only where an
executor puts the environment and how it runs `INSTALL_SCRIPT` before the worker.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from asapo_pipelines import CORE_DISTRIBUTION, __version__
from asapo_pipelines.launchplan.errors import LaunchPlanError

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.descriptor import (
        ExecutorDescriptor,
        FormatDescriptor,
        TransportDescriptor,
        UnitDescriptor,
    )
    from asapo_pipelines.pipeline.model import Pipeline, PythonEnvConfig


@dataclass(frozen=True)
class ExistingEnv:
    """A Python environment already present on every node (a shared filesystem)."""

    path: str


@dataclass(frozen=True)
class CommandOnPath:
    """`pipeline` is on the PATH of the node or of the container image."""


@dataclass(frozen=True)
class Wheel:
    """A wheel and its sha256: a URL (`https://`, `s3::`...) the executor downloads and checks,
    or an absolute path on the nodes' shared filesystem the install script checks."""

    url: str
    sha256: str

    @property
    def on_node(self) -> bool:
        return self.url.startswith("/")


@dataclass(frozen=True)
class InstallEnv:
    """A venv created before the worker starts, with pinned distributions installed from an
    index and/or from wheels whose sha256 is checked before use."""

    requirements: tuple[str, ...]
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    wheels: tuple[Wheel, ...] = ()
    python: str = "python3"

    def pip_sources(self) -> list[str]:
        """pip's arguments after any executor-specific ones: the folders of the wheels on the
        node as --find-links, the index (with wheels and no index: only the checked wheels may
        come in), the extra indexes, then the requirements."""
        args: list[str] = []
        for directory in sorted({w.url.rsplit("/", 1)[0] or "/" for w in self.wheels if w.on_node}):
            args += ["--find-links", directory]
        if self.index_url:
            args += ["--index-url", self.index_url]
        elif self.wheels:
            args += ["--no-index"]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        return [*args, *self.requirements]


PythonEnv = ExistingEnv | CommandOnPath | InstallEnv

#: Run before the worker as `python -c INSTALL_SCRIPT <venv> <checks> <pip args...>`, where
#: <checks> is a JSON list of [wheel path, sha256] on the node: argv only, no shell; a wheel
#: that does not match its sha256 stops the install; idempotent (a restarted install reuses the
#: venv and pip skips what is installed).
INSTALL_SCRIPT = (
    "import hashlib,json,os,subprocess,sys,venv\n"
    "target=sys.argv[1]\n"
    "for path,digest in json.loads(sys.argv[2]):\n"
    "    try:\n"
    "        with open(path,'rb') as f: got=hashlib.sha256(f.read()).hexdigest()\n"
    "    except OSError as e: sys.exit(f'cannot read wheel {path}: {e.strerror}')\n"
    "    if got!=digest: sys.exit(f'wheel {path} has sha256 {got}, not {digest}; not installing')\n"
    "if not os.path.exists(os.path.join(target,'bin','python')):\n"
    "    venv.EnvBuilder(with_pip=True,clear=True).create(target)\n"
    "sys.exit(subprocess.call([os.path.join(target,'bin','python'),'-m','pip','install',"
    "*sys.argv[3:]]))\n"
)


def python_env(python: PythonEnvConfig | None, pins: tuple[str, ...], section: str) -> PythonEnv:
    """The workers' Python from an executor's `python:` section, written at `section` (e.g.
    `deploy.nomad.python`, for the error): the command on the nodes' PATH when there is none."""
    if python is None or (python.venv is None and python.install is None):
        return CommandOnPath()
    if python.venv:
        return ExistingEnv(path=python.venv)
    install = python.install
    if install is None:
        raise LaunchPlanError(f"{section} takes either venv: PATH or install: {{...}}")
    return InstallEnv(
        requirements=_requirements(pins, install.packages),
        index_url=install.index_url,
        extra_index_urls=tuple(install.extra_index_urls),
        wheels=tuple(_wheel(w) for w in install.wheels),
        python=install.python,
    )


def _requirements(pins: tuple[str, ...], packages: list[str]) -> tuple[str, ...]:
    """The catalog's pins plus the file's packages; a package may repeat a pin, never change
    it (nodes must run the versions this catalog validated)."""
    requirements = dict((_canonical(pin), pin) for pin in pins)
    for package in packages:
        name = _canonical(package)
        if name in requirements and requirements[name] != package:
            raise LaunchPlanError(
                f"python.install.packages asks for {package} but the pipeline's units need "
                f"{requirements[name]} (the installed catalog's version)"
            )
        requirements[name] = package
    return tuple(requirements.values())


def _canonical(requirement: str) -> str:
    name = re.split(r"[\[=<>!~ ;]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel(item: str | dict[str, str]) -> Wheel:
    """A wheel from the file: `URL#sha256=<hex>` (pip's hash fragment), `{url, sha256}`, or an
    absolute path on the nodes, whose sha256 is taken now when the file is readable here."""
    if isinstance(item, dict):
        return Wheel(url=item["url"], sha256=item["sha256"].lower())
    text = str(item)
    url, _, digest = text.partition("#sha256=")
    if not digest and url.startswith("/") and Path(url).is_file():
        digest = hashlib.sha256(Path(url).read_bytes()).hexdigest()
    if not digest:
        raise LaunchPlanError(
            f"wheel {text!r} needs its checksum: write it as {url}#sha256=<hex> so that nodes "
            "install exactly that file"
        )
    return Wheel(url=url, sha256=digest.lower())


def pinned_distributions(
    pipeline: Pipeline, catalog: Catalog, executor: str | None = None
) -> tuple[str, ...]:
    """The core and every distribution the pipeline uses, at the catalog's versions: those
    providing its units, its transport (a plugin's, such as redis: the workers open it), the
    payload formats its ports and streams name, and `executor` (whose job scripts may call it)."""
    pins = {CORE_DISTRIBUTION: __version__}
    descriptors: list[
        UnitDescriptor | TransportDescriptor | FormatDescriptor | ExecutorDescriptor | None
    ] = []
    formats = {s.format for s in pipeline.streams.values() if s.format}
    for instance in pipeline.units:
        descriptor = pipeline.descriptor(instance, catalog)
        descriptors.append(descriptor)
        formats.update(port.format for port in (*descriptor.inputs, *descriptor.outputs))
    descriptors.append(catalog.transports.get(pipeline.transport.kind))
    descriptors += [catalog.formats.get(name) for name in sorted(formats)]
    if executor is not None:
        descriptors.append(catalog.executors.get(executor))
    for found in descriptors:
        if found is not None and found.distribution and found.version:
            pins.setdefault(found.distribution, found.version)
    return tuple(f"{name}=={version}" for name, version in sorted(pins.items()))
