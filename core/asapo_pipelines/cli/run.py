"""`pipeline run FILE [--detach]` and the local side of `pipeline status`, `logs` and `stop`.

FILE is a pipeline file (compiled on the fly to its Nomad job) or a compiled job (`*.json`, as
`pipeline plan --json` or the compiler writes it). Runs live under the pipeline's data directory
(`<data>/runs/<job>/`). `status`, `logs` and `stop` act on the local run when one is recorded
for FILE and hand over to the Nomad commands otherwise (or with `--job ID`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from asapo_pipelines.cli import executors as dispatch
from asapo_pipelines.cli.executors import executor_option
from asapo_pipelines.cli.options import data_dir_option, json_option, run_dir_option
from asapo_pipelines.cli.output import print_json
from asapo_pipelines.cli.target import Target, find_file, resolve
from asapo_pipelines.errors import UsageError
from asapo_pipelines.worker.status import status_reader


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--detach", "-d", is_flag=True, help="Run in the background; see status/logs/stop.")
@click.option(
    "--fresh", is_flag=True, help="Start a new run (the last one stays listed until pruned)."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Go on with the last run under a changed configuration (for the messages not yet "
    "processed; provenance records it).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="UNIT.PARAM=VALUE",
    help="Override a unit parameter for this run (repeatable), e.g. normalize.autobk.rbkg=1.2.",
)
@data_dir_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the final status as JSON (as `status --json` does); progress goes to stderr.",
)
@click.pass_context
def run(
    ctx: click.Context,
    file: str | None,
    detach: bool,
    fresh: bool,
    resume: bool,
    sets: tuple[str, ...],
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Run FILE's pipeline on this machine until it ends (batch) or Ctrl-C.

    The first run starts run r1; running the file again resumes it while its configuration is
    unchanged (nothing is processed twice). A changed configuration is refused, naming the
    changed units and params, until you choose --fresh or --resume.
    """
    from asapo_pipelines.local.control import start_detached
    from asapo_pipelines.local.errors import JobFailed

    target = resolve(file, data_dir, None, compile=True)
    assert target.payload is not None
    shown = file or target.pipeline_file
    session = None
    if target.pipeline is not None:
        from asapo_pipelines.cli.session import start_session

        session = start_session(target, fresh=fresh, resume=resume, sets=sets, quiet_stdout=as_json)
    elif fresh or resume or sets:
        raise UsageError("--fresh, --resume and --set need a pipeline file, not a compiled job")
    if detach:
        if session is not None:
            # the supervisor and its tasks inherit the run id from this environment
            os.environ[session.env_name] = session.run.id
        state = start_detached(target.payload, target.run_dir, pipeline_file=target.pipeline_file)
        if as_json:
            print_json(state)
            return
        click.echo(
            f"job {state['job']} runs in the background (supervisor pid {state['pid']}, "
            f"run directory {target.run_dir}); follow it with `pipeline status {shown}`, "
            f"`pipeline logs {shown} UNIT`, and stop it with `pipeline stop {shown}`"
        )
        return
    environ = dict(os.environ)
    if session is not None:
        environ[session.env_name] = session.run.id
    result, counters = execute(target, target.payload, environ, as_json=as_json)
    if session is not None:
        session.finish(result, counters, target.payload)
    if as_json:
        print_json(_status_json(dict(result.state), counters or None))
    if result.status == "failed":
        raise JobFailed(result.message)
    if not as_json:
        click.echo(result.message)
    ctx.exit(result.exit_code)


def execute(
    target: Target, payload: dict[str, Any], environ: dict[str, str], *, as_json: bool = False
) -> tuple[Any, dict[str, Any]]:
    """Run a compiled job under the live table; prints the final table and the summaries
    (with `as_json`, the table goes to stderr and the caller prints the JSON document)."""
    from asapo_pipelines.cli.output import console
    from asapo_pipelines.local.executor import ExecOptions, LocalExecutor
    from asapo_pipelines.local.live import LiveView, status_table

    out = console(stderr=as_json)  # with --json, stdout holds the JSON document only
    if not out.is_terminal:
        out.width = max(out.width, 120)  # a log file or a pipe: room for the whole table
    reader = status_reader(target.pipeline, payload) if target.pipeline else None
    with LiveView(out, reader) as view:
        options = ExecOptions(
            environ=environ,
            on_event=view.event,
            on_update=view.update,
            pipeline_file=target.pipeline_file,
        )
        result = LocalExecutor(payload, target.run_dir, options).run()
    counters = view.read_counters(force=True)
    out.print(status_table(result.state, counters))
    if not as_json:
        from asapo_pipelines.worker.status import summary_lines

        for line in summary_lines((counters or {}).values()):
            click.echo(line)
    return result, dict(counters or {})


