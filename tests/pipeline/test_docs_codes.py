"""docs/pipeline-files.md lists exactly the validation codes there are, as the code defines
them, and the codes no longer given, whose numbers are not given again."""

from __future__ import annotations

import re
from pathlib import Path

from asapo_pipelines.pipeline import CODES
from asapo_pipelines.pipeline.problems import RETIRED

DOC = Path(__file__).resolve().parents[2] / "docs" / "pipeline-files.md"


def test_docs_list_every_code_with_its_severity_and_meaning() -> None:
    rows = re.findall(r"^\| (P\d{3}) \| (error|warning) \| (.+) \|$", DOC.read_text(), re.M)
    assert {code: (sev, text) for code, sev, text in rows} == CODES


def test_docs_list_every_retired_code_and_none_is_given_again() -> None:
    rows = re.findall(r"^- (P\d{3}): (.+)$", DOC.read_text(), re.M)
    assert dict(rows) == RETIRED
    assert not set(RETIRED) & set(CODES)
