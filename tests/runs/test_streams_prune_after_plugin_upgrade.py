"""A plugin upgrade that makes a pipeline file invalid (the unit's new version renames a
required param: P203) must not hide what its runs left on the transport: `pipeline streams`
and `pipeline prune` need only the file's transport and name, so with a plugin's transport
(redis) they read it as `pipeline runs` does (`load_for_records`), with the same warning,
where they refused the file with its P203 until it was edited. The embedded store, read from
the file's transport section alone, always listed and pruned such a file: it must stay so.
Real `pipeline` commands; redis on a real redis-server on loopback."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from upgrade_support import ok, run_then_upgrade

from asapo_pipelines.worker.naming import data_source_for

from helpers import run_pipeline

NAME = "upgstreams"
COUNT = 3


@pytest.fixture(params=["embedded", "redis"])
def transport(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The file's transport section: its own embedded store, or a key prefix of its own on a
    redis-server started for the test."""
    if request.param == "embedded":
        yield {"embedded": {"path": "store"}}
        return
    pytest.importorskip("asapo_pipelines_redis")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    from asapo_pipelines_redis.testing import RedisServer

    with RedisServer(tmp_path / "redis-server") as server:
        yield {"redis": {"url": server.url, "key_prefix": f"upg-{uuid.uuid4().hex[:8]}"}}


@pytest.fixture
def upgraded(tmp_path: Path, transport: dict[str, Any]) -> dict[str, Any]:
    """A run with the plugin at 1.0.0, what `streams` listed then, and the plugin upgraded to
    2.0.0 under the unchanged file."""
    work = tmp_path / "work"

    def before(file: str, env: dict[str, str]) -> Any:
        return json.loads(ok("streams", file, "--json", env=env, cwd=work).stdout)

    done = run_then_upgrade(work, NAME, transport, COUNT, before)
    return {**done, "transport": next(iter(transport))}


def _warned(stderr: str, upgraded: dict[str, Any]) -> None:
    """A plugin's transport needs the file read: the warning `pipeline runs` says for it. The
    embedded store needs only the transport section, read as before without a word."""
    if upgraded["transport"] == "embedded":
        assert stderr == ""
        return
    assert f"{upgraded['file']} does not validate now" in stderr, stderr
    assert "P203" in stderr, stderr


def _run_streams(listing: dict[str, Any]) -> list[str]:
    """The streams run r1 wrote that the transport lists (a redis source emptied by a prune
    stays listed, with no streams)."""
    prefix = data_source_for("", NAME, "r1")
    return [
        f"{source['name']}/{stream['name']}"
        for source in listing["data_sources"]
        if source["name"].startswith(prefix)
        for stream in source["streams"]
    ]


def test_streams_and_prune_still_work_on_the_runs_after_the_upgrade(
    upgraded: dict[str, Any],
) -> None:
    work, env, file = upgraded["work"], upgraded["env"], upgraded["file"]
    before = upgraded["before"]
    assert _run_streams(before), before  # the run wrote its streams

    listed = run_pipeline("streams", file, "--json", env=env, cwd=work)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert json.loads(listed.stdout) == before  # the same streams, in the same place
    _warned(listed.stderr, upgraded)

    pruned = run_pipeline("prune", file, "--run", "r1", "--json", env=env, cwd=work)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert json.loads(pruned.stdout)["run"] == "r1"
    _warned(pruned.stderr, upgraded)
    after = json.loads(ok("streams", file, "--json", env=env, cwd=work).stdout)
    assert _run_streams(after) == []
    runs = json.loads(ok("runs", file, "--json", env=env, cwd=work).stdout)
    assert runs["runs"] == []
