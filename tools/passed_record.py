"""Run each test once per CI run: the `all` session skips those that passed in an earlier one.

CI (`nox`, see noxfile.py) runs the core tests in the `tests` session (the core with its asapo
and viewer extras) and each plugin's tests in its `plugin-<name>` session (the plugin with only
the core and the sibling plugins its tests name). The `all` session installs everything
together and would run all of those tests a second time: about 30 of the 90 minutes CI may take
on its 2-core machine. This pytest plugin removes the repetition. The noxfile loads it with
``-p passed_record`` (this directory on PYTHONPATH); it does nothing unless one of two
environment variables is set:

``ASAPO_PIPELINES_RECORD_PASSED=<file>`` (the `tests` and `plugin-<name>` sessions)
    At the end of the session, write into <file> the ids of the tests that passed (call phase
    passed; setup and teardown did not fail; no subtest failed; skipped, xfailed, xpassed,
    failed and errored tests are left out), with the fingerprint of the source tree taken when
    pytest started. Only the tests that ran are recorded. The file is written atomically (a
    temporary file beside it, then renamed). If the tests left the tree changed (a file written
    into the repository instead of tmp_path), a line names the files: the `all` session would
    find another tree and run those tests again.

``ASAPO_PIPELINES_SKIP_PASSED=<file>[:<file>...]`` (the `all` session; os.pathsep between)
    For each record whose fingerprint equals the current tree's, deselect the tests it lists as
    passed, through `pytest_deselected`, so the summary says "N deselected" and one line says
    how many came from which record. Everything else runs: the tests that were skipped in their
    own session (a core test that needs the XAS or NeXus plugin, ...), those that failed, and
    those of a session that left no usable record. When a record is missing, unreadable or
    damaged, or the tree changed, its tests run and one line says why.

A test's id in a record is pytest's node id taken relative to the top of the git work tree,
not to pytest's rootdir: a plugin's session runs from plugins/<name> with that plugin's
configuration (ids like ``tests/test_x.py::t``), the `all` session from the repository root
(``plugins/<name>/tests/test_x.py::t``); both record and compare ``plugins/<name>/tests/...``.

What is given up: a test that passed with its own package alone (or the core with its extras)
is not run again with every plugin installed; a plugin that broke another's tests just by being
installed would go unnoticed there. The catalog with every plugin installed is still checked by
`pipeline plugins --strict` (the `all` session), by the `schemas` and `docs` sessions and by the
tests that need the other plugins (skipped alone, so never recorded). That is the price of
CI's time.

The fingerprint is a sha256 over the relative path and contents of every file git lists
(`git ls-files -z --cached --others --exclude-standard`: tracked, plus untracked files that
are not ignored), sorted; a listed file that is gone is skipped, a symbolic link counts by
its target. Without git (or outside a work tree) there is none, and nothing is deselected.
It is taken once, when pytest configures, the same way in every session.

Both variables are removed from the environment once read, so a pytest that a test starts in
a subprocess neither records nor deselects. With pytest-xdist (``-n N``, as the noxfile runs
the longer sessions) the controller records: the workers' reports reach it. The workers
collect, so they deselect: the controller leaves ASAPO_PIPELINES_SKIP_PASSED in the
environment the workers start with, each worker removes it, and the controller shows the
lines of the first worker that ends (the workers collect the same tests).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

RECORD_ENV = "ASAPO_PIPELINES_RECORD_PASSED"
SKIP_ENV = "ASAPO_PIPELINES_SKIP_PASSED"
#: the record's layout; a record of another format counts as damaged. Format 1 held node ids
#: relative to pytest's rootdir; format 2 holds them relative to the work tree's top.
FORMAT = 2
PREFIX = "asapo-pipelines:"


class NoFingerprint(Exception):
    """The tree cannot be fingerprinted (no git, not a work tree, an unreadable file)."""


def work_tree_top(start: Path) -> Path:
    """The top of the git work tree that holds `start`."""
    try:
        top = _git(start, "rev-parse", "--show-toplevel").rstrip(b"\n")
    except FileNotFoundError as exc:
        raise NoFingerprint("git is not installed") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NoFingerprint(f"cannot run git: {exc}") from exc
    except subprocess.CalledProcessError as exc:
        first = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise NoFingerprint(f"git failed: {first[0] if first else exc}") from exc
    return Path(os.fsdecode(top))


def tree_files(start: Path) -> dict[bytes, bytes]:
    """Each file git lists in the work tree that holds `start` (`listed_files`)."""
    return listed_files(work_tree_top(start))


def listed_files(top: Path) -> dict[bytes, bytes]:
    """Each file git lists in the work tree whose top is `top` (tracked, and untracked but not
    ignored), by its path relative to the top: its kind (f, or l for a symbolic link) and the
    sha256 of its contents (of a link's target)."""
    try:
        listed = _git(top, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    except (OSError, subprocess.SubprocessError) as exc:
        raise NoFingerprint(f"cannot list the tree with git: {exc}") from exc
    files = {}
    # a path may be listed more than once (an unmerged file); each counts once
    for relative in set(listed.split(b"\0")) - {b""}:
        path = os.path.join(os.fsencode(top), relative)
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


def tree_id(nodeid: str, root: Path, top: Path) -> str | None:
    """A node id relative to pytest's rootdir `root`, made relative to the work tree's `top`
    (None for a test outside it). The file is the part before the first "::"."""
    file, sep, rest = nodeid.partition("::")
    relative = _relative_file(root / file, top)
    return None if relative is None else relative + sep + rest


@functools.lru_cache(maxsize=4096)  # one look-up per test file, not per test
def _relative_file(path: Path, top: Path) -> str | None:
    try:
        return path.resolve().relative_to(top.resolve()).as_posix()
    except ValueError:
        return None


def _git(where: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(where), *args], capture_output=True, check=True, timeout=60
    ).stdout


def _shown(path: Path, root: Path, top: Path | None) -> str:
    """`path` as a line shows it: relative to pytest's rootdir when under it, else to the work
    tree's top (a plugin's session runs below the records' folder)."""
    for base in (root, top):
        if base is not None:
            with contextlib.suppress(ValueError):
                return str(path.relative_to(base))
    return str(path)


#: a worker's lines (`PassedSkipper.lines`), sent to the controller in xdist's workeroutput
WORKER_LINES = "asapo-pipelines-skip-passed-lines"


def _xdist_controller(config: pytest.Config) -> bool:
    """True in pytest-xdist's controller (``-n N``, N > 0): it runs no test and collects
    none itself; the workers it starts do both."""
    distributed = getattr(config.option, "dist", "no") != "no"
    return distributed and bool(getattr(config.option, "tx", None))


def pytest_configure(config: pytest.Config) -> None:
    record = os.environ.pop(RECORD_ENV, "")
    if _xdist_controller(config):
        # the workers collect (and so deselect): they read the variable when they start
        if os.environ.get(SKIP_ENV):
            config.pluginmanager.register(WorkerLines(), "asapo-pipelines-skip-passed-lines")
        skip = ""
    else:
        skip = os.environ.pop(SKIP_ENV, "")
    if not record and not skip:
        return
    try:
        top: Path | None = work_tree_top(config.rootpath)
        files: dict[bytes, bytes] | None = listed_files(top)
        why = ""
    except NoFingerprint as exc:
        top, files, why = None, None, str(exc)
    if record:
        recorder = PassedRecorder(Path(record).absolute(), config.rootpath, top, files, why)
        config.pluginmanager.register(recorder, "asapo-pipelines-record-passed")
    if skip:
        fingerprint = None if files is None else fingerprint_of(files)
        records = [Path(p).absolute() for p in skip.split(os.pathsep) if p]
        skipper = PassedSkipper(records, config.rootpath, top, fingerprint, why)
        config.pluginmanager.register(skipper, "asapo-pipelines-skip-passed")


class PassedRecorder:
    """Collects the ids of the tests that pass; writes them at the session's end."""

    def __init__(
        self,
        path: Path,
        root: Path,
        top: Path | None,
        files: dict[bytes, bytes] | None,
        why: str,
    ) -> None:
        self.path = path
        self.root = root
        self.top = top
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
        shown = _shown(self.path, self.root, self.top)
        fingerprint = None if self.files is None else fingerprint_of(self.files)
        passed = sorted(
            found
            for nodeid in self.passed - self.spoiled
            if self.top is not None and (found := tree_id(nodeid, self.root, self.top))
        )
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
        another tree and run these tests again (a test should write under tmp_path instead)."""
        if self.files is None or self.top is None:
            return
        try:
            changes = tree_changes(self.files, listed_files(self.top))
        except NoFingerprint:
            return
        if changes:
            listed = ", ".join(changes[:5]) + (
                f" and {len(changes) - 5} more" if changes[5:] else ""
            )
            self.lines.append(
                f"{PREFIX} the tests changed the tree while they ran ({listed}):"
                " a later session finds another tree and runs these tests again"
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
    """Deselects the tests that passed in the recorded sessions, when the tree is the same."""

    def __init__(
        self,
        paths: list[Path],
        root: Path,
        top: Path | None,
        fingerprint: str | None,
        why: str,
    ) -> None:
        self.root = root
        self.top = top
        #: per usable record: its path as shown, and the ids it lists as passed
        self.usable: dict[str, frozenset[str]] = {}
        #: one line per record that is not used, saying why its tests run again
        self.lines: list[str] = []
        for path in paths:
            shown = _shown(path, root, top)
            reason = self._load(path, shown, fingerprint, why)
            if reason:
                self.lines.append(f"{PREFIX} running the tests of {shown} again: {reason}")

    def _load(self, path: Path, shown: str, fingerprint: str | None, why: str) -> str:
        """Keep the record at `path` if usable; else say why not."""
        try:
            recorded, passed = _read_record(path)
        except FileNotFoundError:
            return "no such record (its session did not run or did not finish)"
        except OSError as exc:
            return f"cannot read it ({exc.strerror or exc})"
        except ValueError as exc:
            return f"the record is damaged ({exc})"
        if recorded is None:
            return "its session had no fingerprint of the tree"
        if fingerprint is None or self.top is None:
            return f"no fingerprint of the tree ({why})"
        if recorded != fingerprint:
            return "the tree changed since its session"
        self.usable[shown] = passed
        return ""

    @pytest.hookimpl(trylast=True)  # after -k, -m and --deselect: count only what would run
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if not self.usable or self.top is None:
            return
        #: each passed test id, by the record (as shown) that lists it
        record_of = {test: shown for shown, ids in self.usable.items() for test in ids}
        dropped = dict.fromkeys(self.usable, 0)
        keep: list[pytest.Item] = []
        drop: list[pytest.Item] = []
        for item in items:
            by = record_of.get(tree_id(item.nodeid, self.root, self.top) or "")
            if by is None:
                keep.append(item)
            else:
                dropped[by] += 1
                drop.append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
        counts = ", ".join(f"{count} of {shown}" for shown, count in dropped.items())
        self.lines.append(
            f"{PREFIX} deselected {len(drop)} tests that passed in an earlier session on the same"
            f" tree ({counts})"
        )

    def pytest_report_collectionfinish(self) -> list[str]:
        return self.lines

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: its controller shows the lines
            workeroutput[WORKER_LINES] = list(self.lines)


class WorkerLines:
    """In xdist's controller: shows the lines of the first worker that ends (every worker
    collects the same tests, so their lines are the same)."""

    def __init__(self) -> None:
        self.lines: list[str] | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        lines = getattr(node, "workeroutput", {}).get(WORKER_LINES)
        if self.lines is None and lines is not None:
            self.lines = list(lines)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        for line in self.lines or []:
            terminalreporter.write_line(line)


def _read_record(path: Path) -> tuple[str | None, frozenset[str]]:
    """The fingerprint and passed test ids of a record; ValueError says how it is damaged."""
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
        raise ValueError("its passed tests are not a list of test ids")
    return fingerprint, frozenset(passed)
