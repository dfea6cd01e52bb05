"""Each unit's configuration and its fingerprint.

A configuration is what decides a unit's outputs: the unit, the distribution and version that
provide it, the code of the package that holds its runtime (`code_digest`), its params as
resolved by its own params model (defaults filled in), and the configurations of the units
upstream of it (by fingerprint). So changing a parameter of `normalize` changes the
fingerprints of `normalize`, `merge` and the agent, and not of `scans`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import Pipeline

FINGERPRINT_CHARS = 16


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint_of(config: dict[str, Any]) -> str:
    body = {k: v for k, v in config.items() if k != "fingerprint"}
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
            h.update(hashlib.sha256(Path(file).read_bytes()).digest())
    except OSError:
        return None
    return h.hexdigest()[:FINGERPRINT_CHARS]


def configurations(pipeline: Pipeline, catalog: Catalog) -> dict[str, dict[str, Any]]:
    """instance -> {unit, instance, distribution, version, params, upstream, fingerprint}."""
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
        code = code_digest(descriptor.runtime)
        if code is not None:  # a unit made in a test's own module has no package to read
            result["code"] = code
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


def _code_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The words for a unit whose package's code changed under the same version."""
    where = f"{new.get('distribution') or 'its package'} {new.get('version') or ''}".strip()
    if "code" not in old:
        # recorded before code was part of a configuration: what changed is not known
        return f"the code of {where} is now part of its configuration"
    return f"the code of {where} changed"


def own_changes(what: list[str]) -> list[str]:
    """Of a unit's changes (`diff_configurations`), those of its own configuration."""
    return [w for w in what if w != UPSTREAM_CHANGED]


def own_configuration(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """A unit's configuration without what its upstream contributes (and the fingerprint that
    folds it in): what decides how the unit itself treats a message."""
    if config is None:
        return None
    return {k: v for k, v in config.items() if k not in ("upstream", "fingerprint")}


def diff_configurations(
    old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
) -> dict[str, list[str]]:
    """instance -> what changed, in words (params first; then version or upstream)."""
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
        elif a.get("code") != b.get("code"):
            what.append(_code_change(a, b))
        if not what:
            what.append(UPSTREAM_CHANGED)
        changed[instance] = what
    return changed
