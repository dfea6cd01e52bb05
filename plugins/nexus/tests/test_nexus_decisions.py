"""The agent's decisions in the P65 results file. The file held the spectra and merges but not
why more scans were taken, and after `pipeline reprocess` of an agent-only change (another
target_noise) the changed decisions, the only thing that differed, were in no file. The example
pipeline gives the writer the agent's `plans`: each decision is an NXentry whose `decision`
(NXcollection) holds its action, count, reason, confidence, metrics and the merge entry it was
based on, with the entry's provenance.

A real P65 run (`pipeline run` of the example with `plans` given to the writer), then a real
reprocess; what each decision says is taken from the run's own `plans` stream
(`pipeline tail --json`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
from nexus_cli import pipeline_ok, text
from nexus_testdata import DATA, P65_SCANS

from asapo_pipelines_nexus.writer import CONTENT_ATTR, is_decision

pytest.importorskip("asapo_pipelines_xas")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"


def plans_of(work: Path, run: str) -> list[dict]:
    out = pipeline_ok(work, "tail", EXAMPLE.name, "plans", "--all", "--json", "--run", run)
    return [json.loads(line)["value"] for line in out.stdout.splitlines() if line.strip()]


def decisions_in(path: Path, run: str) -> list[dict]:
    """The decision entries of `run`, in the order written, with the merge each names."""
    found = []
    with h5py.File(path, "r", swmr=True, locking=False) as f:
        for name in sorted(f, key=lambda n: int(n[len("entry") :])):
            entry = f[name]
            if not is_decision(entry):
                continue
            if text(entry.attrs.get("asapo_run", "")) != run:
                continue
            decision = entry["decision"]
            based_on = text(decision["based_on"][()])
            found.append(
                {
                    "title": text(entry["title"][()]),
                    "action": text(decision["action"][()]),
                    "count": int(decision["count"][()]) if "count" in decision else None,
                    "reason": text(decision["reason"][()]),
                    "confidence": float(decision["confidence"][()]),
                    "metrics": json.loads(text(decision["metrics"][()])),
                    "based_on": text(f[based_on].attrs[CONTENT_ATTR]) if based_on else None,
                    "based_on_run": text(f[based_on].attrs["asapo_run"]) if based_on else None,
                    "provenance": text(entry["provenance/unit"][()])
                    if "provenance/unit" in entry
                    else None,
                }
            )
    return found


def expected(plans: list[dict], run: str) -> list[dict]:
    return [
        {
            "action": p["action"],
            "count": p["arguments"].get("scans") if p["action"] == "more_scans" else None,
            "reason": p["reason"],
            "confidence": p["confidence"],
            "metrics": p["arguments"]["metrics"],
            "based_on": "xas/merged",
            "based_on_run": run,
        }
        for p in plans
    ]


def test_the_decisions_and_those_of_a_reprocess_are_in_the_results_file(tmp_path):
    work = tmp_path
    shutil.copytree(DATA, work / "data", ignore=lambda _d, names: set(names) - set(P65_SCANS))
    shutil.copy(EXAMPLE, work / EXAMPLE.name)
    pipeline_ok(work, "run", EXAMPLE.name)
    results = work / "results" / "p65.nxs"

    first = decisions_in(results, "r1")
    plans = plans_of(work, "r1")
    assert plans, "the example's agent decided nothing"
    assert [{k: d[k] for k in expected(plans, "r1")[0]} for d in first] == expected(plans, "r1")
    assert all(d["provenance"] == "xas.convergence-agent" for d in first)
    assert first[-1]["title"].startswith("p65-xas r1: decision on ")

    # an agent-only change: its new decisions are written under the new run
    pipeline_ok(
        work, "reprocess", EXAMPLE.name, "--from", "r1", "--set", "advisor.target_noise=1.5e-4"
    )
    replayed = plans_of(work, "r2")
    assert [p["action"] for p in replayed] != [p["action"] for p in plans]
    second = decisions_in(results, "r2")
    assert [{k: d[k] for k in expected(replayed, "r2")[0]} for d in second] == expected(
        replayed, "r2"
    )
