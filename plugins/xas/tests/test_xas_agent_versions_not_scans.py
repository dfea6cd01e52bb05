"""A scan file read twice (too early, then whole) or copied under a new name is one
measurement, not two repeats. The agent counted every scan a merge listed: the early read of a
file, replaced by its complete version, counted as a repeat that had arrived, so the repeat the
agent was waiting for was taken as delivered and it asked for one more; with a DAQ that closes
its files between blocks, 8 repeats were asked for against 2 new scans, and `max_scans` was
reached with 18 files on disk. Real P65 files, normalised and merged by the plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
from xas_testdata import DATA, P65_SCANS

from asapo_pipelines.sdk.units import keyed_output
from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import ConvergenceParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan

NORMALIZE = NormalizeParams.model_validate(
    {
        "mode": "transmission",
        "autobk": {"rbkg": 1, "kweight": 2},
        "noise": {"rmin": 15, "rmax": 25, "kweight": 2, "kmin": 2},
    }
)
#: a target the two repeats do not reach: the agent keeps asking
ADVISOR = ConvergenceParams(target_noise=1.0e-4, max_scans=20)


def _spectrum(path: Path, key: str, replaces: str | None = None) -> dict:
    """The spectrum xas.normalize sends for the scan-files message keyed `key`."""
    spectrum = normalize_scan(read_scan(path), NORMALIZE)
    spectrum.metadata["scan_id"] = keyed_output("p65/scans", "scans", key)
    if replaces is not None:
        spectrum.metadata["replaces"] = replaces
        spectrum.metadata["file_version"] = 2
    return spectrum.to_json()


def _partial(tmp_path: Path, name: str, share: float) -> Path:
    """The first `share` of a scan's data lines: the file as read before the DAQ finished."""
    lines = (DATA / name).read_text().splitlines(keepends=True)
    data = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    path = tmp_path / "early" / name
    path.parent.mkdir()
    path.write_text("".join(lines[: data[int(len(data) * share)]]))
    return path


def test_a_file_read_early_and_again_whole_is_one_scan_taken(tmp_path: Path) -> None:
    merger, agent = Merger(), ConvergenceAgent(ADVISOR)
    decided = [agent.decide(merger.add(_spectrum(DATA / P65_SCANS[0], P65_SCANS[0])).to_json())]
    # the repeat it asked for arrives: read while its second half was still being written
    early = merger.add(_spectrum(_partial(tmp_path, P65_SCANS[1], 0.46), P65_SCANS[1])).to_json()
    assert early["n_merged"] == 1
    assert len(early["rejected"]) == 1  # too short: rejected
    decided.append(agent.decide(early))
    # then whole, as a new version of the same file
    whole = merger.add(
        _spectrum(DATA / P65_SCANS[1], f"{P65_SCANS[1]}@1-2", replaces=P65_SCANS[1])
    ).to_json()
    assert whole["n_merged"] == 2
    (old,) = whole["rejected"]
    assert old["replaced"] is True
    decided.append(agent.decide(whole))
    assert all(d is not None and d["action"] == "more_scans" for d in decided), decided
    first, on_early, last = (d["arguments"]["scans"] for d in decided)  # type: ignore[index]

    # two scans taken, not three: every repeat asked for but one is still to come, and none
    # is asked for on account of the file read twice
    assert last == 0, decided[-1]
    assert decided[-1]["metrics"]["n_scans"] == 2  # type: ignore[index]
    assert decided[-1]["metrics"]["in_flight"] == first + on_early - 1  # type: ignore[index]


def test_a_copy_of_a_scan_under_a_new_name_is_no_repeat_arrived(tmp_path: Path) -> None:
    merger, agent = Merger(), ConvergenceAgent(ADVISOR)
    first = agent.decide(merger.add(_spectrum(DATA / P65_SCANS[0], P65_SCANS[0])).to_json())
    assert first is not None
    in_flight_before = first["arguments"]["scans"]
    copy = "20K_GOE_Fe_K_240.00004.xdi"  # the same data saved again under the next number
    merged = merger.add(_spectrum(DATA / P65_SCANS[0], copy)).to_json()
    (dup,) = merged["rejected"]
    assert dup.get("duplicate") is True
    decision = agent.decide(merged)
    assert decision is not None
    assert decision["metrics"]["n_scans"] == 1
    # the repeat asked for has not come: it is still in flight, not asked for again
    assert decision["metrics"]["in_flight"] == in_flight_before
    assert decision["arguments"].get("scans", 0) == 0


def test_a_merge_point_made_with_a_replaced_read_leaves_the_noise_fit(tmp_path: Path) -> None:
    """A scan file rewritten (or read before its writer finished) after the group had merged
    it: the merge leaves the old read out, but the agent's merge point of three scans, made
    with it, stayed in the fit of the noise floor, and the decision rested on data the
    pipeline no longer counts (an outside tester, a night of watch mode). Noisy copies of the
    P65 scans: the first read of the third is noisier than its final version."""
    from xas_agent_procs import noisy_copy

    from asapo_pipelines_xas.agent import fit_noise

    scans = [noisy_copy(tmp_path / "final", i, 1e-4) for i in range(4)]
    early = noisy_copy(tmp_path / "early", 2, 2e-4)  # the third scan as first read
    merger, agent = Merger(), ConvergenceAgent(ConvergenceParams(target_noise=5e-5, max_scans=20))
    sent = [(scans[0], scans[0].name, None), (scans[1], scans[1].name, None)]
    sent += [(early, scans[2].name, None), (scans[3], scans[3].name, None)]
    sent += [(scans[2], f"{scans[2].name}@1-2", scans[2].name)]  # its new version
    merges, decisions = [], []
    for path, key, replaces in sent:
        merges.append(merger.add(_spectrum(path, key, replaces)).to_json())
        decisions.append(agent.decide(merges[-1]))
    assert [m["n_merged"] for m in merges] == [1, 2, 3, 4, 4]
    assert [r["replaced"] for r in merges[-1]["rejected"]] == [True]
    before, after = (d["metrics"] for d in decisions[-2:])  # type: ignore[index]
    # before the new version: the merges of 2, 3 and 4 scans and the four scans' own noise
    assert before["noise_model"]["points"] == 7, before
    assert "noise_points_replaced" not in before

    # after it: the merge of 3 made with the early read is out; the merge of 4 is the new one
    last = merges[-1]
    points = [(1, s["epsilon_k"]) for s in last["scans"] if s["accepted"]]
    points += [(2, merges[1]["values"]["epsilon_k"]), (4, last["values"]["epsilon_k"])]
    reference = fit_noise(points)
    assert reference is not None
    assert after["noise_model"]["points"] == len(points) == 6
    assert after["noise_model"]["a"] == pytest.approx(reference.a2**0.5, rel=1e-9)
    assert after["noise_model"]["floor"] == pytest.approx(reference.floor, rel=1e-9)
    assert after["noise_points_replaced"] == 1, after
