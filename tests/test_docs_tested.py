"""The documentation is tested like code: every YAML block in README.md and docs/ validates, and
every command shown there runs, in order, page by page, in a sandbox holding the repository's
examples.

A block that is deliberately partial (a fragment of a file) or that cannot run here (it needs a
Nomad cluster, an SSH gateway, a fresh environment) says so on the line before its fence:

    <!-- docs-test: partial, the units section of a file -->
    <!-- docs-test: not-run, needs a Nomad cluster -->

A block that shows a file of the repository (an example plugin's module) holds that file's
text, so the page reads the same on GitHub as in the built site (where a `--8<--` include
would show as it is); the line before its fence names the file, and a test keeps the two the
same:

    <!-- docs-test: copy, docs/examples/minimal-plugin/acme_xrd/plugin.py -->

A copy of a pipeline file is not validated here: its file's own test runs it (the executor
example's pipeline needs that example plugin installed).

Only those three markers exist, and each must give its reason (a copy: its file). `pip install`
of this repository's own packages is what the test environment is made of (skipped); of another
local path (a plugin example) it is installed into the sandbox. Long-running commands (`pipeline
view`) are started, must print their first line, and are stopped.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from asapo_pipelines.testing.distributions import install

from helpers import CACHE_DIR, PIPELINE

# the pages describe the full install (core, XAS and NeXus plugins): the `all` session tests them
pytest.importorskip("asapo_pipelines_xas", reason="the docs' examples need the XAS plugin")
pytest.importorskip("asapo_pipelines_nexus", reason="the docs' examples need the NeXus plugin")

ROOT = Path(__file__).parents[1]
#: the generated CLI reference holds help texts, not examples
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "cli.md")]
MARKER = re.compile(r"<!--\s*docs-test:\s*(partial|not-run|copy)\s*,\s*(\S.*?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
PROMPT = re.compile(r"^\S*\$ (.*)$")
#: commands that serve until stopped: started, their first line checked, then stopped
LONG_RUNNING = {"view"}
OWN_PACKAGES = {".", "plugins/xas", "plugins/nexus", ".[viewer]", ".[test]"}


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    text: str
    marker: str | None  # partial / not-run / copy
    reason: str  # why, or the file a copy shows

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def commands(self) -> list[str]:
        if self.lang == "console":
            lines = [m.group(1) for m in map(PROMPT.match, self.text.splitlines()) if m]
            if not lines:  # a block written without prompts: its command lines
                lines = [
                    ln for ln in self.text.splitlines() if ln.startswith(("pipeline ", "pip "))
                ]
        elif self.lang in ("bash", "sh", ""):
            lines = [line for line in self.text.splitlines() if line.startswith("pipeline ")]
            if self.lang:
                lines = [ln for ln in self.text.splitlines() if ln and not ln.startswith("#")]
        else:
            return []
        return [part.strip() for line in lines for part in line.split("&&")]


def blocks(page: Path) -> list[Block]:
    found = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        marker, reason = None, ""
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0 and (m := MARKER.search(lines[j])):
            marker, reason = m.group(1), m.group(2)
        end = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("```"))
        found.append(
            Block(page, i + 1, fence.group(1), "\n".join(lines[i + 1 : end]), marker, reason)
        )
        i = end + 1
    return found


ALL = [b for page in PAGES for b in blocks(page)]
YAML_BLOCKS = [b for b in ALL if b.lang == "yaml"]


def test_every_marker_is_one_the_test_knows():
    for page in PAGES:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            if "docs-test" in line:
                assert MARKER.search(line), f"{page.name}:{n}: unknown docs-test marker {line!r}"


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[b.where for b in YAML_BLOCKS])
def test_yaml_block_validates(block, tmp_path):
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.validate import validate_text

    YAML(typ="safe").load(block.text)  # every block is YAML, partial or not
    if block.marker == "partial":
        return
    if block.marker == "copy":
        # a file's text (`test_a_copy_on_a_page_is_the_file_it_shows`), validated where its own
        # test runs it: a pipeline of an example plugin's executor (docs/executors.md) needs
        # that plugin installed, which tests/test_docs_executor_example.py does
        return
    report = validate_text(block.text, Catalog.load(), block.where)
    assert not report.errors, f"{block.where}:\n{report.text()}"


# -- commands ----------------------------------------------------------------------------------
class Sandbox:
    """A directory holding the repository's examples, where a page's commands run in order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cwd = root
        self.site = root / ".site"
        self.detached: list[str] = []
        for part in ("examples", "schemas", "docs/examples"):
            shutil.copytree(
                ROOT / part, root / part, ignore=shutil.ignore_patterns(".pipeline-data", "results")
            )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
        self.env.update({"COLUMNS": "100", "ASAPO_PIPELINES_CACHE_DIR": CACHE_DIR})
        self.env = {k: v for k, v in self.env.items() if not k.startswith("PYTEST_")}
        self.env["PATH"] = f"{Path(PIPELINE).parent}{os.pathsep}{self.env.get('PATH', '')}"

    def run(self, command: str, where: str) -> None:
        argv = shlex.split(command, comments=True)
        if not argv:
            return
        if argv[0] == "cd":
            self.cwd = (self.cwd / argv[1]).resolve()
            return
        if argv[:2] == ["pip", "install"]:
            self._pip(argv[2:])
            return
        if argv[0] == "pytest":
            argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *argv[1:]]
        elif argv[0] == "pipeline":
            argv = [PIPELINE, *argv[1:]]
        else:
            pytest.fail(f"{where}: `{command}` cannot run here; mark its block not-run and say why")
        if argv[1:2] and argv[1] in LONG_RUNNING:
            self._serve(argv, where, command)
            return
        if "--detach" in argv or "-d" in argv:
            self.detached.append(next(a for a in argv if a.endswith(".pipeline.yaml")))
        done = subprocess.run(
            argv,
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"{where}: `{command}` exit {done.returncode}:\n" + (
            done.stdout[-2000:] + done.stderr[-2000:]
        )
        assert "Traceback" not in done.stderr, f"{where}: `{command}`:\n{done.stderr}"

    def _pip(self, args: list[str]) -> None:
        paths = [a for a in args if not a.startswith("-")]
        theirs = [p for p in paths if p not in OWN_PACKAGES]
        if theirs:
            install([self.cwd / p for p in theirs], self.site)
            self.env["PYTHONPATH"] = str(self.site)

    def _serve(self, argv: list[str], where: str, command: str) -> None:
        """Start a server, wait (30 s at most) for the first line it prints, stop it (SIGINT,
        as Ctrl+C). On a free port: the documented default may be taken on a shared machine."""
        import threading

        if "--port" not in argv:
            argv = [*argv, "--port", "0"]
        proc = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.append(proc.stdout.readline() if proc.stdout else ""),
            daemon=True,
        )
        reader.start()
        reader.join(30)
        try:
            assert lines, f"{where}: `{command}` printed nothing in 30 s"
            assert lines[0].strip(), f"{where}: `{command}` printed an empty line"
            assert proc.poll() is None, f"{where}: `{command}` exited: {lines[0]}"
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for file in self.detached:
            subprocess.run(
                [PIPELINE, "stop", file],
                cwd=self.root,
                env=self.env,
                capture_output=True,
                timeout=120,
                check=False,
            )


