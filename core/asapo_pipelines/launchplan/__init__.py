"""How a pipeline's workers are launched, whatever executor launches them (#14).

Every executor starts the same `pipeline worker FILE UNIT --replica N`: on a delivered copy of
the pipeline file, in a Python environment it finds or creates, and restarts it by the same
rules. Those pieces live here rather than in one backend, so the local, Nomad and Slurm
executors (and a facility's own) share them without importing each other:

- `job`: the job type (`batch` or `service`) and the pipeline file as workers get it;
- `python_env`: the workers' Python (on PATH, an existing venv, or one installed from pinned
  distributions) and the install script that creates it;
- `restart`: the restart policy and the tracker that decides each restart (Nomad's semantics);
- `jobspec` and `compile`: the pipeline's one job, written in Nomad's job JSON because the local
  executor runs that very job on this machine and the Nomad executor submits it to a cluster;
- `rundir`: where a run on this machine keeps its state file (`<data>/runs/<job>/state.json`),
  written by the local executor and read by `pipeline status` and the viewer;
- `errors`: the one error a plan raises.

Plugin authors import the shared pieces from `asapo_pipelines.sdk.executors`, not from here.
"""
