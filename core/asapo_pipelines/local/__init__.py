"""The local executor: runs a compiled Nomad job (`{"Job": {...}}`) as subprocesses on this
machine, the way a Nomad client would run its allocations.

- `job`: the parts of Nomad's job JSON the local executor honours, read into small records
  (restarts follow `asapo_pipelines.launchplan.restart`, shared with other executors).
- `layout`: Nomad's allocation directory layout under `<data>/runs/<job>/`.
- `environment`: NOMAD_* variables, `${...}` interpolation and template rendering.
- `logs`: rotated task log files (`alloc/logs/<task>.stdout.N`) and reading them back.
- `state`: the run's state file, written atomically, read by `pipeline status`.
- `executor`: the supervisor loop; `supervise`: the detached supervisor's entry point;
  `control`: finding, stopping and inspecting runs; `live`: the live table.

Nothing here imports heavy libraries; rich is imported by `live` only.
"""

from asapo_pipelines.local.errors import LocalRunError

__all__ = ["LocalRunError"]
