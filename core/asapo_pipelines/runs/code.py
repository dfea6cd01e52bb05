"""What of a unit's code goes into its configuration: the files of the package that holds its
runtime, and the installed versions (and, for a library installed from a directory, the code)
of the libraries its distribution requires.

Everything here is found without importing the unit or its libraries (a runtime may take
seconds to import) and is cached per process: a pipeline's units share their package and
their libraries. Paths are taken relative to the package, so that the same code installed
elsewhere (a cluster node's environment) gives the same hashes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from email.message import Message
from email.parser import HeaderParser
from importlib import metadata
from typing import Any

from asapo_pipelines import CORE_DISTRIBUTION
from asapo_pipelines.import_strings import module_spec

#: hex characters kept of each file's hash in a configuration's `files`: enough to tell
#: which file of a package changed, short enough for a run record that holds many units
FILE_DIGEST_CHARS = 8


def _debris(name: str, folder: bool) -> bool:
    """Whether a file or folder in a package is build or editor debris, not package content:
    bytecode (written by whichever interpreter imported it first), hidden files (.git,
    editor swap files), build metadata."""
    if name.startswith(".") or name.endswith("~"):
        return True
    if folder:
        return name == "__pycache__" or name.endswith((".egg-info", ".dist-info"))
    return name.endswith((".pyc", ".pyo"))


def _walk(folders: list[str]) -> list[str]:
    found: list[str] = []
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if not _debris(d, True)]
            found += [os.path.join(root, f) for f in files if not _debris(f, False)]
    return sorted(found)


def file_hash(path: str) -> str:
    """A file's SHA-256 (hex), read once per process for each version of the file: a package's
    Python files are hashed for its `code` (`fingerprint.code_digest`) and again for its
    `files`, and a pipeline's units share their package. Keyed by the file's size and
    modification time, so that an edit is hashed anew."""
    st = os.stat(path)
    return _hash_of(path, st.st_size, st.st_mtime_ns)


@functools.cache
def _hash_of(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _digest(hashes: dict[str, str]) -> str:
    """One hash of files by relative path: the same files elsewhere give the same hash."""
    h = hashlib.sha256()
    for rel in sorted(hashes):
        h.update(rel.encode() + b"\0")
        h.update(bytes.fromhex(hashes[rel]))
    return h.hexdigest()[:16]


def _package_folders(module: str) -> list[str] | None:
    """The folders of `module`'s top-level package, or None for a single-file module."""
    top = module_spec(module.partition(":")[0].split(".")[0])
    if top is None or not top.submodule_search_locations:
        return None
    return list(top.submodule_search_locations)


@functools.cache
def package_record(runtime: str, python_files: tuple[str, ...]) -> dict[str, Any]:
    """`data` (a hash of the package's files other than its Python modules: a calibration
    file, a mask read in `on_start`) and `files` (each file's path in the package -> the
    start of its hash, so that a change can name the file), for the package that holds
    `runtime`, whose Python files are `python_files`. Empty when the package cannot be read.

    `code`, the hash of the Python files, is made as before `data` existed so that a run
    recorded then compares equal when the code is the same."""
    folders = _package_folders(runtime)
    data = [f for f in _walk(folders) if not f.endswith(".py")] if folders else []
    every = [*python_files, *data]
    if not every:
        return {}
    base = os.path.commonpath([os.path.dirname(f) for f in every])
    try:
        hashes = {os.path.relpath(f, base).replace(os.sep, "/"): file_hash(f) for f in every}
    except OSError:
        return {}
    record: dict[str, Any] = {}
    others = {rel: h for rel, h in hashes.items() if not rel.endswith(".py")}
    if others:
        record["data"] = _digest(others)
    record["files"] = {rel: h[:FILE_DIGEST_CHARS] for rel, h in sorted(hashes.items())}
    return record


