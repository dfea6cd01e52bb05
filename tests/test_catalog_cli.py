"""The catalog as users see it: real plugin distributions installed, the `pipeline` command run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from asapo_pipelines.testing.distributions import install

from helpers import run_pipeline
from plugin_dists import projects

ALL_PLUGINS = {"acme-healthy", "acme-broken", "acme-invalid", "dup-one", "dup-two", "acme-typo"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the six throwaway plugin distributions, pip-installed."""
    root = tmp_path_factory.mktemp("plugin-src")
    target = tmp_path_factory.mktemp("plugin-site")
    install([p.write(root) for p in projects()], target)
    return target


@pytest.fixture
def env(site: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": str(site),
        "ACME_RUNTIME_MARK": str(tmp_path / "runtime-imported"),
    }


def _json(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _assert_no_traceback(result) -> None:
    assert "Traceback" not in result.stderr + result.stdout


def test_list_units_lists_healthy_units_and_reports_every_broken_plugin(env):
    result = run_pipeline("list-units", "--json", env=env)
    data = _json(result)
    names = {u["name"] for u in data["units"]}
    # the healthy parts, including the good units of partly broken plugins
    assert {"acme.denoise", "acme.detector", "acme.good", "shared.only-one"} <= names
    assert {"core.files", "core.jsonl-sink", "core.identity"} <= names
    # the invalid and the ambiguous ones are not listed
    assert "shared.thing" not in names
    assert not any(n.startswith("Bad") for n in names)
    assert "acme.noinputs" not in names

    broken = {p["distribution"]: p for p in data["broken_plugins"]}
    assert set(broken) == {"acme-broken", "acme-invalid", "dup-one", "dup-two", "acme-typo"}
    assert broken["acme-broken"]["version"] == "0.3.0"
    assert broken["acme-broken"]["errors"] == [
        "import failed: RuntimeError: libacme.so.3 not found"
    ]
    invalid = broken["acme-invalid"]["errors"]
    assert any("invalid descriptor for Bad Name: name:" in e for e in invalid)
    assert any("acme.noinputs" in e and "at least one input" in e for e in invalid)
    assert broken["dup-one"]["errors"] == [
        "unit shared.thing is also registered by dup-two 2.0.0; neither is loaded"
    ]
    assert broken["dup-two"]["errors"] == [
        "unit core.identity: the namespace core belongs to asapo-pipelines; not loaded "
        "(name your units after your own package)",
        "unit shared.thing is also registered by dup-one 1.0.0; neither is loaded",
    ]
    assert next(u for u in data["units"] if u["name"] == "core.identity")["distribution"] == (
        "asapo-pipelines"
    )
    assert "unknown hook register_unit" in broken["acme-typo"]["errors"][0]

    # each broken plugin: one warning line on stderr, naming plugin, distribution and version
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 5
    assert any("acme-broken (acme-broken 0.3.0) is broken: import failed" in w for w in warnings)
    _assert_no_traceback(result)


def test_units_carry_the_version_of_their_distribution(env):
    units = {u["name"]: u for u in _json(run_pipeline("list-units", "--json", env=env))["units"]}
    assert units["acme.denoise"]["version"] == "1.2.0"
    assert units["acme.denoise"]["distribution"] == "acme-healthy"
    assert units["acme.good"]["version"] == "2.0.0"
    assert units["acme.denoise"]["resources"] == {"cpu": 2000, "memory": 4096, "gpus": 1}


def test_listing_imports_no_runtime_module(env):
    mark = Path(env["ACME_RUNTIME_MARK"])
    for args in (
        ("list-units",),
        ("list-units", "--json"),
        ("show-unit", "acme.denoise"),
        ("plugins", "--json"),
    ):
        result = run_pipeline(*args, env=env)
        assert result.returncode == 0, result.stderr
    assert not mark.exists(), "a runtime module was imported while listing"
    # and the mark works: importing the runtime does leave it
    subprocess.run(
        [sys.executable, "-c", "import acme_healthy.runtime"],
        env={**os.environ, **env},
        check=True,
    )
    assert mark.read_text() == "imported\n"


def test_table_groups_units_by_kind_with_ports(env):
    result = run_pipeline("list-units", env=env)
    assert result.returncode == 0
    out = result.stdout
    assert out.index("Connectors") < out.index("Processors") < out.index("Agents")
    processors = out[out.index("Processors") : out.index("Agents")]
    for expected in ("acme.denoise", "frames", "clean"):
        assert expected in processors
    assert "acme.good" in out[out.index("Agents") :]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--kind", "agent", "--namespace", "acme"), {"acme.good"}),
        (("--namespace", "core"), {"core.files", "core.jsonl-sink", "core.identity"}),
        (("--namespace", "acme", "--status", "stable"), {"acme.denoise"}),
        (("--kind", "processor", "--namespace", "acme"), {"acme.denoise"}),
    ],
)
def test_list_units_filters(env, args, expected):
    data = _json(run_pipeline("list-units", "--json", *args, env=env))
    assert {u["name"] for u in data["units"]} == expected


