"""What a Nomad client gives a task before it starts: NOMAD_* variables, `${...}` interpolation
of Env, Config and destinations, rendered templates and fetched artifacts.

Templates are rendered without consul-template: literal text, `env "NAME"` actions, and the
compiler's secrets template (`NAME=<nomadVar path .key>` lines), whose values come from the
caller's environment when run locally. Anything else needs Nomad and is refused in one sentence.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from asapo_pipelines.local.errors import LocalRunError
from asapo_pipelines.local.job import Artifact, JobSpec, TaskSpec, Template
from asapo_pipelines.local.layout import AllocDirs

_INTERP = re.compile(r"\$\{([^{}]+)\}")


def nomad_env(
    job: JobSpec, task: TaskSpec, index: int, alloc_id: str, dirs: AllocDirs
) -> dict[str, str]:
    """The runtime variables Nomad documents for a task ("Runtime Environment")."""
    group = next(g for g in job.groups if g.name == task.group)
    dc = next((d for d in job.datacenters if "*" not in d), "dc1")
    env = {
        "NOMAD_ALLOC_DIR": str(dirs.shared),
        "NOMAD_TASK_DIR": str(dirs.local(task.name)),
        "NOMAD_SECRETS_DIR": str(dirs.secrets(task.name)),
        "NOMAD_ALLOC_ID": alloc_id,
        "NOMAD_SHORT_ALLOC_ID": alloc_id[:8],
        "NOMAD_ALLOC_NAME": f"{job.name}.{task.group}[{index}]",
        "NOMAD_ALLOC_INDEX": str(index),
        "NOMAD_GROUP_NAME": task.group,
        "NOMAD_TASK_NAME": task.name,
        "NOMAD_JOB_NAME": job.name,
        "NOMAD_JOB_ID": job.id,
        "NOMAD_JOB_PARENT_ID": "",
        "NOMAD_DC": dc,
        "NOMAD_REGION": job.region,
        "NOMAD_NAMESPACE": job.namespace,
        "NOMAD_CPU_LIMIT": str(task.cpu),
        "NOMAD_MEMORY_LIMIT": str(task.memory_mb),
    }
    # NOMAD_META_<key>: job meta, overridden by group meta, then task meta; Nomad sets the key
    # as written and upper-cased.
    for key, value in {**job.meta, **group.meta, **task.meta}.items():
        env[f"NOMAD_META_{key}"] = value
        env[f"NOMAD_META_{key.upper()}"] = value
    return env


def node_values(job: JobSpec, task: TaskSpec, runtime: Mapping[str, str]) -> dict[str, str]:
    """Names usable inside `${...}`: runtime variables, `meta.*`, `env.*` and this node."""
    group = next(g for g in job.groups if g.name == task.group)
    host = socket.gethostname()
    values = {
        **runtime,
        "node.unique.name": host,
        "attr.unique.hostname": host,
        "node.datacenter": runtime.get("NOMAD_DC", "dc1"),
        "node.region": job.region,
    }
    for key, value in {**job.meta, **group.meta, **task.meta}.items():
        values[f"meta.{key}"] = value
    return values


def interpolate(text: str, values: Mapping[str, str], environ: Mapping[str, str]) -> str:
    """Nomad's `${...}` interpolation; unknown names are left as written, as Nomad does."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name in values:
            return values[name]
        if name.startswith("env.") and name[4:] in environ:
            return environ[name[4:]]
        return match.group(0)

    return _INTERP.sub(sub, text)


def inside(root: Path, relative: str, what: str) -> Path:
    """`relative` resolved under `root`, refusing paths that escape it (as Nomad does)."""
    target = (root / relative).resolve()
    base = root.resolve()
    if target != base and base not in target.parents:
        raise LocalRunError(f"{what} {relative!r} points outside the allocation directory")
    return target


