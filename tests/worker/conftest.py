"""Fixtures of the worker tests."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from asapo_pipelines.sdk import describe, inp, out


@pytest.fixture
def as_unit(monkeypatch: pytest.MonkeyPatch):
    """A descriptor for a runtime class defined in the test (its module made importable), run
    by the harness or a worker as a plugin's unit would be."""

    def make(cls: type, *, kind: str = "processor", outputs: Any = None, params: Any = None):
        module = types.ModuleType(f"test_units_{cls.__name__.lower()}")
        setattr(module, cls.__name__, cls)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        return describe(
            f"qa.{cls.__name__.lower()}",
            kind=kind,
            summary="a unit defined in a test",
            runtime=f"{module.__name__}:{cls.__name__}",
            inputs=[inp("values")],
            outputs=outputs if outputs is not None else [out("result")],
            **({"params": params} if params is not None else {}),
        )

    return make
