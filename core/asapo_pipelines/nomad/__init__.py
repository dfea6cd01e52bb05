"""The Nomad side: compile a pipeline to one Nomad job and drive it on a cluster.

- `jobspec`: a small typed plan -> Nomad's HTTP API JSON (`{"Job": {...}}`).
- `compile`: a validated pipeline -> that plan.
- `client`: deploy, start, stop, status, logs and plan through python-nomad, configured from the
  standard NOMAD_* environment variables with TLS verified by default.
- `frames`: decoding of Nomad's framed log stream.

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
