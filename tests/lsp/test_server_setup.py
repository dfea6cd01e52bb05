"""The set-up of the language server: skipped without npm on a developer's machine, a failure on
CI, so that a CI run cannot silently lose the editor tests."""

from __future__ import annotations

import lsp_setup
import pytest


@pytest.fixture
def no_tools(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither node nor npm on it
    monkeypatch.setattr(lsp_setup, "SERVER", tmp_path / "missing" / "yaml-language-server")


def test_missing_tools_fail_on_ci(no_tools, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must install it"):
        lsp_setup.ensure_server()


def test_missing_tools_skip_elsewhere(no_tools, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        lsp_setup.ensure_server()


def test_the_server_is_pinned_by_the_lock_file() -> None:
    import json

    package = json.loads((lsp_setup.TOOL / "package.json").read_text())
    lock = json.loads((lsp_setup.TOOL / "package-lock.json").read_text())
    pinned = package["dependencies"]["yaml-language-server"]
    assert pinned[0].isdigit(), "pin an exact version"
    assert lock["packages"]["node_modules/yaml-language-server"]["version"] == pinned
