"""Payload formats through the `register_formats` hook, as users see them: an out-of-tree
distribution adds a format, another distribution's units use it on their ports, both
pip-installed for real; `pipeline plugins` lists it, a pipeline runs end to end with it, and
units whose format is not installed are reported like any broken plugin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from format_dists import format_projects

from asapo_pipelines.testing.distributions import install

from helpers import run_pipeline


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("format-src")
    target = tmp_path_factory.mktemp("format-site")
    install([p.write(root) for p in format_projects()], target)
    return target


@pytest.fixture
def env(site: Path, tmp_path: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site), "NPY_MARK": str(tmp_path / "npy-made.txt")}


FRAMES_FILE = """\
pipeline: framesums
units:
  make:
    unit: frames.make
    params: {count: 4, shape: [3, 5]}
    outputs: {frames: frames}
  sum:
    unit: frames.sum
    inputs: {frames: frames}
    outputs: {sums: sums}
  sink:
    unit: core.jsonl-sink
    params: {path: out/sums.jsonl, payload: text}
    inputs: {messages: sums}
"""


def test_plugins_lists_a_plugin_format_beside_the_core_ones(env):
    result = run_pipeline("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    plugins = {p["distribution"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["acme-npy"]["formats"] == ["npy"]
    assert plugins["acme-npy"]["status"] == "ok"
    assert sorted(plugins["acme-frames"]["units"]) == ["frames.make", "frames.sum"]
    core = [p for p in plugins.values() if "json" in p.get("formats", [])]
    assert len(core) == 1
    assert sorted(core[0]["formats"]) == ["bytes", "json", "json_arrays", "seedee"]


def test_a_pipeline_runs_end_to_end_on_a_plugin_format(env, tmp_path):
    file = tmp_path / "framesums.pipeline.yaml"
    file.write_text(FRAMES_FILE)
    assert run_pipeline("validate", str(file), env=env).returncode == 0

    result = run_pipeline("run", str(file), env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout

    lines = (tmp_path / "out" / "sums.jsonl").read_text().splitlines()
    sums = sorted(json.loads(json.loads(line)["payload"])["sum"] for line in lines)
    # the reference: the same frames made and summed by numpy here
    expected = sorted(float((np.arange(15.0).reshape(3, 5) * (i + 1)).sum()) for i in range(4))
    assert sums == expected
    first = json.loads(json.loads(lines[0])["payload"])
    assert first["shape"] == [3, 5]
    assert first["npy_shape"] == [3, 5]  # the format's own metadata reached the decoder's unit
    # the format was made in the two workers that encode and decode it, nowhere else
    assert len(set(Path(env["NPY_MARK"]).read_text().split())) == 2


def test_units_whose_format_is_not_installed_are_a_broken_plugin(env, tmp_path):
    without = {**env, "ASAPO_PIPELINES_DISABLE_PLUGINS": "acme-npy"}
    result = run_pipeline("plugins", "--json", env=without)
    plugins = {p["distribution"]: p for p in json.loads(result.stdout)["plugins"]}
    frames = plugins["acme-frames"]
    assert frames["status"] == "broken"
    assert frames["units"] == []
    assert (
        "unit frames.make: output port frames names payload format 'npy', which no installed "
        "plugin registers; known: json, json_arrays, bytes, seedee"
    ) in frames["errors"]

    file = tmp_path / "framesums.pipeline.yaml"
    file.write_text(FRAMES_FILE)
    checked = run_pipeline("validate", str(file), env=without)
    assert checked.returncode != 0
    assert "frames.make" in checked.stdout + checked.stderr
    assert "Traceback" not in checked.stderr
