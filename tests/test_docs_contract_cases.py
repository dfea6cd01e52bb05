"""docs/transports.md says what each case of the transport contract suite checks: a transport
author writes to that table (an outside tester found two of the suite's demands missing from
the page), so it holds every case the suite exports, and none that the suite no longer has."""

from __future__ import annotations

import re
from pathlib import Path

from asapo_pipelines.testing import transport_contract

PAGE = Path(__file__).parents[1] / "docs" / "transports.md"


def test_the_transport_page_lists_every_contract_case() -> None:
    text = PAGE.read_text(encoding="utf-8")
    table = text[text.index("| case | what your transport must do |") :].split("\n\n")[0]
    listed = re.findall(r"^\| `(\w+)` \|", table, re.M)
    cases = {name.removeprefix("test_contract_") for name in transport_contract.__all__}
    assert cases, "the suite exports no case: the scan is broken"
    assert sorted(listed) == sorted(cases)
