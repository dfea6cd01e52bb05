"""Run the core tests once per CI run: the `all` session skips those that passed in `tests`.

CI (`nox`, see noxfile.py) runs the core tests twice: in the `tests` session (the core with its
asapo and viewer extras) and again in the `all` session (the core with every plugin installed),
which took about 14 of the 90 minutes CI may take on its 2-core machine. This pytest plugin
removes the repetition, and does nothing unless one of two environment variables is set (a
developer's plain `pytest tests` behaves exactly as without it):

``ASAPO_PIPELINES_RECORD_PASSED=<file>`` (the `tests` session)
    At the end of the session, write into <file> the node ids of the tests that passed (call
    phase passed; setup and teardown did not fail; no subtest failed; skipped, xfailed, xpassed,
    failed and errored tests are left out), with the fingerprint of the source tree taken when
    pytest started. Only the tests that ran are recorded. The file is written atomically (a
    temporary file beside it, then renamed). If the tests left the tree changed (a file written
    into the repository instead of tmp_path), a line names the files: the `all` session would
    find another tree and run everything.

``ASAPO_PIPELINES_SKIP_PASSED=<file>`` (the `all` session)
    If <file> holds a record whose fingerprint equals the current tree's, deselect the core
    tests (those under this directory) it lists as passed, through `pytest_deselected`, so the
    summary says "N deselected" and prints one line saying how many and from which file.
    Everything else runs: the core tests that were skipped alone (they need the XAS or NeXus
    plugin, the docs' examples, ...), those that failed, and every plugin's tests. When the
    record is missing, unreadable or damaged, or the tree changed, everything runs and one
    line says why.

What is given up: a core test that passed with the core alone is not run again with every
plugin installed; a plugin that broke such a test just by being installed would go unnoticed
there. The catalog with every plugin installed is still checked by `pipeline plugins --strict`
(the `all` session), by the `schemas` and `docs` sessions, and by the core tests that need the
plugins (skipped alone, so never recorded). That is the price of CI's time.

The fingerprint is a sha256 over the relative path and contents of every file git lists
(`git ls-files -z --cached --others --exclude-standard`: tracked, plus untracked files that
are not ignored), sorted; a listed file that is gone is skipped, a symbolic link counts by
its target. Without git (or outside a work tree) there is none, and nothing is deselected.
It is taken once, when pytest configures, the same way in both sessions. Node ids are
relative to pytest's rootdir: both sessions run from the repository root, whose
pyproject.toml is the configuration, so the core's ids are the same in both.

Both variables are removed from the environment once read, so a pytest that a test starts in
a subprocess neither records nor deselects. (pytest-xdist would need them in its workers;
CI does not use it.)

Loaded by tests/conftest.py through `pytest_plugins`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

RECORD_ENV = "ASAPO_PIPELINES_RECORD_PASSED"
SKIP_ENV = "ASAPO_PIPELINES_SKIP_PASSED"
#: the core tests: the only ones this plugin deselects
CORE_TESTS = Path(__file__).resolve().parent
#: the record's layout; a record of another format counts as damaged
FORMAT = 1
PREFIX = "asapo-pipelines:"


class NoFingerprint(Exception):
    """The tree cannot be fingerprinted (no git, not a work tree, an unreadable file)."""


def tree_files(start: Path) -> dict[bytes, bytes]:
    """Each file git lists in the work tree that holds `start` (tracked, and untracked but not
    ignored), by its path relative to the top: its kind (f, or l for a symbolic link) and the
    sha256 of its contents (of a link's target)."""
    try:
        top = _git(start, "rev-parse", "--show-toplevel").rstrip(b"\n")
        listed = _git(
            Path(os.fsdecode(top)), "ls-files", "-z", "--cached", "--others", "--exclude-standard"
        )
    except FileNotFoundError as exc:
        raise NoFingerprint("git is not installed") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NoFingerprint(f"cannot run git: {exc}") from exc
    except subprocess.CalledProcessError as exc:
        first = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise NoFingerprint(f"git failed: {first[0] if first else exc}") from exc
    files = {}
    # a path may be listed more than once (an unmerged file); each counts once
    for relative in set(listed.split(b"\0")) - {b""}:
        path = os.path.join(top, relative)
        try:
            if os.path.islink(path):
                kind, content = b"l", os.fsencode(os.readlink(path))
            elif os.path.isfile(path):
                kind, content = b"f", Path(os.fsdecode(path)).read_bytes()
            else:  # deleted since git listed it (or a submodule's directory)
                continue
        except FileNotFoundError:
            continue
        except OSError as exc:
            why = exc.strerror or exc
            raise NoFingerprint(f"cannot read {os.fsdecode(relative)}: {why}") from exc
        files[relative] = kind + hashlib.sha256(content).digest()
    return files


def fingerprint_of(files: dict[bytes, bytes]) -> str:
    """sha256 over the sorted paths and contents of `files` (from `tree_files`)."""
    digest = hashlib.sha256()
    for relative in sorted(files):
        # a path holds no NUL byte and the digest has a fixed length: no two lists hash alike
        digest.update(relative + b"\0" + files[relative])
    return digest.hexdigest()


def tree_fingerprint(start: Path) -> str:
    """The fingerprint of the work tree that holds `start`."""
    return fingerprint_of(tree_files(start))


def tree_changes(before: dict[bytes, bytes], after: dict[bytes, bytes]) -> list[str]:
    """What differs between two `tree_files`, as "added x", "changed y", "removed z"."""
    return [
        f"{'removed' if path not in after else 'added' if path not in before else 'changed'} "
        + os.fsdecode(path)
        for path in sorted(before.keys() | after.keys())
        if before.get(path) != after.get(path)
    ]


def _git(where: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(where), *args], capture_output=True, check=True, timeout=60
    ).stdout


