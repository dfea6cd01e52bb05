"""The XAS units run in-process by the SDK's harness (the runner `pipeline worker` uses):
known values through the units, merging, the agent's decisions, redelivery, malformed files."""

from __future__ import annotations

import itertools
import shutil

import pytest
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines.sdk import Suggestion

# (file, normalize params, E0 eV, edge step) from examples/data/SOURCES.md; E0 +-0.5 eV, step 2 %
KNOWN = [
    ("20K_GOE_Fe_K_240.00000.xdi", {"mode": "transmission"}, 7126.91, 0.797),
    ("20K_GOE_Fe_K_240.00001.xdi", {"mode": "transmission"}, 7127.17, 0.795),
    ("cu_metal_rt.xdi", {"mode": "transmission"}, 8980.50, 2.729),
    ("fe_metal_rt.xdi", {"mode": "mu"}, 7111.00, 3.002),
]


def forward(result, unit_message, port=None):
    """The outputs of one unit as the inputs of the next, with their metadata (provenance)."""
    return [unit_message(o.value, metadata=o.metadata, port=port) for o in result.outputs]


def read_files(run_unit, directory, pattern):
    return run_unit("xas.scan-files", params={"directory": str(directory), "pattern": pattern})


@pytest.fixture(scope="module")
def chain():
    """scan-files -> normalize -> merge on the two P65 repeats, with the SOURCES.md settings."""
    from asapo_pipelines.testing.harness import message, run_unit

    scans = run_unit("xas.scan-files", params={"directory": str(DATA), "pattern": "20K_GOE_*"})
    spectra = run_unit("xas.normalize", forward(scans, message), params=REFERENCE_SETTINGS)
    merged = run_unit("xas.merge", forward(spectra, message))
    return scans, spectra, merged


@pytest.mark.parametrize(("name", "params", "e0", "step"), KNOWN)
def test_units_give_the_known_e0_and_edge_step(run_unit, unit_message, name, params, e0, step):
    scans = read_files(run_unit, DATA, name)
    assert [s["metadata"]["file"] for s in scans.values("scans")] == [name]
    spectra = run_unit(
        "xas.normalize", forward(scans, unit_message), params={**REFERENCE_SETTINGS, **params}
    )
    assert spectra.errors == []
    (spectrum,) = spectra.values("spectra")
    assert spectrum["values"]["e0"] == pytest.approx(e0, abs=0.5)
    assert spectrum["values"]["edge_step"] == pytest.approx(step, rel=0.02)
    # the scan's identity for the merge is the source's provenance key (stable on redelivery)
    assert spectrum["metadata"]["scan_id"] == scans.outputs[0].provenance["key"]
    assert spectra.summary["scans"][0]["e0"] == pytest.approx(e0, abs=0.5)


def test_scan_messages_carry_sorted_energies_channels_and_header(chain):
    scans, _, _ = chain
    bodies = scans.values("scans")
    assert [b["metadata"]["file"] for b in bodies] == list(P65_SCANS)
    for body in bodies:
        energy = body["energy"]
        assert all(a < b for a, b in itertools.pairwise(energy))
        assert set(body["channels"]) >= {"i0", "it", "iref", "if"}
        assert (body["metadata"]["element"], body["metadata"]["edge"]) == ("Fe", "K")
        assert body["metadata"]["start_time"].startswith("2020-11-22")
    # one output per file, keyed by its name: a restarted source skips what it sent
    assert [o.provenance["key"].rsplit("key:", 1)[1] for o in scans.outputs] == list(P65_SCANS)
    assert scans.summary["scans_sent"] == 2


def test_merging_two_repeats_lowers_the_noise(chain):
    _, spectra, merged = chain
    singles = [s["values"]["epsilon_k"] for s in spectra.values("spectra")]
    first, second = merged.values("merged")
    assert (first["n_merged"], second["n_merged"]) == (1, 2)
    assert second["rejected"] == []
    assert second["values"]["epsilon_k"] < min(singles)
    assert first["values"]["epsilon_k"] == pytest.approx(singles[0], rel=1e-6)
    # the standard error of the mean exists once there are two scans
    assert any(v is not None for v in second["arrays"]["mu_stderr"])
    group = merged.summary["merges"]["20K_GOE_Fe_K_240/Fe/K/transmission"]
    assert group["merged"] == 2
    assert group["noise"] == pytest.approx(second["values"]["epsilon_k"], rel=1e-3)


def test_agent_asks_for_more_then_stops_at_a_target_between_single_and_merged_noise(
    chain, run_unit, unit_message
):
    _, spectra, merged = chain
    single = spectra.values("spectra")[0]["values"]["epsilon_k"]
    final = merged.values("merged")[-1]["values"]["epsilon_k"]
    target = (single + final) / 2
    decisions = run_unit(
        "xas.convergence-agent",
        forward(merged, unit_message, port="merged"),
        params={"target_noise": target},
    )
    assert decisions.errors == []
    first, second = (Suggestion.model_validate(v) for v in decisions.values("plans"))
    assert first.action == "more_scans"
    assert first.arguments["scans"] >= 1
    assert first.plan is not None
    assert first.plan.kwargs["repeats"] == first.arguments["scans"]
    assert first.plan.kwargs["sample"] == "20K_GOE_Fe_K_240"
    assert first.queue_item()["meta"]["suggestion"]["action"] == "more_scans"
    assert second.action == "stop"
    assert second.plan is None
    assert "target" in second.reason
    assert first.target == second.target == "20K_GOE_Fe_K_240/Fe/K/transmission"
    assert first.agent == "xas.convergence-agent"
    assert decisions.on("plans")[0].metadata["kind"] == "suggestion"
    last = decisions.summary["decisions"][second.target]
    assert (last["action"], last["merged"]) == ("stop", 2)


