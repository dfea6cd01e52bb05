"""What the convergence agent makes of merges a bad scan spoils and of scan files copied under
new names: real P65 files, normalised and merged by the plugin with xraylarch (no noise value is
written down here), then decided on."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def merges(paths: list[Path]) -> list[dict]:
    """The merge the plugin sends after each scan, in order."""
    from asapo_pipelines_xas.merge import Merger
    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.readers import read_scan

    params = NormalizeParams.model_validate(NORMALIZE)
    merger = Merger()
    return [merger.add(normalize_scan(read_scan(p), params)).to_json() for p in paths]


def decisions(docs: list[dict]) -> list[dict]:
    agent = ConvergenceAgent(ConvergenceParams(**ADVISOR))
    out = [agent.decide(doc) for doc in docs]
    assert all(d is not None for d in out)
    return out  # type: ignore[return-value]


def test_a_merge_noisier_than_its_scans_is_not_taken_for_a_noise_floor(tmp_path):
    clean = merges([write_scan(tmp_path / "clean", i) for i in range(2)])
    spoiled = merges([write_scan(tmp_path / "glitch", 0), write_scan(tmp_path / "glitch", 1, 3)])
    merged = spoiled[-1]
    singles = [s["epsilon_k"] for s in merged["scans"]]
    # as xraylarch computes them: averaging the bad scan in made the merge worse than the best
    assert merged["values"]["epsilon_k"] > 1.2 * min(singles)

    assert decisions(clean)[-1]["action"] == "more_scans"
    decision = decisions(spoiled)[-1]
    assert decision["action"] == "change_parameters", decision["reason"]
    assert decision["item"] is None
    assert "noisier than its best scan" in decision["reason"]
    assert f"check scans {merged['scans'][1]['scan']}" in decision["reason"]


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
