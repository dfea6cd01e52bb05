"""The asapo backend with the real asapo wheels and no ASAP::O: every call gives `Unavailable`
within its deadline, the process never hangs, and no message is lost without being reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asapo_pipelines.transport import TransportConfigError, open_transport

pytest.importorskip("asapo_consumer", reason="the asapo extra is not installed")
pytest.importorskip("asapo_producer", reason="the asapo extra is not installed")

SCENARIO = str(Path(__file__).with_name("asapo_scenario.py"))
REQUEST_TIMEOUT = 1.0
# generous room for thread start-up on a loaded CI machine: what matters is "bounded", not speed
SLACK = 3.0


@pytest.mark.parametrize("mode", ["refused", "silent"])
def test_contract_every_call_is_unavailable_within_its_deadline(mode: str) -> None:
    env = {**os.environ, "SCENARIO_TOKEN": "SCENARIO-SECRET"}
    proc = subprocess.run(
        [sys.executable, SCENARIO, mode, str(REQUEST_TIMEOUT)],
        capture_output=True,
        text=True,
        timeout=180,  # a hang (in a call or at exit) fails here
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SCENARIO-SECRET" not in proc.stdout + proc.stderr, "the token was printed"
    # the libraries log JSON lines to stdout too; the report is the line with "calls"
    report = next(
        json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"calls"')
    )
    calls = report["calls"]
    for name, call in calls.items():
        if name.startswith("send"):
            continue  # sends only queue; their fate is checked below
        if name == "close" and not report["unconfirmed"]:
            # the library had already reported every queued message as failed: close has
            # nothing left to wait for, so it may succeed; what failed is checked below
            assert call["outcome"] in ("ok", "Unavailable"), (name, call)
        else:
            assert call["outcome"] == "Unavailable", (name, call)
        bound = call["wait"] + REQUEST_TIMEOUT * 2 + SLACK
        assert call["seconds"] <= bound, f"{name} took {call['seconds']:.1f} s"
    # nothing lost on the producer side that was not reported: every sent id failed or is
    # listed as unconfirmed, and sends that raised were never counted as sent
    reported = set(report["failed"]) | set(report["unconfirmed"])
    assert report["sent"], "no send was accepted into the queue"
    assert set(report["sent"]) <= reported
    for i in range(1, 21):
        outcome = calls[f"send{i}"]["outcome"]
        assert outcome in ("ok", "Unavailable")
        assert (outcome == "ok") == (i in report["sent"])


def test_contract_token_comes_from_a_file_or_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ASAPO_TOKEN", raising=False)
    base = {"endpoint": "127.0.0.1:1", "beamtime": "b1"}
    with pytest.raises(TransportConfigError, match="ASAPO_TOKEN"):
        open_transport({"asapo": base})
    with pytest.raises(TransportConfigError, match="token_file or token_env"):
        open_transport({"asapo": {**base, "token": "abc"}})
    with pytest.raises(TransportConfigError, match="cannot read the ASAP::O token file"):
        open_transport({"asapo": {**base, "token_file": str(tmp_path / "missing")}})
    token_file = tmp_path / "token"
    token_file.write_text("FILE-SECRET\n")
    transport = open_transport({"asapo": {**base, "token_file": str(token_file)}})
    assert transport.settings.token == "FILE-SECRET"
    assert "FILE-SECRET" not in repr(transport.settings)
    monkeypatch.setenv("MY_TOKEN", "ENV-SECRET")
    transport = open_transport({"asapo": {**base, "token_env": "MY_TOKEN"}})
    assert transport.settings.token == "ENV-SECRET"
    with pytest.raises(TransportConfigError, match="unknown option"):
        open_transport({"asapo": {**base, "token_env": "MY_TOKEN", "bogus": 1}})
    with pytest.raises(TransportConfigError, match="beamtime or a beamline"):
        open_transport({"asapo": {"endpoint": "h:1", "token_env": "MY_TOKEN"}})
