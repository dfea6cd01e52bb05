"""A source keyed by file name that meets a file rewritten after it was sent counts it
(`changed_not_sent`) and `pipeline run` says so under its summaries; the run's own record of
counts, what `pipeline runs` reads later, did not keep that count, so a user looking at the run
afterwards saw no trace of the new content that reached no unit. Now `pipeline runs` shows it,
in its table and in its JSON. Real plugin distribution, real `pipeline run` and `pipeline runs`,
the embedded store."""

from __future__ import annotations

import json
from pathlib import Path

from test_source_key_changed import _pipeline, _run, _write, env  # noqa: F401 (a fixture)

from helpers import run_pipeline


def test_the_runs_record_counts_keys_changed_after_they_were_sent(
    tmp_path: Path,
    env: dict[str, str],  # noqa: F811 (the fixture imported above)
) -> None:
    _pipeline(tmp_path)
    _run(tmp_path, env)
    _write(tmp_path / "data" / "a.txt", [100.0 + i for i in range(20)])  # rewritten since
    said = _run(tmp_path, env)  # resumes r1
    assert "frames: 1 key was sent before with other content" in said, said

    listed = run_pipeline("runs", "profiles.pipeline.yaml", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    [run] = json.loads(listed.stdout)["runs"]
    assert run["counts"]["frames"]["changed_not_sent"] == 1, run["counts"]
    assert run["counts"]["sink"]["changed_not_sent"] == 0, run["counts"]

    table = run_pipeline("runs", "profiles.pipeline.yaml", cwd=tmp_path, env=env)
    assert table.returncode == 0, table.stderr
    assert "1 changed after sent, not sent again" in table.stdout, table.stdout
