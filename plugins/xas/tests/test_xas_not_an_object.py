"""A message that is no JSON object (a payload without format metadata, a JSON list) reaching
`xas.normalize` or `xas.merge` goes to the error stream with a sentence naming the message and
what the unit takes; before, normalize's record said only "'bytes' object has no attribute
'get'" (builtins.AttributeError), after the unit's retries (an outside tester injecting bad
messages into a live run). The units through the SDK's harness, the runner workers use."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("unit", "kind"), [("xas.normalize", "xas/scan"), ("xas.merge", "xas/spectrum")]
)
@pytest.mark.parametrize(
    ("payload", "metadata", "held"),
    [(b"[]", {}, "bytes"), (b"[1, 2]", {"format": "json"}, "list")],
)
def test_a_message_that_is_no_json_object_is_named_in_one_sentence(
    run_unit, unit_message, unit, kind, payload, metadata, held
):
    params = {"mode": "transmission"} if unit == "xas.normalize" else {}
    given = unit_message(payload=payload, raw=True, metadata=metadata, id=6)
    result = run_unit(unit, [given], params=params)
    (record,) = result.errors
    port = "scans" if unit == "xas.normalize" else "spectra"
    assert record["error"] == (
        f"message {port}-in/default/6 is not a JSON object (it holds {held}); "
        f"{unit} takes {kind} messages"
    )
    assert record["attempts"] == 1  # the message, not the moment: no retries
    assert result.values() == []
