"""Which scans the convergence agent tells the scientist to check when a merge is noisier than its
best scan: those noisier on their own than the merge, whatever order they were measured in. The
agent named the scans added since the last merge that was not noisier, so a bad first scan got
the good second one blamed (and thrown away).

Real P65 files, and noisier measurements of them made at test time (a fixed seed); each scan's
noise by xraylarch called directly, so that the test knows which scan is the noisy one without
taking the plugin's word for it. No noise value is written down here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from xas_agent_procs import NORMALIZE, merges_of, noisy_copy
from xas_procs import decision_units, pipeline_command, write_pipeline
from xas_testdata import DATA, P65_SCANS, larch_analyse

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.params import ConvergenceParams

#: the P65 example's agent (examples/p65-xas.pipeline.yaml)
ADVISOR = {"target_noise": 1.2e-4, "max_scans": 20}
#: a bad repeat: its counts changed by 0.2 % (a noise ten times and more the P65 scans' own)
BAD = 2e-3
#: another good measurement: its counts changed by 0.02 %, about the P65 scans' own noise
GOOD = 2e-4
#: how much noisier (by xraylarch) a bad scan is than every good one in these tests: no
#: borderline case, which scan is bad is not a matter of taste
CLEAR = 5
#: a fixed E0 the bundled scan 00000 does not take (the tester's second case): its noise jumps
FIXED_E0 = 7126.0


def measure(directory: Path, levels: list[float | None]) -> list[Path]:
    """Repeat i of the P65 scans for each level: the bundled file itself for None (repeats 0
    and 1 only: more would be copies), else its counts changed by that relative noise
    (`noisy_copy`, seeded by i)."""
    paths = []
    for index, level in enumerate(levels):
        if level is None:
            directory.mkdir(exist_ok=True)
            paths.append(Path(shutil.copy(DATA / P65_SCANS[index], directory)))
        else:
            paths.append(noisy_copy(directory, index, level))
    return paths


def larch_noise(path: Path, e0: float | None = None) -> float:
    """epsilon_k of one scan file by xraylarch (pre_edge, autobk, estimate_noise), not the
    plugin's units; at a fixed `e0` when given."""
    from larch import Group
    from larch.xafs import autobk, estimate_noise, pre_edge

    from asapo_pipelines_xas.normalize import compute_mu
    from asapo_pipelines_xas.readers import read_scan

    scan = read_scan(path)
    group = Group(energy=scan.energy, mu=compute_mu(scan, "transmission"))
    if e0 is None:
        return float(larch_analyse(group).epsilon_k)
    pre_edge(group, e0=e0)
    autobk(group, e0=e0)
    estimate_noise(group.k, group.chi, group=group, kmax=float(group.k.max()) - 0.5)
    return float(group.epsilon_k)


def noisy_ones(paths: list[Path], e0: float | None = None) -> set[str]:
    """The names of the scans xraylarch finds clearly noisier than the others (by more than
    CLEAR times each of them)."""
    noise = {p.name: larch_noise(p, e0) for p in paths}
    quiet = min(noise.values())
    bad = {name for name, eps in noise.items() if eps > CLEAR * quiet}
    good = [eps for name, eps in noise.items() if name not in bad]
    assert bad, noise
    assert all(noise[name] > CLEAR * max(good) for name in bad), noise
    return bad


def ids_of(merged: dict, names: set[str]) -> list[str]:
    """The ids in the merge (in its order) of the scans of those files."""
    return [s["scan"] for s in merged["scans"] if any(s["scan"].endswith(n) for n in names)]


def decide_all(docs: list[dict]) -> list[dict]:
    """The agent's decision on each merge in order, as the xas.convergence-agent unit makes
    them."""
    agent = ConvergenceAgent(ConvergenceParams(**ADVISOR))
    return [agent.decide(doc) for doc in docs]  # type: ignore[misc]


def tail(pipeline: Path, stream: str) -> dict:
    """The newest message of one of the run's streams, as `pipeline tail --json` prints it."""
    out = pipeline_command(pipeline, "tail", stream, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])["value"]


@pytest.mark.parametrize("levels", [[BAD, None], [None, BAD]], ids=["bad-first", "bad-second"])
def test_a_pipeline_tells_to_check_the_noisy_scan_whichever_came_first(tmp_path, levels):
    """The tester's case: one P65 scan made noisy, the other the real file; the P65 example's
    units run by `pipeline run` name the noisy scan, never the good one."""
    paths = measure(tmp_path / "data", levels)
    (bad,) = noisy_ones(paths)
    (good,) = {p.name for p in paths} - {bad}
    units = decision_units("data", NORMALIZE, ADVISOR)
    pipeline = write_pipeline(tmp_path, "noisy-scan", units, streams={"plans": {}})
    run = pipeline_command(pipeline, "run")
    assert run.returncode == 0, run.stdout + run.stderr

    merged = tail(pipeline, "merged")
    plan = tail(pipeline, "plans")
    assert plan["action"] == "change_parameters", plan["reason"]
    assert "noisier than its best scan" in plan["reason"]
    sample = merged["group"]["sample"]
    assert plan["reason"].endswith(f"a scan is likely bad: check scan {bad} of sample {sample}")
    assert good not in plan["reason"]
    # the reason says why: the scan's own noise, as the merge records it, is above the merge's
    (own,) = [s["epsilon_k"] for s in merged["scans"] if s["scan"].endswith(bad)]
    assert own > merged["values"]["epsilon_k"]
    assert f"noisier on its own ({own:.2e}) than the merge" in plan["reason"]
    assert plan["arguments"]["metrics"]["suspect_scans"] == ids_of(merged, {bad})