def _render(template: Template, environ: Mapping[str, str], where: str) -> str:
    left, right = re.escape(template.left), re.escape(template.right)
    secret_line = re.compile(
        rf'^(?P<name>[A-Za-z_][A-Za-z0-9_]*)={left}\s*with\s+nomadVar\s+"(?P<path>[^"]+)"\s*'
        rf"{right}{left}\s*\.(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*{right}{left}\s*end\s*{right}$"
    )
    action = re.compile(rf"{left}(.*?){right}", re.S)
    env_action = re.compile(r'^-?\s*env\s+"([^"]+)"\s*-?$')
    out = []
    for line in template.content.splitlines(keepends=True):
        body = line.rstrip("\n")
        match = secret_line.match(body)
        if match:
            # Run locally, a Nomad variable is read from the caller's environment.
            name = match["name"]
            if name not in environ:
                raise LocalRunError(
                    f"{where} reads {name} from the Nomad variable {match['path']} "
                    f"(key {match['key']}); set {name} in the environment to run it locally"
                )
            out.append(f"{name}={environ[name]}" + line[len(body) :])
            continue

        def sub(m: re.Match[str]) -> str:
            env_match = env_action.match(m.group(1).strip())
            if env_match is None:
                raise LocalRunError(
                    f"{where}: template {template.dest} uses {m.group(0)[:60]!r}, which only "
                    "Nomad's consul-template can render"
                )
            return environ.get(env_match.group(1), "")

        out.append(action.sub(sub, line))
    return "".join(out)


def _parse_env_file(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def render_templates(
    task: TaskSpec,
    dirs: AllocDirs,
    values: Mapping[str, str],
    environ: Mapping[str, str],
) -> dict[str, str]:
    """Write the task's templates; returns the variables of `Envvars` templates (secrets)."""
    extra: dict[str, str] = {}
    where = f"task {task.name} of group {task.group}"
    for template in task.templates:
        text = _render(template, {**environ, **values}, where)
        dest = inside(
            dirs.task(task.name).parent,
            str(Path(task.name) / interpolate(template.dest, values, environ)),
            f"{where}: template destination",
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        # Created with its final permissions, so a secret is never readable by others.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, int(template.perms, 8))
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, int(template.perms, 8))
        os.replace(tmp, dest)
        if template.envvars:
            extra.update(_parse_env_file(text))
    return extra


def fetch_artifacts(
    task: TaskSpec, dirs: AllocDirs, values: Mapping[str, str], environ: Mapping[str, str]
) -> None:
    """Local paths, file:// and http(s) URLs, checked against `GetterOptions.checksum`."""
    where = f"task {task.name} of group {task.group}"
    for artifact in task.artifacts:
        _fetch(artifact, dirs, values, environ, where)


def _fetch(
    artifact: Artifact,
    dirs: AllocDirs,
    values: Mapping[str, str],
    environ: Mapping[str, str],
    where: str,
) -> None:
    source = interpolate(artifact.source, values, environ)
    dest_rel = interpolate(artifact.dest, values, environ)
    task_dir = Path(values["NOMAD_TASK_DIR"]).parent
    dest = inside(task_dir.parent, str(task_dir.name / Path(dest_rel)), f"{where}: artifact")
    parsed = urllib.parse.urlparse(source)
    name = Path(parsed.path).name or "artifact"
    if artifact.mode != "file" and (dest_rel.endswith("/") or dest.is_dir()):
        dest = dest / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        if parsed.scheme in ("http", "https"):
            with urllib.request.urlopen(source, timeout=60) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
        else:
            path = parsed.path if parsed.scheme == "file" else source
            shutil.copyfile(path, tmp)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LocalRunError(f"{where}: cannot fetch artifact {source}: {exc}") from None
    if artifact.checksum:
        algorithm, _, expected = artifact.checksum.partition(":")
        digest = hashlib.new(algorithm or "sha256", tmp.read_bytes()).hexdigest()
        if digest.lower() != expected.lower():
            tmp.unlink(missing_ok=True)
            raise LocalRunError(
                f"{where}: artifact {source} has {algorithm} {digest}, not {expected}"
            )
    os.replace(tmp, dest)


def resolve_command(command: str, env: Mapping[str, str], cwd: Path, where: str) -> str:
    """Like Nomad's raw_exec: a bare name is looked up on the task's PATH, a relative path is
    taken from the task directory."""
    if "/" in command:
        path = command if os.path.isabs(command) else str(cwd / command)
        if not os.access(path, os.X_OK):
            raise LocalRunError(f"{where}: command {command} is not an executable file")
        return path
    found = shutil.which(command, path=env.get("PATH", os.defpath))
    if found is None:
        raise LocalRunError(f"{where}: command {command} is not found on PATH")
    return found
