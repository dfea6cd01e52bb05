"""The asapo transport's documented options (docs/transports.md) pass `pipeline validate` and
reach the transport; bad values are refused with their place in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

TEXT = """\
pipeline: cfg
transport:
  asapo:
    endpoint: "127.0.0.1:8400"
    beamtime: "11012345"
    token_env: MY_TOKEN
{extra}units:
  files: {{unit: core.files, params: {{directory: files/}}, outputs: {{files: raw}}}}
  sink:
    unit: core.jsonl-sink
    params: {{path: out.jsonl}}
    inputs: {{messages: raw}}
"""


def _write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "cfg.pipeline.yaml"
    lines = "".join(f"    {line}\n" for line in extra.splitlines())
    path.write_text(TEXT.format(extra=lines))
    return path


def test_documented_asapo_options_validate_and_reach_the_transport(
    tmp_path: Path, pipeline_cli
) -> None:
    path = _write(tmp_path, "request_timeout: 2.5\nmax_in_flight: 50\nsource_type: raw")
    done = pipeline_cli("validate", str(path))
    assert done.returncode == 0, done.stdout + done.stderr

    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline import load_pipeline

    spec = load_pipeline(path, Catalog.load()).transport.spec()["asapo"]
    assert (spec["request_timeout"], spec["max_in_flight"], spec["source_type"]) == (2.5, 50, "raw")


@pytest.mark.parametrize(
    "extra", ["request_timeout: 0", "max_in_flight: 0", "source_type: detector"]
)
def test_bad_asapo_option_values_are_refused_with_their_line(
    tmp_path: Path, pipeline_cli, extra: str
) -> None:
    path = _write(tmp_path, extra)
    done = pipeline_cli("validate", str(path))
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    assert f"{path.name}:7:" in done.stdout + done.stderr, done.stdout + done.stderr
    assert extra.split(":")[0] in done.stdout + done.stderr
