"""The viewer's inbox in a real Chromium while its queue server goes away and comes back: the
listing's note that the server cannot be reached is shown as a problem and goes once the
server answers again; the outcome of a click stays until the next one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from bluesky_services import QueueServer, restart_manager, stop
from test_bluesky_viewer import EXAMPLE, Viewer, in_own_thread

#: the listing waits this long for a server that is gone (the page asks every 3 s)
TIMEOUT = 2
#: functions, not expressions: the page's Content-Security-Policy forbids playwright's eval
NOTE_IS = "text => document.getElementById('inbox-note').textContent === text"
NOTE_HAS = "text => document.getElementById('inbox-note').textContent.includes(text)"
REDRAWN = "uid => !document.querySelector(`#inbox tr[data-uid='${uid}']`).dataset.drawn"


@pytest.fixture
def p65(tmp_path: Path, own_server: QueueServer, run_unit, make_suggestion):
    """The P65 bridge example on the test's own queue server, one suggestion pending."""
    from asapo_pipelines_bluesky.params import QueueParams

    anchor = "      user: p65-agent\n"
    text = EXAMPLE.read_text().replace("tcp://localhost:60615", own_server.control)
    assert anchor in text
    file = tmp_path / EXAMPLE.name
    file.write_text(text.replace(anchor, f"{anchor}      timeout: {TIMEOUT}\n"))
    (tmp_path / "data").mkdir()
    goe = make_suggestion(target="GOE")
    params = {"control_address": own_server.control, "inbox": str(tmp_path / QueueParams().inbox)}
    run_unit("bluesky.queue", [goe], params=params)
    viewer = Viewer(file)
    yield viewer, goe
    viewer.stop()


def test_the_inbox_says_a_gone_queue_server_as_a_problem_until_it_answers_again(p65, own_server):
    in_own_thread(lambda browser: _scenario(browser, *p65, own_server))


def _note(page: Any) -> tuple[str, str]:
    return tuple(page.locator("#inbox-note").evaluate("n => [n.textContent, n.className]"))


def _scenario(browser: Any, viewer: Viewer, goe: dict[str, Any], server: QueueServer) -> None:
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    try:
        page.goto(f"http://127.0.0.1:{viewer.port}/")
        row = page.locator(f'#inbox tr[data-uid="{goe["uid"]}"]')
        row.locator('button[data-action="approve"]').click(timeout=15000)
        outcome = f"suggestion {goe['uid'][:12]}: submitted"
        page.wait_for_function(NOTE_IS, arg=outcome, timeout=15000)
        # the outcome of the click outlives the page's next listing (which has no notes): a
        # listing shown is a new row element (load() says its notes before it draws the rows)
        row.evaluate("tr => { tr.dataset.drawn = 'before' }")
        page.wait_for_function(REDRAWN, arg=goe["uid"], timeout=10000)
        assert _note(page) == (outcome, "muted")

        stop(server.procs[1])  # the RE Manager, by the pid the test started
        page.wait_for_function(NOTE_HAS, arg="cannot be reached", timeout=20000)
        text, style = _note(page)
        assert re.fullmatch(
            rf"the queue server at {re.escape(server.control)} cannot be reached \(no answer "
            rf"within {TIMEOUT} s\): the states shown are as last seen at \d{{4}}-\d\d-\d\d "
            r"\d\d:\d\d:\d\d \S+",
            text,
        ), text
        assert style == "problem"  # states the page cannot vouch for: not a passing remark

        restart_manager(server)  # the same address, Redis and queue
        page.wait_for_function(NOTE_IS, arg="", timeout=20000)
        assert row.locator("td").nth(1).inner_text() == "submitted"
        assert problems == []
    finally:
        page.close()


#: pages open on the inbox at once (the default thread pool of a 2-core machine has 6 threads)
PAGES = 8


@pytest.fixture
def gone(tmp_path: Path, queue_server: QueueServer, run_unit, make_suggestion):
    """The viewer of a pipeline whose queue server is gone (nothing listens at its address;
    each listing waits `timeout` for it) and whose inbox holds a submitted suggestion."""
    from bluesky_services import free_port

    from asapo_pipelines_bluesky.params import QueueParams

    inbox = tmp_path / QueueParams().inbox
    goe = make_suggestion(target="GOE")
    params = {"control_address": queue_server.control, "inbox": str(inbox), "mode": "auto"}
    run_unit("bluesky.queue", [goe], params=params)
    anchor = "      user: p65-agent\n"
    text = EXAMPLE.read_text().replace("tcp://localhost:60615", f"tcp://127.0.0.1:{free_port()}")
    file = tmp_path / EXAMPLE.name
    file.write_text(text.replace(anchor, f"{anchor}      timeout: 15\n"))
    viewer = Viewer(file)
    yield viewer
    viewer.stop()


def test_pages_waiting_for_a_gone_queue_server_do_not_stall_the_rest_of_the_viewer(gone):
    """Every open page asks for the inbox every 3 s. While the queue server does not answer,
    those listings wait its timeout; the page's graph, counters and messages must go on."""
    import concurrent.futures
    import json
    import threading
    import time
    import urllib.request

    base = f"http://127.0.0.1:{gone.port}"
    finished: list[str] = []
    lock = threading.Lock()

    def get(path: str, what: str) -> dict[str, Any]:
        with urllib.request.urlopen(base + path, timeout=120) as answer:
            body = json.loads(answer.read())
        with lock:
            finished.append(what)
        return body

    with concurrent.futures.ThreadPoolExecutor(PAGES + 1) as pool:
        listings = [pool.submit(get, "/api/inbox", "inbox") for _ in range(PAGES)]
        time.sleep(1)  # the listings are under way (each waits 15 s for the server)
        messages = pool.submit(get, "/api/messages?stream=plans", "messages")
        assert messages.result()["messages"] == []
        answers = [f.result() for f in listings]
    # the messages came while every listing still waited for the server
    assert finished[0] == "messages", finished
    for answer in answers:
        (note,) = answer["notes"]
        assert "cannot be reached (no answer within 15 s)" in note
    # each page its own token, also when pages shared one listing
    assert len({a["token"] for a in answers}) == PAGES
