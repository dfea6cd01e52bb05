"""Backends through the hooks, as users see them: an out-of-tree plugin distribution adds a
transport and an executor, pip-installed for real; `pipeline plugins`, `schema`, `validate`,
`run` and `deploy/status/logs/stop` see them like the core's own, and a plugin whose
transports are broken is reported like a broken unit plugin."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from backend_dists import backend_projects

from asapo_pipelines.testing.distributions import install

from helpers import run_pipeline


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("backend-src")
    target = tmp_path_factory.mktemp("backend-site")
    install([p.write(root) for p in backend_projects()], target)
    return target


@pytest.fixture
def env(site: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": str(site),
        "RELAY_MARK": str(tmp_path / "relay-opened.jsonl"),
        # the core's transports and the test plugin's only, whatever else is installed (the
        # redis plugin in the `all` session): the expected names and schema branches are exact
        "ASAPO_PIPELINES_DISABLE_PLUGINS": "redis",
    }


def _json(result) -> dict:
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


RELAY_FILE = """\
pipeline: relayed
transport:
  relay:
    directory: relay-store
units:
  files:
    unit: core.files
    params: {directory: inbox}
    outputs: {files: raw}
  sink:
    unit: core.jsonl-sink
    params: {path: out/all.jsonl, payload: text}
    inputs: {messages: raw}
