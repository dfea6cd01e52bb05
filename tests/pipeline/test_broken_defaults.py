"""A plugin's params model whose defaults break its own rules (`factor: Annotated[int,
Field(gt=0)] = -1`, `mode: Literal["a", "b"] = "c"`): pydantic does not validate defaults, so a
file that left them unset was valid and its unit ran with them, while pasting the same values
from `pipeline show-unit` was refused. Now validate, plan, run and the test harness refuse such
a default, naming the unit, the setting, the default and its rule; setting it works around it."""

from __future__ import annotations

import re
from pathlib import Path

import bad_defaults
import pytest
from ruamel.yaml import YAML

from asapo_pipelines.sdk.runner import UnitStartError
from asapo_pipelines.testing import catalog_from_plugins
from asapo_pipelines.testing.distributions import PluginProject, install
from asapo_pipelines.testing.harness import run_unit

from helpers import run_pipeline

HERE = Path(__file__).parent
#: each default of bad.count that its model refuses, as the file would write it
BROKEN = {"factor": -1, "mode": "c", "limits.low": -0.5, "weights": [1, 0]}
GOOD = {"factor": 2, "mode": "a", "limits": {"low": 0.5}, "weights": [1, 2]}
CULPRIT = "the plugin's params model is wrong (tell its authors)"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """bad_defaults.py pip-installed as the distribution `acme-bad-defaults`, alone with the
    built-in units."""
    src = tmp_path_factory.mktemp("bad-defaults-src")
    site = tmp_path_factory.mktemp("bad-defaults-site")
    project = PluginProject(
        "acme-bad-defaults",
        "0.1.0",
        modules={"plugin.py": (HERE / "bad_defaults.py").read_text()},
        entry_points={"bad": "acme_bad_defaults.plugin"},
    )
    install([project.write(src)], site)
    return {"PYTHONPATH": str(site), "ASAPO_PIPELINES_PLUGINS": "acme-bad-defaults"}


def write(folder: Path, params: dict | None = None) -> Path:
    count: dict = {"unit": "bad.count", "outputs": {"numbers": "numbers"}}
    if params is not None:
        count["params"] = params
    path = folder / "bad.pipeline.yaml"
    with path.open("w") as f:
        YAML().dump(
            {
                "pipeline": "bad-defaults",
                "transport": {"embedded": {"path": ".pipeline-data"}},
                "units": {
                    "count": count,
                    "sink": {
                        "unit": "core.jsonl-sink",
                        "params": {"path": "out.jsonl"},
                        "inputs": {"messages": "numbers"},
                    },
                },
            },
            f,
        )
    return path


def nested(dotted: str, value: object) -> dict:
    first, _, rest = dotted.partition(".")
    return {first: nested(rest, value) if rest else value}


def rule_when_written(folder: Path, env: dict[str, str], dotted: str, value: object) -> str:
    """The rule validate names when the file writes `value` itself (what pasting the snippet
    gives): a default may be no more valid than that."""
    checked = run_pipeline("validate", str(write(folder, nested(dotted, value))), env=env)
    assert checked.returncode == 1, checked.stdout
    found = re.search(
        rf"P202 units\.count\.params\.{re.escape(dotted)}\S*: (.+?)( \(got|$)", checked.stdout, re.M
    )
    assert found, checked.stdout
    return found.group(1)


def test_validate_refuses_each_default_the_model_refuses(tmp_path: Path, env) -> None:
    path = write(tmp_path)
    unit_line = path.read_text().splitlines().index("  count:") + 1
    checked = run_pipeline("validate", str(path), env=env)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "Traceback" not in checked.stderr
    lines = [line for line in checked.stdout.splitlines() if " P202 " in line]
    assert len(lines) == len(BROKEN), checked.stdout
    for dotted, default in BROKEN.items():
        rule = rule_when_written(tmp_path, env, dotted, default)
        (line,) = [ln for ln in lines if f"units.count.params.{dotted}:" in ln]
        shown = str(default).lower() if not isinstance(default, str) else f'"{default}"'
        assert f"the default of {dotted} in unit bad.count's params is {shown}" in line
        assert f"({rule})" in line
        assert CULPRIT in line
        assert f"setting {dotted} in the pipeline file works around it" in line
        # at the unit, where the setting would go (the file has no params: key)
        assert line.startswith(f"{path}:{unit_line}:3: error P202"), line


