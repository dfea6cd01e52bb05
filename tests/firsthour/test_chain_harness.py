"""`run_chain`: several units in one test, in-process, each on what the earlier ones wrote."""

from __future__ import annotations

from pathlib import Path

import fh_units
import pytest

from asapo_pipelines.testing import catalog_from_plugins
from asapo_pipelines.testing.harness import run_chain, units_of

EXAMPLE = Path(__file__).parents[2] / "examples" / "p65-xas.pipeline.yaml"


@pytest.fixture(scope="module")
def catalog():
    return catalog_from_plugins(fh_units)


def test_a_list_chains_units_in_order(catalog):
    result = run_chain(
        ["fh.offset", "fh.offset", "fh.offset"], [{"value": 1}, {"value": 5}], catalog=catalog
    )
    last = list(result.streams)[-1]
    assert result.values(last) == [{"value": 4}, {"value": 8}]
    # provenance runs through: the last output names the middle unit's output as its input
    final = result.streams[last][0]
    assert final.provenance["unit"] == "test/2-fh.offset"
    assert final.provenance["inputs"] == [
        {"data_source": "1-fh.offset.value", "stream": "default", "id": 1}
    ]


def test_a_list_takes_descriptors_as_unit_authors_write_them(catalog):
    """The docs say a unit is a name or a descriptor, alone or as (unit, params): a plugin's
    tests hold descriptors, not names in an installed catalog."""
    offset = catalog.get("fh.offset")
    for units in ([offset, offset], [(offset, {}), "fh.offset"]):
        result = run_chain(units, [{"value": 1}], catalog=catalog)
        assert result.values(list(result.streams)[-1]) == [{"value": 3}]
    with pytest.raises(TypeError, match=r"a name, a descriptor or \(unit, params\)"):
        run_chain([("fh.offset", {}, "extra")], [{"value": 1}], catalog=catalog)


def test_a_pipelines_units_mapping_with_fan_out_and_errors(catalog):
    units = {
        "mean": {
            "unit": "fh.mean",
            "params": {"scale": 2},
            "inputs": {"values": "numbers"},
            "outputs": {"mean": "means"},
        },
        "bad": {"unit": "fh.bad", "inputs": {"values": "numbers"}, "outputs": {"tagged": "tags"}},
    }
    result = run_chain(units, {"numbers": [{"values": [1, 3]}, {"values": [2]}]}, catalog=catalog)
    assert [v["mean"] for v in result.values("means")] == [4.0, 4.0]
    assert result.values("tags") == []
    assert len(result.errors) == 2
    assert all("port 'tagged'" in e["error"] for e in result.errors)


def test_the_p65_example_runs_in_process(tmp_path):
    """The example pipeline's own units, on its real data, without a store or a process."""
    units = units_of(EXAMPLE)
    units["scans"]["params"]["directory"] = str(EXAMPLE.parent / "data")
    units["writer"]["params"]["file"] = str(tmp_path / "p65.nxs")
    result = run_chain(units)
    assert result.errors == []
    assert len(result.values("raw-scans")) == 2
    assert len(result.values("spectra")) == 2
    merged = result.values("merged")
    assert merged[-1]["n_merged"] == 2
    assert merged[-1]["n_scans"] == 2
    # the agent decided on each merged spectrum
    plans = result.values("plans")
    assert len(plans) == len(merged)
    assert {p["action"] for p in plans} <= {"more_scans", "stop", "change_parameters"}
    assert (tmp_path / "p65.nxs").is_file()
