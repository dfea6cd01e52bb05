"""Fixtures of the editor tests: the real yaml-language-server (see lsp_setup.py) and a
workspace holding the schema generated for the test catalog."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))

from lsp_client import LspClient
from lsp_setup import ensure_server


@pytest.fixture(scope="session")
def catalog():
    import fake_units

    from asapo_pipelines.testing import catalog_from_plugins

    return catalog_from_plugins(fake_units, distribution="fake-beamline", version="1.0.0")


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory, catalog) -> Path:
    """A folder with the schema generated for the test catalog, as `pipeline schema` writes it."""
    from asapo_pipelines.schema import dumps, pipeline_schema

    root = tmp_path_factory.mktemp("editor")
    (root / "pipeline.schema.json").write_text(dumps(pipeline_schema(catalog)))
    return root


@pytest.fixture(scope="session")
def server(workspace: Path) -> Iterator[LspClient]:
    script = ensure_server()
    settings = {
        "yaml": {
            "validate": True,
            "completion": True,
            "hover": True,
            "schemaStore": {"enable": False},
            "schemas": {},
        }
    }
    client = LspClient(
        [shutil.which("node") or "node", str(script), "--stdio"], settings, workspace
    )
    client.initialize(workspace)
    yield client
    client.close()
