"""What the convergence agent makes of merges a bad scan spoils and of scan files copied under
new names: real P65 files, normalised and merged by the plugin with xraylarch (no noise value is
written down here), then decided on."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from xas_procs import PIPELINE, decision_units, write_pipeline
from xas_testdata import DATA, P65_SCANS

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.params import ConvergenceParams, NormalizeParams

#: the P65 example's normalisation and agent (examples/p65-xas.pipeline.yaml)
NORMALIZE = {
    "mode": "transmission",
    "autobk": {"rbkg": 1, "kweight": 2},
    "noise": {"rmin": 15, "rmax": 25, "kweight": 2, "kmin": 2},
}
ADVISOR = {"target_noise": 1.2e-4, "max_scans": 20}
#: the transmission counter (VFC02) of the P65 files
IT = 11


def write_scan(directory: Path, index: int, glitch: int = 0) -> Path:
    """P65 repeat `index` (a copy of a bundled scan); with `glitch` points of its transmission
    counts 0.5 % low, in the EXAFS region (a short beam or detector glitch)."""
    lines = (DATA / P65_SCANS[index % len(P65_SCANS)]).read_text().splitlines()
    data = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    start = data[int(len(data) * 0.6)]
    for i in range(start, start + glitch):
        cells = lines[i].split()
        cells[IT] = repr(float(cells[IT]) * 0.995)
        lines[i] = " ".join(cells)
    directory.mkdir(exist_ok=True)
    path = directory / f"20K_GOE_Fe_K_240.{index:05d}.xdi"
    path.write_text("\n".join(lines) + "\n")
    return path


def merges(paths: list[Path], later_version: bool = False) -> list[dict]:
    """The merge the plugin sends after each scan, in order; each scan under the id it has in
    a pipeline (xas.normalize's: the provenance key of xas.scan-files' message), keyed as a
    file that changed after it was read (`<name>@<size>-<mtime_ns>`) with `later_version`."""
    from asapo_pipelines.sdk.units import keyed_output
    from asapo_pipelines_xas.merge import Merger
    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.readers import read_scan
    from asapo_pipelines_xas.scanfiles import signature

    params = NormalizeParams.model_validate(NORMALIZE)
    merger = Merger()
    out = []
    for path in paths:
        spectrum = normalize_scan(read_scan(path), params)
        key = path.name + ("@{}-{}".format(*signature(path)) if later_version else "")
        spectrum.metadata["scan_id"] = keyed_output("p65-xas/scans", "scans", key)
        out.append(merger.add(spectrum).to_json())
    return out


def decisions(docs: list[dict]) -> list[dict]:
    agent = ConvergenceAgent(ConvergenceParams(**ADVISOR))
    out = [agent.decide(doc) for doc in docs]
    assert all(d is not None for d in out)
    return out  # type: ignore[return-value]


@pytest.mark.parametrize("later_version", [False, True], ids=["first-read", "later-version"])
def test_a_merge_noisier_than_its_scans_is_not_taken_for_a_noise_floor(tmp_path, later_version):
    clean = merges([write_scan(tmp_path / "clean", i) for i in range(2)])
    bad = write_scan(tmp_path / "glitch", 1, 3)
    spoiled = merges([write_scan(tmp_path / "glitch", 0), bad], later_version)
    merged = spoiled[-1]
    singles = [s["epsilon_k"] for s in merged["scans"]]
    # as xraylarch computes them: averaging the bad scan in made the merge worse than the best
    assert merged["values"]["epsilon_k"] > 1.2 * min(singles)

    assert decisions(clean)[-1]["action"] == "more_scans"
    decision = decisions(spoiled)[-1]
    assert decision["action"] == "change_parameters", decision["reason"]
    assert decision["item"] is None
    assert "noisier than its best scan" in decision["reason"]
    # the bad scan by its file's name, which the scientist knows it by, and the sample
    sample = merged["group"]["sample"]
    assert decision["reason"].endswith(f"check scan {bad.name} of sample {sample}")
    # its id in the merge, for a program
    assert decision["metrics"]["suspect_scans"] == [merged["scans"][1]["scan"]]


def pipeline_cmd(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(cwd / "cache")
    return subprocess.run(
        [PIPELINE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def last_value(cwd: Path, pipeline: Path, stream: str) -> dict:
    """The newest message of one of the run's streams, as `pipeline tail --json` prints it."""
    tail = pipeline_cmd(cwd, "tail", str(pipeline), stream, "--json")
    assert tail.returncode == 0, tail.stderr
    return json.loads(tail.stdout.splitlines()[-1])["value"]


def test_a_pipeline_names_the_scan_to_check_by_its_file(tmp_path):
    """The P65 example's units on a good and a glitched repeat: the decision names the bad
    scan as the scan directory and the merge's record do, not by its provenance key."""
    write_scan(tmp_path / "data", 0)
    bad = write_scan(tmp_path / "data", 1, 3)
    units = decision_units("data", NORMALIZE, ADVISOR)
    pipeline = write_pipeline(tmp_path, "screening", units, streams={"plans": {}})
    run = pipeline_cmd(tmp_path, "run", str(pipeline))
    assert run.returncode == 0, run.stdout + run.stderr

    merged = last_value(tmp_path, pipeline, "merged")
    plan = last_value(tmp_path, pipeline, "plans")
    assert plan["action"] == "change_parameters", plan["reason"]
    # the scan's id in the merge is the source's provenance key, which holds the file name
    scan_id = merged["scans"][1]["scan"]
    assert scan_id != bad.name
    assert scan_id.endswith(bad.name)
    sample = merged["group"]["sample"]
    assert plan["reason"].endswith(
        f"a scan is likely bad: check scan {bad.name} of sample {sample}"
    )
    assert plan["arguments"]["metrics"]["suspect_scans"] == [scan_id]


@pytest.mark.parametrize("glitched", [3, 5])
def test_the_merges_after_a_bad_scan_ask_for_no_absurd_number(tmp_path, glitched):
    paths = [write_scan(tmp_path, 0), write_scan(tmp_path, 1, glitched)]
    paths += [write_scan(tmp_path, i) for i in range(2, 5)]
    for decision in decisions(merges(paths))[1:]:
        assert decision["action"] == "change_parameters", decision["reason"]
        assert decision["item"] is None


def test_copies_of_a_scan_do_not_count_as_beam_or_sample_failures(tmp_path):
    original = [write_scan(tmp_path, i) for i in range(2)]
    copies = []
    for i in range(3):
        copy = tmp_path / f"20K_GOE_Fe_K_240.{10 + i:05d}.xdi"
        copy.write_bytes(original[i % 2].read_bytes())
        copies.append(copy)
    docs = merges(original + copies)
    rejected = docs[-1]["rejected"]
    assert len(rejected) == 3
    assert all(r["reasons"][0].startswith("duplicate of scan") for r in rejected)
    decision = decisions(docs)[-1]
    assert decision["action"] == "more_scans", decision["reason"]
    assert "check the beam and the sample" not in decision["reason"]