def _top_level_names(dist: metadata.Distribution) -> list[str]:
    """The import names a distribution installs: setuptools writes them to top_level.txt;
    otherwise its RECORD's top-level entries; otherwise its name as an import name (an
    editable install by another backend puts only a .pth file in RECORD)."""
    listed = (dist.read_text("top_level.txt") or "").split()
    if listed:
        return sorted(set(listed))
    names = set()
    for entry in dist.files or []:
        top = entry.parts[0] if entry.parts else ""
        if not top or top == ".." or _debris(top, True) or top.startswith("__editable__"):
            continue
        if len(entry.parts) == 1:
            if not top.endswith(".py"):
                continue  # a .pth, a shared library's loader: not an import name
            top = top[: -len(".py")]
        names.add(top)
    name = dist.metadata["Name"] or ""
    return sorted(names) or [name.replace("-", "_").replace(".", "_").lower()]


def _library_files(dist: metadata.Distribution) -> dict[str, str]:
    """rel path (with the import name) -> hash, for every file the distribution's import
    names hold, found where Python would import them from."""
    hashes: dict[str, str] = {}
    for name in _top_level_names(dist):
        spec = module_spec(name)
        if spec is None:
            continue
        if spec.submodule_search_locations:
            for folder in spec.submodule_search_locations:
                for f in _walk([folder]):
                    rel = os.path.relpath(f, os.path.dirname(folder)).replace(os.sep, "/")
                    hashes[rel] = file_hash(f)
        elif spec.origin and os.path.isfile(spec.origin):
            hashes[os.path.basename(spec.origin)] = file_hash(spec.origin)
    return hashes


def _from_directory(dist: metadata.Distribution) -> bool:
    """Whether the distribution was installed from a local directory, editable or not (PEP 610
    `dir_info`): its version then says nothing of its code."""
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return False
    return isinstance(direct, dict) and "dir_info" in direct


def _headers(dist: metadata.Distribution) -> Message:
    """The distribution's metadata headers, without its description: `dist.version` parses the
    whole file, and a library's long description (numpy's) made that most of the time taken."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    return HeaderParser().parsestr(text.split("\n\n", 1)[0] + "\n")


def _library(name: str) -> dict[str, str] | None:
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None  # not installed here: the unit cannot import it, nothing it could change
    found = {"version": str(_headers(dist)["Version"])}
    if _from_directory(dist):
        try:
            hashes = _library_files(dist)
        except OSError:
            hashes = {}
        if hashes:
            found["code"] = _digest(hashes)
    return found


@functools.cache
def requirements(distribution: str | None) -> dict[str, dict[str, str]]:
    """name -> {version, and code for one installed from a directory}: the libraries that
    `distribution` declares (Requires-Dist) as installed here, markers evaluated for this
    environment, extras left out (which extras were asked for at install is not recorded).

    Only the declared ones: the requirements of those requirements are not followed (a unit's
    distribution names the library its algorithm lives in to have it counted). The core is
    left out (`CORE_DISTRIBUTION`), and so are the core's own requirements for its units: they
    are the runner's libraries (its CLI, its Nomad client)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    # the core is the runner that calls the unit, and every unit requires it: counted, an
    # upgrade of the core would mark every unit of every run changed and train users to resume
    # past the warning; the core's own units are still told apart by their package's code
    if not distribution or canonicalize_name(distribution) == CORE_DISTRIBUTION:
        return {}
    try:
        declared = _headers(metadata.distribution(distribution)).get_all("Requires-Dist") or []
    except metadata.PackageNotFoundError:
        return {}
    found: dict[str, dict[str, str]] = {}
    for text in declared:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue  # pip would not have installed it either
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name == CORE_DISTRIBUTION or name in found:
            continue
        library = _library(req.name)
        if library is not None:
            found[name] = library
    return dict(sorted(found.items()))


def clear() -> None:
    """Forget what was read (a test that edits a package within one process)."""
    package_record.cache_clear()
    requirements.cache_clear()
