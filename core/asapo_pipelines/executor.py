"""The executor interface: where a pipeline's units run as tasks.

`pipeline plan`, `deploy`, `start`, `stop`, `status` and `logs` dispatch through it, whatever the
executor (the local one of `pipeline run`, Nomad, Slurm, or one a facility registers through the
`register_executors` hook). An executor knows how to start ``pipeline worker`` processes for each
unit instance and how to ask its scheduler about them; the workers' counters come from the
transport, so `status` shows them the same way for every executor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from pydantic import BaseModel

    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.descriptor import ExecutorDescriptor
    from asapo_pipelines.pipeline.model import Pipeline


@dataclass
class InstanceStatus:
    """One unit instance (a replica) as its scheduler sees it."""

    unit: str
    replica: int
    #: The scheduler's own word (``running``, ``pending``, ``dead``...), shown as is.
    state: str
    #: The scheduler's id of the task (a Nomad allocation, a Slurm job id, a process id).
    task_id: str | None = None
    restarts: int = 0
    detail: str = ""


@dataclass
class ExecutorStatus:
    """What `pipeline status` shows for a deployed pipeline."""

    executor: str
    #: The deployment's name at the scheduler (a Nomad job, a Slurm job name prefix).
    deployment: str
    state: str
    instances: list[InstanceStatus] = field(default_factory=list)
    #: Scheduler-specific extras, JSON-ready, shown by ``--json``.
    extra: dict[str, Any] = field(default_factory=dict)


class Executor(ABC):
    """Base class of every executor runtime (`ExecutorDescriptor.runtime`).

    Constructed per command with the validated pipeline, the catalog, the pipeline file and the
    executor's own section of ``deploy:`` (its ``config`` model, or None when absent).
    Every method raises a `asapo_pipelines.errors.PipelinesError` subclass with one sentence for
    anything the user can fix (scheduler unreachable, job rejected with the scheduler's reason).
    """

    #: The name under ``deploy:``; set by each subclass.
    name: ClassVar[str]

    def __init__(
        self,
        pipeline: Pipeline,
        catalog: Catalog,
        file: Path,
        config: BaseModel | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.catalog = catalog
        self.file = file
        self.config = config
        #: The run `pipeline deploy` or `start` recorded for this deployment (None when the
        #: transport could not be reached from here); an executor hands it to its workers in
        #: the environment variable `asapo_pipelines.worker.launch.RUN_ENV`, so they never
        #: guess the run.
        self.run_id: str | None = None

    @abstractmethod
    def plan(self) -> dict[str, Any]:
        """What would be submitted, JSON-ready (the scheduler's own job descriptions)."""

    @abstractmethod
    def deploy(self, *, wait: float) -> dict[str, Any]:
        """Submit the pipeline and wait up to ``wait`` seconds for its tasks to be placed."""

    @abstractmethod
    def start(self, *, wait: float) -> dict[str, Any]:
        """Start a deployed pipeline that was stopped."""

    @abstractmethod
    def stop(self, *, purge: bool = False) -> dict[str, Any]:
        """Stop every task of the pipeline; ``purge`` also forgets the deployment."""

    @abstractmethod
    def status(self) -> ExecutorStatus:
        """The deployment and each unit instance as the scheduler reports them."""

    @abstractmethod
    def logs(
        self, unit: str, *, replica: int | None = None, follow: bool = False, stderr: bool = False
    ) -> Iterator[str]:
        """A unit instance's log lines, oldest first; with ``follow``, new lines as they come."""


def choose_executor(
    pipeline: Pipeline, catalog: Catalog, name: str | None = None, *, default: str | None = None
) -> ExecutorDescriptor | None:
    """The executor a command on this pipeline goes to: ``name`` (``--executor``) when given,
    else the one the file's ``deploy:`` section names, else ``default`` (None: let the caller
    decide). Raises UsageError for an unknown name, or when the file names several."""
    from asapo_pipelines.errors import UsageError

    known = list(catalog.executors)
    if name is not None:
        if name not in catalog.executors:
            import difflib

            near = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise UsageError(f"unknown executor {name!r}{hint}; choose one of {', '.join(known)}")
        return catalog.executors[name]
    named = [n for n in pipeline.deploy.named() if n in catalog.executors]
    if len(named) > 1:
        raise UsageError(
            f"the deploy section names several executors ({', '.join(named)}); choose one with "
            "--executor NAME"
        )
    chosen = named[0] if named else default
    return catalog.executors.get(chosen) if chosen else None


def open_executor(
    descriptor: ExecutorDescriptor, pipeline: Pipeline, catalog: Catalog, file: Path
) -> Executor:
    """The executor's runtime, constructed for this pipeline with its ``deploy:`` section."""
    from asapo_pipelines.errors import PluginError

    try:
        cls = descriptor.load_runtime()
    except Exception as exc:
        from asapo_pipelines.plugin_manager import describe_exception

        raise PluginError(
            f"the executor {descriptor.name} ({descriptor.distribution}) cannot be loaded from "
            f"{descriptor.runtime}: {describe_exception(exc)}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise PluginError(
            f"the executor {descriptor.name}'s runtime {descriptor.runtime} is not an Executor "
            "subclass"
        )
    return cls(pipeline, catalog, Path(file), pipeline.deploy.config(descriptor.name))


def text_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Log bytes as text lines, for `Executor.logs` (a line split across chunks is joined)."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *whole, rest = rest.split(b"\n")
        for line in whole:
            yield line.decode("utf-8", "replace")
    if rest:
        yield rest.decode("utf-8", "replace")
