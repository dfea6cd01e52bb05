"""The executor interface: where a pipeline's units run as tasks.

`pipeline plan`, `deploy`, `start`, `stop`, `status` and `logs` dispatch through it, whatever the
executor (the local one of `pipeline run`, Nomad, Slurm, or one a facility registers through the
`register_executors` hook). An executor knows how to start ``pipeline worker`` processes for each
unit instance and how to ask its scheduler about them; the workers' counters come from the
transport, so `status` shows them the same way for every executor.

The commands choose the executor once (`choose_for_command`) and then only call its methods:
what the user sees (`show_status`, `print_logs`, `show_stop`...) has a generic default here that
an executor may override with its own presentation (the local run's table, Nomad's job).
"""

from __future__ import annotations

import functools
import inspect
import types
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import click

from asapo_pipelines import CORE_DISTRIBUTION
from asapo_pipelines.errors import PipelinesError

if TYPE_CHECKING:  # pragma: no cover
    from pydantic import BaseModel

    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.descriptor import ExecutorDescriptor
    from asapo_pipelines.pipeline.model import Pipeline
    from asapo_pipelines.runs import Run


#: The states of a run or deployment that `pipeline status` exits 1 for: it does not go on
#: and did not end well, so an operator must act. `lost`: its `pipeline run` supervisor died
#: (killed outright) and nobody ended it; a control system polling the exit code took it for
#: a run that goes on. Any other state (running, complete, stopped...) exits 0.
NEEDS_AN_OPERATOR = ("failed", "lost")


