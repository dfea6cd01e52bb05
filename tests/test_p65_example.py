"""The README's first command: `pipeline run examples/p65-xas.pipeline.yaml` on the bundled P65
data, run as a user would (in a copy of examples/), with both reference plugins installed."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import CACHE_DIR

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "p65-xas.pipeline.yaml"
MISSING = [
    dist
    for dist, module in (
        ("asapo-pipelines-xas", "asapo_pipelines_xas"),
        ("asapo-pipelines-nexus", "asapo_pipelines_nexus"),
    )
    if importlib.util.find_spec(module) is None
]
pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"the P65 example needs both reference plugins; not installed: {', '.join(MISSING)} "
    "(pip install -e plugins/xas -e plugins/nexus)",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("p65")
    examples = work / "examples"
    shutil.copytree(
        ROOT / "examples", examples, ignore=shutil.ignore_patterns(".pipeline-data", "results")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = CACHE_DIR
    env["COLUMNS"] = "200"
    # the local executor starts `pipeline worker` tasks from PATH, as a user's shell would
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("pipeline")), "run", "examples/p65-xas.pipeline.yaml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return examples, done


def known_values() -> dict[str, tuple[float, float]]:
    """E0 and edge step of the GOE scans from examples/data/SOURCES.md's table."""
    text = (ROOT / "examples" / "data" / "SOURCES.md").read_text()
    found = re.findall(r"\| GOE scan (\d), ln\(I0/It\) \| ([\d.]+) \| ([\d.]+) \|", text)
    return {f"20K_GOE_Fe_K_240.{int(n):05d}.xdi": (float(e0), float(s)) for n, e0, s in found}


def test_the_example_runs_and_prints_its_summary(run):
    examples, done = run
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "job p65-xas completed" in out
    known = known_values()
    assert len(known) == 2
    for name, (e0, step) in known.items():
        line = next(x for x in out.splitlines() if x.strip().startswith(f"file {name}"))
        got = dict(re.findall(r"(e0|edge_step|noise) ([\d.e+-]+)", line))
        assert float(got["e0"]) == pytest.approx(e0, abs=0.5)
        assert float(got["edge_step"]) == pytest.approx(step, rel=0.02)
    assert "scans: scans_sent 2" in out
    merge = next(x for x in out.splitlines() if "20K_GOE_Fe_K_240/Fe/K/transmission: scans" in x)
    assert "merged 2" in merge
    assert "rejected 0" in merge
    decision = next(x for x in out.splitlines() if "action " in x)
    # the target 1.2e-4 lies just above the noise floor the two repeats show: the agent fits
    # eps^2 = a^2/N + b^2 and asks for the scans still needed, saying why in numbers
    assert "action more_scans" in decision
    assert "floor" in decision
    total = int(re.search(r"reaches it after (\d+) merged scans", decision).group(1))
    asked = int(re.search(r"action more_scans, scans (\d+),", decision).group(1))
    assert asked == total - 2 >= 1
    nexus = examples / "results" / "p65.nxs"
    line = next(x for x in out.splitlines() if x.startswith(f"writer: file {nexus.resolve()}, "))
    writer = {k: int(v) for k, v in re.findall(r"(\w+_written|entries_in_file) (\d+)", line)}
    # every decision of the agent is written beside the scans, spectra and merges
    suggestions = int(re.search(r"^advisor: suggestions (\d+)", out, re.M).group(1))
    assert writer["plans_written"] == suggestions >= 1
    kinds = ("scans_written", "spectra_written", "merged_written", "plans_written")
    assert writer["entries_written"] == sum(writer[k] for k in kinds) == writer["entries_in_file"]


def test_the_example_writes_every_scan_once_to_the_nexus_file(run):
    import h5py
    import numpy as np
    from asapo_pipelines_nexus.writer import is_decision
    from asapo_pipelines_xas.readers import read_scan

    examples, done = run
    assert done.returncode == 0, done.stdout + done.stderr
    with h5py.File(examples / "results" / "p65.nxs", "r", swmr=True) as f:
        kinds: dict[str, list[h5py.Group]] = {}
        for entry in f.values():
            if not is_decision(entry):  # the agent's decisions: see the test below
                kinds.setdefault(str(entry.attrs["asapo_content_type"]), []).append(entry)
        assert {k: len(v) for k, v in kinds.items()} == {
            "xas/scan": 2,
            "xas/spectrum": 2,
            "xas/merged": 2,
        }
        by_file = {}
        for entry in kinds["xas/scan"]:
            assert entry["definition"][()].decode() == "NXxas"
            title = entry["title"][()].decode()
            by_file[title.split()[-1]] = entry
        assert sorted(by_file) == sorted(known_values())
        for name, entry in by_file.items():
            scan = read_scan(examples / "data" / name)
            np.testing.assert_allclose(entry["instrument/monochromator/energy"][()], scan.energy)
            np.testing.assert_allclose(
                entry["instrument/incoming_beam/data"][()], scan.channels["i0"]
            )
            np.testing.assert_allclose(
                entry["instrument/absorbed_beam/data"][()], scan.channels["it"]
            )
        last = max(kinds["xas/merged"], key=lambda e: int(e["process/results/n_merged"][()]))
        assert int(last["process/results/n_merged"][()]) == 2
        singles = [float(e["process/results/epsilon_k"][()]) for e in kinds["xas/spectrum"]]
        assert float(last["process/results/epsilon_k"][()]) < min(singles)


