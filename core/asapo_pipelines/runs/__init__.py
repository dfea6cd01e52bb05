"""Runs: identity, configuration fingerprints, their record in the store, and `--set` overrides.

A run is what `pipeline run` starts (and resumes while its configuration is unchanged), what
`pipeline reprocess` starts from a past run's source messages, and what a Nomad deployment
starts. Its record lives on the pipeline's own transport (`<pipeline>.runs`, see
`asapo_pipelines.worker.naming`), so every transport keeps its runs beside its data.
"""

from asapo_pipelines.runs.fingerprint import configurations, diff_configurations
from asapo_pipelines.runs.store import Run, RunsError, RunStore

__all__ = ["Run", "RunStore", "RunsError", "configurations", "diff_configurations"]
