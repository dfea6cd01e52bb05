"""The run bookkeeping `pipeline run` and `pipeline reprocess` do around the executor: claim
the pipeline's namespace, start or resume a run (see `asapo_pipelines.runs`), and end it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asapo_pipelines.local.target import Target


@dataclass
class Session:
    """One `pipeline run` (or reprocess) working in a run: ends it in the record."""

    store: Any
    transport: Any
    run: Any
    what: str
    env_name: str

    def finish(self, result: Any, counters: dict[str, Any], payload: dict[str, Any]) -> None:
        from asapo_pipelines.runs.lifecycle import summaries_of

        groups = {g["Name"] for g in payload["Job"]["TaskGroups"]}
        summaries, counts = summaries_of(counters, groups)
        try:
            self.store.end(self.run, result.status, result.message, summaries, counts)
        finally:
            self.transport.close()


def open_store(target: Target) -> tuple[Any, Any]:
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import open_transport

    pipeline, catalog = target.loaded()
    transport = open_transport(pipeline.transport.spec(), catalog)
    return transport, RunStore(transport, pipeline.name)


def apply_overrides(target: Target, sets: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Parse and check `--set`s (RunsError, exit 1, nothing written), and apply them."""
    from asapo_pipelines.errors import UsageError
    from asapo_pipelines.runs import RunsError
    from asapo_pipelines.runs.overrides import apply, parse

    try:
        overrides = parse(sets)
        apply(*target.loaded(), overrides)
    except UsageError as exc:
        raise RunsError(exc.message) from None
    return overrides


def start_session(
    target: Target, *, fresh: bool, resume: bool, sets: tuple[str, ...], quiet_stdout: bool = False
) -> Session:
    """Claim the namespace and start or resume the run; one sentence and nothing written when
    the configuration changed without --fresh or --resume. With `quiet_stdout` (`--json`), what
    it says goes to stderr, so stdout holds the JSON document only."""
    from asapo_pipelines.cli.deployments import announce
    from asapo_pipelines.runs.lifecycle import prepare
    from asapo_pipelines.worker.launch import RUN_ENV

    pipeline, catalog = target.loaded()
    overrides = apply_overrides(target, sets)
    assert target.pipeline_file is not None
    transport, store = open_store(target)
    try:
        store.claim(target.pipeline_file)
        run, what = prepare(
            store,
            pipeline,
            catalog,
            Path(target.pipeline_file),
            fresh=fresh,
            resume=resume,
            overrides=overrides,
        )
    except BaseException:
        transport.close()
        raise
    changes = run.events[-1].get("changes") or {}
    announce(run.id, what, pipeline.name, changes, err=quiet_stdout)
    return Session(store, transport, run, what, RUN_ENV)
