"""The Nomad side: drive a pipeline's job on a cluster.

The job itself is compiled by `asapo_pipelines.launchplan.compile` into Nomad's job JSON
(`launchplan.jobspec`): the local executor runs that same job, so it is no backend's own. Here:

- `executor`: the `nomad` executor behind the `Executor` interface;
- `client`: deploy, start, stop, status, logs and plan through python-nomad, configured from the
  standard NOMAD_* environment variables with TLS verified by default (`settings`);
- `frames`: decoding of Nomad's framed log stream;
- `placement`, `render`: why Nomad cannot place a unit, and the tables the commands print.

Importing this package stays light: python-nomad and requests are imported by `client` only.
"""

from pathlib import Path

SCHEMA_NAME = "nomad-job.schema.json"


def schema_path() -> Path | None:
    """The strict JSON Schema of Nomad's job payload: packaged with the wheel when built so,
    else the repository's `schemas/` copy (editable installs); None when neither is there."""
    here = Path(__file__).resolve()
    for candidate in (
        here.parent.parent / "schemas" / SCHEMA_NAME,
        here.parents[3] / "schemas" / SCHEMA_NAME if len(here.parents) > 3 else None,
    ):
        if candidate is not None and candidate.is_file():
            return candidate
    return None
