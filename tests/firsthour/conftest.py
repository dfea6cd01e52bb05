"""The first-hour tests drive the commands a new user types on the reference pipeline (the XAS and
NeXus units), so they need both reference plugins: the `all` session runs them; the core-only
session, which has neither plugin, skips them with the reason shown."""

from __future__ import annotations

import importlib.util

import pytest

_MISSING = [
    name
    for name in ("asapo_pipelines_xas", "asapo_pipelines_nexus")
    if importlib.util.find_spec(name) is None
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _MISSING:
        return
    skip = pytest.mark.skip(reason=f"needs the reference plugins ({', '.join(_MISSING)})")
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(skip)
