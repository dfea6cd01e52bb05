"""A transport plugin written from the docs by an outside author, pip-installed for real, and
what users see when it fails: its runtime raising, a broken registration, a config model that
only building tells is broken. Each is one sentence naming the transport and its plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from backend_dists import filebus_projects

from asapo_pipelines.testing.distributions import install

from helpers import CACHE_DIR, run_pipeline


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("filebus-src")
    target = tmp_path_factory.mktemp("filebus-site")
    install([p.write(root) for p in filebus_projects()], target)
    return target


def _env(site: Path, plugin: str, **more: str) -> dict[str, str]:
    # one plugin at a time: facility-filebus and its broken twins all register `filebus`
    return {"PYTHONPATH": str(site), "ASAPO_PIPELINES_PLUGINS": plugin, **more}


def _pipeline(tmp_path: Path, fail: str = "none") -> Path:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    (tmp_path / "inbox" / "scan1.txt").write_text("scan 1\n")
    file = tmp_path / "bus.pipeline.yaml"
    file.write_text(
        f"""\
pipeline: bus
transport:
  filebus: {{directory: bus, fail: {fail}}}
units:
  files:
    unit: core.files
    params: {{directory: inbox}}
    outputs: {{files: raw}}
  sink:
    unit: core.jsonl-sink
    params: {{path: out/all.jsonl, payload: text}}
    inputs: {{messages: raw}}
"""
    )
    return file


def _one_sentence(result, expected: str, code: int = 1) -> None:
    assert (result.returncode, result.stderr.strip()) == (code, expected), result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("fail", "sentence"),
    [
        (
            "open",
            "the transport filebus (facility-filebus) failed to open: RuntimeError: the bus "
            "daemon is not running",
        ),
        # a transport error the plugin raises on purpose keeps its own sentence
        ("unavailable", "the bus daemon at /run/filebus.sock did not answer; start it"),
        (
            "abstract",
            "the transport filebus (facility-filebus) failed to make a consumer: TypeError: "
            "Can't instantiate abstract class HalfConsumer",
        ),
        (
            "consumer",
            "the transport filebus (facility-filebus) failed to make a consumer: RuntimeError: "
            "the bus lost its subscription",
        ),
    ],
)
def test_a_plugin_transport_that_raises_is_one_sentence_naming_it(site, tmp_path, fail, sentence):
    file = _pipeline(tmp_path, fail)
    result = run_pipeline("run", str(file), env=_env(site, "facility-filebus"), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error: {sentence}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "internal error" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_worker_whose_transport_plugin_fails_ends_with_its_sentence(site, tmp_path):
    file = _pipeline(tmp_path, "consumer")
    result = run_pipeline("worker", str(file), "sink", env=_env(site, "facility-filebus"))
    _one_sentence(
        result,
        "error: the transport filebus (facility-filebus) failed to make a consumer: "
        "RuntimeError: the bus lost its subscription",
    )


@pytest.mark.parametrize(
    ("plugin", "reason"),
    [
        (
            "facility-filebus-loose",
            "config: config model FilebusConfig must refuse unknown keys (model_config = "
            "ConfigDict(extra='forbid')): a typo in a pipeline file would pass silently",
        ),
        (
            "facility-filebus-typo",
            "runtime: must be an import string package.module:Class, not "
            "'facility_filebus_typo.bus.open_filebus'",
        ),
    ],
)
@pytest.mark.parametrize("command", [("run",), ("streams",), ("tail", "raw")])
def test_a_file_naming_a_broken_transport_plugin_says_it_is_installed_but_broken(
    site, tmp_path, plugin, reason, command
):
    file = _pipeline(tmp_path)
    result = run_pipeline(command[0], str(file), *command[1:], env=_env(site, plugin))
    assert result.returncode == 1, result.stderr
    assert (
        f"3:3: error P102 unknown field 'filebus' in transport: the transport filebus of "
        f"{plugin} 0.1.0 is installed but broken: {reason}"
    ) in result.stderr
    assert "allowed:" not in result.stderr
    assert "Traceback" not in result.stderr
    # `pipeline plugins` names the descriptor the plugin's hook built, as for a registered dict
    listed = run_pipeline("plugins", "--json", env=_env(site, plugin))
    (record,) = [p for p in json.loads(listed.stdout)["plugins"] if p["distribution"] == plugin]
    assert record["errors"] == [f"invalid transport descriptor for filebus: {reason}"]


#: a plugin's contract-test fixture opens its transport as the docs show, without a catalog
CONTRACT_FIXTURE = """
import json, sys
from asapo_pipelines.transport import TransportError, open_transport