"""


def test_plugins_lists_the_transports_each_plugin_provides(env):
    data = _json(run_pipeline("plugins", "--json", env=env))
    by_dist = {p["distribution"]: p for p in data["plugins"]}
    assert by_dist["acme-backends"]["status"] == "ok"
    assert by_dist["acme-backends"]["transports"] == ["relay"]
    assert by_dist["acme-backends"]["executors"] == ["subproc"]
    assert by_dist["asapo-pipelines"]["transports"] == ["embedded", "asapo"]
    assert by_dist["asapo-pipelines"]["executors"] == ["local", "nomad"]
    # on an 80-column terminal: each plugin's lines, no name cut in two
    shown = run_pipeline("plugins", env={**env, "COLUMNS": "80"})
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "acme-backends" in line)
    block = lines[at + 1 : at + 3]
    assert [line.split() for line in block] == [["transports", "relay"], ["executors", "subproc"]]
    core = next(i for i, line in enumerate(lines) if line.startswith("core "))
    assert lines[core + 1].split(None, 1) == [
        "units",
        ", ".join(by_dist["asapo-pipelines"]["units"]),
    ]


def test_a_broken_transport_plugin_is_reported_like_a_broken_unit_plugin(env):
    data = _json(run_pipeline("plugins", "--json", env=env))
    by_dist = {p["distribution"]: p for p in data["plugins"]}
    bad = by_dist["acme-badbus"]
    assert bad["status"] == "broken"
    assert bad["transports"] == []
    assert any(
        e.startswith("invalid transport descriptor for Kafka Bus: name:") for e in bad["errors"]
    )
    assert any(
        e.startswith("invalid transport descriptor for kafka: config:") for e in bad["errors"]
    )
    # its healthy unit still lists, as for a partly broken unit plugin
    assert bad["units"] == ["badbus.still-listed"]
    units = _json(run_pipeline("list-units", "--json", env=env))
    assert "badbus.still-listed" in {u["name"] for u in units["units"]}
    assert {p["distribution"] for p in units["broken_plugins"]} >= {"acme-badbus", "acme-thief"}
    # the core keeps its embedded transport; the claimant is told why it was not loaded
    thief = by_dist["acme-thief"]
    assert thief["errors"] == [
        "command validate is a command of asapo-pipelines; not loaded",
        "transport embedded is already provided by asapo-pipelines; not loaded",
        "command run is already provided by asapo-pipelines; not loaded",
    ]
    strict = run_pipeline("plugins", "--strict", env=env)
    assert strict.returncode == 1
    assert "Traceback" not in strict.stderr


def test_schema_has_one_branch_per_registered_transport(env, tmp_path):
    out = tmp_path / "schemas"
    result = run_pipeline("schema", "--output", str(out), env=env)
    assert result.returncode == 0, result.stderr
    schema = json.loads((out / "pipeline.schema.json").read_text())
    transport = schema["properties"]["transport"]
    assert list(transport["properties"]) == ["embedded", "asapo", "relay"]
    relay = transport["properties"]["relay"]
    assert relay["required"] == ["directory"]
    assert relay["additionalProperties"] is False
    assert "(from acme-backends)" in relay["description"]
    assert transport["maxProperties"] == 1
    deploy = schema["properties"]["deploy"]["properties"]
    assert {"local", "nomad", "subproc"} <= set(deploy)
    assert deploy["subproc"]["properties"]["state_dir"]["default"] == ".subproc"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "  relay:\n    directry: x\n",
            "5:5: error P102 unknown field 'directry' in transport.relay; did you mean directory?",
        ),
        (
            "  relay: {label: Bad}\n",
            "error P101 missing required field 'directory' in transport.relay",
        ),
        (
            "  kafkaa: {}\n",
            "error P102 unknown field 'kafkaa' in transport (allowed: embedded, asapo, relay)",
        ),
        (
            # acme-badbus registers `kafka` with a dict for its config model
            "  kafka: {}\n",
            "error P102 unknown field 'kafka' in transport: the transport kafka of acme-badbus "
            "0.1.0 is installed but broken: config: config must be a pydantic model class, not "
            "dict",
        ),
        (
            "  relay: {directory: x}\ndeploy:\n  subproc: {state_dr: x}\n",
            "6:13: error P102 unknown field 'state_dr' in deploy.subproc; did you mean state_dir?",
        ),
        (
            "  relay: {directory: x}\n  embedded: {}\n",
            "error P105 transport must name exactly one of embedded, asapo or relay, not both",
        ),
    ],
)
def test_validation_checks_a_plugin_transport_with_located_problems(
    env, tmp_path, section, expected
):
    text = (
        f"pipeline: relayed\n# a comment line\ntransport:\n{section}units:\n"
        + (RELAY_FILE.split("units:\n", 1)[1])
    )
    file = _write(tmp_path / "p.pipeline.yaml", text)
    result = run_pipeline("validate", str(file), env=env)
    assert result.returncode == 1
    assert expected in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_pipeline_runs_end_to_end_on_a_plugin_transport(env, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(5):
        (inbox / f"scan{i}.txt").write_text(f"scan {i}\n")
    file = _write(tmp_path / "relayed.pipeline.yaml", RELAY_FILE)
    assert run_pipeline("validate", str(file), env=env).returncode == 0

    result = run_pipeline("run", str(file), env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout

    written = [
        json.loads(line) for line in (tmp_path / "out" / "all.jsonl").read_text().splitlines()
    ]
    assert sorted(w["payload"] for w in written) == [f"scan {i}\n" for i in range(5)]
    # every worker opened the plugin's transport with the resolved options: the relative
    # directory made absolute against the pipeline file's folder
    marks = [json.loads(line) for line in Path(env["RELAY_MARK"]).read_text().splitlines()]
    store = str((tmp_path / "relay-store").resolve())
    assert {m["options"]["path"] for m in marks} == {store}
    assert len({m["pid"] for m in marks}) >= 2  # the two units' workers, at least
    assert (tmp_path / "relay-store" / "store.json").is_file()
    # the store's streams are readable by `pipeline streams` through the same plugin
    listed = run_pipeline("streams", str(file), "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["location"] == "the relay transport"


SUBPROC_FILE = (
    RELAY_FILE
    + """\
deploy:
  subproc: {linger: 0.3}
