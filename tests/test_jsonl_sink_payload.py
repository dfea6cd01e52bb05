"""What `core.jsonl-sink` writes of a message's payload and of its producer. Real plugin
distribution, real `pipeline` commands, the embedded store.

Before: `payload: text` decoded a `json_arrays` payload (binary) with replacement characters,
exit 0, so the numbers were gone from a line that still looked like JSON; no mode wrote a
`json_arrays` result readably; and a line named its producer only by a fingerprint that
`pipeline prune --run` made unresolvable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

HERE = Path(__file__).parent
DISTRIBUTION = "asapo-profile-test-units"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("plugin")
    project = PluginProject(
        DISTRIBUTION,
        version="1.2.3",
        modules={"units.py": (HERE / "profile_units.py").read_text()},
        entry_points={"profile-tests": "asapo_profile_test_units.units"},
    ).write(root)
    install([project], root / "site")
    return {"PYTHONPATH": str(root / "site")}


def _profiles(tmp_path: Path) -> dict[str, list[float]]:
    """Two files of 20 numbers each (a `json_arrays` port packs 16 or more as binary)."""
    data = tmp_path / "data"
    data.mkdir()
    profiles = {
        "a.txt": [0.5 * i for i in range(20)],
        "b.txt": [100.0 / (i + 1) for i in range(20)],
    }
    for name, values in profiles.items():
        (data / name).write_text(" ".join(repr(v) for v in values) + "\n")
    return profiles


def _pipeline(tmp_path: Path, sink: dict[str, Any], source: dict[str, Any] | None = None) -> Path:
    source = source or {
        "unit": "prof.profiles",
        "params": {"directory": "data"},
        "outputs": {"profiles": "profiles"},
    }
    doc = {
        "pipeline": "profiles",
        "transport": {"embedded": {"path": "store"}},
        "units": {
            "source": source,
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": "out.jsonl", **sink},
                "inputs": {"messages": next(iter(source["outputs"].values()))},
            },
        },
    }
    file = tmp_path / "profiles.pipeline.yaml"
    file.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return file


def _lines(tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "out.jsonl"
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_text_of_a_binary_format_is_refused_before_the_run(
    tmp_path: Path, env: dict[str, str]
) -> None:
    _profiles(tmp_path)
    file = _pipeline(tmp_path, {"payload": "text"})
    done = run_pipeline("run", str(file), cwd=tmp_path, env=env)
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert "P314" in said, said
    assert "source.profiles writes 'profiles' as json_arrays, which is binary" in said, said
    assert "payload: value" in said, said
    assert "Traceback" not in said
    assert not any("\ufffd" in json.dumps(line) for line in _lines(tmp_path))


def test_text_that_is_not_utf8_goes_to_the_error_stream(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A `bytes` port may carry text or not: the message that is not goes to the error
    stream, said in one sentence, instead of a line of replacement characters."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("plain text\n")
    (data / "b.bin").write_bytes(bytes(range(256)))
    source = {
        "unit": "core.files",
        "params": {"directory": "data"},
        "outputs": {"files": "files"},
    }
    file = _pipeline(tmp_path, {"payload": "text"}, source)
    done = run_pipeline("run", str(file), cwd=tmp_path, env=env)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert [line["payload"] for line in _lines(tmp_path)] == ["plain text\n"]
    assert "1 message went to the error stream (sink 1)" in said, said
    errors = run_pipeline("tail", str(file), "errors", "--json", cwd=tmp_path, env=env)
    assert errors.returncode == 0, errors.stderr
    assert "is not UTF-8 text (byte 128), so `payload: text` cannot write it" in errors.stdout


def test_value_writes_the_decoded_numbers(tmp_path: Path, env: dict[str, str]) -> None:
    profiles = _profiles(tmp_path)
    file = _pipeline(tmp_path, {"payload": "value"})
    done = run_pipeline("run", str(file), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _lines(tmp_path)
    assert {line["value"]["file"]: line["value"]["intensity"] for line in lines} == profiles


def test_each_line_names_its_producer_after_its_run_is_pruned(
    tmp_path: Path, env: dict[str, str]
) -> None:
    _profiles(tmp_path)
    file = _pipeline(tmp_path, {})
    done = run_pipeline("run", str(file), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr

    pruned = run_pipeline("prune", str(file), "--run", "r1", cwd=tmp_path, env=env)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    runs = run_pipeline("runs", str(file), "--json", cwd=tmp_path, env=env)
    assert json.loads(runs.stdout)["runs"] == [], runs.stdout  # nothing left to resolve by

    lines = _lines(tmp_path)
    assert len(lines) == 2
    for line in lines:
        producer = line.get("producer") or {}
        assert producer.get("unit") == "prof.profiles", line
        assert producer.get("distribution") == DISTRIBUTION
        assert producer.get("version") == "1.2.3"
        assert producer.get("params") == {"directory": "data", "key": "name", "again": False}
        assert producer.get("run") == "r1"
        assert producer.get("instance") == "source"


def test_value_of_raw_bytes_is_refused_before_the_run(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "data").mkdir()
    source = {"unit": "core.files", "params": {"directory": "data"}, "outputs": {"files": "f"}}
    file = _pipeline(tmp_path, {"payload": "value"}, source)
    done = run_pipeline("validate", str(file), cwd=tmp_path, env=env)
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert "source.files writes 'f' as raw bytes, which have no decoded value" in said, said


def test_p314_made_by_set_is_located_at_the_set_or_at_the_key_it_overrides(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Before, a P314 that `--set sink.payload=text` made was put at the file's line of
    `params:` (the nearest value there is), a line the user had not got wrong."""
    _profiles(tmp_path)
    file = _pipeline(tmp_path, {})  # no payload in the file: the --set alone gives it
    done = run_pipeline("run", str(file), "--set", "sink.payload=text", cwd=tmp_path, env=env)
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert "\n--set sink.payload=text: error P314 source.profiles writes" in said, said
    assert f"{file.name}:" not in said.split("is not valid", 1)[1], said

    # the key in the file: the problem is at its line, naming the --set that replaced it
    file = _pipeline(tmp_path, {"payload": "base64"})
    line = next(n for n, text in enumerate(file.read_text().splitlines(), 1) if '"payload"' in text)
    done = run_pipeline("run", str(file), "--set", "sink.payload=text", cwd=tmp_path, env=env)
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert f"{file.name}:{line}:" in said, said
    assert "error P314 --set sink.payload=text: source.profiles writes" in said, said
