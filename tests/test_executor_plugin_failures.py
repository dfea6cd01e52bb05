"""An executor plugin written from the docs by an outside author, pip-installed for real, and
what users see when it fails, as for a transport plugin (test_transport_plugin_failures.py):
its runtime's own exception is one sentence naming the executor, its plugin and what it was
doing (not "internal error ... this is a bug"); an option it does not take is named as typed;
`pipeline plugins --strict` reports a runtime that cannot be used; the editor schema says
which plugin the executor comes from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from backend_dists import batch_projects

from asapo_pipelines.testing.distributions import install

from helpers import run_pipeline

DAEMON = "RuntimeError: the batch system daemon is not running"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batch-src")
    target = tmp_path_factory.mktemp("batch-site")
    install([p.write(root) for p in batch_projects()], target)
    return target


def _env(site: Path, plugins: str = "facility-batch", **more: str) -> dict[str, str]:
    return {"PYTHONPATH": str(site), "ASAPO_PIPELINES_PLUGINS": plugins, **more}


def _pipeline(tmp_path: Path, fail: str = "none") -> Path:
    (tmp_path / "inbox").mkdir(parents=True, exist_ok=True)
    file = tmp_path / "batch.pipeline.yaml"
    file.write_text(
        f"""\
pipeline: batch
units:
  files:
    unit: core.files
    params: {{directory: inbox}}
    outputs: {{files: raw}}
  sink:
    unit: core.jsonl-sink
    params: {{path: out/all.jsonl, payload: text}}
    inputs: {{messages: raw}}
deploy:
  batchexec: {{fail: {fail}}}
"""
    )
    return file


def _one_sentence(result, sentence: str, code: int = 1) -> None:
    assert (result.returncode, result.stderr.strip()) == (code, f"error: {sentence}"), result.stdout
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr


@pytest.mark.parametrize(
    ("command", "doing"),
    [
        (("deploy",), "failed to deploy"),
        (("start",), "failed to start"),
        (("stop",), "failed to stop"),
        (("status",), "failed to report its status"),
        (("logs", "sink"), "failed to read the logs"),
    ],
)
def test_an_executor_plugin_that_raises_is_one_sentence_naming_it(site, tmp_path, command, doing):
    verb, *rest = command
    file = _pipeline(tmp_path, fail=verb)
    result = run_pipeline(verb, str(file), *rest, env=_env(site), cwd=tmp_path)
    _one_sentence(result, f"the executor batchexec (facility-batch) {doing}: {DAEMON}")


def test_logs_that_fail_while_read_keep_the_lines_before(site, tmp_path):
    file = _pipeline(tmp_path, fail="logs")
    result = run_pipeline("logs", str(file), "sink", env=_env(site), cwd=tmp_path)
    assert result.stdout == "sink: first line\n"
    _one_sentence(
        result, f"the executor batchexec (facility-batch) failed to read the logs: {DAEMON}"
    )


def _recorded(site: Path, file: Path) -> tuple[str, str]:
    runs = run_pipeline("runs", str(file), "--json", env=_env(site), cwd=file.parent)
    assert runs.returncode == 0, runs.stderr
    (run,) = json.loads(runs.stdout)["runs"]
    return run["state"], run["message"]


def test_a_failed_deployment_keeps_the_plugins_own_words(site, tmp_path):
    file = _pipeline(tmp_path / "raised", fail="deploy")
    assert run_pipeline("deploy", str(file), env=_env(site), cwd=file.parent).returncode == 1
    # the run's record names the deployment already: the exception's own text follows
    assert _recorded(site, file) == (
        "failed",
        "the batchexec deployment failed: the batch system daemon is not running",
    )
    # an error the plugin raises on purpose is its sentence, in the command and the record
    file = _pipeline(tmp_path / "refused", fail="refused")
    result = run_pipeline("deploy", str(file), env=_env(site), cwd=file.parent)
    refused = "the batch queue takes no jobs until 18:00; deploy then"
    _one_sentence(result, refused)
    assert _recorded(site, file) == ("failed", f"the batchexec deployment failed: {refused}")


def test_debug_shows_where_the_plugin_raised(site, tmp_path):
    file = _pipeline(tmp_path, fail="status")
    env = _env(site, ASAPO_PIPELINES_DEBUG="1")
    result = run_pipeline("status", str(file), env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" in result.stderr
    assert "facility_batch/runtime.py" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert (
        last
        == f"error: the executor batchexec (facility-batch) failed to report its status: {DAEMON}"
    )


def test_an_option_the_executor_refuses_is_named_as_typed(site, tmp_path):
    file = _pipeline(tmp_path)
    for option in ("--stdout", "--plain"):
        result = run_pipeline("logs", str(file), "sink", option, env=_env(site), cwd=tmp_path)
        _one_sentence(
            result, f"the batchexec executor has no {option} option for `pipeline logs`", code=2
        )
        assert f"{option} " in run_pipeline("logs", "--help").stdout


def test_plugins_strict_reports_executors_that_cannot_be_used(site):
    env = _env(site, "facility-batch,facility-batch-broken")
    plain = run_pipeline("plugins", "--json", env=env)
    assert plain.returncode == 0, plain.stderr
    listed = {p["distribution"]: p for p in json.loads(plain.stdout)["plugins"]}
    assert listed["facility-batch-broken"]["status"] == "ok"  # a listing imports no runtime

    strict = run_pipeline("plugins", "--strict", "--json", env=env)
    assert strict.returncode == 1, strict.stderr
    assert "Traceback" not in strict.stderr
    records = {p["distribution"]: p for p in json.loads(strict.stdout)["plugins"]}
    assert records["facility-batch"]["errors"] == []
    assert records["facility-batch-broken"]["errors"] == [
        "executor nowhere: its runtime facility_batch_broken.gone:Batch cannot be found: there "
        "is no module facility_batch_broken.gone",
        "executor misnamed: its runtime facility_batch_broken.rt:Misnamed sets name = 'batch', "
        "not its descriptor's name 'misnamed' (drop the class's name or make the two agree)",
    ]
    # a sound executor plugin passes
    assert run_pipeline("plugins", "--strict", env=_env(site)).returncode == 0


def test_the_editor_schema_says_which_plugin_an_executor_comes_from(site):
    result = run_pipeline("schema", env=_env(site))
    assert result.returncode == 0, result.stderr
    deploy = json.loads(result.stdout)["properties"]["deploy"]["properties"]
    assert deploy["batchexec"]["description"] == (
        "Jobs on the facility batch system. (from facility-batch)"
    )
    assert "(from" not in deploy["local"]["description"]
