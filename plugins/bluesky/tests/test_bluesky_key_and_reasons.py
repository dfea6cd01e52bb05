"""A malformed public key is refused before anything runs, a bad key file fails the suggestion
with one sentence, and the queue server's refusal reaches people whole (not its first line)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "p65-xas-bluesky.pipeline.yaml"
PIPELINE = [str(Path(sys.executable).parent / "pipeline")]


def pipeline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PIPELINE, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def p65_with_key(tmp_path: Path, key: str) -> Path:
    """The P65 example (no queue server needed: the key is refused before it is asked)."""
    pytest.importorskip("asapo_pipelines_xas", reason="the P65 units (plugins/xas) are missing")
    (tmp_path / "data").mkdir()
    for scan in sorted((REPO / "examples" / "data").glob("20K_GOE_*.xdi")):
        shutil.copy(scan, tmp_path / "data")
    text = EXAMPLE.read_text()
    anchor = "      user: p65-agent\n"
    assert anchor in text
    path = tmp_path / EXAMPLE.name
    path.write_text(text.replace(anchor, f"{anchor}      public_key: {json.dumps(key)}\n"))
    return path


def test_a_malformed_public_key_is_refused_offline_at_its_line(tmp_path):
    from bluesky_queueserver.manager.comms import validate_zmq_key

    with pytest.raises(ValueError):  # the client's own check refuses this key
        validate_zmq_key("abcdef")
    p65 = p65_with_key(tmp_path, "abcdef")
    lines = p65.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "public_key" in text)

    validated = pipeline("validate", p65.name, cwd=tmp_path)
    assert validated.returncode == 1
    errors = [row for row in validated.stdout.splitlines() if " error " in row]
    assert len(errors) == 1, validated.stdout
    assert errors[0].startswith(f"{p65.name}:{line}:")
    assert " error P202 units.queue.params.public_key: " in errors[0]
    assert "qserver-zmq-keys" in errors[0]

    run = pipeline("run", p65.name, cwd=tmp_path)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert not (tmp_path / ".pipeline-data" / "suggestions.sqlite").exists()


def test_a_bad_key_file_fails_the_approved_suggestion_with_one_sentence(tmp_path):
    key_file = tmp_path / "server.key"
    key_file.write_text("abcdef\n")
    p65 = p65_with_key(tmp_path, f"file:{key_file}")
    cwd = p65.parent

    run = pipeline("run", p65.name, cwd=cwd)
    assert run.returncode == 0, run.stderr[-3000:]
    listed = pipeline("suggestions", p65.name, "--json", "--offline", cwd=cwd)
    entries = [e for e in json.loads(listed.stdout) if e["state"] == "pending"]
    assert entries, listed.stdout
    pending = entries[0]

    approved = pipeline("suggestions", p65.name, "approve", pending["uid"], cwd=cwd)
    said = (
        f"error: the key in {key_file} is not a public key of the queue server: it must be the "
        "40 characters (z85) that qserver-zmq-keys prints"
    )
    assert (approved.returncode, approved.stderr.strip()) == (1, said)
    after = json.loads(pipeline("suggestions", p65.name, "--json", cwd=cwd).stdout)
    failed = next(e for e in after if e["uid"] == pending["uid"])
    assert (failed["state"], failed["state_reason"]) == ("failed", said.removeprefix("error: "))

    # the listing shows each number once (scans is its own field, not also among the numbers)
    table = pipeline("suggestions", p65.name, "--offline", cwd=cwd)
    assert table.returncode == 0, table.stderr
    block = table.stdout.split(pending["uid"][:12], 1)[1]
    numbers = block.splitlines()[1].strip().split(", ")
    assert [n for n in numbers if n.startswith("scans ")] == [f"scans {pending['scans']}"]


def test_the_servers_whole_refusal_reaches_the_error_stream_and_the_inbox(
    queue_server, run_unit, make_suggestion, tmp_path
):
    from bluesky_queueserver_api.comm_base import RequestFailedError

    from asapo_pipelines_bluesky.inbox import Inbox

    body = make_suggestion()
    body["plan"]["kwargs"]["points"] = "many"
    # the server's own answer to this item, asked directly: the reference
    api = queue_server.api()
    try:
        with pytest.raises(RequestFailedError) as refused:
            api.item_add(item={"item_type": "plan", **body["plan"]})
    finally:
        api.close()
    server_lines = [" ".join(line.split()) for line in refused.value.response["msg"].splitlines()]
    # the server's report on the arguments; the item it prints back after it ("Plan: {...}")
    # is the bridge's own, kept in the inbox, and left out of the reason
    report = [line for line in server_lines if line]
    report = report[: next(i for i, line in enumerate(report) if line.startswith("Plan:"))]
    assert len(report) > 1  # a multi-line reason: what the first line alone lost

    result = run_unit(
        "bluesky.queue",
        [body],
        params=queue_server.params(inbox=str(tmp_path / "inbox.sqlite"), mode="auto"),
    )
    (error,) = result.errors
    assert "\n" not in error["error"]
    said = error["error"].removeprefix("the queue server refused the plan: ").split(" | ")
    assert said == [*report[:-1], report[-1].rstrip(".")]
    entry = Inbox(tmp_path / "inbox.sqlite").get(body["uid"])
    assert (entry.state, entry.state_reason) == ("failed", error["error"])