def test_the_example_file_records_each_decision_beside_the_merge_it_answers(run):
    """The agent's decisions are in the scientist's file, as entries without data: each names
    the merge it answers, and a viewer opening the file still plots the newest merge."""
    import h5py
    from asapo_pipelines_nexus.writer import is_decision

    examples, done = run
    assert done.returncode == 0, done.stdout + done.stderr
    printed = [x.strip() for x in done.stdout.splitlines() if re.match(r"\s+\S+: action ", x)]
    suggestions = int(re.search(r"^advisor: suggestions (\d+)", done.stdout, re.M).group(1))
    with h5py.File(examples / "results" / "p65.nxs", "r", swmr=True, locking=False) as f:
        decisions = [e for e in f.values() if is_decision(e)]
        assert len(decisions) == suggestions >= 1
        for entry in decisions:
            nx = {k: g.attrs.get("NX_class") for k, g in entry.items() if isinstance(g, h5py.Group)}
            assert "NXdata" not in nx.values(), nx
            assert "default" not in entry.attrs
            assert "definition" not in entry  # NeXus has no application definition for it
            merge = f[entry["decision/based_on"][()].decode()]
            assert not is_decision(merge)
            assert merge["process/results/n_merged"][()] >= 1
            assert merge["data"].attrs["NX_class"] == "NXdata"
        # the run prints the agent's last decision per group: the one after the most scans
        last = max(decisions, key=lambda e: json.loads(e["decision/metrics"][()])["n_merged"])
        told = f"action {last['decision/action'][()].decode()}, "
        told += f"scans {int(last['decision/count'][()])}, "
        assert printed[-1].split(": ", 1)[1].startswith(told), printed
        # the root's default stays the newest merge, an NXdata a viewer plots
        shown = f[f.attrs["default"]]
        assert not is_decision(shown)
        assert shown["process/results/n_merged"][()] == max(
            e["process/results/n_merged"][()]
            for e in f.values()
            if not is_decision(e) and "process/results/n_merged" in e
        )
        plotted = shown[shown.attrs["default"]]
        assert plotted.attrs["NX_class"] == "NXdata"
        assert plotted.attrs["signal"] in plotted


