"""The P65 example, run by `pipeline run` with real workers: a changed parameter is refused with
one sentence and nothing written; `--fresh` writes new NeXus entries holding the new values (as
xraylarch computes them) and their provenance; the old run's entries stay apart; an unchanged
file resumes and processes nothing twice."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from runs_helpers import P65_SCANS, file_digest, one_sentence, p65_copy, store_contents

from helpers import run_pipeline

# the core session has neither the plugins nor h5py; the `all` session runs these
pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")
pytest.importorskip("asapo_pipelines_nexus", reason="needs the NeXus plugin (plugins/nexus)")
h5py = pytest.importorskip("h5py", reason="needs h5py (with the NeXus plugin)")
from asapo_pipelines_nexus.writer import is_decision  # noqa: E402  (after the skips)

pytestmark = pytest.mark.slow
FILE = "p65-xas.pipeline.yaml"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def entries(nxs: Path) -> dict[str, dict]:
    """entry name -> run, kind (the content type, or `decision` for the agent's decisions,
    which hold no data), provenance fields and the arrays the tests compare."""
    out = {}
    with h5py.File(nxs, "r") as f:
        for name, entry in f.items():
            prov = entry["provenance"]
            fields = {k: _text(v[()]) for k, v in prov.items() if isinstance(v, h5py.Dataset)}
            for note in ("parameters", "inputs", "source_files"):
                fields[note] = json.loads(_text(prov[note]["data"][()]))
            decision = is_decision(entry)
            data = {} if decision else entry["data"]
            out[name] = {
                "run": _text(entry.attrs["asapo_run"]),
                "type": "decision" if decision else _text(entry.attrs["asapo_content_type"]),
                "prov": fields,
                "arrays": {k: data[k][()] for k in ("energy", "mu", "bkg") if k in data},
            }
    return out


def larch_bkg(energy: np.ndarray, mu: np.ndarray, params: dict) -> np.ndarray:
    """The background xraylarch computes for these params (the reference of the entry)."""
    from larch import Group
    from larch.xafs import autobk, pre_edge

    group = Group()
    pre = {k: v for k, v in (params.get("pre_edge") or {}).items() if k != "enabled"}
    pre_edge(energy, mu, group=group, **pre)
    bkg = {k: v for k, v in params["autobk"].items() if k != "enabled"}
    autobk(energy, mu, group=group, **bkg)
    return np.asarray(group.bkg)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("p65-runs")
    p65_copy(work)
    first = run_pipeline("run", FILE, cwd=work, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "run r1 of pipeline p65-xas starts" in first.stdout
    return work


def test_changed_parameter_is_refused_with_one_sentence_and_nothing_written(work):
    store, nxs = work / ".pipeline-data", work / "results" / "p65.nxs"
    before, digest = store_contents(store), file_digest(nxs)
    text = (work / FILE).read_text()
    (work / FILE).write_text(
        text.replace("autobk: {rbkg: 1, kweight: 2}", "autobk: {rbkg: 1.2, kweight: 2}")
    )
    refused = run_pipeline("run", FILE, cwd=work, timeout=300)
    assert refused.returncode == 1
    line = one_sentence(refused.stderr)
    assert "since run r1" in line
    assert "normalize (autobk.rbkg 1.0 -> 1.2)" in line
    assert "--fresh" in line
    assert "--resume" in line
    # the units downstream of normalize are named; the source, whose input did not change, not
    for unit in ("merge", "advisor", "writer"):
        assert f"{unit} (" in line
    assert "scans (" not in line
    assert store_contents(store) == before
    assert file_digest(nxs) == digest


def test_fresh_run_writes_new_entries_with_new_values_and_provenance(work):
    nxs = work / "results" / "p65.nxs"
    fresh = run_pipeline("run", FILE, "--fresh", cwd=work, timeout=600)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "run r2 of pipeline p65-xas starts" in fresh.stdout
    found = entries(nxs)
    by_run: dict[str, dict[str, int]] = {}
    for entry in found.values():
        counts = by_run.setdefault(entry["run"], {})
        counts[entry["type"]] = counts.get(entry["type"], 0) + 1
    # runs are kept apart: each has its own scans, spectra, merges and the agent's decisions
    decisions = int(re.search(r"^advisor: suggestions (\d+)", fresh.stdout, re.M).group(1))
    expected = {"xas/scan": 2, "xas/spectrum": 2, "xas/merged": 2, "decision": decisions}
    assert by_run == {"r1": expected, "r2": expected}
    spectra = {e["run"]: [] for e in found.values()}
    for entry in found.values():
        if entry["type"] == "xas/spectrum":
            spectra[entry["run"]].append(entry)
    for run, rbkg in (("r1", 1.0), ("r2", 1.2)):
        for entry in spectra[run]:
            prov = entry["prov"]
            assert prov["parameters"]["autobk"]["rbkg"] == rbkg
            assert prov["run"] == run
            assert prov["unit"] == "xas.normalize"
            assert prov["instance"] == "normalize"
            assert prov["distribution"] == "asapo-pipelines-xas"
            assert prov["distribution_version"] == version("asapo-pipelines-xas")
            assert prov["program"] == "asapo-pipelines"
            assert prov["version"] == version("asapo-pipelines")
            assert prov["pipeline_file"] == str((work / FILE).resolve())
            assert len(prov["fingerprint"]) == 16
            assert prov["inputs"]["inputs"], "the input message ids"
            assert prov["inputs"]["message"]["data_source"] == f"p65-xas.{run}.spectra"
            assert prov["source_files"]
            assert set(prov["source_files"]) <= set(P65_SCANS)
            for stamp in ("date", "message_time", "run_started"):
                assert prov[stamp][:4].isdigit(), stamp
            # the stored background is xraylarch's for the recorded params
            arrays = entry["arrays"]
            reference = larch_bkg(arrays["energy"], arrays["mu"], prov["parameters"])
            np.testing.assert_allclose(arrays["bkg"], reference, rtol=1e-9, atol=1e-12)
    old = {e["prov"]["source_files"][0]: e["arrays"]["bkg"] for e in spectra["r1"]}
    new = {e["prov"]["source_files"][0]: e["arrays"]["bkg"] for e in spectra["r2"]}
    assert old.keys() == new.keys() == set(P65_SCANS)
    for name in P65_SCANS:
        assert not np.allclose(old[name], new[name]), "rbkg 1.2 must change the background"
    fingerprints = {e["run"]: e["prov"]["fingerprint"] for e in spectra["r1"] + spectra["r2"]}
    assert fingerprints["r1"] != fingerprints["r2"]


def test_unchanged_file_resumes_and_processes_nothing_twice(work):
    store, nxs = work / ".pipeline-data", work / "results" / "p65.nxs"
    before, count = store_contents(store), len(entries(nxs))
    again = run_pipeline("run", FILE, cwd=work, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming run r2 of pipeline p65-xas (unchanged)" in again.stdout
    after = store_contents(store)
    # the runs' own streams hold exactly what they held: no message was produced again
    own = {k: v for k, v in before.items() if k[0].startswith(("p65-xas.r1.", "p65-xas.r2."))}
    assert own
    assert {k: after[k] for k in own} == own
    assert len(entries(nxs)) == count
    listed = run_pipeline("runs", FILE, "--json", cwd=work)
    assert listed.returncode == 0, listed.stderr
    runs = {r["id"]: r for r in json.loads(listed.stdout)["runs"]}
    assert set(runs) == {"r1", "r2"}
    assert runs["r2"]["sessions"] == 2
    assert runs["r1"]["state"] == runs["r2"]["state"] == "complete"
    assert runs["r1"]["configurations"]["normalize"]["params"]["autobk"]["rbkg"] == 1.0
    assert runs["r2"]["configurations"]["normalize"]["params"]["autobk"]["rbkg"] == 1.2
    table = run_pipeline("runs", FILE, cwd=work)
    assert table.returncode == 0
    for word in ("r1", "r2", "complete"):
        assert word in table.stdout
