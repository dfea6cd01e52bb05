"""XDI 1.0 files without the optional user-comment block (`# ///` and its comments) are read as
xraylarch's `read_xdi` reads them: the line after `#----` names the columns, and without a
`#----` line the last header line does. A field line that lost its colon is still refused, in one
sentence that names the line.

An outside tester's Cu file with its `# ///` line and comment removed was refused ("XDI header
line 'energy i0 itrans mutrans' is not `Namespace.tag: value`") while xraylarch read its 408
points. Real file (SOURCES.md), xraylarch at test time."""

from __future__ import annotations

import numpy as np
import pytest
from xas_procs import pipeline_command, read, scan_chain, write_pipeline
from xas_testdata import DATA, REFERENCE_SETTINGS, larch_e0

from asapo_pipelines_xas.readers import read_scan

SOURCE = "cu_metal_rt.xdi"


def variant(
    path, *, comments: bool = False, separator: bool = True, header_end: bool = True, edit=None
):
    """The Cu file without its `# ///` block (`comments` keeps it, without its `# ///` line
    unless `separator`), without its `#----` line unless `header_end`; `edit` changes each
    header line."""
    out, in_comments = [], False
    for line in (DATA / SOURCE).read_text().splitlines():
        if line.startswith("# ///"):
            in_comments = True
            if not comments or not separator:
                continue
        elif line.startswith("#---"):
            in_comments = False
            if not header_end:
                continue
        elif in_comments and not comments:
            continue
        if edit is not None and line.startswith("#"):
            line = edit(line)
        out.append(line)
    path.write_text("\n".join(out) + "\n")
    return path


def larch_read(path):
    from larch.io import read_xdi

    return read_xdi(str(path))


@pytest.mark.parametrize("header_end", [True, False], ids=["with-header-end", "labels-last"])
def test_a_file_without_the_comment_block_reads_as_xraylarch_reads_it(tmp_path, header_end):
    path = variant(tmp_path / "cu_nocomment.xdi", header_end=header_end)
    text = path.read_text()
    assert "# ///" not in text
    assert ("#----" in text) == header_end
    scan = read_scan(path)
    larch = larch_read(path)
    assert len(scan) == len(larch.energy) == 408
    assert scan.metadata["columns"] == {
        "energy": "energy",
        "i0": "i0",
        "it": "itrans",
        "mu": "mutrans",
    }
    np.testing.assert_array_equal(scan.energy, larch.energy)
    np.testing.assert_array_equal(scan.channels["i0"], larch.i0)
    np.testing.assert_array_equal(scan.channels["it"], larch.itrans)
    np.testing.assert_array_equal(scan.channels["mu"], larch.mutrans)
    assert (scan.metadata["element"], scan.metadata["edge"]) == ("Cu", "K")
    assert scan.metadata["sample"] == "Cu"


@pytest.mark.parametrize("header_end", [True, False], ids=["with-header-end", "labels-last"])
def test_a_comment_without_its_separator_reads_as_xraylarch_reads_it(tmp_path, header_end):
    """An outside tester's Cu file with its `# ///` line removed and its comment line kept
    was refused ("XDI header line 24 'Cu foil Room Temperature' is not Namespace.tag: value")
    while xraylarch read its 408 points: read_xdi skips a free comment among the fields."""
    path = variant(tmp_path / "cu_h.xdi", comments=True, separator=False, header_end=header_end)
    text = path.read_text()
    assert "# ///" not in text
    assert "# Cu foil Room Temperature" in text
    scan = read_scan(path)
    larch = larch_read(path)
    assert len(scan) == len(larch.energy)
    assert [scan.metadata["columns"][role] for role in ("energy", "i0", "it", "mu")] == (
        larch.array_labels
    )
    np.testing.assert_array_equal(scan.energy, larch.energy)
    np.testing.assert_array_equal(scan.channels["i0"], larch.i0)
    np.testing.assert_array_equal(scan.channels["it"], larch.itrans)
    np.testing.assert_array_equal(scan.channels["mu"], larch.mutrans)
    assert scan.metadata["sample"] == larch.attrs["sample"]["name"]
    assert scan.metadata["header"]["Scan.edge_energy"] == larch.attrs["scan"]["edge_energy"]


def test_a_pipeline_run_normalises_them_and_refuses_a_field_without_its_colon(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    variant(data / "cu_nocomment.xdi")
    variant(data / "cu_noseparator.xdi", comments=True, separator=False)
    variant(data / "cu_nolabelsep.xdi", header_end=False)
    variant(data / "cu_comments.xdi", comments=True)
    broken = variant(
        data / "cu_broken.xdi",
        edit=lambda line: line.replace("# Sample.name: Cu", "# Sample.name Cu"),
    )
    number = broken.read_text().splitlines().index("# Sample.name Cu") + 1
    pipeline = write_pipeline(
        tmp_path, "xdi", scan_chain("data", {**REFERENCE_SETTINGS, "mode": "mu"})
    )
    run = pipeline_command(pipeline, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    said = " ".join((run.stdout + run.stderr).split())
    assert (
        f"cannot read scan file cu_broken.xdi: XDI header line {number} 'Sample.name Cu' reads "
        "as a field without its colon (`Namespace.tag: value`), which xraylarch's read_xdi "
        "would drop unseen: write it `Sample.name: Cu`" in said
    )
    assert "Traceback" not in said
    larch = larch_read(DATA / SOURCE)
    want = larch_e0(larch.energy, larch.mutrans)
    spectra = {v["metadata"]["file"]: v for _, v in read(tmp_path / "store", "spectra")}
    assert sorted(spectra) == [
        "cu_comments.xdi",
        "cu_nocomment.xdi",
        "cu_nolabelsep.xdi",
        "cu_noseparator.xdi",
    ]
    for spectrum in spectra.values():
        assert spectrum["values"]["e0"] == pytest.approx(want, abs=0.01)
