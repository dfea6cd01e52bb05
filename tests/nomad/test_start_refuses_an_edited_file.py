"""`pipeline start FILE` of a stopped Nomad job runs the job as it was deployed: when FILE's
units are no longer configured as the run records them, it refuses in one sentence naming the
change, registers nothing and gives the run no session (an outside tester's Slurm `start` said
"resuming run r1 (unchanged)" and ran the old configuration). Real `pipeline` processes
against the loopback Nomad double."""

from __future__ import annotations

import json
from pathlib import Path

from fake_nomad import FakeNomad
from test_failed_deploy_says_nothing_resumed import PIPELINE, deployed_file

from helpers import run_pipeline


def test_contract_nomad_api_start_of_an_edited_file_is_refused(
    tmp_path: Path, nomad_env: FakeNomad
):
    file = deployed_file(tmp_path)
    stopped = run_pipeline("stop", str(file), cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    file.write_text(PIPELINE.replace('pattern: "*.txt"', 'pattern: "*.dat"'))
    registered = len(nomad_env.calls("POST", "/v1/jobs"))

    started = run_pipeline("start", str(file), cwd=tmp_path)
    assert started.returncode == 1, started.stdout
    assert started.stderr.strip() == (
        'error: the configuration changed since run r1 was deployed: files (pattern "*.txt" '
        '-> "*.dat"); sink (upstream configuration changed); `pipeline start` would run the '
        "job as deployed, so nothing was started: "
        f"`pipeline deploy --resume {file}` applies the change, or put the file back as it was"
    ), started.stderr
    assert len(nomad_env.calls("POST", "/v1/jobs")) == registered
    listed = run_pipeline("runs", str(file), "--json", cwd=tmp_path)
    (run,) = json.loads(listed.stdout)["runs"]
    assert run["sessions"] == 1, run