for section in json.loads(sys.argv[1]):
    try:
        open_transport({"filebus": section}).close()
    except TransportError as exc:
        print(f"{type(exc).__name__}: {exc}")
"""


def test_open_transport_validates_a_plugin_section_as_pipeline_run_does(site, tmp_path):
    mark = tmp_path / "opened.jsonl"
    sections = [
        {"directory": "bus", "pol": 1},
        {"directory": "bus", "poll": 0},
        {},
        {"directory": "bus"},
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(_env(site, "facility-filebus", FILEBUS_MARK=str(mark)))
    env["ASAPO_PIPELINES_CACHE_DIR"] = CACHE_DIR
    result = subprocess.run(
        [sys.executable, "-c", CONTRACT_FIXTURE, json.dumps(sections)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    refused = "TransportConfigError: the transport filebus (facility-filebus) refuses its options"
    assert result.stdout.splitlines() == [
        f"{refused}: pol: Extra inputs are not permitted",
        f"{refused}: poll: Input should be greater than 0",
        f"{refused}: directory: Field required",
    ]
    # the one section it takes reaches the runtime as `pipeline run` passes it: defaults
    # filled and `open_options` applied (the directory made absolute, here against the cwd)
    opened = [json.loads(line) for line in mark.read_text().splitlines()]
    assert opened == [{"path": str((tmp_path / "bus").resolve()), "poll": 0.5, "fail": "none"}]

    file = _pipeline(tmp_path)
    run = run_pipeline("run", str(file), env=_env(site, "facility-filebus", FILEBUS_MARK=str(mark)))
    assert run.returncode == 0, run.stderr
    from_run = [json.loads(line) for line in mark.read_text().splitlines()][1:]
    assert from_run
    assert all(options == opened[0] for options in from_run)


NO_SCHEMA = "has no JSON Schema (Cannot generate a JsonSchema for core_schema.CallableSchema)"


def test_a_config_model_without_a_json_schema_is_left_out_of_the_schema_and_strict_says_broken(
    site, tmp_path
):
    env = _env(site, "facility-hookbus")
    # `pipeline new` writes its starter and schema for everyone else
    new = run_pipeline("new", "demo", "--dir", str(tmp_path / "new"), env=env)
    assert new.returncode == 0, new.stderr
    assert (tmp_path / "new" / "pipeline.schema.json").is_file()
    result = run_pipeline("schema", "--output", str(tmp_path / "schemas"), env=env)
    assert result.returncode == 0, result.stderr
    origin = "(from facility-hookbus 0.2.0) is broken"
    left_out = "which editors need; it is left out of the editor schema"
    assert result.stderr.splitlines()[:2] == [
        f"warning: transport hookbus {origin}: its config field hook {NO_SCHEMA}, {left_out}",
        f"warning: executor hookexec {origin}: its config field on_start {NO_SCHEMA}, {left_out}",
    ]
    schema = json.loads((tmp_path / "schemas" / "pipeline.schema.json").read_text())
    assert "hookbus" not in schema["properties"]["transport"]["properties"]
    assert "zerobus" in schema["properties"]["transport"]["properties"]
    assert "hookexec" not in schema["properties"]["deploy"]["properties"]
    # CI's strict catalog refuses it, in one sentence
    strict = run_pipeline("schema", env={**env, "ASAPO_PIPELINES_STRICT": "1"})
    _one_sentence(
        strict,
        "error: plugin facility-hookbus (facility-hookbus 0.2.0) is broken: transport hookbus: "
        f"its config field hook {NO_SCHEMA}",
    )
    listed = run_pipeline("plugins", "--strict", "--json", env=env)
    assert listed.returncode == 1, listed.stderr
    (record,) = [p for p in json.loads(listed.stdout)["plugins"] if p["name"] == "facility-hookbus"]
    assert record["status"] == "broken"
    assert f"transport hookbus: its config field hook {NO_SCHEMA}" in record["errors"]
    assert f"executor hookexec: its config field on_start {NO_SCHEMA}" in record["errors"]


def test_a_config_default_its_own_rule_refuses_marks_the_plugin_broken_under_strict(site):
    listed = run_pipeline("plugins", "--strict", "--json", env=_env(site, "facility-hookbus"))
    assert listed.returncode == 1, listed.stderr
    (record,) = [p for p in json.loads(listed.stdout)["plugins"] if p["name"] == "facility-hookbus"]
    assert (
        "transport zerobus: the default of poll in transport zerobus's config is 0.0, which its "
        "own rule refuses (input should be greater than 0): the plugin's config model is wrong "
        "(tell its authors); setting poll in the pipeline file works around it"
    ) in record["errors"]
    # without --strict the listing is built from descriptors alone, as for units
    plain = run_pipeline("plugins", "--json", env=_env(site, "facility-hookbus"))
    (record,) = [p for p in json.loads(plain.stdout)["plugins"] if p["name"] == "facility-hookbus"]
    assert record["status"] == "ok"


#: a file that leaves the broken defaults of zerobus (poll) and zeroexec (grace) unset
ZERO_DEFAULTS = """\
pipeline: zero
transport:
  zerobus: {directory: bus}
