"""`pipeline status FILE` of a run whose `pipeline run` supervisor was killed outright (SIGKILL)
exits 1, as for a failed run: the table says `lost`, and a control system polling the exit code
took it for a run that goes on (it exited 0). `--json` exits the same, its document saying
`lost`. Real `pipeline` processes, a real embedded store, a supervisor killed with SIGKILL."""

from __future__ import annotations

import json
from pathlib import Path

from faults_support import lost_run, pipeline


def test_status_of_a_lost_run_exits_1_with_and_without_json(tmp_path: Path) -> None:
    with lost_run(tmp_path, count=5) as lost:
        shown = pipeline("status", str(lost.file), cwd=tmp_path)
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert "lost" in shown.stdout.splitlines()[0], shown.stdout
        assert "Traceback" not in shown.stderr, shown.stderr

        as_json = pipeline("status", str(lost.file), "--json", cwd=tmp_path)
        assert as_json.returncode == 1, as_json.stderr
        assert json.loads(as_json.stdout)["status"] == "lost"

        # `pipeline stop` is what the lost run asks for: the run is then stopped, exit 0
        stopped = pipeline("stop", str(lost.file), cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        after = pipeline("status", str(lost.file), "--json", cwd=tmp_path)
        assert after.returncode == 0, after.stdout + after.stderr
        assert json.loads(after.stdout)["status"] != "lost"