def test_setting_the_fields_in_the_file_works_around_it(tmp_path: Path, env) -> None:
    checked = run_pipeline("validate", str(write(tmp_path, GOOD)), env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # a nested model given in part: its own unset default is still refused
    partial = {**GOOD, "limits": {}}
    checked = run_pipeline("validate", str(write(tmp_path, partial)), env=env)
    assert checked.returncode == 1
    assert "units.count.params.limits.low: the default of limits.low" in checked.stdout


def test_plan_and_run_refuse_and_no_unit_runs(tmp_path: Path, env) -> None:
    path = write(tmp_path)
    planned = run_pipeline("plan", str(path), env=env)
    assert planned.returncode != 0
    assert "the default of factor in unit bad.count's params is -1" in planned.stderr
    assert "Traceback" not in planned.stderr
    ran = run_pipeline("run", str(path), env=env, timeout=120)
    assert ran.returncode != 0, ran.stdout + ran.stderr
    assert "the default of factor in unit bad.count's params is -1" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert not (tmp_path / "out.jsonl").exists()
    logs = [p for p in tmp_path.rglob("*") if p.is_file() and "factor=-1" in p.read_text("latin-1")]
    assert logs == []


def test_run_with_the_settings_given_works(tmp_path: Path, env) -> None:
    ran = run_pipeline("run", str(write(tmp_path, GOOD)), env=env, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (tmp_path / "out.jsonl").read_text().count("\n") == 3


def test_show_unit_warns_before_its_example(env) -> None:
    shown = run_pipeline("show-unit", "bad.count", env=env)
    assert shown.returncode == 0, shown.stderr
    for dotted in BROKEN:
        assert f"warning: the default of {dotted} in unit bad.count's params" in shown.stderr
    assert "factor: int = -1" in shown.stdout  # the table still shows what the model says


def test_the_harness_refuses_an_unset_default_and_runs_with_it_set() -> None:
    # lenient: a strict catalog refuses the plugin itself (the test below)
    catalog = catalog_from_plugins(bad_defaults, strict=False)
    with pytest.raises(UnitStartError) as refused:
        run_unit("bad.count", catalog=catalog)
    assert "the default of factor in unit bad.count's params is -1" in str(refused.value)
    assert CULPRIT in str(refused.value)
    with pytest.raises(UnitStartError, match=re.escape("the default of limits.low")):
        run_unit("bad.count", params={**GOOD, "limits": {}}, catalog=catalog)
    result = run_unit("bad.count", params=GOOD, catalog=catalog)
    assert [v["n"] for v in result.values("numbers")] == [2, 4, 6]


def test_a_whole_plugin_check_names_every_broken_default() -> None:
    problems = bad_defaults.COUNT.params_default_problems()
    assert [p.split(" in unit ")[0] for p in problems] == [
        f"the default of {dotted}" for dotted in BROKEN
    ]
    core = catalog_from_plugins()
    assert {n: d.params_default_problems() for n, d in core.units.items()} == {
        n: [] for n in core.units
    }


def test_a_strict_catalog_reports_the_plugin_broken() -> None:
    """`make_catalog` / `catalog_from_plugins` (strict by default) and CI's strict catalog
    (ASAPO_PIPELINES_STRICT=1: `pipeline schema --check`) check the plugin as a whole."""
    from asapo_pipelines.errors import PluginError

    with pytest.raises(PluginError, match=r"unit bad\.count: the default of factor"):
        catalog_from_plugins(bad_defaults)
    lenient = catalog_from_plugins(bad_defaults, strict=False)
    assert "bad.count" in lenient  # a listing builds no params model: it still lists


def test_plugins_strict_names_the_broken_default_and_fails(env) -> None:
    """A plugin's CI runs `pipeline plugins --strict`: it must fail on a default the params
    model refuses, naming it, as CI's strict catalog does; plain `plugins` still lists it."""
    strict = run_pipeline("plugins", "--strict", env=env)
    assert strict.returncode == 1, strict.stdout
    assert "Traceback" not in strict.stderr
    assert "unit bad.count: the default of factor" in " ".join(strict.stdout.split())
    lenient = run_pipeline("plugins", "--json", env=env)
    assert lenient.returncode == 0, lenient.stderr
