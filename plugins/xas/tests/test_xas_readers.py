"""Reading P65, XDI and FIO scan files into role-named channels."""

from __future__ import annotations

import numpy as np
import pytest
from xas_testdata import DATA, P65_SCANS

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines_xas.errors import ScanFileError
from asapo_pipelines_xas.readers import Scan, detect_format, parse_scan, read_scan


def _p65_table(name: str = P65_SCANS[0]) -> tuple[list[str], np.ndarray]:
    lines = (DATA / name).read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    return header, np.loadtxt(DATA / name, comments="#")


def test_p65_columns_follow_sources_md(p65_scans):
    scan = p65_scans[0]
    _, table = _p65_table()
    order = np.argsort(table[:, 0], kind="stable")
    # SOURCES.md: VFC01..VFC04 (columns 10..13) are I0, It, Iref, If; energy is enc_energy
    np.testing.assert_array_equal(scan.energy, table[order, 0])
    for role, column in (("i0", 10), ("it", 11), ("iref", 12), ("if", 13)):
        np.testing.assert_array_equal(scan.channels[role], table[order, column])
    assert scan.metadata["columns"] == {
        "energy": "enc_energy",
        "i0": "VFC01",
        "it": "VFC02",
        "iref": "VFC03",
        "if": "VFC04",
    }


def test_p65_header_metadata(p65_scans):
    meta = p65_scans[0].metadata
    assert meta["format"] == "p65"
    assert meta["start_time"] == "2020-11-22T01:47:54"
    assert meta["end_time"] == "2020-11-22T01:52:57"
    assert meta["beamline"] == "P65"
    assert meta["facility"] == "PETRA III"
    assert meta["count_time"] == 0.1  # the time_pp column: seconds per point
    # no element in the P65 header: taken from the file name
    assert (meta["element"], meta["edge"]) == ("Fe", "K")
    # repeats share a sample name (the file name without the scan number)
    assert [s.metadata["sample"] for s in p65_scans] == ["20K_GOE_Fe_K_240"] * 2
    assert [s.metadata["scan_number"] for s in p65_scans] == [0, 1]


def test_energies_sorted_and_duplicates_dropped(tmp_path):
    header, table = _p65_table()
    rng = np.random.default_rng(7)
    # a continuous scan going back and forth: shuffled rows, 30 rows repeated with other counts
    repeated = table[rng.choice(len(table), 30, replace=False)].copy()
    repeated[:, 10:14] *= 1.5
    shuffled = np.vstack([table, repeated])[rng.permutation(len(table) + 30)]
    path = tmp_path / "shuffled.00003.xdi"
    body = "\n".join(" ".join(repr(float(v)) for v in row) for row in shuffled)
    path.write_text("\n".join(header) + "\n" + body + "\n")
    scan = read_scan(path)
    assert np.all(np.diff(scan.energy) > 0)
    assert len(scan) == len(np.unique(table[:, 0]))
    assert scan.metadata["duplicates_dropped"] == 30
    assert scan.metadata["points_read"] == len(table) + 30


def test_xdi_files(data_dir):
    cu = read_scan(data_dir / "cu_metal_rt.xdi")
    assert cu.metadata["format"] == "xdi"
    assert (cu.metadata["element"], cu.metadata["edge"]) == ("Cu", "K")
    assert cu.metadata["start_time"] == "2001-06-26T22:27:31"
    assert set(cu.channels) == {"i0", "it", "mu"}
    table = np.loadtxt(data_dir / "cu_metal_rt.xdi")
    np.testing.assert_array_equal(cu.channels["it"], table[:, 2])
    fe = read_scan(data_dir / "fe_metal_rt.xdi")
    assert fe.metadata["sample"] == "Fe metal foil"
    assert fe.metadata["edge_energy"] == 7112.0
    assert set(fe.channels) == {"i0", "mu"}