"""
)


def test_a_pipeline_runs_end_to_end_on_a_plugin_executor_and_transport(env, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(4):
        (inbox / f"scan{i}.txt").write_text(f"scan {i}\n")
    file = _write(tmp_path / "relayed.pipeline.yaml", SUBPROC_FILE)
    plan = _json(run_pipeline("plan", str(file), env=env))
    assert sorted(t["unit"] for t in plan["tasks"]) == ["files", "sink"]

    deployed = run_pipeline("deploy", str(file), env=env, cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stderr
    assert "deployed pipeline relayed with the subproc executor: 2 workers started" in (
        deployed.stdout
    )
    try:
        out = tmp_path / "out" / "all.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = _json(run_pipeline("status", str(file), "--json", env=env))
            if status["state"] == "complete":
                break
            time.sleep(0.3)
        assert status["executor"] == "subproc"
        assert status["state"] == "complete", status
        assert {(i["unit"], i["state"]) for i in status["instances"]} == {
            ("files", "exited"),
            ("sink", "exited"),
        }
        # the workers' counters, read from the plugin's transport, whatever the executor
        counters = {w["instance"]: w for w in status["counters"]["workers"]}
        assert counters["sink"]["processed"] == 4
        written = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(w["payload"] for w in written) == [f"scan {i}\n" for i in range(4)]

        table = run_pipeline("status", str(file), env=env)
        assert table.returncode == 0, table.stderr
        assert "subproc relayed: complete" in table.stdout
        logs = run_pipeline("logs", str(file), "sink", env=env)
        assert logs.returncode == 0, logs.stderr
        assert logs.stdout.strip(), "the sink worker logged nothing"
        # the workers opened the plugin's transport
        marks = [json.loads(x) for x in Path(env["RELAY_MARK"]).read_text().splitlines()]
        assert {m["options"]["path"] for m in marks} == {str((tmp_path / "relay-store").resolve())}
    finally:
        stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped pipeline relayed with the subproc executor" in stopped.stdout


def test_an_unknown_or_ambiguous_executor_is_one_sentence(env, tmp_path):
    file = _write(
        tmp_path / "two.pipeline.yaml", RELAY_FILE + "deploy:\n  subproc: {}\n  local: {}\n"
    )
    result = run_pipeline("deploy", str(file), env=env)
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "error: the deploy section names several executors (local, subproc); choose one with "
        "--executor NAME"
    )
    unknown = run_pipeline("plan", str(file), "--executor", "kubernetes", env=env)
    assert unknown.returncode != 0
    # the installed executors are listed (more than these three where other plugins are
    # installed, such as the repository's Slurm executor in the `all` session)
    message = unknown.stderr.strip()
    assert message.startswith("error: unknown executor 'kubernetes'; choose one of "), message
    listed = message.rsplit("choose one of ", 1)[1].split(", ")
    assert {"local", "nomad", "subproc"} <= set(listed)
    assert "Traceback" not in result.stderr + unknown.stderr


def test_a_plugin_adds_a_command(env, tmp_path):
    mark = tmp_path / "hello-imported"
    env = {**env, "HELLO_MARK": str(mark)}
    # `pipeline --help` lists it by its registered summary, without importing its module
    helped = run_pipeline("--help", env=env)
    assert helped.returncode == 0, helped.stderr
    row = next(line for line in helped.stdout.splitlines() if "acme-hello" in line)
    assert row.split() == ["acme-hello", "Say", "hello", "(a", "plugin's", "command)."]
    assert not mark.exists()
    result = run_pipeline("acme-hello", "p65", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello p65 from acme-backends\n"
    assert mark.read_text() == "imported\n"
    # the core's default plugin's commands come the same way, and stay the core's
    run_help = run_pipeline("run", "--help", env=env)
    assert run_help.returncode == 0, run_help.stderr
    assert "Run FILE's pipeline on this machine" in run_help.stdout
    # a core command stays the core's, and an unknown one is still one sentence
    unknown = run_pipeline("acme-helo", env=env)
    assert unknown.returncode == 2
    assert "unknown command acme-helo; did you mean acme-hello?" in unknown.stderr


def test_a_broken_plugin_command_is_one_sentence(env):
    data = _json(run_pipeline("plugins", "--json", env=env))
    bad = {p["distribution"]: p for p in data["plugins"]}["acme-badbus"]
    assert bad["commands"] == ["badbus-ping", "badbus-exit"]
    assert any(
        e.startswith("invalid command descriptor for Bad Command: name:") for e in bad["errors"]
    )
    # listed by its summary although its module is missing
    helped = run_pipeline("--help", env=env)
    assert "badbus-ping" in helped.stdout
    ping = run_pipeline("badbus-ping", env=env)
    assert ping.returncode != 0
    assert ping.stderr.startswith(
        "error: command badbus-ping of acme-badbus 0.1.0 cannot be loaded: "
    ), ping.stderr
    assert "acme_badbus.cli" in ping.stderr
    assert len(ping.stderr.strip().splitlines()) == 1
    assert "Traceback" not in ping.stderr


def test_a_plugin_command_that_exits_on_import_is_one_sentence(env):
    # a module calling sys.exit() while imported would otherwise end `pipeline` with the
    # plugin's exit code and no word of why
    result = run_pipeline("badbus-exit", env=env)
    assert result.returncode not in (0, 3), result
    assert result.stderr.strip() == (
        "error: command badbus-exit of acme-badbus 0.1.0 cannot be loaded: "
        "RuntimeImportExit: importing acme_badbus.exits called sys.exit(3)"
    )
