"""Item 6 of #12: work bounded on input. A huge YAML file is refused while it is read (not after
building all of it), with what it really holds; a huge scan file is not read at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from faults_support import pipeline

from asapo_pipelines.pipeline.loader import MAX_BYTES, MAX_NODES


def test_a_yaml_file_of_too_many_values_is_refused_while_parsing(tmp_path: Path) -> None:
    # a plain list, no anchors or aliases, under the size limit: what the 14 MB file was
    count = 1_200_000
    path = tmp_path / "huge.pipeline.yaml"
    with path.open("w") as fh:
        fh.write("pipeline: huge\nunits: {}\nstreams:\n")
        for i in range(count):
            fh.write(f"  - {i}\n")
    assert path.stat().st_size < MAX_BYTES
    done = pipeline("validate", str(path), timeout=120)
    assert done.returncode == 1
    err = done.stdout + done.stderr
    assert f"the file holds more than {MAX_NODES:,} values" in err
    assert "alias" not in err  # the file has none: the message says what it has
    line = int(err.split("huge.pipeline.yaml:")[1].split(":")[0])
    # refused where the count ran out, well before the end of the file
    assert 4 <= line <= MAX_NODES + 4 < count


def test_a_scan_file_past_the_size_limit_is_not_read(tmp_path: Path) -> None:
    readers = pytest.importorskip("asapo_pipelines_xas.readers")
    from asapo_pipelines_xas.errors import ScanFileError

    path = tmp_path / "detector-image.xdi"
    with path.open("wb") as fh:  # sparse: the size without the disk space
        fh.truncate(readers.MAX_SCAN_BYTES + 1)
    with pytest.raises(ScanFileError) as caught:
        readers.read_scan(path)
    assert str(caught.value) == (
        f"cannot read scan file detector-image.xdi: the file is "
        f"{readers.MAX_SCAN_BYTES + 1:,} bytes, more than the {readers.MAX_SCAN_BYTES:,} a scan "
        "file may have; it is not read"
    )
    os.truncate(path, 0)
