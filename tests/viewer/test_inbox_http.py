"""The suggestion inbox's decisions over HTTP, as the page sends them: the page's own words for
a reject without a reason, and an unknown suggestion is not found (404), not refused (409)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("asapo_pipelines_bluesky", reason="the bluesky plugin is not installed")
pytest.importorskip("asapo_pipelines_xas", reason="the P65 units (plugins/xas) are not installed")

from viewer_support import ROOT

EXAMPLE = ROOT / "examples" / "p65-xas-bluesky.pipeline.yaml"
UID = "0123456789abcdef"


@pytest.fixture
def inbox_file(tmp_path: Path) -> Path:
    """The P65 bridge example with one pending suggestion in its inbox (no queue server: a
    reject never asks one)."""
    from asapo_pipelines_bluesky.inbox import Entry, Inbox, now
    from asapo_pipelines_bluesky.params import QueueParams

    file = tmp_path / EXAMPLE.name
    file.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "data").mkdir()
    inbox = Inbox(tmp_path / QueueParams().inbox)
    try:
        inbox.add(
            Entry(UID, "queue", now(), "advisor", "more_scans", "GOE", 0.9, "noisy", 2, {},
                  None, "pending")
        )  # fmt: skip
    finally:
        inbox.close()
    return file


@pytest.fixture
def page(inbox_file: Path, serve) -> Any:
    from asapo_pipelines.transport import open_transport
    from asapo_pipelines.viewer.model import load_view

    view = load_view(inbox_file)
    transport = open_transport(view.transport)
    url = serve(view, transport)
    with urllib.request.urlopen(url + "api/inbox", timeout=30) as answer:
        token = json.loads(answer.read())["token"]
    yield url, token
    transport.close()


def decide(page: Any, uid: str, action: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    url, token = page
    request = urllib.request.Request(
        f"{url}api/inbox/{uid}/{action}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Origin": url.rstrip("/"),
            "X-Inbox-Token": token,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_reject_without_a_reason_says_so_in_the_pages_words(page):
    code, answer = decide(page, UID, "reject", {"reason": "  "})
    assert (code, answer["error"]) == (400, "give a reason for rejecting")
    assert "--reason" not in answer["error"]
    code, answer = decide(page, UID[:8], "reject", {"reason": "wrong sample"})
    assert code == 200
    assert answer["suggestion"]["state"] == "rejected"


def test_an_unknown_suggestion_is_not_found(page):
    for action in ("approve", "reject"):
        code, answer = decide(page, "feedface", action, {"reason": "why not"})
        assert code == 404, answer
        assert "no suggestion feedface" in answer["error"]
