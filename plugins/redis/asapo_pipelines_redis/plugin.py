"""Registration of the `redis` transport (the module the `asapo_pipelines` entry point names).

Light on purpose: pydantic and the core's descriptor types only, never the `redis` client. Its
presence is checked from its installed metadata instead (a few file lookups): a missing,
shadowed or too old `redis` package makes this plugin broken in `pipeline plugins`, with the
reason, while the rest of the catalog lists, instead of every pipeline on it failing later in a
worker.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import RegisterTransport, ReportFinding, TransportDescriptor, hookimpl
from asapo_pipelines_redis.config import RedisConfig

#: the client versions this plugin is tested with (pyproject pins the same)
CLIENT_MAJOR, CLIENT_MIN_MINOR = 8, 1


def check_client() -> str:
    """The installed `redis` client's version; ImportError in one sentence when it is missing,
    too old or too new, or when another `redis` module shadows it on the import path."""
    wanted = f"redis>={CLIENT_MAJOR}.{CLIENT_MIN_MINOR},<{CLIENT_MAJOR + 1}"
    try:
        dist = importlib.metadata.distribution("redis")
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(
            f"the redis transport needs the Python package redis ({wanted}); it is not "
            f"installed: pip install '{wanted}'"
        ) from None
    version = dist.version
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        major, minor = -1, -1
    if major != CLIENT_MAJOR or minor < CLIENT_MIN_MINOR:
        raise ImportError(
            f"the redis transport needs {wanted}, found redis {version}: pip install '{wanted}'"
        )
    spec = importlib.util.find_spec("redis")
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    expected = Path(str(dist.locate_file("redis/__init__.py")))
    if origin is None or not origin.is_file() or not expected.is_file():
        raise ImportError(
            f"redis {version} is installed but its files are missing (a broken "
            f"installation): pip install --force-reinstall '{wanted}'"
        )
    if origin.resolve() != expected.resolve():
        raise ImportError(
            f"the module redis is found at {origin.parent}, not the installed redis {version} "
            f"at {expected.parent}: another file or directory named redis shadows it"
        )
    return version


check_client()

REDIS = TransportDescriptor(
    name="redis",
    summary="Redis Streams on one redis-server: a pipeline's streams across a cluster's nodes.",
    description=(
        "Each stream is a Redis stream under a key prefix and the data source's name (the "
        "pipeline's namespace); consumer groups are Redis consumer groups, acknowledgement is "
        "XACK and messages of a crashed consumer come back after the lease through XAUTOCLAIM. "
        "Payloads up to inline_max bytes travel inside Redis, larger ones as files in "
        "payload_dir, a directory every node mounts."
    ),
    config=RedisConfig,
    runtime="asapo_pipelines_redis.transport:open_transport",
)


@hookimpl
def register_transports(register: RegisterTransport) -> None:
    register(REDIS)


@hookimpl
def check_pipeline(pipeline: Any, catalog: Any, report: ReportFinding) -> None:
    """`pipeline validate` (and every command loading the file): the files the section names.
    A password in `password_env` needs no check here: every executor gives its workers that
    variable (Nomad renders it from the job's Nomad variable)."""
    from asapo_pipelines_redis.checks import check_files

    check_files(pipeline, report)


@hookimpl
def check_online(pipeline: Any, catalog: Any, report: ReportFinding) -> None:
    """`pipeline validate --online`, `deploy` and `run`: the server and its password."""
    from asapo_pipelines_redis.checks import check_server

    check_server(pipeline, report)