units:
  files:
    unit: core.files
    params: {directory: inbox}
    outputs: {files: raw}
  sink:
    unit: core.jsonl-sink
    params: {path: out/all.jsonl, payload: text}
    inputs: {messages: raw}
deploy:
  zeroexec:
"""


def _refused_default(file: Path, at: str, section: str, model: str, field: str) -> str:
    return (
        f"{file}:{at}: error P103 {section}.{field}: the default of {field} in {model}'s config "
        "is 0.0, which its own rule refuses (input should be greater than 0): the plugin's "
        f"config model is wrong (tell its authors); setting {field} in the pipeline file works "
        "around it"
    )


def test_a_config_default_its_own_rule_refuses_is_a_problem_of_a_file_that_leaves_it_unset(
    site, tmp_path
):
    env = _env(site, "facility-hookbus")
    file = tmp_path / "zero.pipeline.yaml"
    file.write_text(ZERO_DEFAULTS)
    # at the backend's key, where the setting would go
    refused = [
        _refused_default(file, "3:3", "transport.zerobus", "transport zerobus", "poll"),
        _refused_default(file, "14:3", "deploy.zeroexec", "executor zeroexec", "grace"),
    ]
    result = run_pipeline("validate", str(file), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert [line for line in result.stdout.splitlines() if " P103 " in line] == refused
    assert "Traceback" not in result.stdout + result.stderr
    # a run refuses it before anything starts, with the same line, rather than open the bus
    run = run_pipeline("run", str(file), env=env, cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert refused[0] in run.stderr
    assert "Traceback" not in run.stderr
    # setting the fields in the file works around it, as the sentence says
    file.write_text(
        ZERO_DEFAULTS.replace("{directory: bus}", "{directory: bus, poll: 0.5}").replace(
            "zeroexec:", "zeroexec: {grace: 1}"
        )
    )
    fixed = run_pipeline("validate", str(file), env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
