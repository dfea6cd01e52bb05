"""The real yaml-language-server, installed from the npm registry by `npm ci` from the pinned
tools/yaml-language-server/package-lock.json when it is not installed yet.

Without Node.js or npm the editor tests are skipped on a developer's machine, but fail on CI
(CI=true), where the project's set-up must have installed them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "yaml-language-server"
SERVER = TOOL / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests" / "pipeline"))

from lsp_client import LspClient  # noqa: E402


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI must install it (see tools/yaml-language-server)")
    pytest.skip(reason)


def ensure_server() -> Path:
    """Install the pinned yaml-language-server with `npm ci` if needed; return its script."""
    node = shutil.which("node")
    if node is None:
        _unavailable("Node.js (`node`) is not installed")
    if SERVER.is_file():
        return SERVER
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("npm is not installed, so yaml-language-server cannot be installed")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=TOOL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0 or not SERVER.is_file():
        pytest.fail(f"`npm ci` in {TOOL} failed:\n{result.stdout}\n{result.stderr}")
    return SERVER


@pytest.fixture(scope="session")
def catalog():
    from asapo_pipelines.testing import catalog_from_plugins

    import fake_units

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
    client = LspClient([shutil.which("node") or "node", str(script), "--stdio"], settings,
                       workspace)
    client.initialize(workspace)
    yield client
    client.close()
