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


def _show(value) -> str:
    """How the comparison prints a value (6 significant digits for floats)."""
    return f"{value:.6g}" if isinstance(value, float) else "-" if value is None else str(value)


def test_reprocess_with_another_target_shows_old_and_new_decisions(work):
    store = work / ".pipeline-data"
    old_plans = [v for _, v in read_messages(store, "p65-xas.r1.plans")]
    merged = [v for _, v in read_messages(store, "p65-xas.r1.merged")]
    merge_key = "/".join(str(v) for v in merged[-1]["group"].values())
    done = run_pipeline(
        "reprocess", FILE, "--from", "r1", "--set", f"advisor.target_noise={NEW_TARGET}",
        cwd=work, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "run r2 replays 2 source messages of run r1" in out
    assert "old (r1) -> new (r2):" in out
    new_plans = [v for _, v in read_messages(store, "p65-xas.r2.plans")]
    # the agent decided again, once per merge, from the same scans with the new target
    assert len(new_plans) == len(old_plans) == 2
    old, new = old_plans[-1], new_plans[-1]
    assert old["target"] == new["target"]
    group = old["target"]
    metrics_old, metrics_new = old["arguments"]["metrics"], new["arguments"]["metrics"]
    assert metrics_old["target_noise"] == pytest.approx(OLD_TARGET)
    assert metrics_new["target_noise"] == pytest.approx(NEW_TARGET)
    # the same merged noise (normalize and merge kept their configuration) ...
    assert metrics_new["epsilon_k"] == pytest.approx(metrics_old["epsilon_k"])
    # ... and the comparison prints both runs' decisions as each run stored them
    mark = "" if old["action"] == new["action"] else "   (changed)"
    assert f"decisions.{group}.action: {old['action']} -> {new['action']}{mark}" in out
    assert (
        f"decisions.{group}.target_noise: {_show(OLD_TARGET)} -> {_show(NEW_TARGET)}   (changed)"
        in out
    )
    assert f"decisions.{group}.reason: {old['reason']} -> {new['reason']}" in out
    # each scan's E0, edge step and noise, and the merged noise, are compared too, unchanged
    for line in (
        "scans.20K_GOE_Fe_K_240.00000.xdi.e0:",
        "scans.20K_GOE_Fe_K_240.00001.xdi.edge_step:",
        "scans.20K_GOE_Fe_K_240.00000.xdi.noise:",
        f"merges.{merge_key}.noise:",
    ):
        row = next(r for r in out.splitlines() if r.strip().startswith(line))
        assert "(changed)" not in row
    listed = json.loads(run_pipeline("runs", FILE, "--json", cwd=work).stdout)["runs"]
    r2 = next(r for r in listed if r["id"] == "r2")
    assert r2["mode"] == "reprocess"
    assert r2["from_run"] == "r1"
    assert r2["overrides"] == {"advisor.target_noise": NEW_TARGET}
    assert r2["state"] == "complete"


@pytest.mark.parametrize(
    ("args", "words", "code"),
    [
        # an unknown run is a name given wrong, exit code 2, as `tail --run` says it
        (("reprocess", FILE, "--from", "r99"), ["no run 'r99'"], 2),
        # so is a unit or parameter `--set` names that is not there; a value refused is 1
        (("reprocess", FILE, "--from", "r1", "--set", "advisr.target_noise=1"), ["advisor?"], 2),
        (
            ("reprocess", FILE, "--from", "r1", "--set", "advisor.target_nois=1"),
            ["target_noise?"],
            2,
        ),
        (("run", FILE, "--set", "advisr.x=1"), ["has no unit advisr", "advisor?"], 2),
        (("reprocess", FILE, "--from", "r1", "--set", "advisor.target_noise=abc"), ["number"], 1),
        (("run", FILE, "--set", "normalize.autobk.rbkg=oops"), ["number"], 1),
        (("prune", FILE, "--run", "r42"), ["no run 'r42'"], 2),
    ],
)
def test_bad_input_is_one_sentence_and_changes_nothing(work, args, words, code):
    store, nxs = work / ".pipeline-data", work / "results" / "p65.nxs"
    before, digest = store_contents(store), file_digest(nxs)
    done = run_pipeline(*args, cwd=work, timeout=120)
    assert done.returncode == code, done.stdout + done.stderr
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
    assert gone.returncode == 2  # a run the store no longer holds: unknown, as tail says
    assert "no run 'r1'" in one_sentence(gone.stderr)
