"""`extra_options` is checked as sbatch reads it: the real sbatch (`--test-only -v` lists the
options it took, submitting nothing) takes each refused spelling for the option the config
names, and each kept item for none the executor sets."""

from __future__ import annotations

import subprocess

from test_slurm_plan import OWNED_SPELLINGS

from asapo_pipelines_slurm.config import RESERVED_OPTIONS
from asapo_pipelines_slurm.sbatch_options import parse


def _taken(item: str, env: dict[str, str], script: str) -> set[str]:
    """The options sbatch says it took (its "defined options" with -v)."""
    done = subprocess.run(
        ["sbatch", "--test-only", "-v", item, script],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = done.stderr.split("defined options", 2)[1].splitlines()
    return {line.split(":", 2)[1].strip() for line in lines if line.count(":") >= 2}


def test_sbatch_reads_each_refused_spelling_as_the_option_the_config_names(slurm, workdir):
    script = workdir / "job.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    for item in OWNED_SPELLINGS:
        names = {o.name for o in parse(item)}
        assert names & RESERVED_OPTIONS, item
        assert names <= _taken(item, slurm.env, str(script)), item
    for item in ("--comment=beam", "-k", "--mem-per-cpu=100M"):
        assert not _taken(item, slurm.env, str(script)) & RESERVED_OPTIONS, item
