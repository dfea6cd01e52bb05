"""CI's `tests` and `plugin-<name>` sessions record the tests that pass; its `all` session
leaves them out (tools/passed_record.py). Driven through real pytest runs on a throw-away git
project that loads a copy of the module as the noxfile does (`-p passed_record`, its folder on
PYTHONPATH)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

MODULE = Path(__file__).resolve().parents[1] / "tools" / "passed_record.py"
RECORD_ENV = "ASAPO_PIPELINES_RECORD_PASSED"
SKIP_ENV = "ASAPO_PIPELINES_SKIP_PASSED"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

CORE_TESTS = """\
import os

import pytest


def test_passes():
    pass


def test_sees_no_variable_of_the_plugin():
    # read once and removed: a pytest a test starts neither records nor deselects
    assert not {"ASAPO_PIPELINES_RECORD_PASSED", "ASAPO_PIPELINES_SKIP_PASSED"} & set(os.environ)


@pytest.mark.skip(reason="needs a plugin")
def test_skipped():
    pass


def test_fails():
    assert 1 == 2


@pytest.mark.xfail(reason="known")
def test_xfails():
    assert 1 == 2


@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown breaks")


def test_passes_but_its_teardown_fails(broken_teardown):
    pass
"""

PASSED = {
    "tests/test_core.py::test_passes",
    "tests/test_core.py::test_sees_no_variable_of_the_plugin",
}
#: run 1 (`tests` alone), as pytest's summary counts it
EVERY_CORE_TEST = {"failed": 1, "passed": 3, "skipped": 1, "xfailed": 1, "error": 1}


def _git(project: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project, env=_env(), capture_output=True, check=True)


def _env(**extra: str) -> dict[str, str]:
    """This environment without the plugin's variables, pytest's or git's (the outer run may
    set them), plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ASAPO_PIPELINES_", "PYTEST_", "GIT_"))
    }
    # the venv's pytest plugins (entry points) play no part here: faster without them
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return {**env, **extra}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git work tree laid out as the repository: the module under tools/, core tests under
    tests/, a plugin's under plugins/demo/tests with its own pytest configuration (as the
    reference plugins have), the records under ignored .nox/."""
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "plugins" / "demo" / "tests").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    (root / ".gitignore").write_text("__pycache__/\n.nox/\n")
    (root / "README.md").write_text("a project\n")
    (root / "tools").mkdir()
    shutil.copy(MODULE, root / "tools" / "passed_record.py")
    (root / "plugins" / "demo" / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
    )
    (root / "tests" / "test_core.py").write_text(CORE_TESTS)
    (root / "plugins" / "demo" / "tests" / "test_plugin.py").write_text(
        "def test_plugin_passes():\n    pass\n"
    )
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    return root


def _pytest(
    project: Path, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """pytest with the module loaded as the noxfile loads it, from `cwd` (the project)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "passed_record", *args],
        cwd=cwd or project,
        env=_env(PYTHONPATH=str(project / "tools"), **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _counts(done: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """pytest's last line as {outcome: count}: "1 failed, 3 passed in 0.1s" -> {...}."""
    last = done.stdout.strip().splitlines()[-1]
    found = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last.split(" in ")[0])}
    return {("error" if word == "errors" else word): n for word, n in found.items()}


def _lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.startswith("asapo-pipelines:")]


