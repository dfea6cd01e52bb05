"""`pipeline status FILE` after the file's runs were pruned (`pipeline prune FILE --run RUN`).
The local run directory outlives the runs it held, and status showed the pruned job as
`complete` with its units, a run no store holds any more. Now it says there is no run, in the
sentence it says for a file never run. Real `pipeline` commands, a real embedded store."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import files_to_sink, run_pipeline

#: Nomad is asked nowhere here: a closed port makes any question to it fail loudly
NO_NOMAD = {"NOMAD_ADDR": "http://127.0.0.1:9"}


def test_status_of_a_file_whose_runs_were_pruned_says_there_is_no_run(tmp_path: Path) -> None:
    file = files_to_sink(tmp_path, "gone", files=3)
    never = run_pipeline("status", str(file), "--executor", "local", env=NO_NOMAD)
    assert never.returncode == 2, never.stdout
    assert never.stderr.startswith("error: no local run of"), never.stderr

    for args in ((), ("--fresh",)):  # r1, then r2
        done = run_pipeline("run", str(file), *args, env=NO_NOMAD, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr

    # r1 pruned: the run directory holds r2, which status still shows
    pruned = run_pipeline("prune", str(file), "--run", "r1", env=NO_NOMAD)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    shown = run_pipeline("status", str(file), "--json", env=NO_NOMAD)
    assert shown.returncode == 0, shown.stderr
    assert (json.loads(shown.stdout)["run"], json.loads(shown.stdout)["status"]) == (
        "r2",
        "complete",
    )

    # every run pruned: no ghost job, the never-run sentence, as text and as --json
    pruned = run_pipeline("prune", str(file), "--run", "r2", env=NO_NOMAD)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    ghost = run_pipeline("status", str(file), env=NO_NOMAD)
    assert (ghost.returncode, ghost.stdout) == (2, ""), ghost.stdout
    assert ghost.stderr == never.stderr
    # a tool still gets one JSON document on stdout: no run, no units
    ghost = run_pipeline("status", str(file), "--json", env=NO_NOMAD)
    assert ghost.returncode == 2
    assert ghost.stderr == never.stderr
    document = json.loads(ghost.stdout)
    assert (document["status"], document["units"]) == ("not started", [])