def status_exit_code(state: str) -> int:
    """`pipeline status`'s exit code for a run or deployment in `state` (`NEEDS_AN_OPERATOR`),
    the same with `--json`."""
    return 1 if state in NEEDS_AN_OPERATOR else 0


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
    Every method raises a `asapo_pipelines.sdk.PipelinesError` subclass with one sentence for
    anything the user can fix (scheduler unreachable, job rejected with the scheduler's reason).
    docs/executors.md describes each method, the `ExecutorStatus.state` words that end a run and
    a complete example executor.

    The executor's name (``self.name``, its key under ``deploy:``) is its descriptor's
    (`ExecutorDescriptor.name`): a subclass need not set `name`, and one that does must set the
    same (`executor_class` refuses a plugin whose class and descriptor disagree).
    """

    #: The name under ``deploy:``: the descriptor's, given by `executor_class` to a runtime
    #: that sets none (the built-in executors set it themselves, to the same name).
    name: ClassVar[str]
    #: The commands' options this executor understands beyond the interface's own (python
    #: names: ``run_dir`` for ``--run-dir``); `check_options` refuses any other in one sentence.
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        pipeline: Pipeline | None,
        catalog: Catalog,
        file: Path | None,
        config: BaseModel | None = None,
    ) -> None:
        #: None only where the executor's own `for_command` accepts a target without a
        #: pipeline file (a compiled job, a job id at the scheduler, a run directory)
        self.pipeline = pipeline
        self.catalog = catalog
        self.file = file
        self.config = config
        #: The run `pipeline deploy` or `start` recorded for this deployment (None when the
        #: transport could not be reached from here); an executor hands it to its workers in
        #: the environment variable `asapo_pipelines.worker.launch.RUN_ENV`, so they never
        #: guess the run.
        self.run_id: str | None = None
        #: the options of `options` the command was given (``{"run_dir": ...}``)
        self.given: dict[str, Any] = {}

    # -- construction for a command ------------------------------------------------------------
    @classmethod
    def check_options(cls, command: str, given: dict[str, Any]) -> None:
        """One sentence for an option given to `command` that this executor does not know."""
        from asapo_pipelines.errors import UsageError

        for option, value in given.items():
            if value not in (None, False) and option not in cls.options:
                flag = _flag(option)
                raise UsageError(f"the {cls.name} executor has no {flag} option for `{command}`")

    @classmethod
    def for_command(
        cls,
        pipeline: Pipeline | None,
        catalog: Catalog,
        file: Path | None,
        given: dict[str, Any],
    ) -> Executor:
        """The executor for a command's target. By default the target is a pipeline file; an
        executor that also acts on other targets (a compiled job, ``--job ID``) overrides this."""
        if pipeline is None or file is None:
            from asapo_pipelines.errors import UsageError

            raise UsageError(f"the {cls.name} executor needs a pipeline file (.pipeline.yaml)")
        return cls.made(pipeline, catalog, file, given)

    @classmethod
    def made(
        cls,
        pipeline: Pipeline | None,
        catalog: Catalog,
        file: Path | None,
        given: dict[str, Any],
    ) -> Executor:
        """The executor with its ``deploy:`` section (when there is a pipeline) and the
        command's options; what `for_command` overrides start from."""
        config = pipeline.deploy.config(cls.name) if pipeline is not None else None
        executor = cls(pipeline, catalog, file, config)
        executor.given = dict(given)
        return executor

    @classmethod
    def has_run(cls, pipeline: Pipeline | None, file: Path | None, given: dict[str, Any]) -> bool:
        """Whether a run of this target is recorded on this machine. The local executor's
        (`LOCAL`) makes `status`, `logs` and `stop` go to it without being told; a
        scheduler's jobs are named by the file's ``deploy:`` section, so another executor's
        (a Slurm deployment's state beside the file) is only named when the section's
        executor fails ("add `--executor slurm`"). False unless an executor knows better."""
        return False

    def loaded(self) -> Pipeline:
        """The pipeline; one sentence when the command's target was not a pipeline file."""
        if self.pipeline is None:
            from asapo_pipelines.errors import UsageError

            raise UsageError("this needs the pipeline file (.pipeline.yaml)")
        return self.pipeline

    def describe(self, what: str, result: dict[str, Any]) -> str:
        """One line saying what a command did (``deployed``, ``started``, ``stopped``)."""
        detail = result.get("message") or result.get("status") or ""
        suffix = f": {detail}" if detail else ""
        name = self.pipeline.name if self.pipeline is not None else "?"
        return f"{what} pipeline {name} with the {self.name} executor{suffix}"

    #: True when `deploy` records the run's session itself (the local executor runs `pipeline
    #: run`); `pipeline deploy` then records none, and hands it `run_flags` instead
    records_runs: bool = False
    #: Where a deployment's tasks read the transport's ``*_env`` secrets instead of the
    #: deploying shell's environment ("{pipeline}" is the pipeline's name); empty when they get
    #: that environment. `pipeline deploy` says it when that shell lacks one.
    secrets_from: str = ""
    #: `--fresh` / `--resume` as `pipeline deploy` was given them, for such an executor
    run_flags: tuple[str, ...] = ()
    #: The deployment's state (`ExecutorStatus.state`) as `show_status` read it, None before:
    #: what `pipeline status` says under the table follows that same reading instead of asking
    #: the scheduler (or a run's state file) again
    shown_state: str | None = None
    #: The run record `show_status` read in its own opening of the store, in a tuple (None when
    #: it read none): the current run while the run goes on, else the latest one
    shown_run: tuple[Run | None] | None = None

    def refuse(self, command: str) -> None:
        """Raise the one-sentence error with which `command` (``deploy``, ``start``, ``run``) is
        refused in the deployment's present state (deployed and running already), before
        anything is recorded: `pipeline deploy` and `start` ask first and record the run's
        session after; ``run`` is another executor's session of the run (`pipeline run` beside
        a live deployment, which would write every result twice). Refusing nothing is the
        default."""
        return None  # a default, not an abstract method: most executors refuse nothing

    def deployed_text(self) -> str | None:
        """The pipeline file as the deployment's workers run it (the copy the executor
        delivered to them), or None when the executor keeps no copy here. `pipeline start`
        refuses to run it when FILE now says otherwise, and `status` warns of it."""
        return None

    def deployed_run(self) -> str | None:
        """The run `pipeline deploy` handed the deployment's workers (`run_id`), or None when
        the executor did not keep it: `pipeline start` refuses to begin a new run when the
        store no longer holds that one."""
        return None

    @abstractmethod
    def plan(self) -> dict[str, Any]:
        """What would be submitted, JSON-ready (the scheduler's own job descriptions)."""

    @abstractmethod
    def deploy(self, *, wait: float) -> dict[str, Any]:
        """Submit the pipeline and wait up to ``wait`` seconds for its tasks to be placed.

        A result with a non-empty ``failed`` key (unit instance -> why) says a unit failed for
        good (a configuration error): the run is then not said to start or go on, and
        `show_submitted` fails the command with that sentence."""

    @abstractmethod
    def start(self, *, wait: float) -> dict[str, Any]:
        """Start a deployed pipeline that was stopped (a ``failed`` key: as `deploy`'s)."""

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

    # -- what the user sees: generic defaults an executor may override ---------------------------
    def show_plan(self, *, as_json: bool) -> None:
        """`pipeline plan`: what would be submitted (JSON either way by default)."""
        _print_json(self.plan())

    def show_submitted(self, result: dict[str, Any], *, as_json: bool, start: bool) -> None:
        """`pipeline deploy` / `start`: what `deploy()` or `start()` returned."""
        if as_json:
            _print_json(result)
        else:
            click.echo(self.describe("started" if start else "deployed", result))

    def show_stop(self, result: dict[str, Any], *, as_json: bool) -> None:
        """`pipeline stop`: what `stop()` returned."""
        if as_json:
            _print_json(result)
        else:
            click.echo(self.describe("stopped", result))

    def show_status(self, *, as_json: bool) -> int:
        """`pipeline status`: the scheduler's view of the tasks and the workers' counters; the
        exit code (`status_exit_code`: 1 when the deployment failed, for scripts: `pipeline status
        F && ...`)."""
        from dataclasses import asdict

        from asapo_pipelines.counters import counters_or_none, show_counters_or_say

        state = self.status()
        self.shown_state = state.state
        code = status_exit_code(state.state)
        if as_json:
            counters = counters_or_none(self.file) if self.pipeline is not None else None
            _print_json({**asdict(state), "counters": counters})
            return code
        _print_status_table(state)
        if self.pipeline is not None and self.file is not None:
            show_counters_or_say(self.file)
        return code

    def print_logs(self, unit: str, *, replica: int | None, follow: bool, stderr: bool) -> int:
        """`pipeline logs`: the unit's lines on stdout; the exit code."""
        for line in self.logs(unit, replica=replica, follow=follow, stderr=stderr):
            click.echo(line)
        return 0


def _flag(option: str) -> str:
    """The option as the user typed it and the command's ``--help`` shows it: the python name
    (``only_stdout``) may differ from the flag (`pipeline logs --stdout`)."""
    context = click.get_current_context(silent=True)
    params = context.command.params if context is not None else []
    flags = next((p.opts for p in params if p.name == option and p.opts), None)
    return flags[0] if flags else "--" + option.replace("_", "-")


def choose_executor(
    pipeline: Pipeline | None,
    catalog: Catalog,
    name: str | None = None,
    *,
    default: str | None = None,
) -> ExecutorDescriptor | None:
    """The executor a command on this pipeline goes to: ``name`` (``--executor``) when given,
    else the one the file's ``deploy:`` section names, else ``default`` (None: let the caller
    decide). Raises UsageError for an unknown name, or when the file names several."""
    from asapo_pipelines.errors import UsageError

    if name is not None:
        return _named(catalog, name)
    named = [n for n in pipeline.deploy.named() if n in catalog.executors] if pipeline else []
    if len(named) > 1:
        raise UsageError(
            f"the deploy section names several executors ({', '.join(named)}); choose one with "
            "--executor NAME"
        )
    chosen = named[0] if named else default
    return catalog.executors.get(chosen) if chosen else None


#: The executor of `pipeline run`: `status`, `logs` and `stop` go to it when it has a run of the
#: file recorded on this machine (`Executor.has_run`).
LOCAL = "local"
#: Options that name their executor: ``--job ID`` is a job on a Nomad cluster, ``--run-dir`` a
#: local run's directory.
SELECTING_OPTIONS = {"job": "nomad", "run_dir": LOCAL}


def choose_for_command(
    pipeline: Pipeline | None,
    catalog: Catalog,
    file: Path | None,
    given: dict[str, Any],
    name: str | None = None,
    *,
    default: str | None = None,
    runs: bool = True,
) -> ExecutorDescriptor | None:
    """The one rule for which executor a command on FILE goes to: ``--executor NAME``; else the
    executor an option names (`SELECTING_OPTIONS`); else the local executor when it has a run
    of the file recorded here (what `pipeline run` left on this machine is what the user
    means, even for a file whose ``deploy:`` section names a cluster); else the one the
    file's ``deploy:`` section names; else ``default`` (None: no executor, `status` then shows
    the workers' counters alone). Commands that submit (`plan`, `deploy`, `start`) pass
    ``runs=False``: a past local run does not send a new deployment to this machine."""
    if name is None:
        name = next((e for o, e in SELECTING_OPTIONS.items() if given.get(o)), None)
    if name is not None:
        return choose_executor(pipeline, catalog, name)
    local = catalog.executors.get(LOCAL)
    if runs and local is not None and executor_class(local).has_run(pipeline, file, given):
        return local
    return choose_executor(pipeline, catalog, default=default)


def _named(catalog: Catalog, name: str) -> ExecutorDescriptor:
    """The installed executor called `name`; one sentence naming the installed ones."""
    from asapo_pipelines.errors import UsageError

    known = list(catalog.executors)
    if name not in catalog.executors:
        import difflib

        near = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise UsageError(f"unknown executor {name!r}{hint}; choose one of {', '.join(known)}")
    return catalog.executors[name]


def open_executor(
    descriptor: ExecutorDescriptor, pipeline: Pipeline, catalog: Catalog, file: Path
) -> Executor:
    """The executor's runtime, constructed for this pipeline with its ``deploy:`` section."""
    cls = executor_class(descriptor)
    return cls(pipeline, catalog, Path(file), pipeline.deploy.config(descriptor.name))


def executor_class(descriptor: ExecutorDescriptor) -> type[Executor]:
    """The executor's runtime class; one sentence when it cannot be loaded or is no Executor
    answering to its descriptor's name (`class_problem`). A plugin's comes wrapped so that its
    own exceptions are one sentence naming it (`_GUARDED`)."""
    from asapo_pipelines.errors import PluginError

    where = f"the executor {descriptor.name} ({descriptor.distribution})"
    try:
        cls = descriptor.load_runtime()
    except Exception as exc:
        from asapo_pipelines.plugin_manager import describe_exception

        raise PluginError(
            f"{where} cannot be loaded from {descriptor.runtime}: {describe_exception(exc)}"
        ) from None
    problem = class_problem(descriptor, cls)
    if problem is not None:
        raise PluginError(f"{where} is a broken plugin: {problem}")
    if descriptor.distribution in (None, CORE_DISTRIBUTION):  # the core's: its failures are bugs
        return _named_class(cls, descriptor.name)
    return _guarded_class(cls, descriptor.name, descriptor.distribution)


def class_problem(descriptor: ExecutorDescriptor, cls: Any) -> str | None:
    """Why `cls`, loaded from `descriptor.runtime`, cannot be its executor; None when it can."""
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        return f"its runtime {descriptor.runtime} is not an Executor subclass"
    own = vars(cls).get("name", descriptor.name)
    if own != descriptor.name:
        # the descriptor's name is the key the file's `deploy:` section was validated under; a
        # class reading another would silently drop that section (a job sent to the wrong queue)
        return (
            f"its runtime {descriptor.runtime} sets name = {own!r}, not its descriptor's name "
            f"{descriptor.name!r} (drop the class's name or make the two agree)"
        )
    return None


def executor_problem(descriptor: ExecutorDescriptor) -> str | None:
    """Why an executor cannot be used, found by importing its runtime (`pipeline plugins
    --strict`); None when `executor_class` would give its class."""
    try:
        cls = descriptor.load_runtime()
    except Exception as exc:
        from asapo_pipelines.plugin_manager import describe_exception

        return f"its runtime {descriptor.runtime} cannot be loaded: {describe_exception(exc)}"
    return class_problem(descriptor, cls)


class ExecutorFailed(PipelinesError):
    """A plugin executor's own exception (its scheduler client's, a bug), not a
    `PipelinesError` it raised on purpose: one sentence naming the executor, its plugin and
    what it was doing, as a plugin transport's is (`asapo_pipelines.transport`). ``reason`` is
    the exception's own text, which a failed deployment's run records after "the NAME
    deployment failed: "."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


#: The methods of a plugin's executor (the interface, and the presentation defaults it may
#: override) whose own exceptions `_guarded_class` makes an `ExecutorFailed`, and what a
#: failure of each is. Every command reaches an executor through these, so this one table is
#: where a plugin's failure gets its sentence.
_GUARDED = {
    "for_command": "failed to set up",
    "made": "failed to set up",
    "has_run": "failed to look for a deployment recorded here",
    "refuse": "failed to check its deployment's state",
    "plan": "failed to plan",
    "show_plan": "failed to plan",
    "deploy": "failed to deploy",
    "start": "failed to start",
    "show_submitted": "failed to show what it submitted",
    "describe": "failed to describe what it did",
    "stop": "failed to stop",
    "show_stop": "failed to stop",
    "status": "failed to report its status",
    "show_status": "failed to report its status",
    "logs": "failed to read the logs",
    "print_logs": "failed to read the logs",
}


@contextmanager
def _plugin_code(where: str, doing: str) -> Iterator[None]:
    """A plugin executor's own exception as one `ExecutorFailed` sentence; the errors it
    raises on purpose (PipelinesError: "cannot reach the scheduler, ...") keep theirs."""
    try:
        yield
    except (PipelinesError, BrokenPipeError):
        # a closed output (`pipeline status FILE | head`) is the reader's doing: the CLI ends
        # it quietly; wrapped, it read "the executor slurm ... failed to report its status"
        raise
    except Exception as exc:
        from asapo_pipelines.plugin_manager import describe_exception

        raise ExecutorFailed(f"the {where} {doing}: {describe_exception(exc)}", str(exc)) from exc


def _guarded_iterator(lines: Iterable[str], where: str, doing: str) -> Iterator[str]:
    """`logs` lines, whose generator fails while they are read, not when it is called."""
    with _plugin_code(where, doing):
        yield from lines


def _guarded_method(cls: type[Executor], method: str, where: str, doing: str) -> Any:
    """`cls`'s `method` (an instance method or a classmethod) called under `_plugin_code`,
    for the subclass `_guarded_class` makes: looked up on `cls` at each call, so the plugin's
    own method is what runs, with the subclass as its class (`made` constructs that)."""
    static = inspect.getattr_static(cls, method)
    if isinstance(static, classmethod):

        def on_class(owner: type[Executor], *args: Any, **kwargs: Any) -> Any:
            with _plugin_code(where, doing):
                return static.__func__(owner, *args, **kwargs)

        return classmethod(functools.wraps(static.__func__)(on_class))

    def on_instance(self: Executor, *args: Any, **kwargs: Any) -> Any:
        with _plugin_code(where, doing):
            result = getattr(cls, method)(self, *args, **kwargs)
        if method == "logs":
            return _guarded_iterator(result, where, doing)
        return result

    return functools.wraps(getattr(cls, method))(on_instance)


@functools.cache
def _guarded_class(cls: type[Executor], name: str, distribution: str) -> type[Executor]:
    """A plugin's executor class answering to `name` whose own exceptions in `_GUARDED` are one
    sentence naming it (`ExecutorFailed`): a subclass made once, so the plugin's class is left
    as written. A method the class leaves abstract stays abstract, so an incomplete class is
    still refused when it is constructed (in `made`, with its sentence)."""
    where = f"executor {name} ({distribution})"
    abstract: frozenset[str] = getattr(cls, "__abstractmethods__", frozenset())
    namespace: dict[str, Any] = {
        method: _guarded_method(cls, method, where, doing)
        for method, doing in _GUARDED.items()
        if method not in abstract
    }
    return _subclass(cls, {**namespace, "name": name})


@functools.cache
def _named_class(cls: type[Executor], name: str) -> type[Executor]:
    """`cls` answering to `name` (`Executor.name`): itself when it sets that name, else a subclass
    made once per name, so the plugin's class is left as written (an inherited name or none at
    all) and one class may serve several descriptors."""
    if vars(cls).get("name") == name:
        return cls
    return _subclass(cls, {"name": name})


def _subclass(cls: type[Executor], namespace: dict[str, Any]) -> type[Executor]:
    """A subclass of `cls` with `namespace` added, shown as `cls` (its name, module, qualified
    name and docstring): what a user reads of a plugin's class stays the plugin's."""
    body = {**namespace, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
    made = types.new_class(cls.__name__, (cls,), exec_body=lambda ns: ns.update(body))
    made.__doc__ = cls.__doc__
    return cast("type[Executor]", made)


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


def _print_json(data: Any) -> None:
    import json
    import sys

    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _print_status_table(state: ExecutorStatus) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{state.executor} {state.deployment}: {state.state}", title_justify="left")
    for column in ("unit", "replica", "state", "task", "restarts", "detail"):
        table.add_column(column)
    for i in state.instances:
        table.add_row(i.unit, str(i.replica), i.state, i.task_id or "-", str(i.restarts), i.detail)
    Console(highlight=False, soft_wrap=False).print(table)
