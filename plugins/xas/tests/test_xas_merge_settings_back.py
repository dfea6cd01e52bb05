"""A session that goes back to earlier normalisation settings makes them the newest again: the
merge averages the scans normalised with the settings in force now, not those of the session
between (the outside tester: rbkg 1, then a session with rbkg 1.2, then back to rbkg 1 gave
`scans 4, merged 1, rejected 3`, keeping the one rbkg 1.2 scan). Real P65 files (and two
variants of them with It changed by noise, so that each is another measurement), through real
`pipeline run` sessions; the expected merge is xraylarch's `merge_groups` and `pre_edge` at test
time."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from xas_procs import pipeline_command, read, scan_chain, write_pipeline
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS, larch_merge_e0, p65_variant

from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan

NORMALIZE = {**REFERENCE_SETTINGS, "mode": "transmission"}
#: P65 columns: 11 It
STEM = P65_SCANS[0].rsplit(".", 2)[0]


def variant(source: str, path: Path, seed: int) -> Path:
    """`source` with It changed by 1e-3 relative noise: another measurement of the same."""
    return p65_variant(source, path, seed=seed, noise=1e-3)


def run(pipeline: Path, *args: str) -> dict[str, Any]:
    result: subprocess.CompletedProcess[str] = pipeline_command(pipeline, "run", "--json", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(result.stdout)
    return next(u["summary"] for u in status["units"] if u["task"] == "merge")


def larch_e0(paths: list[Path]) -> float:
    """E0 of xraylarch's merge of the files' mu (rbkg 1: the run's first settings)."""
    return larch_merge_e0(paths, NORMALIZE)


def files_of(merged: dict[str, Any], names: list[str]) -> list[str]:
    """The file names of the scan ids `names` (xas.scan-files' keys end in the file name)."""
    return sorted(n.rsplit(":", 1)[-1].rsplit("/", 1)[-1] for n in names)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, tmp_path / "data" / name)
    return tmp_path


def test_a_session_back_at_the_first_settings_merges_the_scans_normalised_with_them(workdir):
    data = workdir / "data"
    pipeline = write_pipeline(workdir, "settings-back", scan_chain("data", NORMALIZE, {}))
    run(pipeline)
    variant(P65_SCANS[0], data / f"{STEM}.00002.xdi", seed=2)
    run(pipeline, "--resume", "--set", "normalize.autobk.rbkg=1.2")
    variant(P65_SCANS[1], data / f"{STEM}.00003.xdi", seed=3)
    summary = run(pipeline, "--resume")  # no --set: rbkg 1 again, as the pipeline file has it

    last = read(workdir / "store", "merged")[-1][1]
    want = [P65_SCANS[0], P65_SCANS[1], f"{STEM}.00003.xdi"]
    assert files_of(last, last["accepted"]) == want, last["rejected"]
    (superseded,) = last["rejected"]
    assert files_of(last, [superseded["scan"]]) == [f"{STEM}.00002.xdi"]
    assert superseded["superseded"] is True
    assert superseded["reasons"] == [
        "normalised with other settings than the newest (autobk.rbkg 1.2, not 1); only scans "
        "normalised alike are merged: reprocess it to include it"
    ]
    assert last["settings"]["autobk"]["rbkg"] == 1
    assert last["values"]["e0"] == pytest.approx(larch_e0([data / n for n in want]), abs=0.3)
    (group,) = summary["merges"].values()
    assert (group["scans"], group["merged"], group["rejected"]) == (4, 3, 1)

    # a restarted merge restores the four spectra and reaches the same merge (sent once)
    count = len(read(workdir / "store", "merged"))
    again = run(pipeline, "--resume")
    assert len(read(workdir / "store", "merged")) == count
    (group,) = again["merges"].values()
    assert (group["scans"], group["merged"], group["rejected"]) == (4, 3, 1)


def test_the_newest_settings_do_not_depend_on_the_order_the_spectra_arrive_in(tmp_path):
    """An old spectrum redelivered or arriving late does not bring its settings back: the
    settings of the spectrum made last (the time each carries) win, in any order."""
    paths = [shutil.copyfile(DATA / n, tmp_path / n) for n in P65_SCANS]
    paths += [variant(P65_SCANS[0], tmp_path / f"{STEM}.00002.xdi", seed=2)]
    paths += [variant(P65_SCANS[1], tmp_path / f"{STEM}.00003.xdi", seed=3)]
    first = NormalizeParams.model_validate(NORMALIZE)
    other = NormalizeParams.model_validate({**NORMALIZE, "autobk": {"rbkg": 1.2, "kweight": 2}})
    # made at times 10 (rbkg 1), 20 (rbkg 1.2), 30 (rbkg 1 again)
    made = [(paths[0], first, 10.0), (paths[1], first, 10.0), (paths[2], other, 20.0)]
    made += [(paths[3], first, 30.0)]
    spectra = []
    for path, params, since in made:
        spectrum = normalize_scan(read_scan(Path(path)), params)
        spectrum.metadata["made_at"] = since
        spectra.append(spectrum.to_json())
    orders = [list(range(4)), [3, 2, 1, 0], [0, 3, 1, 2]]
    orders += [random.Random(s).sample(range(4), 4) for s in range(3)]
    for order in orders:
        merger = Merger(MergeParams())
        for i in order:
            result = merger.add(spectra[i]).to_json()
        # the rbkg 1.2 spectrum delivered again last (a redelivery after a restart)
        result = merger.add(spectra[2]).to_json()
        assert sorted(result["accepted"]) == sorted(Path(p).name for p in paths[:2] + paths[3:])
        assert [r["scan"] for r in result["rejected"]] == [Path(paths[2]).name], order