def test_the_example_live_with_watch_mode_while_readers_follow_the_nexus_file(tmp_path):
    """The example at the beamline: `watch: true`, run in the background, scan files copied in
    one by one; the NeXus file is read while the pipeline writes it; `pipeline stop` ends it."""
    import time

    import h5py
    from ruamel.yaml import YAML

    yaml = YAML()
    doc = yaml.load(EXAMPLE.read_text())
    doc["units"]["scans"]["params"].update(
        {"directory": "incoming", "watch": True, "settle_seconds": 0.5}
    )
    (tmp_path / "incoming").mkdir()
    with (tmp_path / "live.pipeline.yaml").open("w") as f:
        yaml.dump(doc, f)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = CACHE_DIR
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cli = str(Path(sys.executable).with_name("pipeline"))

    def pipeline(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    from asapo_pipelines_nexus.writer import is_decision

    def entries() -> dict[str, int]:
        """How many entries of each kind the file holds; the agent's decisions as `decision`."""
        path = tmp_path / "results" / "p65.nxs"
        try:
            with h5py.File(path, "r", swmr=True) as f:
                kinds: dict[str, int] = {}
                for entry in f.values():
                    if entry is None:
                        # a new entry's link can reach an SWMR reader before the group's header
                        # does (HDF5 does not promise new objects to SWMR readers): not there yet
                        continue
                    kind = str(entry.attrs.get("asapo_content_type"))
                    kind = "decision" if is_decision(entry) else kind
                    kinds[kind] = kinds.get(kind, 0) + 1
                return kinds
        except (OSError, KeyError):  # not there yet, or being created
            return {}

    started = pipeline("run", "--detach", "live.pipeline.yaml")
    assert started.returncode == 0, started.stderr
    try:
        names = sorted(known_values())
        for i, name in enumerate(names, start=1):
            hidden = tmp_path / "incoming" / f".{name}.part"  # as a copy tool writes it
            shutil.copy(ROOT / "examples" / "data" / name, hidden)
            hidden.rename(tmp_path / "incoming" / name)
            # the agent answers each merge with a decision (its plans are read below)
            wanted = {"xas/scan": i, "xas/spectrum": i, "xas/merged": i, "decision": i}
            deadline = time.monotonic() + 180
            while entries() != wanted and time.monotonic() < deadline:
                time.sleep(0.2)
            # read while the writer worker holds the file: the pipeline is still running
            assert entries() == wanted, pipeline("logs", "live.pipeline.yaml", "writer").stdout
    finally:
        stopped = pipeline("stop", "live.pipeline.yaml")
    assert stopped.returncode == 0, stopped.stderr
    held = entries()
    assert held == {"xas/scan": 2, "xas/spectrum": 2, "xas/merged": 2, "decision": 2}
    with h5py.File(tmp_path / "results" / "p65.nxs", "r") as f:
        keys = [str(e.attrs["asapo_key"]) for e in f.values()]
    assert len(keys) == len(set(keys)) == sum(held.values())
    # the agent asked for more after the first repeat and said stop after the second
    from asapo_pipelines.transport import open_transport
    from asapo_pipelines.transport.formats import decode

    with (
        open_transport({"embedded": {"path": str(tmp_path / ".pipeline-data")}}) as t,
        t.consumer("p65-xas.r1.plans", "test-reader") as c,  # run r1's own stream
    ):
        last = c.stream_info("default").last_id
        plans = [
            decode(m.payload, m.metadata)
            for m in (c.get_by_id("default", i) for i in range(1, last + 1))
        ]
    # after one scan a 1/sqrt(N) guess (uncertain); after two the noise-floor fit's count
    assert [p["action"] for p in plans] == ["more_scans", "more_scans"]
    assert held["decision"] == len(plans)  # every decision is in the file
    assert plans[0]["arguments"]["metrics"]["uncertain"] is True
    assert "noise_model" in plans[1]["arguments"]["metrics"]


def _example_command(examples: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = CACHE_DIR
    env["COLUMNS"] = "200"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("pipeline")),
            args[0],
            "p65-xas.pipeline.yaml",
            *args[1:],
        ],
        cwd=examples,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_streams_of_the_example_leave_out_the_empty_restore_records(run):
    """The merge and the agent keep state, so their workers open the run's `_processed` data
    source (restore records of inputs that gave no output, docs/runs.md); every input of
    this run gave an output, and the source stayed empty. It was listed as a source with
    "no streams" beside the pipeline's streams; it is left out until it holds records, and
    `--json` and `--source` still show it as the store holds it."""
    examples, done = run
    assert done.returncode == 0, done.stdout + done.stderr
    internal = "p65-xas.r1._processed"
    listed = json.loads(_example_command(examples, "streams", "--json").stdout)
    held = {s["name"]: s["streams"] for s in listed["data_sources"]}
    assert held[internal] == []
    shown = _example_command(examples, "streams").stdout
    assert "_processed" not in shown, shown
    assert "p65-xas.r1.merged" in shown
    asked = _example_command(examples, "streams", "--source", internal).stdout
    assert internal in asked


def test_status_of_the_finished_example_shows_no_rate(run):
    """A unit's rate is over its last interval: for finished units the table showed 15.2/s
    for the scan source and 0.0/s for the merge, neither telling anything of the run. A
    finished unit's rate is `-`; its `processed` count is what it did."""
    examples, done = run
    assert done.returncode == 0, done.stdout + done.stderr
    table = _example_command(examples, "status").stdout
    rows = [line for line in table.splitlines() if "complete" in line and "[0]" in line]
    assert len(rows) == 5, table
    for row in rows:
        cells = [cell.strip() for cell in row.strip("│ ").split("│")]
        assert cells[2] == "complete", row
        assert cells[-2] == "-", row  # the rate column
    assert "/s" not in "\n".join(rows)


def _line_keys(line: str) -> list[str]:
    """The top-level keys of a `pipeline tail` line (printed whole: --width is large)."""
    body = line.split("  ", 1)[1]
    return list(json.loads(body))


def test_tail_lines_keep_the_units_order_of_fields(run):
    """A plan's line began with its confidence, then its agent, uid and time, and its target
    came after them: fields sorted by kind and length, in an order no unit wrote. A line now
    keeps the unit's order, its tables of numbers first (a merge's E0, edge step, noise) and
    its long fields last."""
    examples, done = run
    assert done.returncode == 0, done.stdout + done.stderr
    wide = ("-n", "1", "--width", "100000")
    (plan,) = _example_command(examples, "tail", "plans", *wide).stdout.splitlines()
    (as_json,) = _example_command(
        examples, "tail", "plans", "-n", "1", "--json"
    ).stdout.splitlines()
    written = list(json.loads(as_json)["value"])
    assert written[:2] == ["action", "target"]  # the agent's own order
    assert _line_keys(plan)[:2] == ["action", "target"], plan
    assert sorted(_line_keys(plan)) == sorted(written)
    (merged,) = _example_command(examples, "tail", "merged", *wide).stdout.splitlines()
    assert _line_keys(merged)[:4] == ["values", "group", "n_merged", "n_scans"], merged