def _record(project: Path) -> Path:
    record = project / ".nox" / "passed.json"
    done = _pytest(project, "tests", **{RECORD_ENV: str(record)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert _counts(done) == EVERY_CORE_TEST
    assert _lines(done) == ["asapo-pipelines: recorded 2 passed tests in .nox/passed.json"]
    return record


def test_records_the_passed_tests_then_deselects_them_while_the_tree_is_the_same(project):
    record = _record(project)
    assert set(json.loads(record.read_bytes())["passed"]) == PASSED

    both = ("tests", "plugins/demo/tests")
    done = _pytest(project, *both, **{SKIP_ENV: str(record)})
    assert done.returncode == 1, done.stdout + done.stderr
    # the skipped, failed, xfailed and errored core tests run again, and the plugin's test
    assert _counts(done) == {
        "failed": 1,
        "passed": 2,
        "skipped": 1,
        "deselected": 2,
        "xfailed": 1,
        "error": 1,
    }
    assert "collected 7 items / 2 deselected / 5 selected" in done.stdout
    assert _lines(done) == [
        "asapo-pipelines: deselected 2 tests that passed in an earlier session on the same tree"
        " (2 of .nox/passed.json)"
    ]
    assert "test_plugin.py ." in done.stdout

    # a tracked file changes: everything runs
    (project / "README.md").write_text("a project, changed\n")
    done = _pytest(project, *both, **{SKIP_ENV: str(record)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert _counts(done) == {**EVERY_CORE_TEST, "passed": 4}
    assert _lines(done) == [
        "asapo-pipelines: running the tests of .nox/passed.json again:"
        " the tree changed since its session"
    ]


def test_a_plugins_session_run_from_its_own_folder_is_skipped_from_the_top(project):
    """A plugin's session runs from plugins/demo, whose pyproject makes it pytest's rootdir
    (ids `tests/...`); the `all` session runs from the top (ids `plugins/demo/tests/...`)."""
    core = _record(project)
    plugin = project / ".nox" / "plugin-demo.json"
    done = _pytest(project, "tests", cwd=project / "plugins" / "demo", **{RECORD_ENV: str(plugin)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert _lines(done) == ["asapo-pipelines: recorded 1 passed tests in .nox/plugin-demo.json"]
    assert json.loads(plugin.read_bytes())["passed"] == [
        "plugins/demo/tests/test_plugin.py::test_plugin_passes"
    ]

    records = os.pathsep.join([str(core), str(plugin)])
    done = _pytest(project, "tests", "plugins/demo/tests", **{SKIP_ENV: records})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "collected 7 items / 3 deselected / 4 selected" in done.stdout
    assert _lines(done) == [
        "asapo-pipelines: deselected 3 tests that passed in an earlier session on the same tree"
        " (2 of .nox/passed.json, 1 of .nox/plugin-demo.json)"
    ]

    # one record unusable: only its tests run again, and one line says so
    plugin.write_text("{}")
    done = _pytest(project, "tests", "plugins/demo/tests", **{SKIP_ENV: records})
    assert "collected 7 items / 2 deselected / 5 selected" in done.stdout
    assert "test_plugin.py ." in done.stdout
    assert _lines(done) == [
        "asapo-pipelines: running the tests of .nox/plugin-demo.json again:"
        " the record is damaged (not a record of format 2)",
        "asapo-pipelines: deselected 2 tests that passed in an earlier session on the same tree"
        " (2 of .nox/passed.json)",
    ]


def _outcomes(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Each test's outcome from pytest's -rA lines: {"tests/test_core.py::test_passes": "PASSED"}
    (a skipped test's line names it after its count: "SKIPPED [1] tests/test_core.py:41: ...")."""
    pattern = r"^(PASSED|FAILED|SKIPPED|XFAIL|ERROR) (?:\[\d+\] )?(\S+?)(?::\d+:)?(?: |$)"
    return {test: outcome for outcome, test in re.findall(pattern, done.stdout, re.MULTILINE)}


def test_with_xdist_workers_the_controller_records_and_the_workers_deselect(project):
    """CI runs its longer sessions with pytest-xdist (`-n 2`): the reports reach the controller,
    which records; the workers collect, so they deselect, and the controller shows their line."""
    xdist = ("-p", "xdist.plugin", "-n", "2", "-rA")
    record = project / ".nox" / "passed.json"
    done = _pytest(project, *xdist, "tests", **{RECORD_ENV: str(record)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert _counts(done) == EVERY_CORE_TEST
    assert _lines(done) == ["asapo-pipelines: recorded 2 passed tests in .nox/passed.json"]
    assert set(json.loads(record.read_bytes())["passed"]) == PASSED

    done = _pytest(project, *xdist, "tests", "plugins/demo/tests", **{SKIP_ENV: str(record)})
    assert done.returncode == 1, done.stdout + done.stderr
    ran = _outcomes(done)
    # the passed core tests are left out, among them the one that checks the variable is gone
    assert not PASSED & set(ran), ran
    assert ran["plugins/demo/tests/test_plugin.py::test_plugin_passes"] == "PASSED"
    assert ran["tests/test_core.py::test_fails"] == "FAILED"
    assert ran["tests/test_core.py"] == "SKIPPED"
    assert len(ran) == 5, ran  # 7 collected, 2 deselected
    assert _counts(done) == {**EVERY_CORE_TEST, "passed": 2}
    assert _lines(done) == [
        "asapo-pipelines: deselected 2 tests that passed in an earlier session on the same tree"
        " (2 of .nox/passed.json)"
    ]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "no such record (its session did not run or did not finish)"),
        (b"\x00\xff\xfe garbage \x80", "the record is damaged (not JSON)"),
    ],
    ids=["missing", "garbage"],
)
def test_without_a_usable_record_everything_runs_and_one_line_says_why(project, content, why):
    record = project / ".nox" / "passed.json"
    if content is not None:
        record.parent.mkdir()
        record.write_bytes(content)
    done = _pytest(project, "tests", **{SKIP_ENV: str(record)})
    # the exit code is the tests': one fails
    assert done.returncode == 1, done.stdout + done.stderr
    assert _counts(done) == EVERY_CORE_TEST
    assert _lines(done) == [f"asapo-pipelines: running the tests of .nox/passed.json again: {why}"]
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"format": 2, "fingerprint": "abc", "passed": [1', "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b"[]", "not a record of format 2"),
        # format 1 held ids relative to pytest's rootdir: not comparable
        (b'{"format": 1, "fingerprint": "abc", "passed": []}', "not a record of format 2"),
        (b'{"format": 2, "fingerprint": 7, "passed": []}', "its fingerprint is not text"),
        (
            b'{"format": 2, "fingerprint": "abc", "passed": "tests"}',
            "its passed tests are not a list of test ids",
        ),
    ],
    ids=["cut-short", "too-deep", "a-list", "older-format", "wrong-fingerprint", "wrong-passed"],
)
def test_a_damaged_record_says_how(tmp_path, content, why):
    record = tmp_path / ".nox" / "passed.json"
    record.parent.mkdir()
    record.write_bytes(content)
    skipper = _module().PassedSkipper([record], tmp_path, tmp_path, "abc", "")
    assert skipper.usable == {}  # nothing is deselected
    assert skipper.lines == [
        f"asapo-pipelines: running the tests of .nox/passed.json again: the record is damaged"
        f" ({why})"
    ]


def test_without_the_variables_pytest_runs_as_ever_and_writes_nothing(project):
    done = _pytest(project, "tests")
    assert done.returncode == 1, done.stdout + done.stderr
    assert _counts(done) == EVERY_CORE_TEST
    assert _lines(done) == []
    assert not (project / ".nox").exists()


def test_a_test_that_leaves_a_file_in_the_tree_is_named_and_everything_runs_later(project):
    (project / "tests" / "test_writes.py").write_text(
        "from pathlib import Path\n\n\n"
        "def test_writes_into_the_tree():\n"
        "    Path(__file__).with_name('left-behind.txt').write_text('oops')\n"
    )
    _git(project, "add", "-A")
    record = project / ".nox" / "passed.json"
    done = _pytest(project, "tests", **{RECORD_ENV: str(record)})
    assert _lines(done) == [
        "asapo-pipelines: recorded 3 passed tests in .nox/passed.json",
        "asapo-pipelines: the tests changed the tree while they ran"
        " (added tests/left-behind.txt): a later session finds another tree and runs these"
        " tests again",
    ]
    done = _pytest(project, "tests", **{SKIP_ENV: str(record)})
    assert _counts(done) == {**EVERY_CORE_TEST, "passed": 4}
    assert _lines(done) == [
        "asapo-pipelines: running the tests of .nox/passed.json again:"
        " the tree changed since its session"
    ]


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("passed_record_under_test", MODULE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fingerprint_covers_what_git_lists_and_nothing_it_ignores(project):
    fingerprint = _module().tree_fingerprint
    before = fingerprint(project)
    assert fingerprint(project / "tests") == before  # the same work tree from anywhere in it
    (project / ".nox").mkdir()
    (project / ".nox" / "passed.json").write_text("{}")
    (project / "tests" / "__pycache__").mkdir()
    assert fingerprint(project) == before  # ignored files do not count
    (project / "notes.txt").write_text("untracked, not ignored\n")
    with_notes = fingerprint(project)
    assert with_notes != before
    (project / "notes.txt").unlink()
    assert fingerprint(project) == before
    (project / "README.md").unlink()  # tracked, deleted: skipped, no error
    assert fingerprint(project) not in (before, with_notes)


def test_outside_a_git_work_tree_there_is_no_fingerprint_and_everything_runs(project):
    shutil.rmtree(project / ".git")
    module = _module()
    with pytest.raises(module.NoFingerprint, match="git failed"):
        module.tree_fingerprint(project)
    record = project / ".nox" / "passed.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"format": 2, "fingerprint": "abc", "passed": sorted(PASSED)}))
    done = _pytest(project, "tests", **{SKIP_ENV: str(record)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert _counts(done) == EVERY_CORE_TEST
    (line,) = _lines(done)
    assert line.startswith(
        "asapo-pipelines: running the tests of .nox/passed.json again: no fingerprint of the tree"
    )
