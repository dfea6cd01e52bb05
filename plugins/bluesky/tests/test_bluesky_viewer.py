"""The viewer's suggestion inbox in a real Chromium: a pending suggestion is listed, Approve
queues it on the real queue server, and a request from another origin is refused."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines_bluesky.inbox import Inbox

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "p65-xas-bluesky.pipeline.yaml"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]

pytest.importorskip("asapo_pipelines_xas", reason="the P65 units (plugins/xas) are not installed")
pytest.importorskip("starlette", reason="the viewer extra is not installed")


def in_own_thread(scenario: Callable[[Any], None]) -> None:
    """Run `scenario(browser)` with a Chromium of its own, in a thread of its own: playwright's
    sync API refuses a thread whose event loop another test's playwright (the core's viewer
    tests, in the same pytest process) still runs."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.skip("the inbox's browser test needs Debian's chromium")
    from playwright.sync_api import sync_playwright

    def run() -> None:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
            try:
                scenario(browser)
            finally:
                browser.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(run).result()


class Viewer:
    """The viewer app for a pipeline file, served by uvicorn on 127.0.0.1 in a thread."""

    def __init__(self, file: Path) -> None:
        from asapo_pipelines.transport import open_transport
        from asapo_pipelines.viewer.model import load_view
        from asapo_pipelines.viewer.server import create_app, listen, make_server

        view = load_view(file)
        self.transport = open_transport(view.transport)
        self.sock = listen("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.server = make_server(create_app(view, self.transport, poll_interval=0.3), self.sock)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the viewer did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()
        self.transport.close()


@pytest.fixture
def inbox_pipeline(tmp_path: Path, queue_server, run_unit, make_suggestion):
    """The P65 bridge example pointed at the test's queue server, with two pending
    suggestions in its inbox."""
    from asapo_pipelines_bluesky.params import QueueParams

    file = tmp_path / EXAMPLE.name
    file.write_text(EXAMPLE.read_text().replace("tcp://localhost:60615", queue_server.control))
    (tmp_path / "data").mkdir()
    inbox = tmp_path / QueueParams().inbox
    bodies = [make_suggestion(target="GOE"), make_suggestion(target="CU")]
    run_unit(
        "bluesky.queue",
        bodies,
        params={"control_address": queue_server.control, "inbox": str(inbox)},
    )
    viewer = Viewer(file)
    yield viewer, inbox, bodies
    viewer.stop()


class Attacker:
    """Another site: a page served from its own loopback port."""

    def __init__(self) -> None:
        import http.server

        class Page(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"<!doctype html><title>another site</title>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    site = Attacker()
    yield site
    site.stop()


def test_inbox_lists_approves_and_refuses_other_origins(inbox_pipeline, queue_server, attacker):
    in_own_thread(lambda browser: _scenario(browser, inbox_pipeline, queue_server, attacker))


def _scenario(browser: Any, inbox_pipeline: Any, queue_server: Any, attacker: Attacker) -> None:
    viewer, inbox_path, (goe, cu) = inbox_pipeline
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    try:
        page.goto(f"http://127.0.0.1:{viewer.port}/")
        row = page.locator(f'#inbox tr[data-uid="{goe["uid"]}"]')
        row.wait_for(timeout=15000)
        assert row.locator("td").nth(1).inner_text() == "pending"
        assert "noise 1.4e-4" in row.inner_text()

        row.locator('button[data-action="approve"]').click()
        page.wait_for_function(
            "uid => document.querySelector(`#inbox tr[data-uid='${uid}'] td:nth-child(2)`)"
            ".textContent === 'submitted'",
            arg=goe["uid"],
            timeout=15000,
        )
        queued = queue_server.suggestion_items()["queue"]
        assert [i["meta"]["suggestion"]["uid"] for i in queued] == [goe["uid"]]
        inbox = Inbox(inbox_path)
        (decision,) = inbox.decisions()
        assert decision["decision"] == "approve"
        assert decision["by"].endswith("(viewer)")

        # another site's page (its own server on another loopback port) posts to the endpoint
        other = browser.new_page()
        other.goto(attacker.url)
        answer = other.evaluate(
            """async ([url, uid]) => {
                const r = await fetch(url + '/api/inbox/' + uid + '/approve', {
                  method: 'POST', mode: 'no-cors', body: '{}',
                  headers: {'Content-Type': 'text/plain'}});
                return r.type;
            }""",
            [f"http://127.0.0.1:{viewer.port}", cu["uid"]],
        )
        assert answer == "opaque"  # the browser sent it; its answer stays unreadable
        other.close()
        assert inbox.get(cu["uid"]).state == "pending"
        assert len(queue_server.suggestion_items()["queue"]) == 1

        # and the reason the server gives, seen from a client that can read it
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            f"http://127.0.0.1:{viewer.port}/api/inbox/{cu['uid']}/approve",
            data=b"{}",
            method="POST",
            headers={"Origin": "http://evil.example", "X-Inbox-Token": "x"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
        assert b"accepted from the viewer's own page only" in refused.value.read()
        assert problems == []
    finally:
        page.close()


# two approves of one suggestion at the same moment (a double click on Approve, the viewer and
# the command line together) queue its item once: the second says what became of the first
CLICKS = 6


def post(url: str, origin: str, token: str, start: threading.Barrier) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=b"{}",
        method="POST",
        headers={"Origin": origin, "X-Inbox-Token": token, "Content-Type": "application/json"},
    )
    start.wait()
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_approves_at_the_same_moment_queue_the_item_once(inbox_pipeline, queue_server):
    viewer, inbox_path, (goe, _cu) = inbox_pipeline
    origin = f"http://127.0.0.1:{viewer.port}"
    with urllib.request.urlopen(origin + "/api/inbox", timeout=30) as answer:
        token = json.loads(answer.read())["token"]
    start = threading.Barrier(CLICKS)
    url = f"{origin}/api/inbox/{goe['uid']}/approve"
    with concurrent.futures.ThreadPoolExecutor(CLICKS) as pool:
        answers = list(pool.map(lambda _i: post(url, origin, token, start), range(CLICKS)))

    queued = [i["meta"]["suggestion"]["uid"] for i in queue_server.suggestion_items()["queue"]]
    assert queued == [goe["uid"]], answers
    accepted = [a for code, a in answers if code == 200]
    refused = [a["error"] for code, a in answers if code != 200]
    assert len(accepted) == 1, answers
    assert accepted[0]["suggestion"]["state"] == "submitted"
    assert len(refused) == CLICKS - 1
    for sentence in refused:
        # what became of the first approve, by the time this one was decided
        assert sentence.startswith(f"suggestion {goe['uid'][:12]} is ")
        assert sentence.endswith("; only pending, held or failed suggestions can be approved")
    inbox = Inbox(inbox_path)
    try:
        assert [d["decision"] for d in inbox.decisions()] == ["approve"]
        assert inbox.get(goe["uid"]).state == "submitted"
    finally:
        inbox.close()
