"""A file holding mu already (XDI `mutrans`) and no It, normalised in mode transmission, is told
that `mode: mu` reads its mu, not to map a column it does not have; a file without mu keeps the
`columns` remedy. Real files (SOURCES.md) through xas.scan-files and xas.normalize."""

from __future__ import annotations

from xas_testdata import DATA


def refusal(run_unit, unit_message, directory, mode: str) -> str:
    scans = run_unit("xas.scan-files", params={"directory": str(directory), "pattern": "*.xdi"})
    assert scans.errors == []
    (scan,) = scans.outputs
    result = run_unit(
        "xas.normalize", [unit_message(scan.value, metadata=scan.metadata)], params={"mode": mode}
    )
    assert result.values("spectra") == []
    (record,) = result.errors
    return record["error"]


def test_a_file_with_mu_and_i0_only_is_told_to_use_mode_mu(tmp_path, run_unit, unit_message):
    # columns: energy, mutrans, i0 (APS 13-BM-D)
    (tmp_path / "fe_metal_rt.xdi").write_bytes((DATA / "fe_metal_rt.xdi").read_bytes())
    error = refusal(run_unit, unit_message, tmp_path, "transmission")
    assert error == (
        "fe_metal_rt.xdi: mode transmission needs the it channel, which the scan does not have "
        "(channels: i0, mu); the file has mu already (column mutrans): `mode: mu` in "
        "xas.normalize uses it (if the file has an it column under another name, map it with "
        "`columns` in xas.scan-files)"
    )
    # and `mode: mu` does normalise it
    scans = run_unit("xas.scan-files", params={"directory": str(tmp_path), "pattern": "*.xdi"})
    (scan,) = scans.outputs
    done = run_unit(
        "xas.normalize", [unit_message(scan.value, metadata=scan.metadata)], params={"mode": "mu"}
    )
    assert done.errors == []
    assert len(done.values("spectra")) == 1


def without_mu(source: str = "cu_metal_rt.xdi") -> str:
    """The Cu foil's file (energy, i0, itrans, mutrans) without its mutrans column."""
    out = []
    for line in (DATA / source).read_text().splitlines():
        if line.startswith("# Column.4:"):
            continue
        if line.startswith("# energy i0 itrans mutrans"):
            line = "# energy i0 itrans"
        elif line.strip() and not line.startswith("#"):
            line = " ".join(line.split()[:3])
        out.append(line)
    return "\n".join(out) + "\n"


def test_a_file_without_mu_keeps_the_columns_remedy(tmp_path, run_unit, unit_message):
    (tmp_path / "cu_no_mu.xdi").write_text(without_mu())
    error = refusal(run_unit, unit_message, tmp_path, "fluorescence")
    assert error == (
        "cu_no_mu.xdi: mode fluorescence needs the if channel, which the scan does not have "
        "(channels: i0, it); map it with `columns` in xas.scan-files"
    )
