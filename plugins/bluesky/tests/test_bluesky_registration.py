"""bluesky.queue as the catalog sees it, registered without importing the queue-server client."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from asapo_pipelines.catalog import Catalog


def test_catalog_lists_the_bridge_with_the_contracts_ports():
    unit = Catalog.load(strict=True).get("bluesky.queue")
    assert unit.distribution == "asapo-pipelines-bluesky"
    assert unit.role == "processor"
    assert [(p.name, p.content_type) for p in unit.inputs] == [("suggestions", "plan/suggestion")]
    assert [(p.name, p.content_type) for p in unit.outputs] == [("status", "plan/status")]
    assert unit.runtime == "asapo_pipelines_bluesky.units:QueueBridge"


def test_registration_imports_no_queue_server_client():
    code = (
        "import sys, json\n"
        "from asapo_pipelines.catalog import Catalog\n"
        "assert 'bluesky.queue' in Catalog.load(strict=True)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('bluesky', 'zmq')))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_params_reject_typos_and_bad_addresses():
    from asapo_pipelines_bluesky.params import QueueParams

    with pytest.raises(ValueError, match="extra"):
        QueueParams.model_validate({"mdoe": "auto"})
    with pytest.raises(ValueError, match="control_address"):
        QueueParams.model_validate({"control_address": "localhost:60615"})
    with pytest.raises(ValueError, match="mode"):
        QueueParams.model_validate({"mode": "yolo"})
    assert QueueParams().mode == "approve"  # a person decides unless the file says otherwise


def test_a_template_naming_a_missing_field_is_one_sentence():
    from asapo_pipelines_bluesky.bridge import SuggestionError, entry_from_body
    from asapo_pipelines_bluesky.params import QueueParams

    params = QueueParams(plan={"name": "xas_scan", "kwargs": {"sample": "{group[sample]}"}})
    body = {"action": "more_scans", "target": "GOE", "reason": "noisy", "confidence": 0.5}
    with pytest.raises(SuggestionError, match=r"names 'sample' which this suggestion"):
        entry_from_body(body, instance="queue", params=params)


def test_more_scans_with_zero_scans_queues_nothing_even_with_a_template():
    """The agent says `more_scans` with `scans: 0` and no plan while what it needs is in
    flight: the template must not turn that into one more scan."""
    from asapo_pipelines_bluesky.bridge import entry_from_body
    from asapo_pipelines_bluesky.params import QueueParams

    params = QueueParams(plan={"name": "xas_scan", "kwargs": {"repeats": "{scans}"}})
    body = {"action": "more_scans", "target": "GOE", "reason": "2 in flight", "confidence": 0.5}
    waiting = entry_from_body({**body, "arguments": {"scans": 0}}, instance="q", params=params)
    assert (waiting.state, waiting.item, waiting.scans) == ("noted", None, 0)
    asked = entry_from_body({**body, "arguments": {"scans": 3}}, instance="q", params=params)
    assert asked.state == "pending"
    assert asked.item["kwargs"] == {"repeats": 3}
    assert asked.scans == 3