def _fio_text(table: np.ndarray) -> str:
    names = ["energyfly", "ion1", "ion2", "ion3", "pips"]
    lines = [
        "!",
        "! Comments",
        "!",
        "%c",
        "fastxas energyfly 6960 7500",
        "user p65user Acquisition started at Sun Nov 22 01:47:54 2020",
        "!",
        "! Parameter",
        "!",
        "%p",
        "sample = goethite 20K",
        "element = Fe",
        "edge = K",
        "!",
        "! Data",
        "!",
        "%d",
    ]
    lines += [f" Col {i + 1} {n} DOUBLE" for i, n in enumerate(names)]
    lines += [" ".join(repr(float(v)) for v in row) for row in table[:, [0, 10, 11, 12, 13]]]
    return "\n".join(lines) + "\n"


def test_fio_file_with_configured_columns(tmp_path):
    _, table = _p65_table()
    path = tmp_path / "goethite_00042.fio"
    path.write_text(_fio_text(table))
    columns = {"energy": "energyfly", "i0": "ion1", "it": "ion2", "iref": 3, "if": "PIPS"}
    scan = read_scan(path, columns=columns)
    assert scan.metadata["format"] == "fio"
    assert scan.metadata["sample"] == "goethite 20K"
    assert (scan.metadata["element"], scan.metadata["edge"]) == ("Fe", "K")
    assert scan.metadata["start_time"] == "2020-11-22T01:47:54"
    order = np.argsort(table[:, 0], kind="stable")
    np.testing.assert_array_equal(scan.channels["iref"], table[order, 12])
    np.testing.assert_array_equal(scan.channels["if"], table[order, 13])


def test_overrides_win_over_header(data_dir):
    scan = read_scan(data_dir / "cu_metal_rt.xdi", sample="foil A", element="Ni", edge="K")
    assert (scan.metadata["sample"], scan.metadata["element"]) == ("foil A", "Ni")


def test_format_detection():
    assert detect_format(["# XDI/1.0 GSE/1.0", "# Column.1: energy"]) == "xdi"
    assert detect_format(["!", "%c", "x", "%d", " Col 1 e DOUBLE"]) == "fio"
    assert detect_format(["# P65", "#a b", "1 2"]) == "p65"


def test_scan_json_round_trip(p65_scans):
    scan = p65_scans[1]
    again = Scan.from_json(scan.to_json())
    np.testing.assert_array_equal(again.energy, scan.energy)
    for role in scan.channels:
        np.testing.assert_array_equal(again.channels[role], scan.channels[role])
    assert again.metadata["sample"] == scan.metadata["sample"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "the file is empty"),
        ("# energy i0 it\n# only a header\n", "no data rows"),
        # a FIO header without rows: said so, not "line 1 has 1 values"
        ("%c\nscan\n%d\n Col 1 energy DOUBLE\n Col 2 i0 DOUBLE\n", "no data rows after the header"),
        (
            "# energy i0 it\n" + "1 2 3\n" * 5 + "1 2\n",
            "line 7 has 2 values where the columns say 3",
        ),
        ("# energy i0 it\n7000 1 2\n7001 x 2\n", "line 3 holds 'x', which is not a number"),
        ("# temperature i0 it\n" + "1 2 3\n" * 30, "no energy column"),
        ("# energy i0 it\n" + "".join(f"{7000 + i} 2 3\n" for i in range(5)), "only 5 distinct"),
    ],
)
def test_malformed_files_raise_clear_errors(content, reason):
    with pytest.raises(ScanFileError) as info:
        parse_scan(content, name="bad.dat")
    assert isinstance(info.value, PipelinesError)
    assert str(info.value).startswith("cannot read scan file bad.dat: ")
    assert reason in str(info.value)


def test_unknown_mapped_column_names_the_available_ones(data_dir):
    with pytest.raises(ScanFileError, match=r"column 'VFC09' for iref is not in the file; columns"):
        read_scan(data_dir / P65_SCANS[0], columns={"iref": "VFC09"})


def test_missing_file_is_a_scan_file_error(tmp_path):
    with pytest.raises(ScanFileError, match=r"nothing\.xdi"):
        read_scan(tmp_path / "nothing.xdi")


def test_truncated_fio_is_rejected(tmp_path):
    path = tmp_path / "cut.fio"
    path.write_text("%c\nscan\n%p\nsample = x\n")
    with pytest.raises(ScanFileError, match="no %d block"):
        read_scan(path)