def _shown(path: Path, root: Path) -> str:
    """`path` as the line shows it: relative to pytest's rootdir when under it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def pytest_configure(config: pytest.Config) -> None:
    record = os.environ.pop(RECORD_ENV, "")
    skip = os.environ.pop(SKIP_ENV, "")
    if not record and not skip:
        return
    try:
        files: dict[bytes, bytes] | None = tree_files(config.rootpath)
        why = ""
    except NoFingerprint as exc:
        files, why = None, str(exc)
    fingerprint = None if files is None else fingerprint_of(files)
    if record:
        recorder = PassedRecorder(Path(record).absolute(), config.rootpath, files, why)
        config.pluginmanager.register(recorder, "asapo-pipelines-record-passed")
    if skip:
        skipper = PassedSkipper(Path(skip).absolute(), config.rootpath, fingerprint, why)
        config.pluginmanager.register(skipper, "asapo-pipelines-skip-passed")


class PassedRecorder:
    """Collects the node ids of the tests that pass; writes them at the session's end."""

    def __init__(self, path: Path, root: Path, files: dict[bytes, bytes] | None, why: str) -> None:
        self.path = path
        self.root = root
        #: the tree when pytest started, which the record's fingerprint is of
        self.files = files
        self.why = why
        self.passed: set[str] = set()
        #: tests with a failed phase (setup, call, teardown or a subtest): never recorded
        self.spoiled: set[str] = set()
        self.lines: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.spoiled.add(report.nodeid)
        elif report.when == "call" and report.passed and not hasattr(report, "wasxfail"):
            self.passed.add(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        passed = sorted(self.passed - self.spoiled)
        shown = _shown(self.path, self.root)
        fingerprint = None if self.files is None else fingerprint_of(self.files)
        data = {"format": FORMAT, "fingerprint": fingerprint, "passed": passed}
        try:
            _write_atomically(self.path, json.dumps(data, indent=1).encode())
        except OSError as exc:
            self.lines.append(f"{PREFIX} could not record the passed tests in {shown}: {exc}")
            return
        line = f"{PREFIX} recorded {len(passed)} passed tests in {shown}"
        if fingerprint is None:
            line += f" (no fingerprint of the tree, {self.why}: it will not be used)"
        self.lines.append(line)
        self._tell_changes()

    def _tell_changes(self) -> None:
        """Say which files the tests left changed in the tree: the `all` session would find
        another tree and run every core test (a test should write under tmp_path instead)."""
        if self.files is None:
            return
        try:
            changes = tree_changes(self.files, tree_files(self.root))
        except NoFingerprint:
            return
        if changes:
            listed = ", ".join(changes[:5]) + (
                f" and {len(changes) - 5} more" if changes[5:] else ""
            )
            self.lines.append(
                f"{PREFIX} the tests changed the tree while they ran ({listed}):"
                " a later session finds another tree and runs every core test"
            )

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        for line in self.lines:
            terminalreporter.write_line(line)


def _write_atomically(path: Path, content: bytes) -> None:
    """Write `content` to a temporary file beside `path`, then rename it over `path`: a reader
    sees the old record or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class PassedSkipper:
    """Deselects the core tests that passed in the recorded session, when the tree is the same."""

    def __init__(self, path: Path, root: Path, fingerprint: str | None, why: str) -> None:
        self.path = path
        self.root = root
        self.passed: frozenset[str] | None = None
        shown = _shown(path, root)
        everything = f"{PREFIX} running every core test:"
        try:
            recorded = _read_record(path)
        except FileNotFoundError:
            self.line = f"{everything} no record of the tests session ({shown})"
            return
        except OSError as exc:
            self.line = f"{everything} cannot read the record {shown} ({exc.strerror or exc})"
            return
        except ValueError as exc:
            self.line = f"{everything} the record {shown} is damaged ({exc})"
            return
        if recorded[0] is None:
            self.line = f"{everything} the tests session had no fingerprint of the tree"
        elif fingerprint is None:
            self.line = f"{everything} no fingerprint of the tree ({why})"
        elif recorded[0] != fingerprint:
            self.line = f"{everything} the tree changed since the tests session ({shown})"
        else:
            self.passed = recorded[1]
            self.line = ""

    @pytest.hookimpl(trylast=True)  # after -k, -m and --deselect: count only what would run
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if self.passed is None:
            return
        keep: list[pytest.Item] = []
        drop: list[pytest.Item] = []
        for item in items:
            core = item.path.resolve().is_relative_to(CORE_TESTS)
            (drop if core and item.nodeid in self.passed else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
        self.line = (
            f"{PREFIX} deselected {len(drop)} core tests that passed in the tests session"
            f" ({_shown(self.path, self.root)}, same tree)"
        )

    def pytest_report_collectionfinish(self) -> list[str]:
        return [self.line] if self.line else []


def _read_record(path: Path) -> tuple[str | None, frozenset[str]]:
    """The fingerprint and passed node ids of a record; ValueError says how it is damaged."""
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # JSON's syntax, bytes that are no text, nesting
        raise ValueError("not JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not a record of format {FORMAT}")
    fingerprint, passed = data.get("fingerprint"), data.get("passed")
    if not (fingerprint is None or isinstance(fingerprint, str)):
        raise ValueError("its fingerprint is not text")
    if not isinstance(passed, list) or not all(isinstance(n, str) for n in passed):
        raise ValueError("its passed tests are not a list of node ids")
    return fingerprint, frozenset(passed)
