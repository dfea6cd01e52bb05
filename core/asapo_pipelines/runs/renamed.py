"""The runs a pipeline file has under the names its `pipeline:` had before.

Runs are recorded under the pipeline's name (`runs.store`); after the file's `pipeline:` was
edited, its runs, and a run or deployment that goes on, are under the old name. `pipeline
runs` says so, and `status`, `stop` and `pipeline run` find a local run that goes on there
(`cli.executors`, `local.session`): one scan of the store for all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asapo_pipelines.runs.store import RunStore
from asapo_pipelines.worker.naming import runs_source


def under_old_names(transport: Any, name: str, file: Path) -> list[RunStore]:
    """The run records, one store per other pipeline name on `transport`, that `file` owns
    (`name`: its pipeline's name now), each holding at least one run."""
    stores = []
    for source in sorted(transport.data_sources()):
        old = source.removesuffix(runs_source(""))
        # a pipeline name has no dot; "<name>.<run>.runs" is a run's stream named `runs`
        if old in (source, name) or not old or "." in old:
            continue
        store = RunStore(transport, old)
        if store.owner() is None or store.other_owner(file) is not None:
            continue
        if store.run_ids():
            stores.append(store)
    return stores
