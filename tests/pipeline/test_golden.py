"""Golden tests: hand-written broken pipeline files and the exact problems reported for them.

Each file under broken/ is named for the codes it must produce; its `.expected` file holds the
report. Regenerate after a deliberate change of wording with UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from asapo_pipelines.pipeline import CODES, validate_file

from helpers import run_pipeline

BROKEN = Path(__file__).parent / "broken"
VALID = Path(__file__).parent / "valid"
MISSING = "does-not-exist.pipeline.yaml"
CASES = [*sorted(p.name for p in BROKEN.glob("*.pipeline.yaml")), MISSING]
LINE = re.compile(
    r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning) "
    r"(?P<code>P\d{3}) \S.*$"
)


def _expected_path(name: str) -> Path:
    return BROKEN / (name.removesuffix(".pipeline.yaml") + ".expected")


@pytest.fixture(scope="module")
def asapo_found(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stand-ins for DESY's asapo wheels, never imported: the reports of the files with an
    `asapo` transport are the same whether or not the wheels are installed (P109 and P110
    have their goldens through the pretend `wirebus` transport)."""
    site = tmp_path_factory.mktemp("asapo-found")
    for name in ("asapo_consumer", "asapo_producer"):
        (site / name).mkdir()
        (site / name / "__init__.py").write_text("raise ImportError('a stand-in')\n")
    return site


@pytest.fixture
def in_broken(monkeypatch: pytest.MonkeyPatch, asapo_found: Path) -> Path:
    monkeypatch.chdir(BROKEN)
    monkeypatch.syspath_prepend(str(asapo_found))
    return BROKEN


@pytest.mark.parametrize("name", CASES)
def test_report_matches_golden(name: str, catalog, in_broken: Path) -> None:
    # with the runtimes' modules checked, as `pipeline validate` checks them
    report = validate_file(name, catalog, runtimes=True)
    text = report.text()
    expected = _expected_path(name)
    if os.environ.get("UPDATE_GOLDEN"):
        expected.write_text(text)
    assert text == expected.read_text()
    # the codes in the file's name are among those reported, and the file is rejected
    wanted = set(re.findall(r"P\d{3}", name)) or {"P001"}
    assert wanted <= {p.code for p in report.problems}
    assert report.exit_code == (2 if name == MISSING else 1) or not report.errors
    for line in text.splitlines():
        match = LINE.match(line)
        assert match, line
        assert match["file"] == name
        assert int(match["line"]) >= 1
        assert int(match["col"]) >= 1


def test_goldens_cover_every_code_but_the_catalog_failure() -> None:
    from asapo_pipelines.pipeline.problems import ONLINE

    seen: set[str] = set()
    for path in BROKEN.glob("*.expected"):
        seen |= set(re.findall(r" (P\d{3}) ", path.read_text()))
    # the online checks ask live services (the bluesky plugin's tests start one)
    assert seen == set(CODES) - {"P900"} - ONLINE


def test_warnings_alone_leave_the_file_valid(catalog, in_broken: Path) -> None:
    report = validate_file("P310-unused-stream.pipeline.yaml", catalog)
    assert report.ok
    assert report.warnings
    assert report.exit_code == 0


def test_reference_pipeline_is_valid_and_loads(catalog) -> None:
    from asapo_pipelines.pipeline import load_pipeline

    path = VALID / "p65.pipeline.yaml"
    assert validate_file(path, catalog).problems == []
    pipeline = load_pipeline(path, catalog)
    assert pipeline.name == "p65-xas"
    assert pipeline.path == path.resolve()
    assert pipeline.transport.kind == "embedded"
    assert pipeline.transport.spec() == {
        "embedded": {"path": str((path.parent / ".pipeline-data").resolve())}
    }
    assert pipeline.units["writer"].params == {"compression": "gzip", "file": "results/p65.nxs"}
    assert pipeline.params_for("normalize", catalog).rebin == 2
    assert pipeline.resources_for("normalize", catalog).cpu == 1000
    assert pipeline.resources_for("normalize", catalog).memory == 256
    assert pipeline.units["advisor"].retry.attempts == 1
    assert pipeline.deploy.nomad.python is not None
    assert pipeline.deploy.nomad.python.venv == "/shared/envs/p65"
    assert pipeline.streams["raw-scans"].external


def test_load_pipeline_raises_one_error_listing_every_problem(catalog, in_broken: Path) -> None:
    from asapo_pipelines.errors import PipelinesError
    from asapo_pipelines.pipeline import load_pipeline

    with pytest.raises(PipelinesError) as info:
        load_pipeline("P202-param-types.pipeline.yaml", catalog)
    message = str(info.value)
    assert message.startswith("P202-param-types.pipeline.yaml is not a valid pipeline file")
    assert message.count("\n") == len(info.value.report.errors)  # type: ignore[attr-defined]


