"""What a local-executor command acts on: a pipeline file (loaded and, when asked, compiled to
its job) or a compiled job, and the run directory it has under the pipeline's data directory.
Shared by `pipeline run`, `reprocess` and the local executor's `status`, `logs` and `stop`;
`recorded` is the one rule for "is there a local run of this"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines.cli.options import checked_file, find_file
from asapo_pipelines.errors import UsageError

# spelled beside the run layout, where the run records (`runs.edits`) reach them without
# importing this executor; the local commands and supervisor name them from here
from asapo_pipelines.launchplan.rundir import default_data_dir
from asapo_pipelines.launchplan.rundir import logs_where as logs_where
from asapo_pipelines.pipeline import DEFAULT_DATA_DIR

if TYPE_CHECKING:  # pragma: no cover - a compiled job (.json) needs neither
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import Pipeline


class Target:
    """A command's target. `payload` is the job of the pipeline as it is now: `pipeline run
    --set` writes its overrides into the pipeline after it was resolved, and the job's type
    (a source set to `watch` makes a service) and restart rules must follow them."""

    def __init__(
        self,
        run_dir: Path,
        payload: dict[str, Any] | None = None,
        pipeline: Pipeline | None = None,
        pipeline_file: str | None = None,
        catalog: Catalog | None = None,
        data_dir: str | None = None,
    ) -> None:
        self.run_dir = run_dir
        #: the `--data-dir` the command was given, as given (None without one): what a
        #: command it suggests must repeat to find this run (`logs_where`)
        self.data_dir = data_dir
        #: None when the target is a compiled job or a run directory
        self.pipeline = pipeline
        self.pipeline_file = pipeline_file
        self.catalog = catalog
        self._payload = payload
        self._compiled_from = self._params()

    def _params(self) -> str | None:
        """The units' params the payload was compiled from (None: nothing to compile)."""
        if self.pipeline is None:
            return None
        params = {name: unit.params for name, unit in self.pipeline.units.items()}
        return json.dumps(params, sort_keys=True, default=str)

    @property
    def payload(self) -> dict[str, Any] | None:
        """The compiled job (`{"Job": {...}}`), compiled again when the params changed."""
        if self._payload is None or self.pipeline is None or self.catalog is None:
            return self._payload
        now = self._params()
        if now != self._compiled_from:
            self._payload, self._compiled_from = _compile(self.pipeline, self.catalog), now
        return self._payload

    def loaded(self) -> tuple[Pipeline, Catalog]:
        """The validated pipeline and its catalog; one sentence when the command was given a
        compiled job, which holds neither the transport's settings nor the units' params."""
        if self.pipeline is None or self.catalog is None:
            shown = self.pipeline_file or str(self.run_dir)
            raise UsageError(f"this needs the pipeline file (.pipeline.yaml), not {shown}")
        return self.pipeline, self.catalog


def _compile(pipeline: Pipeline, catalog: Catalog) -> dict[str, Any]:
    """The pipeline's job, in Nomad's job JSON that runs here too. The compiler's warnings are
    about clusters (shared paths, drivers), not about running here, so they are left to
    `pipeline plan` and `deploy`."""
    from asapo_pipelines.launchplan.compile import compile_pipeline

    return dict(compile_pipeline(pipeline, catalog).job)


def _data_dir_of(pipeline: Pipeline, path: Path) -> Path:
    """The embedded transport's directory, else the default data directory next to the file."""
    return default_data_dir(pipeline.transport.spec(), path)


def pipeline_run_dir(pipeline: Pipeline, path: Path, data_dir: str | None = None) -> Path:
    """Where the local run of the pipeline file at `path` lives (`launchplan.rundir`: never a
    directory another file's run is recorded in). Status, logs and stop need only the job's
    ID, so they keep working when the file no longer compiles."""
    from asapo_pipelines.launchplan.compile import job_identity
    from asapo_pipelines.launchplan.rundir import file_run_dir

    # absolute: the workers run in their own directories, where a relative one names nothing
    base = Path(data_dir).resolve() if data_dir else _data_dir_of(pipeline, path)
    return file_run_dir(base, job_identity(pipeline)[0], path)


def recorded(run_dir: Path) -> bool:
    """Whether a local run is recorded in `run_dir` (its supervisor wrote the state file)."""
    from asapo_pipelines.launchplan.rundir import STATE_FILE

    return (run_dir / STATE_FILE).is_file()


def resolve(
    file: str | None, data_dir: str | None, run_dir: str | None, *, compile: bool = False
) -> Target:
    if run_dir:
        return Target(run_dir=Path(run_dir).resolve())
    # a missing FILE is the sentence every command says, with its "did you mean"
    path = checked_file(Path(file)) if file else find_file()
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    if path.suffix == ".json":
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the compiled job {path}: {exc}") from None
        job = payload.get("Job") if isinstance(payload, dict) else None
        job_id = str(job.get("ID") or "") if isinstance(job, dict) else ""
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise UsageError(f'{path} is not a compiled Nomad job ({{"Job": {{"ID": ...}}}})')
        base = Path(data_dir).resolve() if data_dir else path.resolve().parent / DEFAULT_DATA_DIR
        from asapo_pipelines.launchplan.rundir import run_dir as run_dir_of

        return Target(
            run_dir=run_dir_of(base, job_id),
            payload=payload,
            pipeline_file=str(path.resolve()),
            data_dir=data_dir,
        )
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline import load_pipeline

    catalog = Catalog.load()
    # a job about to start (run, reprocess) is refused, as `pipeline validate` refuses it, when
    # a unit's runtime is not installed: its worker would fail at once; reading a running one
    # (status, logs, stop) needs no runtime here
    pipeline = load_pipeline(path, catalog, runtimes=compile)
    from asapo_pipelines.listing import remember

    remember(catalog)  # the workers then load only the plugins of their units
    payload = _compile(pipeline, catalog) if compile else None
    return Target(
        run_dir=pipeline_run_dir(pipeline, path, data_dir),
        payload=payload,
        pipeline=pipeline,
        pipeline_file=str(path.resolve()),
        catalog=catalog,
        data_dir=data_dir,
    )
