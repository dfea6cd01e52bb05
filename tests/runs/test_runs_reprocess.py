"""`pipeline reprocess`: a run of the two bundled P65 scans with target 1.2e-4, the scan files
deleted, then reprocessed with target 1.0e-4 from the stored messages; the comparison shows the
old and new decisions. Bad input (unknown run, bad `--set`, pruned sources) gets one sentence,
exit 1, and changes nothing; `pipeline prune --run` drops one run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from runs_helpers import file_digest, one_sentence, p65_copy, read_messages, store_contents

from helpers import run_pipeline

pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")
pytest.importorskip("asapo_pipelines_nexus", reason="needs the NeXus plugin (plugins/nexus)")

pytestmark = pytest.mark.slow
FILE = "p65-xas.pipeline.yaml"
OLD_TARGET, NEW_TARGET = 1.2e-4, 1.0e-4


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("p65-reprocess")
    path = p65_copy(work)
    assert "target_noise: 1.2e-4" in path.read_text()  # OLD_TARGET, as the example has it
    done = run_pipeline("run", FILE, cwd=work, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(work / "data")  # reprocess reads no file
    return work


def expected_action(noise: float, target: float) -> str:
    """The convergence agent's rule, as its documentation states it: stop at the target."""
    return "stop" if noise <= target else "more_scans"


def test_reprocess_with_another_target_shows_old_and_new_decisions(work):
    store = work / ".pipeline-data"
    merged = [v for _, v in read_messages(store, "p65-xas.r1.merged")]
    noise = merged[-1]["values"]["epsilon_k"]
    group = "/".join(str(v) for v in merged[-1]["group"].values() if v)
    done = run_pipeline(
        "reprocess", FILE, "--from", "r1", "--set", f"advisor.target_noise={NEW_TARGET}",
        cwd=work, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "run r2 replays 2 source messages of run r1" in out
    assert "old (r1) -> new (r2):" in out
    old, new = expected_action(noise, OLD_TARGET), expected_action(noise, NEW_TARGET)
    assert old != new, "the bundled scans sit between the two targets"
    assert f"decisions.{group}.action: {old} -> {new}   (changed)" in out
    assert f"decisions.{group}.target_noise: {OLD_TARGET:.6g} -> {NEW_TARGET:.6g}" in out
    # the E0 and edge steps of each scan, and the merged noise, are compared too (unchanged:
    # normalize and merge have the same configuration)
    for line in ("scans.20K_GOE_Fe_K_240.00000.xdi.e0:", f"merges.{group}.noise:"):
        row = next(r for r in out.splitlines() if r.strip().startswith(line))
        assert "(changed)" not in row
    plans = [v for _, v in read_messages(store, "p65-xas.r2.plans")]
    assert plans[-1]["action"] == new
    listed = json.loads(run_pipeline("runs", FILE, "--json", cwd=work).stdout)["runs"]
    r2 = next(r for r in listed if r["id"] == "r2")
    assert r2["mode"] == "reprocess"
    assert r2["from_run"] == "r1"
    assert r2["overrides"] == {"advisor.target_noise": NEW_TARGET}
    assert r2["state"] == "complete"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("reprocess", FILE, "--from", "r99"), ["no run 'r99'"]),
        (("reprocess", FILE, "--from", "r1", "--set", "advisr.target_noise=1"), ["advisor?"]),
        (("reprocess", FILE, "--from", "r1", "--set", "advisor.target_nois=1"), ["target_noise?"]),
        (("reprocess", FILE, "--from", "r1", "--set", "advisor.target_noise=abc"), ["number"]),
        (("run", FILE, "--set", "normalize.autobk.rbkg=oops"), ["number"]),
        (("prune", FILE, "--run", "r42"), ["no run 'r42'"]),
    ],
)
def test_bad_input_is_one_sentence_and_changes_nothing(work, args, words):
    store, nxs = work / ".pipeline-data", work / "results" / "p65.nxs"
    before, digest = store_contents(store), file_digest(nxs)
    done = run_pipeline(*args, cwd=work, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    line = one_sentence(done.stderr)
    for word in words:
        assert word in line
    assert store_contents(store) == before
    assert file_digest(nxs) == digest


def test_reprocess_of_pruned_sources_is_refused_then_prune_run_drops_the_run(work):
    store = work / ".pipeline-data"
    dropped = run_pipeline(
        "prune", str(store), "--source", "p65-xas.r1.raw-scans", "--drop-stream", "default"
    )
    assert dropped.returncode == 0, dropped.stderr
    before = store_contents(store)
    refused = run_pipeline("reprocess", FILE, "--from", "r1", cwd=work, timeout=120)
    assert refused.returncode == 1
    assert "no longer in the store (pruned)" in one_sentence(refused.stderr)
    assert store_contents(store) == before
    pruned = run_pipeline("prune", FILE, "--run", "r1", cwd=work)
    assert pruned.returncode == 0, pruned.stderr
    after = store_contents(store)
    assert not [k for k in after if k[0].startswith("p65-xas.r1.")]
    assert ("p65-xas.runs", "r1") not in after
    assert [k for k in after if k[0].startswith("p65-xas.r2.")]
    listed = json.loads(run_pipeline("runs", FILE, "--json", cwd=work).stdout)["runs"]
    assert [r["id"] for r in listed] == ["r2"]
    gone = run_pipeline("reprocess", FILE, "--from", "r1", cwd=work, timeout=120)
    assert gone.returncode == 1
    assert "no run 'r1'" in one_sentence(gone.stderr)
