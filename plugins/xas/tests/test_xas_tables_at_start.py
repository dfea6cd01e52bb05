"""`xas.scan-files` opens xraydb's tables (which write every element and edge label) in
`on_start`, while its worker says "loading": left to the first file, their 1-2.5 s went into
the first scan's file-to-decision time although the live table said "running"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
from asapo_pipelines.testing.harness import UnitHarness

harness = UnitHarness("xas.scan-files", {"directory": sys.argv[1], "pattern": "*.xdi"})
assert "xraydb" not in sys.modules, "the catalog or the unit's module opened the tables"
harness.start()
print("xraydb" in sys.modules)
harness.shutdown()
"""


def test_scan_files_opens_the_label_tables_while_loading(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
