"""Copies of a scan beside its real repeats make no merge entries of their own, and a merge's
title counts the scans as the convergence agent counts them. Before, the outside tester's two
repeats with nine copies of the first made merges 3 to 11, each the same 2-scan spectrum, titled
`merge 11 of c_Fe_K, ... (2 of 11 scans)`: the copies read as nine bad scans. Now a copy that
changes nothing merged is not sent (the merge's log says it left it out), the next merge lists
it, and its title says `(2 scans; 2 copies of scans left out)`. The example P65 pipeline on the
real P65 files (two copies of the first repeat read between the repeats); the merged E0 is
xraylarch's `merge_groups` and `pre_edge` at test time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
from nexus_cli import pipeline_ok as _pipeline
from nexus_cli import text as _text
from nexus_testdata import DATA, P65_SCANS
from ruamel.yaml import YAML

pytest.importorskip("asapo_pipelines_xas")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"
STEM = P65_SCANS[0].rsplit(".", 2)[0]
#: the first repeat, two copies of it, then the second repeat, in the order they are read
FILES = {
    f"{STEM}.0000{i}.xdi": source for i, source in enumerate([*[P65_SCANS[0]] * 3, P65_SCANS[1]])
}
GROUP = f"{STEM}, Fe, K, transmission"


def larch_e0(paths: list[Path]) -> float:
    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.params import NormalizeParams
    from asapo_pipelines_xas.readers import read_scan
    from larch import Group
    from larch.io import merge_groups
    from larch.xafs import pre_edge

    doc = YAML(typ="safe").load(EXAMPLE.read_text())
    params = NormalizeParams.model_validate(doc["units"]["normalize"]["params"])
    groups = []
    for path in paths:
        spectrum = normalize_scan(read_scan(path), params)
        groups.append(Group(energy=spectrum.arrays["energy"], mu=spectrum.arrays["mu"]))
    merged = merge_groups(groups, xarray="energy", yarray="mu", kind="cubic", trim=True)
    pre_edge(merged)
    return float(merged.e0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("p65-copies")
    (work / "data").mkdir()
    for name, source in FILES.items():
        shutil.copy(DATA / source, work / "data" / name)
    shutil.copy(EXAMPLE, work / EXAMPLE.name)
    _pipeline(work, "run", EXAMPLE.name)
    return work


def tail(work: Path, stream: str) -> list[dict]:
    out = _pipeline(work, "tail", EXAMPLE.name, stream, "--all", "--json").stdout
    return [json.loads(line)["value"] for line in out.splitlines() if line.strip()]


def test_copies_make_no_merge_of_their_own(run):
    merges = tail(run, "merged")
    assert [(m["number"], m["n_merged"]) for m in merges] == [(1, 1), (2, 2)]
    last = merges[-1]
    copies = sorted(r["scan"].rpartition("|key:")[2] for r in last["rejected"])
    assert copies == [f"{STEM}.00001.xdi", f"{STEM}.00002.xdi"]
    assert all(r["duplicate"] for r in last["rejected"])
    want = larch_e0([DATA / n for n in P65_SCANS])
    assert last["values"]["e0"] == pytest.approx(want, abs=0.3)
    log = _pipeline(run, "logs", EXAMPLE.name, "merge", "--stderr").stdout
    assert f"leaves out {STEM}.00001.xdi, duplicate of scan {STEM}.00000.xdi" in log


def test_the_title_counts_the_scans_as_the_agent_does(run):
    with h5py.File(run / "results" / "p65.nxs", "r", swmr=True, locking=False) as f:
        titles = [_text(e["title"][()]) for e in f.values()]
    merge_titles = sorted(t for t in titles if ": merge " in t)
    assert [t.partition(": ")[2] for t in merge_titles] == [
        f"merge 1 of {GROUP} (1 scan)",
        f"merge 2 of {GROUP} (2 scans; 2 copies of scans left out)",
    ]
    plan = tail(run, "plans")[-1]
    assert plan["arguments"]["metrics"]["n_scans"] == 2