def test_a_merge_that_arrives_after_a_newer_one_changes_no_decision(chain, run_unit, unit_message):
    # a transport promises no order: on ASAP::O two merges sent in one batch can arrive swapped
    _, _, merged = chain
    inputs = forward(merged, unit_message, port="merged")
    params = {"target_noise": 1.2e-4}  # the example's: above the merge of two, more are asked
    in_order = run_unit("xas.convergence-agent", inputs, params=params)
    swapped = run_unit("xas.convergence-agent", inputs[::-1], params=params)
    assert in_order.errors == swapped.errors == []
    target = "20K_GOE_Fe_K_240/Fe/K/transmission"
    want = in_order.summary["decisions"][target]
    got = swapped.summary["decisions"][target]
    # the plan stays the one made from both scans, not the late single scan's
    assert got["merged"] == want["merged"] == 2
    assert want["action"] == "more_scans"
    assert want["scans"] > 0
    assert (got["action"], got.get("scans"), got["reason"]) == (
        want["action"],
        want.get("scans"),
        want["reason"],
    )
    assert len(swapped.values("plans")) == 1
    assert swapped.summary["late_merges"] == 1
    assert "late_merges" not in in_order.summary


def test_the_normalize_summary_lists_scans_by_file_whatever_their_order(
    chain, run_unit, unit_message
):
    scans, spectra, _ = chain
    swapped = run_unit(
        "xas.normalize", forward(scans, unit_message)[::-1], params=REFERENCE_SETTINGS
    )
    files = [s["file"] for s in swapped.summary["scans"]]
    assert files == sorted(files)
    assert len(files) == 2
    assert swapped.summary == spectra.summary


def test_a_redelivered_spectrum_does_not_count_twice_in_the_merge(
    chain, unit_harness, unit_message
):
    _, spectra, _ = chain
    first, second = spectra.outputs
    harness = unit_harness("xas.merge")
    harness.send(
        unit_message(first.value, metadata=first.metadata, id=1),
        unit_message(second.value, metadata=second.metadata, id=2),
        # the first spectrum again, as after a crash before its acknowledgement
        unit_message(first.value, metadata=first.metadata, id=1, delivery_count=2),
    )
    merges = harness.result.values("merged")
    # merged again, it is the merge sent last but for which scan came last: not sent again
    assert [m["n_merged"] for m in merges] == [1, 2]
    assert merges[1]["n_scans"] == 2


def test_malformed_files_go_to_the_error_stream_and_the_others_go_on(tmp_path, run_unit):
    for name in P65_SCANS:
        shutil.copy(DATA / name, tmp_path / name)
    (tmp_path / "20K_GOE_Fe_K_240.00002.xdi").write_text("# empty scan\n# energy i0 it\n")
    bad = (DATA / P65_SCANS[0]).read_text().splitlines()
    bad[-5] = bad[-5] + " 1.0"  # a row with one value too many
    (tmp_path / "20K_GOE_Fe_K_240.00003.xdi").write_text("\n".join(bad) + "\n")
    result = read_files(run_unit, tmp_path, "*.xdi")
    assert [v["metadata"]["file"] for v in result.values("scans")] == list(P65_SCANS)
    assert [e["key"] for e in result.errors] == [
        "20K_GOE_Fe_K_240.00002.xdi",
        "20K_GOE_Fe_K_240.00003.xdi",
    ]
    for record in result.errors:
        assert record["error"].startswith(f"cannot read scan file {record['key']}: ")
        assert record["exception"].endswith("ScanFileError")
    assert "line" in result.errors[1]["error"]
    assert [m["file"] for m in result.summary["malformed"]] == [e["key"] for e in result.errors]


def test_a_scan_without_usable_counts_is_an_error_record_not_a_crash(run_unit, unit_message):
    scans = read_files(run_unit, DATA, P65_SCANS[0])
    body = scans.values("scans")[0]
    body["channels"].pop("it")
    result = run_unit("xas.normalize", [unit_message(body)], params={"mode": "transmission"})
    assert result.values("spectra") == []
    (record,) = result.errors
    assert "it" in record["error"].lower()
    assert len(result.acknowledged) == 1


def test_a_missing_directory_refuses_to_start(tmp_path, run_unit):
    from asapo_pipelines.sdk.runner import UnitStartError

    with pytest.raises(UnitStartError, match=r"the scan directory .* does not exist"):
        run_unit("xas.scan-files", params={"directory": str(tmp_path / "nope")})
