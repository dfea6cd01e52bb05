"""Which scans of a group are the measurement: the outlier screening's reference is the one the
majority of the group's scans agrees with, whatever the files are called; two scans that
disagree with no majority make no merge, and the agent asks to check them rather than for more
repeats of a merge that is not one. Real files (the bundled Cu foil), normalised and merged by
xraylarch at test time; the variants are derived from them as the outside tester's were."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from xas_testdata import DATA, REFERENCE_SETTINGS

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import Spectrum, normalize_scan
from asapo_pipelines_xas.params import ConvergenceParams, MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan

FOIL = "cu_metal_rt.xdi"
#: the tester's pipeline (edge/mixed): transmission, no alignment, target 1e-4
NORMALIZE = {**REFERENCE_SETTINGS, "mode": "transmission"}
ADVISOR = {"target_noise": 1.0e-4, "max_scans": 10}


def _rewrite(path: Path, change) -> Path:
    """`path` with every data row (energy, i0, itrans, mutrans) passed through `change`."""
    lines = []
    for line in (DATA / FOIL).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            lines.append(line)
            continue
        energy, i0, it, mu = (float(x) for x in line.split())
        lines.append(" ".join(repr(float(v)) for v in change(energy, i0, it, mu)))
    path.write_text("\n".join(lines) + "\n")
    return path


def other_sample(path: Path, shift: float = 4.0, scale: float = 0.5) -> Path:
    """The tester's `cu2o_pellet.xdi`: the foil's file, labelled the same sample, with E0 4 eV
    higher and half the absorption (mu = ln(I0/It) halved): another material."""
    return _rewrite(
        path, lambda e, i0, it, mu: (e + shift, i0, i0 * (it / i0) ** scale, mu * scale)
    )


def repeat(path: Path, seed: int = 1, relative: float = 2e-4) -> Path:
    """Another measurement of the foil: its transmitted counts changed by `relative`."""
    rng = np.random.default_rng(seed)

    def change(e, i0, it, mu):
        it = it * (1 + relative * rng.standard_normal())
        return e, i0, it, float(np.log(i0 / it))

    return _rewrite(path, change)


def spectra(paths: list[Path]) -> list[Spectrum]:
    params = NormalizeParams.model_validate(NORMALIZE)
    return [normalize_scan(read_scan(p), params) for p in paths]


def merges(items: list[Spectrum]) -> list[dict]:
    merger = Merger(MergeParams(align="none"))
    return [merger.add(s).to_json() for s in items]


def decisions(items: list[dict]) -> list[dict]:
    agent = ConvergenceAgent(ConvergenceParams(**ADVISOR))
    return [agent.decide(m) for m in items]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("mixed")
    foil = folder / FOIL
    shutil.copyfile(DATA / FOIL, foil)
    return {
        "foil": foil,
        "repeat": repeat(folder / "cu_metal_rt_002.xdi"),
        # sorts before the foil's scans by name (all three have the same start time)
        "first": other_sample(folder / "a_cu2o_pellet.xdi"),
        # and after them
        "last": other_sample(folder / "zz_cu2o_pellet.xdi"),
        # a third material: E0 6 eV higher, 0.4 of the absorption
        "third": other_sample(folder / "b_cuo_pellet.xdi", 6.0, 0.4),
        # the tester's `cu_metal_rt_copy.xdi`: the foil's file under another name
        "copy": Path(shutil.copyfile(DATA / FOIL, folder / "cu_metal_rt_copy.xdi")),
    }


def test_the_two_scans_that_agree_are_merged_against_two_that_agree_with_none(files):
    """Two foil repeats, two other materials: the medians of E0 and edge step over all four
    lie between the foils and the others and agreed with none of them (every scan was
    rejected); the foils are the plurality."""
    foils = spectra([files["foil"], files["repeat"]])
    odd = spectra([files["first"], files["third"]])
    result = merges([*foils, *odd])[-1]
    want = merges(foils)[-1]
    assert result["n_merged"] == 2
    assert sorted(result["accepted"]) == sorted(want["accepted"])
    assert sorted(r["scan"] for r in result["rejected"]) == sorted(
        [files["first"].name, files["third"].name]
    )
    assert result["values"]["e0"] == pytest.approx(want["values"]["e0"], abs=1e-9)
    assert result["values"]["epsilon_k"] == pytest.approx(want["values"]["epsilon_k"], rel=1e-9)


@pytest.mark.parametrize("odd", ["first", "last"])
def test_the_scans_that_agree_are_merged_whatever_the_odd_one_is_called(files, odd):
    foils = spectra([files["foil"], files["repeat"]])
    (pellet,) = spectra([files[odd]])
    result = merges([*foils, pellet])[-1]
    # what the two foil scans give merged alone
    want = merges(foils)[-1]
    assert (
        sorted(result["accepted"])
        == sorted(want["accepted"])
        == [
            "cu_metal_rt.xdi",
            "cu_metal_rt_002.xdi",
        ]
    )
    assert [r["scan"] for r in result["rejected"]] == [files[odd].name]
    assert result["values"]["e0"] == pytest.approx(want["values"]["e0"], abs=1e-9)
    assert result["values"]["edge_step"] == pytest.approx(want["values"]["edge_step"], rel=1e-9)
    assert "no_majority" not in result
    # the pellet's reason quotes the foils' E0, not its own as the group's
    (reason, *_) = result["rejected"][0]["reasons"]
    assert f"E0 {pellet.values['e0']:.2f} eV is +4.00 eV from the group's" in reason


def test_the_agent_names_the_scans_left_out_of_the_merge_in_its_reason(files):
    foils = spectra([files["foil"], files["repeat"]])
    (pellet,) = spectra([files["first"]])
    decision = decisions(merges([*foils, pellet]))[-1]
    assert decision["action"] == "more_scans"
    assert [b["scan"] for b in decision["bad_scans"]] == [files["first"].name]
    assert (
        f"left out of the merge: {files['first'].name} (E0 {pellet.values['e0']:.2f} eV is "
        "+4.00 eV from the group's"
    ) in decision["reason"]


@pytest.mark.parametrize("odd", ["first", "last"])
def test_two_scans_that_disagree_make_no_merge_and_the_agent_asks_to_check_them(files, odd):
    foil, pellet = spectra([files["foil"], files[odd]])
    sent = merges([foil, pellet])
    result = sent[-1]
    # neither is presented as the group's result
    assert result["n_merged"] == 0
    assert result["n_scans"] == 2
    assert sorted(r["scan"] for r in result["rejected"]) == sorted([FOIL, files[odd].name])
    for rejected in result["rejected"]:
        assert rejected["reasons"][0].startswith("no majority: ")
    disagreement = result["no_majority"]
    assert sorted(disagreement["scans"]) == sorted([FOIL, files[odd].name])
    for spectrum in (foil, pellet):
        assert f"E0 {spectrum.values['e0']:.2f} eV" in disagreement["reason"]
    assert "nothing is merged" in disagreement["reason"]

    decision = decisions(sent)[-1]
    assert decision["action"] == "change_parameters"
    assert decision["item"] is None  # no more repeats of a merge that is not one
    assert decision["reason"].startswith(disagreement["reason"])
    names = ", ".join(sorted([FOIL, files[odd].name]))
    assert f"check scans {names} of sample Cu" in decision["reason"]
    assert decision["arguments"]["check"] == ["scans disagree with no majority"]


def test_a_third_scan_that_agrees_with_one_of_two_settles_it(files):
    foil, pellet, again = spectra([files["foil"], files["first"], files["repeat"]])
    result = merges([pellet, foil, again])[-1]
    assert result["n_merged"] == 2
    assert "no_majority" not in result
    assert [r["scan"] for r in result["rejected"]] == [files["first"].name]


def test_a_copy_does_not_make_a_majority(files):
    """The tester's edge/mixed group: the foil, the same file under another name and the other
    material. The copy is one measurement counted once: one scan against one, no majority
    (the merge used to keep whichever sorted first, here the pellet, and reject the foil)."""
    foil, copy, pellet = spectra([files["foil"], files["copy"], files["first"]])
    result = merges([pellet, foil, copy])[-1]
    assert result["n_merged"] == 0
    duplicate = next(r for r in result["rejected"] if r["scan"] == "cu_metal_rt_copy.xdi")
    assert duplicate["duplicate"] is True
    assert sorted(result["no_majority"]["scans"]) == sorted([FOIL, files["first"].name])
    assert decisions([result])[-1]["action"] == "change_parameters"