def _local(file: str | None, run_dir: str | None, data_dir: str | None) -> Target | None:
    """The local run for the arguments, or None when none is recorded (then Nomad's turn)."""
    from asapo_pipelines.local.layout import STATE_FILE

    if not file and not run_dir:
        try:
            file = str(find_file())
        except UsageError:
            return None  # the executors' commands say what they need
    target = resolve(file, data_dir, run_dir)
    if (target.run_dir / STATE_FILE).is_file():
        return target
    if run_dir:
        raise UsageError(f"no local run recorded in {run_dir}")
    return None


#: the executors whose runs these commands handle themselves: a local run, a Nomad job
_OWN = ("local", "nomad")


def _no_local_run(target_file: str | None) -> UsageError:
    if not target_file:
        return UsageError("give the pipeline file, or --job ID for a job on Nomad")
    return UsageError(
        f"no local run of {target_file or 'this pipeline'} is recorded; start one with "
        "`pipeline run`"
    )


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--job", "job", metavar="ID", help="A job on the Nomad cluster.")
@executor_option
@run_dir_option
@data_dir_option
@json_option
@click.pass_context
def status(
    ctx: click.Context,
    file: str | None,
    job: str | None,
    executor_name: str | None,
    run_dir: str | None,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Show the units of a local run (state, pid, restarts, exit codes), the Nomad job, or the
    tasks of the executor the file's deploy section names, with the counters the pipeline's
    workers published; with none of these, the counters alone."""
    executor = None if job else dispatch.dispatched(file, executor_name, default=None, own=_OWN)
    if executor is not None:
        ctx.exit(dispatch.status(executor, as_json=as_json))
    target = None if job or executor_name == "nomad" else _local(file, run_dir, data_dir)
    if target is None:
        if job or executor_name == "nomad" or os.environ.get("NOMAD_ADDR"):
            from asapo_pipelines.cli.nomad_cmds import status as nomad_status

            ctx.invoke(nomad_status, file=file, job=job, as_json=as_json)
        elif file and executor_name != "local":
            # no local run and no cluster: the counters the pipeline's workers (started by
            # hand or by a scheduler) published on its transport
            from asapo_pipelines.cli.status import show_counters

            show_counters(Path(file), as_json)
        else:
            raise _no_local_run(file)
        return
    from asapo_pipelines.local.control import run_status

    state = run_status(target.run_dir)
    published = _run_counters(target)
    # a failed run is a failure for scripts too (`pipeline status FILE && ...`)
    code = 1 if state.get("status") == "failed" else 0
    if as_json:
        print_json(_status_json(state, published))
        ctx.exit(code)
    from asapo_pipelines.cli.output import console
    from asapo_pipelines.local.live import status_table

    out = console()
    if not out.is_terminal:
        out.width = max(out.width, 120)
    out.print(status_table(state, published))
    from asapo_pipelines.worker.status import summary_lines

    for line in summary_lines((published or {}).values()):
        out.print(line, markup=False, highlight=False)
    if state.get("message"):
        out.print(str(state["message"]), markup=False, highlight=False)
    ctx.exit(code)


def _run_counters(target: Target) -> dict[str, Any] | None:
    """What each replica of a local run published last (counters, the unit's summary)."""
    from asapo_pipelines.local.layout import JOB_FILE

    try:  # the job that runs, as the supervisor wrote it
        running_job = json.loads((target.run_dir / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None
    if target.pipeline is None:
        return None
    from asapo_pipelines.transport import open_transport
    from asapo_pipelines.worker.status import latest_status, status_consumer

    try:
        with (
            open_transport(target.pipeline.transport.spec(), target.catalog) as transport,
            status_consumer(transport, target.pipeline.name) as consumer,
        ):
            return latest_status(consumer, running_job)
    except Exception:  # counters are a bonus; the state file is the status
        return None


def _status_json(state: dict[str, Any], counters: dict[str, Any] | None) -> dict[str, Any]:
    """The run's state with, for each unit replica, its counters and the unit's summary (the
    table and summary lines of the text output, for tools)."""
    from asapo_pipelines.worker.status import summary_lines

    published = counters or {}
    units = []
    for record in state.get("units") or []:
        name = f"{record.get('group')}[{record.get('index', 0)}]"
        found = published.get(name) or published.get(str(record.get("name"))) or {}
        units.append(
            {**record, "counters": _counter_fields(found), "summary": found.get("summary")}
        )
    return {
        **state,
        "units": units,
        "summaries": {k: v.get("summary") for k, v in published.items() if v.get("summary")},
        "summary_lines": summary_lines(published.values()),
    }


def _counter_fields(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("summary",)}


@click.command()
@click.argument("args", nargs=-1, required=True)
@click.option("--job", "job", metavar="ID", help="A job on the Nomad cluster.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output.")
@click.option(
    "--stdout", "only_stdout", is_flag=True, help="Only the unit's stdout (printed on stdout)."
)
@click.option("--stderr", is_flag=True, help="Only the unit's stderr (printed on stdout).")
@click.option("--task", default=None, help="Another task of the unit (e.g. install-env).")
@click.option("--replica", type=int, default=None, help="Which replica of the unit.")
@executor_option
@run_dir_option
@data_dir_option
@click.pass_context
def logs(
    ctx: click.Context,
    args: tuple[str, ...],
    job: str | None,
    executor_name: str | None,
    follow: bool,
    only_stdout: bool,
    stderr: bool,
    task: str | None,
    replica: int | None,
    run_dir: str | None,
    data_dir: str | None,
) -> None:
    """Print a unit's log: `logs [FILE] UNIT` (a local run, else Nomad) or `logs --job ID UNIT`.

    A local run's unit shows both of its streams: its stdout on stdout and its stderr (where
    workers log) on stderr; --stdout or --stderr prints one of them on stdout.
    """
    if len(args) not in (1, 2):
        raise UsageError("usage: pipeline logs [FILE] UNIT")
    file, unit = (None, args[0]) if len(args) == 1 else args
    executor = None if job else dispatch.dispatched(file, executor_name, default=None, own=_OWN)
    if executor is not None:
        dispatch.logs(executor, unit, replica=replica, follow=follow, stderr=stderr)
        return
    target = None if job or executor_name == "nomad" else _local(file, run_dir, data_dir)
    if target is None:
        if executor_name == "local":
            raise _no_local_run(file)
        from asapo_pipelines.cli.nomad_cmds import logs as nomad_logs

        ctx.invoke(
            nomad_logs,
            args=args,
            job=job,
            follow=follow,
            stderr=stderr,
            replica=replica,
            plain=False,
        )
        return
    from asapo_pipelines.local.control import unit_log

    if replica is not None:
        unit = f"{unit.partition('[')[0]}[{replica}]"
    if only_stdout or stderr:
        outs = [(stderr, sys.stdout.buffer)]
    else:  # both, each on its own stream, so `2>/dev/null` still leaves the unit's stdout
        outs = [(False, sys.stdout.buffer), (True, sys.stderr.buffer)]
    readers = [
        (unit_log(target.run_dir, unit, task=task, stderr=err, follow=follow), out)
        for err, out in outs
    ]
    try:
        _copy_logs(readers, follow)
    except KeyboardInterrupt:
        ctx.exit(130)


def _copy_logs(readers: list[tuple[Any, Any]], follow: bool) -> None:
    """Copy each log to its output; when following two, both at once (a thread each)."""
    import threading

    lock = threading.Lock()

    def copy(chunks: Any, out: Any) -> None:
        for chunk in chunks:
            with lock:
                out.write(chunk)
                out.flush()

    if not follow or len(readers) == 1:
        for chunks, out in readers:
            copy(chunks, out)
        return
    threads = [threading.Thread(target=copy, args=r, daemon=True) for r in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)  # a timeout keeps Ctrl-C working


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--job", "job", metavar="ID", help="A job on the Nomad cluster.")
@click.option("--purge", is_flag=True, help="Nomad only: also remove the job at once.")
@executor_option
@run_dir_option
@data_dir_option
@json_option
@click.pass_context
def stop(
    ctx: click.Context,
    file: str | None,
    job: str | None,
    executor_name: str | None,
    purge: bool,
    run_dir: str | None,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Stop a local run cleanly (its tasks get their kill signal), the Nomad job, or the
    tasks of the executor the file's deploy section names."""
    executor = None if job else dispatch.dispatched(file, executor_name, default=None, own=_OWN)
    if executor is not None:
        dispatch.stop(executor, purge=purge, as_json=as_json)
        if file is not None:
            from asapo_pipelines.cli.deployments import end as end_run

            end_run(file, executor.name, "stopped", f"stopped with the {executor.name} executor")
        return
    target = None if job or executor_name == "nomad" else _local(file, run_dir, data_dir)
    if target is None:
        if executor_name == "local":
            raise _no_local_run(file)
        from asapo_pipelines.cli.nomad_cmds import stop as nomad_stop

        ctx.invoke(nomad_stop, file=file, job=job, purge=purge, as_json=as_json)
        return
    from asapo_pipelines.local.control import stop_run, supervisor_alive

    was_running = supervisor_alive(target.run_dir)
    state = stop_run(target.run_dir)
    if as_json:
        print_json({**state, "was_running": was_running})
        return
    if was_running or state.get("message", "").startswith("stopped after"):
        click.echo(f"job {state.get('job')} {state.get('status')}: {state.get('message')}")
    else:
        click.echo(f"job {state.get('job')} is not running ({state.get('status')})")
