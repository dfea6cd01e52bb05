"""A scan file whose sample is corrected and then corrected back (CuA, CuB, CuA again: the
live tester's `cuA_002.xdi`): the first version's reason must name the version that replaces
it now, in its own group, not the one in between that CuB no longer merges. Real files and a
real `pipeline run`, resumed after each correction."""

from __future__ import annotations

from test_xas_version_regroup import NORMALIZE, merge_summary, write_scan
from xas_procs import read, scan_chain, write_pipeline

CUA, CUB = "CuA/Cu/K/transmission", "CuB/Cu/K/transmission"


def latest(store, sample: str) -> dict:
    """The stream's latest merge of `sample`."""
    bodies = [body for _, body in read(store, "merged") if body["group"]["sample"] == sample]
    return bodies[-1]


def test_a_file_corrected_back_names_the_version_that_replaces_it_now(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_scan(data / "cuA_001.xdi", "CuA", 1)
    write_scan(data / "cuA_002.xdi", "CuA", 2)
    pipeline = write_pipeline(tmp_path, "back", scan_chain("data", NORMALIZE, {"align": "none"}))
    merge_summary(pipeline)
    write_scan(data / "cuA_002.xdi", "CuB", 2)
    merge_summary(pipeline, "--resume")
    write_scan(data / "cuA_002.xdi", "CuA", 2)  # corrected back
    merges = merge_summary(pipeline, "--resume")["merges"]
    assert merges[CUA]["merged"] == 2
    assert merges[CUB]["merged"] == 0

    cua = latest(tmp_path / "store", "CuA")
    (first_read,) = cua["rejected"]
    assert first_read["superseded"] is True
    assert first_read["reasons"] == [
        "replaced by version 3 of the same file, which changed after this version was read"
    ]
    (moved,) = latest(tmp_path / "store", "CuB")["rejected"]
    assert moved["reasons"] == [
        "replaced by version 3 of the same file, which changed after this version was read "
        "and belongs to another group (sample CuA, element Cu, edge K, mode transmission), "
        "where it is merged"
    ]
