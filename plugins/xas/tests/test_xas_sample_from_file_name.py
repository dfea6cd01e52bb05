"""The sample a file name gives: only a zero-padded counter at its end is a scan number.

A trailing number that is not zero-padded is part of the sample name: `cu_T_100.xdi` and
`cu_T_300.xdi` (measured at 100 K and 300 K) are two samples, and the merge must not average
them as repeats of one `cu_T`. The P65 repeats (`20K_GOE_Fe_K_240.00000.xdi`, `.00001`) still
share their sample. Real files (SOURCES.md), run through the units as a pipeline runs them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from xas_procs import scan_chain
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.readers import read_scan

CU = "cu_metal_rt.xdi"


def without_sample_name(source: str = CU, relative: float = 0.0, seed: int = 0) -> str:
    """The Cu foil's file without its `Sample.name` line (the sample comes from the file name),
    its i0 and itrans counts changed by `relative` (another measurement)."""
    rng = np.random.default_rng(seed)
    lines = []
    for line in (DATA / source).read_text().splitlines():
        if line.startswith("# Sample.name:"):
            continue
        if relative and line.strip() and not line.startswith("#"):
            cells = line.split()
            for i in (1, 2):
                cells[i] = repr(float(cells[i]) * (1 + relative * rng.standard_normal()))
            line = " ".join(cells)
        lines.append(line)
    assert len(lines) == len((DATA / source).read_text().splitlines()) - 1
    return "\n".join(lines) + "\n"


def chain(directory, **scan_params):
    """xas.scan-files on `directory`, xas.normalize and xas.merge, as in the tutorial."""
    normalize = {**REFERENCE_SETTINGS, "mode": "transmission"}
    return scan_chain(str(directory), normalize, {"align": "none"}, **scan_params)


def test_two_temperatures_in_the_file_names_are_two_samples_not_repeats(tmp_path, run_chain):
    (tmp_path / "cu_T_100.xdi").write_text(without_sample_name())
    (tmp_path / "cu_T_300.xdi").write_text(without_sample_name(relative=2e-3, seed=1))
    result = run_chain(chain(tmp_path))
    assert result.errors == []
    scans = result.values("raw-scans")
    assert [s["metadata"]["sample"] for s in scans] == ["cu_T_100", "cu_T_300"]
    assert all("scan_number" not in s["metadata"] for s in scans)
    merged = result.values("merged")
    # one merge per file, each of its own sample, each of one scan: nothing averaged
    assert sorted((m["group"]["sample"], m["n_merged"]) for m in merged) == [
        ("cu_T_100", 1),
        ("cu_T_300", 1),
    ]


def test_zero_padded_counters_still_make_repeats_of_one_sample(tmp_path, run_chain):
    for name in P65_SCANS:
        shutil.copy(DATA / name, tmp_path / name)
    result = run_chain(chain(tmp_path))
    assert result.errors == []
    scans = result.values("raw-scans")
    assert [s["metadata"]["sample"] for s in scans] == ["20K_GOE_Fe_K_240"] * 2
    assert [s["metadata"]["scan_number"] for s in scans] == [0, 1]
    assert [m["n_merged"] for m in result.values("merged")] == [1, 2]


@pytest.mark.parametrize(
    ("name", "sample", "number"),
    [
        # a zero-padded counter after `_`, `.` or `-`: the scan number
        ("fe_foil_001.xdi", "fe_foil", 1),
        ("fe_foil_002.xdi", "fe_foil", 2),
        ("cu_rep.001.xdi", "cu_rep", 1),
        ("CuSO4_0.5M.001.xdi", "CuSO4_0.5M", 1),
        ("20K_GOE_Fe_K_240.00001.xdi", "20K_GOE_Fe_K_240", 1),
        ("cu-0012.xdi", "cu", 12),
        # any other trailing number is part of the sample name
        ("cu_T_100.xdi", "cu_T_100", None),
        ("cu_T_300.xdi", "cu_T_300", None),
        ("cu_T100.xdi", "cu_T100", None),
        ("Cu_K_10.xdi", "Cu_K_10", None),
        ("Fe_pH_7.xdi", "Fe_pH_7", None),
        ("sample_1.xdi", "sample_1", None),
        ("sample.2.xdi", "sample.2", None),
        ("sample_01.xdi", "sample_01", None),  # two digits: not a scan counter
        ("run12.xdi", "run12", None),
        ("sample_300K.xdi", "sample_300K", None),
    ],
)
def test_sample_and_scan_number_from_the_file_name(tmp_path, name, sample, number):
    # a name that says Fe K holds the Fe foil: the Cu foil's header would contradict it, and
    # nothing is taken from such a name (test_xas_label_conflict_group.py)
    source = "fe_metal_rt.xdi" if "_Fe_K_" in name else CU
    (tmp_path / name).write_text(without_sample_name(source))
    meta = read_scan(tmp_path / name).metadata
    assert meta["sample"] == sample
    assert meta.get("scan_number") == number


def test_the_header_and_the_sample_param_override_the_file_name(tmp_path, run_unit):
    (tmp_path / "cu_T_100.xdi").write_text(without_sample_name())
    shutil.copy(DATA / CU, tmp_path / "cu_T_300.xdi")  # its header says Sample.name: Cu
    read = run_unit("xas.scan-files", params={"directory": str(tmp_path), "pattern": "*.xdi"})
    assert [o.value["metadata"]["sample"] for o in read.outputs] == ["cu_T_100", "Cu"]
    given = run_unit(
        "xas.scan-files",
        params={"directory": str(tmp_path), "pattern": "*.xdi", "sample": "cu foil"},
    )
    assert [o.value["metadata"]["sample"] for o in given.outputs] == ["cu foil"] * 2


def test_a_name_the_header_contradicts_gives_no_sample(tmp_path):
    """Without a `Sample.name` in its header, the Cu foil under the series' name is no sample of
    the series (`20K_GOE_Fe_K_240`): a group of its own, named by its whole file name."""
    (tmp_path / "20K_GOE_Fe_K_240.00002.xdi").write_text(without_sample_name())
    meta = read_scan(tmp_path / "20K_GOE_Fe_K_240.00002.xdi").metadata
    assert meta["label_conflict"] == {"header": "Cu K", "file_name": "Fe K"}
    assert meta["sample"] == "20K_GOE_Fe_K_240.00002"
    assert "temperature" not in meta
    assert meta["file_name_not_used"]["sample"] == "20K_GOE_Fe_K_240"
    assert meta["file_name_not_used"]["temperature"] == "20 K"
