"""docs/pipeline-files.md lists exactly the validation codes there are, as the code defines
them."""

from __future__ import annotations

import re
from pathlib import Path

from asapo_pipelines.pipeline import CODES

DOC = Path(__file__).resolve().parents[2] / "docs" / "pipeline-files.md"


def test_docs_list_every_code_with_its_severity_and_meaning() -> None:
    rows = re.findall(r"^\| (P\d{3}) \| (error|warning) \| (.+) \|$", DOC.read_text(), re.M)
    assert {code: (sev, text) for code, sev, text in rows} == CODES