def test_plugins_shows_status_and_reason(env):
    data = _json(run_pipeline("plugins", "--json", env=env))
    by_dist = {p["distribution"]: p for p in data["plugins"]}
    # other plugins (the reference ones) may be installed beside the throwaway ones
    assert ALL_PLUGINS | {"asapo-pipelines"} <= set(by_dist)
    assert by_dist["acme-healthy"]["status"] == "ok"
    assert by_dist["acme-healthy"]["units"] == ["acme.denoise", "acme.detector"]
    assert by_dist["acme-broken"]["status"] == "broken"
    assert by_dist["acme-invalid"]["units"] == ["acme.good"]
    table = run_pipeline("plugins", env=env)
    assert table.returncode == 0
    assert "libacme.so.3 not found" in table.stdout
    assert "also registered by dup-two 2.0.0" in table.stdout


def test_strict_mode_fails_with_one_sentence(env):
    for args in (("list-units", "--strict"), ("plugins", "--strict")):
        result = run_pipeline(*args, env=env)
        assert result.returncode == 1
        _assert_no_traceback(result)
    result = run_pipeline("list-units", env={**env, "ASAPO_PIPELINES_STRICT": "1"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: plugin ")


def test_allow_list_loads_only_the_listed_plugins(env):
    result = run_pipeline(
        "list-units", "--json", env={**env, "ASAPO_PIPELINES_PLUGINS": "acme-healthy"}
    )
    data = _json(result)
    assert {u["name"] for u in data["units"]} == {
        "acme.denoise",
        "acme.detector",
        "core.files",
        "core.jsonl-sink",
        "core.identity",
    }
    assert data["broken_plugins"] == []
    assert result.stderr == ""


def test_block_list_resolves_a_duplicate(env):
    blocked = "acme-broken,acme-invalid,acme-typo,dup-two"
    result = run_pipeline(
        "list-units", "--json", env={**env, "ASAPO_PIPELINES_DISABLE_PLUGINS": blocked}
    )
    data = _json(result)
    names = {u["name"] for u in data["units"]}
    assert "shared.thing" in names
    assert next(u for u in data["units"] if u["name"] == "shared.thing")["distribution"] == (
        "dup-one"
    )
    assert data["broken_plugins"] == []


def test_show_unit_describes_params_and_gives_a_pasteable_snippet(env):
    result = run_pipeline("show-unit", "acme.denoise", "--json", env=env)
    data = _json(result)
    params = {p["name"]: p for p in data["params"]}
    assert params["sigma"] == {
        "name": "sigma",
        "type": "float",
        "required": False,
        "default": 1.5,
        "description": "Width of the Gaussian kernel in pixels.",
        "constraints": "> 0",
    }
    assert params["method"]["type"] == '"gauss" | "median"'
    assert params["mask_file"]["required"] is True
    snippet = YAML(typ="safe").load(data["example"])
    (instance,) = snippet.values()
    assert instance["unit"] == "acme.denoise"
    assert set(instance["params"]) == {"sigma", "method", "mask_file"}
    assert set(instance["inputs"]) == {"frames"}
    assert set(instance["outputs"]) == {"clean"}

    text = run_pipeline("show-unit", "acme.denoise", env=env)
    assert text.returncode == 0
    for expected in (
        "Removes detector noise",
        "Width of the Gaussian kernel",
        "(required)",
        "gpus 1",
        "unit: acme.denoise",
    ):
        assert expected in text.stdout

    # narrower (36 columns) than the snippet's lines: it pastes whole, never cut at the edge
    # (a flow mapping of defaults cut mid-line is broken YAML)
    narrow = run_pipeline("show-unit", "acme.denoise", env={**env, "COLUMNS": "36"})
    assert narrow.returncode == 0, narrow.stderr
    shown = narrow.stdout.split("Example (paste under `units:`):\n", 1)[1]
    assert [line.rstrip() for line in shown.strip("\n").splitlines()] == [
        line.rstrip() for line in data["example"].strip("\n").splitlines()
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("acme.denoize", "error: unknown unit acme.denoize; did you mean acme.denoise?"),
        ("core.identiy", "error: unknown unit core.identiy; did you mean core.identity?"),
        ("zzz.qqq", "error: unknown unit zzz.qqq; see `pipeline list-units`"),
    ],
)
def test_unknown_unit_suggests_the_nearest(env, name, message):
    result = run_pipeline("show-unit", name, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == message
    _assert_no_traceback(result)


def test_version_lists_core_and_plugins(env):
    result = run_pipeline("--version", env=env)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("asapo-pipelines ")
    assert "  acme-healthy 1.2.0" in lines
    assert "  acme-broken 0.3.0 (broken)" in lines


@pytest.mark.parametrize(
    "args",
    [
        ("no-such-command",),
        ("list-units", "--kind", "robot"),
        ("show-unit",),
        ("list-units", "--bogus"),
    ],
)
def test_usage_errors_are_one_sentence(env, args):
    result = run_pipeline(*args, env=env)
    assert result.returncode == 2
    _assert_no_traceback(result)
    assert "Error:" in result.stderr or "error:" in result.stderr


def test_a_plugin_that_exits_while_imported_is_reported_broken(tmp_path, monkeypatch):
    """sys.exit() in a plugin's module would otherwise end whatever command loads the catalog,
    with the plugin's exit code and no word of why."""
    from asapo_pipelines.catalog import Catalog, PluginSource

    (tmp_path / "acme_exits_plugin.py").write_text("import sys\n\nsys.exit(4)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    catalog = Catalog.from_sources(
        [PluginSource("acme-exits", "acme-exits", "0.1.0", "acme_exits_plugin")]
    )
    record = next(r for r in catalog.plugins if r.distribution == "acme-exits")
    assert record.errors == [
        "import failed: RuntimeImportExit: importing acme_exits_plugin called sys.exit(4)"
    ]
