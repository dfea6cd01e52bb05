"""A run resumed with other normalisation settings and a third scan (an outside scientist's
review: `pipeline run p65-xas.pipeline.yaml --resume --set normalize.pre_edge.norm1=150 --set
normalize.pre_edge.norm2=900`). The normalize summary listed the edge steps of scans 0 and 1
(the default post-edge range) beside scan 2's (the new one) with nothing telling them apart, so
scan 2 read as 2.4 % off; and the agent's reason told the user to run `pipeline reprocess FILE
--from RUN`, placeholders to fill in. Now the summary marks the scans made with earlier settings
and says the settings in force, and the reason names the command to copy, which this test runs.

The example P65 pipeline on the real files, through the CLI; the edge steps are xraylarch's
(`larch_analyse`) at test time."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from xas_procs import PIPELINE, pipeline_command
from xas_testdata import DATA, P65_SCANS

# the P65 example writes its NeXus file: with the NeXus plugin only (nox's "all" session)
pytest.importorskip("asapo_pipelines_nexus")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"
THIRD = "20K_GOE_Fe_K_240.00002.xdi"
SETS = ("--set", "normalize.pre_edge.norm1=150", "--set", "normalize.pre_edge.norm2=900")


def _summaries(pipeline: Path) -> dict[str, dict]:
    status = pipeline_command(pipeline, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    return {u["task"]: u.get("summary") or {} for u in json.loads(status.stdout)["units"]}


def _edge_step(path: Path, **pre_edge: float) -> float:
    """The edge step of ln(I0/It) as xraylarch finds it with these pre_edge settings."""
    import numpy as np
    from larch import Group
    from larch.xafs import pre_edge as larch_pre_edge

    data = np.loadtxt(path)
    energy, index = np.unique(data[:, 0], return_index=True)
    mu = np.log(data[index, 10] / data[index, 11])
    group = Group(energy=energy, mu=mu)
    larch_pre_edge(group, **pre_edge)
    return float(group.edge_step)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict], str]:
    folder = tmp_path_factory.mktemp("resumed")
    data = folder / "data"
    data.mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, data / name)
    pipeline = folder / EXAMPLE.name
    shutil.copy(EXAMPLE, pipeline)
    first = pipeline_command(pipeline, "run")
    assert first.returncode == 0, first.stdout + first.stderr
    shutil.copy(DATA / P65_SCANS[1], data / THIRD)  # a third scan, read by the resumed run
    second = pipeline_command(pipeline, "run", "--resume", *SETS)
    assert second.returncode == 0, second.stdout + second.stderr
    return pipeline, _summaries(pipeline), second.stdout


def test_the_normalize_summary_marks_scans_made_with_earlier_settings(resumed) -> None:
    pipeline, units, printed = resumed
    normalize = units["normalize"]
    assert normalize["settings"]["pre_edge.norm1"] == 150
    assert normalize["settings"]["pre_edge.norm2"] == 900
    listed = {r["file"]: r for r in normalize["scans"]}
    for name in P65_SCANS:
        assert listed[name]["earlier_settings"] == {
            "pre_edge.norm1": "the default",
            "pre_edge.norm2": "the default",
        }, listed[name]
        # the edge step listed is that of the default range, as the mark says
        expected = _edge_step(pipeline.parent / "data" / name)
        assert listed[name]["edge_step"] == pytest.approx(expected, rel=1e-3)
    assert "earlier_settings" not in listed[THIRD]
    third = _edge_step(pipeline.parent / "data" / THIRD, norm1=150, norm2=900)
    assert listed[THIRD]["edge_step"] == pytest.approx(third, rel=1e-3)
    # and as `pipeline run` prints it
    line = next(x for x in printed.splitlines() if P65_SCANS[0] in x and "edge_step" in x)
    assert "earlier_settings pre_edge.norm1 the default, pre_edge.norm2 the default" in line
    assert "  settings: pre_edge.norm1 150, pre_edge.norm2 900" in printed
    # the merge, which leaves them out until reprocessed, says why it rejects them
    merge = units["merge"]["merges"]["20K_GOE_Fe_K_240/Fe/K/transmission"]
    assert (merge["rejected"], merge["rejected_for_earlier_settings"]) == (2, 2), merge


def test_the_agent_names_the_reprocess_command_to_copy(resumed, tmp_path: Path) -> None:
    pipeline, units, _ = resumed
    reason = units["advisor"]["decisions"]["20K_GOE_Fe_K_240/Fe/K/transmission"]["reason"]
    runs = pipeline_command(pipeline, "runs", "--json")
    assert runs.returncode == 0, runs.stdout + runs.stderr
    (run,) = [r["id"] for r in json.loads(runs.stdout)["runs"]]
    command = (
        f"pipeline reprocess {shlex.quote(str(pipeline.resolve()))} --from {run} "
        "--set normalize.pre_edge.norm1=150 --set normalize.pre_edge.norm2=900"
    )
    assert f"`{command}`" in reason
    assert "FILE --from RUN" not in reason
    # the settings the scans were left out for are named whole, not cut at their first `;`
    assert "(pre_edge.norm1 the default, not 150; pre_edge.norm2 the default, not 900))" in reason

    # the command as copied, from another folder, merges every scan with the newest settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(pipeline.parent / "cache")
    done = subprocess.run(
        [PIPELINE, *shlex.split(command)[1:]],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    units = _summaries(pipeline)
    merge = units["merge"]["merges"]["20K_GOE_Fe_K_240/Fe/K/transmission"]
    assert (merge["merged"], merge["rejected"]) == (2, 0), merge  # scan 2 is a copy of scan 1
    assert not any("earlier_settings" in r for r in units["normalize"]["scans"])