# -- the real command, with the units installed as a plugin distribution ------------------------
def test_cli_prints_the_golden_reports(plugin_env: dict[str, str], asapo_found: Path) -> None:
    names = [n for n in CASES if n != MISSING]
    env = {**plugin_env, "PYTHONPATH": f"{asapo_found}{os.pathsep}{plugin_env['PYTHONPATH']}"}
    result = run_pipeline("validate", *names, env=env, cwd=BROKEN)
    assert result.returncode == 1, result.stderr
    assert result.stdout == "".join(_expected_path(n).read_text() for n in names)
    assert "Traceback" not in result.stderr
    # one summary line per file on stderr
    assert result.stderr.count(": invalid (") + result.stderr.count(": valid") == len(names)


def test_cli_exit_2_when_a_file_cannot_be_read(plugin_env: dict[str, str]) -> None:
    result = run_pipeline(
        "validate", MISSING, "P205-deprecated.pipeline.yaml", env=plugin_env, cwd=BROKEN
    )
    assert result.returncode == 2
    assert result.stdout.startswith(f"{MISSING}:1:1: error P001 cannot read the file")


def test_cli_valid_file_exit_0(plugin_env: dict[str, str]) -> None:
    result = run_pipeline("validate", "p65.pipeline.yaml", env=plugin_env, cwd=VALID)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == "p65.pipeline.yaml: valid"


def test_cli_strict_fails_on_warnings(plugin_env: dict[str, str]) -> None:
    args = ("validate", "P310-unused-stream.pipeline.yaml")
    assert run_pipeline(*args, env=plugin_env, cwd=BROKEN).returncode == 0
    assert run_pipeline(*args, "--strict", env=plugin_env, cwd=BROKEN).returncode == 1


def test_cli_json_format(plugin_env: dict[str, str]) -> None:
    result = run_pipeline(
        "validate",
        "--format",
        "json",
        "P304-content-types.pipeline.yaml",
        "P205-deprecated.pipeline.yaml",
        env=plugin_env,
        cwd=BROKEN,
    )
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False
    assert data["exit_code"] == 1
    first, second = data["files"]
    assert first["file"] == "P304-content-types.pipeline.yaml"
    assert not first["valid"]
    assert {p["code"] for p in first["problems"]} == {"P304"}
    assert first["problems"][0] == {
        "file": "P304-content-types.pipeline.yaml",
        "line": 10,
        "column": 21,
        "severity": "error",
        "code": "P304",
        "message": "input normalize.scans accepts xas/scan but stream 'frames' carries "
        "image/tiff (from detector.frames)",
    }
    assert second["valid"] is True
    assert second["warnings"] == 1


def test_cli_catalog_failure_is_exit_2_with_p900(plugin_env, tmp_path_factory) -> None:
    """In strict mode a broken installed plugin means no file can be judged."""
    from asapo_pipelines.testing.distributions import PluginProject, install

    src = tmp_path_factory.mktemp("broken-src")
    site = tmp_path_factory.mktemp("broken-site")
    project = PluginProject(
        "raising-plugin",
        modules={"plugin.py": "raise ImportError('needs a library that is not installed')\n"},
        entry_points={"raising": "raising_plugin.plugin"},
    )
    install([project.write(src)], site)
    env = {
        "PYTHONPATH": f"{site}{os.pathsep}{plugin_env['PYTHONPATH']}",
        "ASAPO_PIPELINES_PLUGINS": "fake-beamline,raising-plugin",
        "ASAPO_PIPELINES_STRICT": "1",
    }
    result = run_pipeline("validate", "p65.pipeline.yaml", env=env, cwd=VALID)
    assert result.returncode == 2
    line = result.stdout.strip()
    assert LINE.match(line), line
    assert line.startswith("p65.pipeline.yaml:1:1: error P900 the unit catalog could not be loaded")
    assert "raising" in line
    assert "Traceback" not in result.stderr


def test_cli_reads_standard_input(plugin_env: dict[str, str]) -> None:
    text = (BROKEN / "P201-unknown-unit.pipeline.yaml").read_text()
    result = run_pipeline("validate", "-", env=plugin_env, input=text)
    assert result.returncode == 1
    expected = _expected_path("P201-unknown-unit.pipeline.yaml").read_text()
    assert result.stdout == expected.replace("P201-unknown-unit.pipeline.yaml", "<stdin>")
