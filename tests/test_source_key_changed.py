"""A source that keys each output by its file's name, as docs/unit-authors.md advised, and a
file rewritten with new content before a resumed run. Exactly once per key holds (the new
content is not sent under the old key), but it used to be lost without a word: the only trace
was "1 duplicates skipped" in the unit's log. Now the unit's log warns naming the key, and
`pipeline run`'s end lines count such keys. Real plugin distribution, real `pipeline run`, the
embedded store (which keeps each payload's checksum)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("plugin")
    project = PluginProject(
        "asapo-profile-key-test-units",
        modules={"units.py": (HERE / "profile_units.py").read_text()},
        entry_points={"profile-key-tests": "asapo_profile_key_test_units.units"},
    ).write(root)
    install([project], root / "site")
    return {"PYTHONPATH": str(root / "site")}


def _write(path: Path, values: list[float]) -> None:
    path.write_text(" ".join(repr(v) for v in values) + "\n")


def _run(tmp_path: Path, env: dict[str, str]) -> str:
    done = run_pipeline("run", "profiles.pipeline.yaml", cwd=tmp_path, env=env)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "Traceback" not in said
    return said


def _pipeline(tmp_path: Path, **params: object) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "a.txt", [float(i) for i in range(20)])
    _write(data / "b.txt", [2.0 * i for i in range(20)])
    doc = {
        "pipeline": "profiles",
        "transport": {"embedded": {"path": "store"}},
        "units": {
            "frames": {
                "unit": "prof.profiles",
                "params": {"directory": "data", **params},
                "outputs": {"profiles": "profiles"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": "out.jsonl", "payload": "value"},
                "inputs": {"messages": "profiles"},
            },
        },
    }
    (tmp_path / "profiles.pipeline.yaml").write_text(json.dumps(doc, indent=2))  # JSON is YAML


def test_a_key_sent_before_with_other_content_is_said_and_not_sent_again(
    tmp_path: Path, env: dict[str, str]
) -> None:
    _pipeline(tmp_path)
    data = tmp_path / "data"
    said = _run(tmp_path, env)
    assert "sent before with other content" not in said, said

    # a.txt rewritten with new numbers; b.txt written again with the very same ones
    _write(data / "a.txt", [100.0 + i for i in range(20)])
    _write(data / "b.txt", [2.0 * i for i in range(20)])
    said = _run(tmp_path, env)  # resumes r1

    assert "key 'a.txt' was sent before with other content" in said, said
    assert "'b.txt'" not in said, said
    end = (
        "frames: 1 key was sent before with other content and was not sent again; give such "
        "outputs a key that includes the content's version"
    )
    assert end in said, said
    # exactly once per key still holds: the sink has each file once, as first sent
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(line["value"]["file"] for line in lines) == ["a.txt", "b.txt"]
    [a] = [line for line in lines if line["value"]["file"] == "a.txt"]
    assert a["value"]["intensity"] == [float(i) for i in range(20)]


def test_a_key_sent_again_with_other_content_in_the_same_session_is_said(
    tmp_path: Path, env: dict[str, str]
) -> None:
    _pipeline(tmp_path, again=True)
    said = _run(tmp_path, env)
    assert "key 'a.txt' was sent before with other content" in said, said
    assert "'b.txt'" not in said, said
    assert "frames: 1 key was sent before with other content" in said, said
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 2