COMMAND_PAGES = [p for p in PAGES if any(b.commands() for b in blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", COMMAND_PAGES, ids=[p.name for p in COMMAND_PAGES])
def test_every_command_on_the_page_runs(page, tmp_path):
    sandbox = Sandbox(tmp_path)
    try:
        for block in blocks(page):
            if block.marker == "not-run":
                continue
            for command in block.commands():
                sandbox.run(command, block.where)
    finally:
        sandbox.close()


# -- includes and example tests ----------------------------------------------------------------
SNIPPET = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$')


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_snippet_includes_are_well_formed_and_exist(page):
    """pymdownx.snippets renders `--8<-- "path"` lines as the file's text; a mangled line
    (`--8 < --"path"`) is shown as it is instead of the code."""
    for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if "--8" in line:
            match = SNIPPET.match(line)
            assert match, f"{page.name}:{n}: not a snippet include: {line!r}"
            assert (ROOT / match.group(1)).is_file(), f"{page.name}:{n}: no file {match.group(1)}"


COPIES = [b for b in ALL if b.marker == "copy"]


@pytest.mark.parametrize("block", COPIES, ids=[b.where for b in COPIES])
def test_a_copy_on_a_page_is_the_file_it_shows(block):
    """A file's text shown on a page (`docs-test: copy`) stays that file's text, byte for
    byte: the file is the one the tests install and run."""
    source = ROOT / block.reason
    assert source.is_file(), f"{block.where}: no file {block.reason}"
    wanted = source.read_text(encoding="utf-8")
    shown = block.text + "\n"
    diff = "".join(
        difflib.unified_diff(
            wanted.splitlines(keepends=True), shown.splitlines(keepends=True),
            block.reason, block.where,
        )
    )  # fmt: skip
    assert not diff, f"{block.where}: paste {block.reason} between the fences again:\n{diff}"


def _example_tests() -> list[tuple[Block, str]]:
    found = []
    for page in PAGES:
        for block in blocks(page):
            if block.lang == "python" and block.marker != "partial":
                found.extend(
                    (block, name) for name in re.findall(r"^def (test_\w+)", block.text, re.M)
                )
    return found


EXAMPLE_TESTS = _example_tests()


@pytest.mark.parametrize(
    ("block", "name"), EXAMPLE_TESTS, ids=[f"{b.where}:{n}" for b, n in EXAMPLE_TESTS]
)
def test_example_tests_on_the_pages_pass(block, name, tmp_path, monkeypatch):
    """A test shown in the docs is run as written, with the fixtures it names."""
    import inspect

    from asapo_pipelines.testing import catalog_from_plugins
    from asapo_pipelines.testing.harness import run_chain, run_unit

    monkeypatch.syspath_prepend(str(ROOT / "docs" / "examples" / "minimal-plugin"))
    monkeypatch.chdir(ROOT)  # the pages' paths are relative to the repository
    fixtures = {
        "make_catalog": catalog_from_plugins,
        "run_unit": run_unit,
        "run_chain": run_chain,
        "tmp_path": tmp_path,
    }
    namespace: dict[str, object] = {}
    exec(compile(block.text, block.where, "exec"), namespace)
    function = namespace[name]
    assert callable(function)
    wanted = inspect.signature(function).parameters
    missing = [p for p in wanted if p not in fixtures]
    assert not missing, (
        f"{block.where}: {name} uses fixtures the docs test does not give: {missing}"
    )
    function(**{p: fixtures[p] for p in wanted})


# -- what the README and the install hints promise ----------------------------------------------
def test_readme_example_is_the_example_file():
    (block,) = [b for b in blocks(ROOT / "README.md") if b.lang == "yaml"]
    shown = YAML(typ="safe").load(block.text)
    example = YAML(typ="safe").load((ROOT / "examples" / "p65-xas.pipeline.yaml").read_text())
    assert shown == example


def test_install_hints_work_from_a_checkout():
    """asapo-pipelines is on no package index: `pip install 'asapo-pipelines[viewer]'` fails;
    from the checkout it is `pip install -e '.[viewer]'`."""
    from asapo_pipelines.viewer.server import EXTRA_HINT

    assert "pip install -e '.[viewer]'" in EXTRA_HINT
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert "install 'asapo-pipelines[" not in text, page.name
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "2.4 GB" in readme
    assert "`pipeline new NAME`" in readme
