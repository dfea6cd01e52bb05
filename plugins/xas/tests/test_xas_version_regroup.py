"""A scan file corrected after it was processed so that it belongs to another group (its sample
renamed): the new version replaces the old one, which must stop counting in its old group. The
tester's edge/relabel: two repeats of the bundled Cu foil, both `Sample.name: CuA`; after a run,
the second is relabelled CuB and the run resumed. Real files, xraylarch at test time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from xas_procs import pipeline_command, read, scan_chain, write_pipeline
from xas_testdata import DATA, REFERENCE_SETTINGS

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import Spectrum, normalize_scan
from asapo_pipelines_xas.params import ConvergenceParams, MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan

FOIL = "cu_metal_rt.xdi"
NORMALIZE = {**REFERENCE_SETTINGS, "mode": "transmission"}
ADVISOR = {"target_noise": 1.0e-4, "max_scans": 10}
SOURCE = "relabel/scans|scans|key:"


def write_scan(path: Path, sample: str, seed: int | None = None) -> Path:
    """The bundled foil labelled `sample`; with a seed another measurement of it (its
    transmitted counts changed by 0.02 %)."""
    rng = np.random.default_rng(seed) if seed is not None else None
    lines = []
    for line in (DATA / FOIL).read_text().splitlines():
        if line.startswith("# Sample.name:"):
            lines.append(f"# Sample.name: {sample}")
        elif line.startswith("#") or not line.strip() or rng is None:
            lines.append(line)
        else:
            energy, i0, it, _ = (float(x) for x in line.split())
            it *= 1 + 2e-4 * rng.standard_normal()
            lines.append(" ".join(repr(v) for v in (energy, i0, it, float(np.log(i0 / it)))))
    path.write_text("\n".join(lines) + "\n")
    return path


def spectrum(path: Path, key: str, **metadata: Any) -> Spectrum:
    """A file normalised as xas.normalize sends it, under the source key `key`."""
    params = NormalizeParams.model_validate(NORMALIZE)
    out = normalize_scan(read_scan(path), params)
    out.metadata.update(scan_id=SOURCE + key, **metadata)
    return out


def test_a_new_version_in_another_group_leaves_its_old_group(tmp_path):
    first = spectrum(write_scan(tmp_path / "a_001.xdi", "CuA", 1), "a_001.xdi")
    old = spectrum(write_scan(tmp_path / "a_002.xdi", "CuA", 2), "a_002.xdi")
    new = spectrum(
        write_scan(tmp_path / "a_002.xdi", "CuB", 2),
        "a_002.xdi@20380-1",
        replaces="a_002.xdi",
        file_version=2,
    )
    merger = Merger(MergeParams(align="none"))
    sent = [merger.add(first), merger.add(old), *merger.add_all(new)]
    old_group, new_group = sent[-2].to_json(), sent[-1].to_json()
    assert old_group["group"]["sample"] == "CuA"
    assert new_group["group"]["sample"] == "CuB"
    # the old group counts the old version no more: merged as the first scan alone
    alone = Merger(MergeParams(align="none")).add(first).to_json()
    assert old_group["n_merged"] == 1
    assert old_group["accepted"] == alone["accepted"] == [SOURCE + "a_001.xdi"]
    assert old_group["values"]["epsilon_k"] == pytest.approx(alone["values"]["epsilon_k"])
    (superseded,) = old_group["rejected"]
    assert superseded["scan"] == SOURCE + "a_002.xdi"
    assert superseded["superseded"] is True
    assert superseded["reasons"] == [
        "replaced by version 2 of the same file, which changed after this version was read "
        "and belongs to another group (sample CuB, element Cu, edge K, mode transmission), "
        "where it is merged"
    ]
    assert new_group["n_merged"] == 1
    assert new_group["accepted"] == [SOURCE + "a_002.xdi@20380-1"]
    # the agent does not count the old version as a faulty scan of CuA
    agent = ConvergenceAgent(ConvergenceParams(**ADVISOR))
    decisions = [agent.decide(m.to_json()) for m in sent]
    assert decisions[-2]["action"] == "more_scans"
    assert decisions[-2]["metrics"]["n_merged"] == 1


def test_a_group_left_with_no_scan_gets_a_stop_not_a_beam_check(tmp_path):
    old = spectrum(write_scan(tmp_path / "a_002.xdi", "CuA", 2), "a_002.xdi")
    new = spectrum(
        write_scan(tmp_path / "a_002.xdi", "CuB", 2),
        "a_002.xdi@20380-1",
        replaces="a_002.xdi",
        file_version=2,
    )
    merger = Merger(MergeParams(align="none"))
    sent = [merger.add(old), *merger.add_all(new)]
    assert sent[-2].n_merged == 0
    agent = ConvergenceAgent(ConvergenceParams(**ADVISOR))
    decision = [agent.decide(m.to_json()) for m in sent][-2]
    assert decision["action"] == "stop"
    assert decision["reason"].startswith("no scan of this group is left to merge")
    assert "beam" not in decision["reason"]


def merge_summary(pipeline: Path, *args: str) -> dict[str, Any]:
    done = pipeline_command(pipeline, "run", "--json", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    status = json.loads(done.stdout)
    return next(u["summary"] for u in status["units"] if u["task"] == "merge")


def test_a_file_relabelled_between_runs_counts_once(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_scan(data / "a_001.xdi", "CuA", 1)
    write_scan(data / "a_002.xdi", "CuA", 2)
    pipeline = write_pipeline(tmp_path, "relabel", scan_chain("data", NORMALIZE, {"align": "none"}))
    first = merge_summary(pipeline)
    assert {k: v["merged"] for k, v in first["merges"].items()} == {"CuA/Cu/K/transmission": 2}

    write_scan(data / "a_002.xdi", "CuB", 2)  # the sample's name corrected, nothing else
    again = merge_summary(pipeline, "--resume")
    merges = again["merges"]
    # one measurement, counted once: in CuB, no longer in CuA
    assert merges["CuA/Cu/K/transmission"]["merged"] == 1
    assert merges["CuB/Cu/K/transmission"]["merged"] == 1
    # the stream's latest merge of CuA is that of a_001 alone, the old version superseded
    cua = [
        body for _, body in read(tmp_path / "store", "merged") if body["group"]["sample"] == "CuA"
    ]
    latest = cua[-1]
    assert latest["n_merged"] == 1
    (superseded,) = latest["rejected"]
    assert superseded["superseded"] is True
    assert "belongs to another group (sample CuB" in superseded["reasons"][0]
    alone = Merger(MergeParams(align="none")).add(
        normalize_scan(read_scan(data / "a_001.xdi"), NormalizeParams.model_validate(NORMALIZE))
    )
    assert latest["values"]["epsilon_k"] == pytest.approx(alone.values["epsilon_k"], rel=1e-9)
