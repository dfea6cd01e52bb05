"""The plugin package shown in docs/plugins.md installs and lists as the page says."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
