"""Each unit's configuration and its fingerprint.

A configuration is what decides a unit's outputs: the unit, the distribution and version that
provide it, the code of the package that holds its runtime (`code_digest`) and its other files
(`data`), the libraries its distribution requires as installed (`requires`), its params as
resolved by its own params model (defaults filled in), and the configurations of the units
upstream of it (by fingerprint). So changing a parameter of `normalize` changes the
fingerprints of `normalize`, `merge` and the agent, and not of `scans`.

A configuration also holds `files` (each file of the package -> the start of its hash), left
out of the fingerprint since `code` and `data` hold them already: it is there so that a
change can say which file changed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from asapo_pipelines.runs.code import file_hash, package_record, requirements

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import Pipeline

FINGERPRINT_CHARS = 16

#: what a configuration holds that its fingerprint leaves out: derived from what it holds,
#: there to say what changed (and absent from configurations recorded before it existed, which
#: must keep their fingerprints)
NOT_FINGERPRINTED = ("fingerprint", "files")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint_of(config: dict[str, Any]) -> str:
    body = {k: v for k, v in config.items() if k not in NOT_FINGERPRINTED}
    return hashlib.sha256(_canonical(body).encode()).hexdigest()[:FINGERPRINT_CHARS]


@functools.cache
def code_digest(runtime: str) -> str | None:
    """A hash of the Python files of the package that holds a unit's runtime (`runtime`, an
    import string), found without importing it; None when it cannot be read (a unit made in a
    test's own module).

    The version alone misses the most common change of all: a unit's author edits the code of
    an editable install (`pip install -e`, as `pipeline new-unit` suggests) or reinstalls an
    unreleased package under the same version, and runs the pipeline again. Under the version
    alone the re-run said "(unchanged)" and kept every earlier result. Paths are taken relative
    to the package, so that the same code installed elsewhere (a cluster node's environment)
    gives the same hash; the whole top-level package, because a unit's helpers live beside it.
    Cached per process: a pipeline's units share their package."""
    from asapo_pipelines.listing import module_files

    files = module_files(runtime)
    if not files:
        return None
    base = os.path.commonpath([os.path.dirname(f) for f in files])
    h = hashlib.sha256()
    try:
        for file in files:
            h.update(os.path.relpath(file, base).encode() + b"\0")
            h.update(bytes.fromhex(file_hash(file)))
    except OSError:
        return None
    return h.hexdigest()[:FINGERPRINT_CHARS]


@functools.cache
def _package(runtime: str) -> dict[str, Any]:
    """`code`, `data` and `files` of the package holding `runtime`; empty for a unit made in a
    test's own module, which has no package to read."""
    from asapo_pipelines.listing import module_files

    code = code_digest(runtime)
    if code is None:
        return {}
    return {"code": code, **package_record(runtime, tuple(module_files(runtime) or ()))}


def configurations(pipeline: Pipeline, catalog: Catalog) -> dict[str, dict[str, Any]]:
    """instance -> {unit, instance, distribution, version, code, data, requires, files, params,
    upstream, fingerprint}."""
    producers = {s: names[0][0] for s, names in pipeline.producers().items()}
    done: dict[str, dict[str, Any]] = {}

    def build(instance: str, path: tuple[str, ...]) -> dict[str, Any]:
        if instance in done:
            return done[instance]
        config = pipeline.units[instance]
        descriptor = pipeline.descriptor(instance, catalog)
        upstream: dict[str, str] = {}
        for port, stream in sorted(config.inputs.items()):
            maker = producers.get(stream)
            if maker is None or maker in path:  # fed from outside, or a cycle back
                upstream[port] = f"external:{stream}"
            else:
                upstream[port] = build(maker, (*path, instance))["fingerprint"]
        params = pipeline.params_for(instance, catalog).model_dump(mode="json")
        result = {
            "unit": descriptor.name,
            "instance": instance,
            "distribution": descriptor.distribution,
            "version": descriptor.version,
            "params": params,
            "upstream": upstream,
        }
        result.update(_package(descriptor.runtime))
        requires = requirements(descriptor.distribution)
        if requires:  # left out when none, so that a record made before `requires` compares
            result["requires"] = requires
        result["fingerprint"] = fingerprint_of(result)
        done[instance] = result
        return result

    for instance in pipeline.units:
        build(instance, ())
    return {name: done[name] for name in pipeline.units}


def _param_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted({*old, *new}):
            out += _param_changes(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if old != new:
        return [f"{prefix.rstrip('.')} {_show(old)} -> {_show(new)}"]
    return []


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


#: what `diff_configurations` says of a unit whose own configuration is unchanged while one of
#: the units feeding it changed
UPSTREAM_CHANGED = "upstream configuration changed"


def _where(config: dict[str, Any]) -> str:
    return f"{config.get('distribution') or 'its package'} {config.get('version') or ''}".strip()


def _files(names: list[str]) -> str:
    """` (roi_sum.py)`: which files changed, the first few of many."""
    if not names:
        return ""
    shown = names[:3] + ([f"{len(names) - 3} more"] if len(names) > 3 else [])
    return f" ({', '.join(shown)})"


def _package_change(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The words for a unit whose package's files changed under the same version: the Python
    files (`code`) and the others (`data`), naming the files when the record before has each
    file's hash (`files`)."""
    where = _where(new)
    if "files" not in old:
        # recorded before each file's hash was: which file changed is not known, and `data`
        # did not exist (`code` before the code was part of a configuration)
        said = []
        if "code" not in old:
            said.append(f"the code of {where} is now part of its configuration")
        elif old.get("code") != new.get("code"):
            said.append(f"the code of {where} changed")
        if old.get("data") != new.get("data"):
            said.append(f"the package data of {where} is now part of its configuration")
        return said
    before, now = old.get("files") or {}, new.get("files") or {}
    differ = sorted(n for n in {*before, *now} if before.get(n) != now.get(n))
    said = []
    if old.get("code") != new.get("code"):
        said.append(
            f"the code of {where} changed{_files([n for n in differ if n.endswith('.py')])}"
        )
    if old.get("data") != new.get("data"):
        data = [n for n in differ if not n.endswith(".py")]
        said.append(f"the package data of {where} changed{_files(data)}")
    return said


def _library_change(name: str, a: dict[str, str] | None, b: dict[str, str] | None) -> str:
    if a is None or b is None:
        return f"now requires {name} {b['version']}" if b else f"no longer requires {name}"
    if a.get("version") != b.get("version"):
        return f"{name} {a.get('version')} -> {b.get('version')}"
    if "code" not in a:
        return f"{name} {b.get('version')} is now installed from a directory"
    if "code" not in b:
        return f"{name} {b.get('version')} is no longer installed from a directory"
    return f"the code of {name} {b.get('version')} changed"


def _requirement_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The words for the libraries the unit's distribution requires, as installed."""
    before, now = old.get("requires"), new.get("requires") or {}
    if before is None and "files" not in old:
        # recorded before the libraries were part of a configuration: what they were then is
        # not known (a record since without `requires` had none)
        if not now:
            return []
        named = ", ".join(f"{n} {v['version']}" for n, v in now.items())
        return [f"the libraries it requires ({named}) are now part of its configuration"]
    before = before or {}
    return [
        _library_change(name, before.get(name), now.get(name))
        for name in sorted({*before, *now})
        if before.get(name) != now.get(name)
    ]


def own_changes(what: list[str]) -> list[str]:
    """Of a unit's changes (`diff_configurations`), those of its own configuration."""
    return [w for w in what if w != UPSTREAM_CHANGED]


def own_configuration(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """A unit's configuration without what its upstream contributes (and the fingerprint that
    folds it in): what decides how the unit itself treats a message."""
    if config is None:
        return None
    return {k: v for k, v in config.items() if k not in ("upstream", *NOT_FINGERPRINTED)}


#: what configurations recorded before each file's hash was (`files`) lack: such a record says
#: nothing of them, so their appearing alone is no change of the settings a unit worked under
LATER_FIELDS = ("data", "requires")


def own_configuration_changed(before: dict[str, Any] | None, now: dict[str, Any] | None) -> bool:
    """Whether the unit's own configuration `before` (the one it last worked under; None when
    it never worked) differs from `now`. A record from before `files` compares without the
    fields added since: a run recorded by an earlier version and resumed after the upgrade
    (itself said, "... are now part of its configuration") did not make its results under
    other settings, and `pipeline reprocess` would redo them for nothing."""
    a, b = own_configuration(before), own_configuration(now)
    if a is None:
        return False
    if b is not None and before is not None and "files" not in before:
        b = {k: v for k, v in b.items() if k not in LATER_FIELDS or k in a}
    return a != b


def diff_configurations(
    old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
) -> dict[str, list[str]]:
    """instance -> what changed, in words (params first; then the unit, its distribution's
    version or its package's files, its libraries; else upstream)."""
    changed: dict[str, list[str]] = {}
    for instance in sorted({*old, *new}):
        a, b = old.get(instance), new.get(instance)
        if a is None or b is None:
            changed[instance] = ["added" if a is None else "removed"]
            continue
        if a.get("fingerprint") == b.get("fingerprint"):
            continue
        what = _param_changes(a.get("params", {}), b.get("params", {}))
        if a.get("unit") != b.get("unit"):
            what.append(f"unit {a.get('unit')} -> {b.get('unit')}")
        if (a.get("distribution"), a.get("version")) != (b.get("distribution"), b.get("version")):
            what.append(f"{b.get('distribution')} {a.get('version')} -> {b.get('version')}")
        else:
            what += _package_change(a, b)
        what += _requirement_changes(a, b)
        if not what:
            what.append(UPSTREAM_CHANGED)
        changed[instance] = what
    return changed
