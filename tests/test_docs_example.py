"""The plugin package shown in docs/plugins.md installs and lists as the page says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from asapo_pipelines.sdk import PipelinesError
from asapo_pipelines.testing.distributions import install

from helpers import run_pipeline

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "minimal-plugin"
COPY = re.compile(r"^<!-- docs-test: copy, (\S+) -->$", re.M)


def test_documented_minimal_plugin_installs_and_lists(tmp_path):
    install([EXAMPLE], tmp_path)
    env = {"PYTHONPATH": str(tmp_path), "ASAPO_PIPELINES_STRICT": "1"}
    result = run_pipeline("list-units", "--namespace", "acme-xrd", "--json", env=env)
    assert result.returncode == 0, result.stderr
    (unit,) = json.loads(result.stdout)["units"]
    assert unit["name"] == "acme-xrd.integrate"
    assert unit["distribution"] == "acme-xrd-units"
    assert unit["version"] == "0.1.0"
    shown = run_pipeline("show-unit", "acme-xrd.integrate", env=env)
    assert "pyFAI geometry file" in shown.stdout


def test_documented_make_catalog_snippet(make_catalog, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    catalog = make_catalog("acme_xrd.plugin")
    unit = catalog.get("acme-xrd.integrate")
    assert unit.params.model_validate({"poni_file": "det.poni"}).bins == 1000


def test_the_plugin_page_shows_the_example_files_where_github_shows_them():
    """GitHub shows a `--8<--` include line as it is: the page said `--8<-- "docs/examples/
    minimal-plugin/pyproject.toml"` where the file belonged. It holds each file's text now,
    which tests/test_docs_tested.py keeps the same as the file."""
    page = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert "--8<--" not in page
    shown = COPY.findall(page)
    files = ("pyproject.toml", "acme_xrd/plugin.py", "acme_xrd/integrate.py")
    assert shown == [str((EXAMPLE / f).relative_to(ROOT)) for f in files]


def test_the_example_reads_the_poni_files_pyfai_writes_and_agrees_with_pyfai(
    make_catalog, run_unit, monkeypatch, tmp_path
):
    """An outside plugin author copied the page's unit and fed it a PONI file written by the
    pyFAI they had (`poni_version: 2.1`, pixel sizes in `Detector_config`): every frame went to
    the error stream with `KeyError 'PixelSize1'`. The example reads both versions, and each
    pixel's angle is the one pyFAI computes for the same file (pyFAI, as xraylarch brings it)."""
    integrator = pytest.importorskip("pyFAI.integrator.azimuthal").AzimuthalIntegrator
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from acme_xrd.integrate import read_poni, two_theta

    poni = tmp_path / "det.poni"
    geometry = integrator(
        dist=0.12, poni1=0.0061, poni2=0.0049, pixel1=1.0e-4, pixel2=1.2e-4, wavelength=1e-10
    )
    geometry.write(str(poni))
    assert "PixelSize1" not in poni.read_text()  # the format pyFAI writes today
    shape = (90, 110)
    ours = two_theta(shape, read_poni(str(poni)))
    assert np.allclose(ours, geometry.twoThetaArray(shape), rtol=1e-6)  # pyFAI works in float32

    catalog = make_catalog("acme_xrd.plugin")
    result = run_unit(
        "acme-xrd.integrate",
        [np.full(shape, 7.0)],
        params={"poni_file": str(poni), "bins": 40},
        catalog=catalog,
    )
    assert result.errors == []
    (pattern,) = result.values("patterns")
    assert np.allclose(pattern["intensity"], 7.0)

    # a tilted detector, which the example's flat geometry cannot integrate: one sentence at
    # start, not an error per frame
    tilted = tmp_path / "tilted.poni"
    integrator(dist=0.12, pixel1=1e-4, pixel2=1e-4, rot1=0.05, wavelength=1e-10).write(str(tilted))
    with pytest.raises(PipelinesError, match=r"describes a tilted detector \(\{'Rot1': 0\.05"):
        run_unit(
            "acme-xrd.integrate",
            [np.ones(shape)],
            params={"poni_file": str(tilted)},
            catalog=catalog,
        )
