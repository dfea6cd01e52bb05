"""The Nomad side: compile a pipeline to one Nomad job and drive it on a cluster.

- `jobspec`: a small typed plan -> Nomad's HTTP API JSON (`{"Job": {...}}`).
- `compile`: a validated pipeline -> that plan.
- `client`: deploy, start, stop, status, logs and plan through python-nomad, configured from the
  standard NOMAD_* environment variables with TLS verified by default.
- `frames`: decoding of Nomad's framed log stream.

Importing this package stays light: python-nomad and requests are imported by `client` only.
"""
