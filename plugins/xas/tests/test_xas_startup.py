"""The XAS units pay xraylarch's import at start-up, while their worker says "loading", not
in the first scan of a run after the live table already says "running"."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


@pytest.mark.parametrize(
    ("unit", "modules"),
    [
        ("xas.normalize", ("larch.xafs", "larch.math", "larch.xray")),
        ("xas.merge", ("larch.xafs", "larch.io")),
    ],
)
def test_a_unit_has_larch_loaded_when_it_starts_running(unit: str, modules: tuple) -> None:
    # the worker says "loading" around the runner's start (runtime import and on_start) and
    # "running" after it: what is imported then is not waited for by the first scan. A fresh
    # interpreter, so that nothing else has imported larch before.
    code = textwrap.dedent(
        f"""
        import sys
        from asapo_pipelines.testing.harness import UnitHarness
        harness = UnitHarness({unit!r})
        print([m for m in {modules!r} if m in sys.modules])
        harness.start()
        print([m for m in {modules!r} if m not in sys.modules])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded_before, missing_after = done.stdout.split("\n")[:2]
    assert loaded_before == "[]"  # the catalog and the unit's descriptor stay light
    assert missing_after == "[]"
