"""nexus.writer as the catalog sees it, registered without importing h5py or numpy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from asapo_pipelines.catalog import Catalog


def test_catalog_lists_the_writer_as_a_sink():
    unit = Catalog.load(strict=True).get("nexus.writer")
    assert unit.distribution == "asapo-pipelines-nexus"
    assert unit.role == "sink"
    assert {p.content_type for p in unit.inputs} == {
        "xas/scan",
        "xas/spectrum",
        "xas/merged",
        "plan/suggestion",
    }
    assert not any(p.required for p in unit.inputs)
    assert unit.runtime == "asapo_pipelines_nexus.units:NexusWriterSink"
    assert "file" in unit.params_schema()["required"]


def test_registration_imports_neither_h5py_nor_numpy():
    code = (
        "import sys, json\n"
        "from asapo_pipelines.catalog import Catalog\n"
        "assert 'nexus.writer' in Catalog.load(strict=True)\n"
        "print(json.dumps(sorted(m for m in ('numpy', 'h5py') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_params_reject_typos():
    from asapo_pipelines_nexus.params import NexusWriterParams

    with pytest.raises(ValueError, match="extra"):
        NexusWriterParams.model_validate({"file": "a.nxs", "compresion": "gzip"})
    assert NexusWriterParams(file="a.nxs").compression == "none"


def test_writer_from_params_resolves_relative_paths(tmp_path):
    from asapo_pipelines_nexus.params import NexusWriterParams
    from asapo_pipelines_nexus.writer import NexusWriter

    writer = NexusWriter.from_params(
        NexusWriterParams(file="results/p65.nxs", compression="gzip"), base=tmp_path
    )
    assert writer.path == tmp_path / "results" / "p65.nxs"
    with writer:
        writer.write_scan(
            {"energy": [1.0, 2.0, 3.0], "channels": {"i0": [1.0] * 3, "it": [2.0] * 3}}, "k/1"
        )
    import h5py

    with h5py.File(writer.path, "r") as f:
        assert f["entry1/instrument/monochromator/energy"].compression == "gzip"
