"""Before `pipeline run` or `reprocess` starts anything: the live services the pipeline's
units name, asked whether they take what the file says (`pipeline.online.check_before_start`:
the plugins' `check_online` hook, as `pipeline validate --online` asks it), of the pipeline as
it will run, with its `--set` overrides applied; nothing is recorded before it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from asapo_pipelines.pipeline.online import check_before_start

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.local.target import Target


def check_services(target: Target, shown: str | None = None) -> None:
    """Refuse the start when a service the pipeline names refuses what the file says; warn,
    and go on, when one cannot be asked. `shown`: the file as the user named it."""
    assert target.pipeline_file is not None
    pipeline, catalog = target.loaded()
    check_before_start(pipeline, catalog, Path(target.pipeline_file), shown)