@pytest.mark.parametrize(
    "levels",
    [[BAD, BAD, GOOD], [BAD, GOOD, GOOD, GOOD, GOOD], [GOOD, GOOD, BAD, GOOD, BAD]],
    ids=["3-two-bad-first", "5-first-bad", "5-two-bad-later"],
)
def test_every_merge_names_its_noisy_scans_and_only_them(tmp_path, levels):
    """After each scan: a merge holding a noisy and a good scan names all its noisy scans (two
    together too, where leaving one out at a time would name neither) and no good one, in the
    reason by their files' names and in `suspect_scans` by their ids; other merges are decided
    as before (nothing to check)."""
    paths = measure(tmp_path, levels)
    bad = noisy_ones(paths)
    docs = merges_of(paths)
    for merged, decision in zip(docs, decide_all(docs), strict=True):
        names = {p.name for p in paths if ids_of(merged, {p.name})}
        here = names & bad
        if not here or here == names:
            assert decision["action"] != "change_parameters", decision["reason"]
            assert "suspect_scans" not in decision["metrics"]
            continue
        assert decision["action"] == "change_parameters", decision["reason"]
        assert decision["metrics"]["suspect_scans"] == ids_of(merged, here)
        check = decision["reason"].split("check scan")[-1]
        assert {n for n in names if n in check} == here, decision["reason"]


def test_scans_all_noisy_alike_make_a_merge_with_nothing_to_check(tmp_path):
    """Three scans as noisy as each other: their merge is less noisy than each, the agent
    decides on its noise as usual and blames none."""
    paths = measure(tmp_path, [BAD, BAD, BAD])
    noise = [larch_noise(p) for p in paths]
    assert max(noise) < 2 * min(noise), noise  # alike, by xraylarch
    for decision in decide_all(merges_of(paths)):
        assert decision["action"] != "change_parameters", decision["reason"]
        assert "suspect_scans" not in decision["metrics"]


def test_a_fixed_e0_that_spoils_the_first_scan_gets_that_scan_checked():
    """The tester's second case, the bundled scans as they are: at E0 7126 eV the first is
    far noisier (xraylarch says so too) and its merge with the second is checked for it."""
    paths = [DATA / name for name in P65_SCANS]
    (bad,) = noisy_ones(paths, FIXED_E0)
    assert bad == P65_SCANS[0]
    from asapo_pipelines_xas.merge import Merger
    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.params import NormalizeParams
    from asapo_pipelines_xas.readers import read_scan

    params = NormalizeParams.model_validate({**NORMALIZE, "pre_edge": {"e0": FIXED_E0}})
    merger = Merger()
    docs = [merger.add(normalize_scan(read_scan(p), params)).to_json() for p in paths]
    decision = decide_all(docs)[-1]
    assert decision["action"] == "change_parameters", decision["reason"]
    assert decision["reason"].endswith(f"check scan {bad} of sample {docs[-1]['group']['sample']}")
    assert decision["metrics"]["suspect_scans"] == ids_of(docs[-1], {bad})


def test_a_merge_above_all_its_scans_names_them_all():
    """No scan noisier than the merge (real scans do not do this on demand: an `xas/merged`
    body with only what the agent reads): no one scan's noise explains it, so the agent names
    every scan and says so rather than pick one."""
    scans = [
        {"scan": f"s.{i:05d}.xdi", "accepted": True, "epsilon_k": e}
        for i, e in enumerate([1e-3, 1.05e-3])
    ]
    merged = {
        "group": {"sample": "s", "element": "Fe", "edge": "K", "mode": "transmission"},
        "n_merged": 2,
        "rejected": [],
        "values": {"epsilon_k": 1.2e-3},
        "scans": scans,
    }
    decision = decide_all([merged])[0]
    assert decision["action"] == "change_parameters", decision["reason"]
    assert decision["metrics"]["suspect_scans"] == [s["scan"] for s in scans]
    assert "none of its scans is noisier on its own than the merge" in decision["reason"]
    assert decision["reason"].endswith("check scans s.00000.xdi, s.00001.xdi of sample s")
