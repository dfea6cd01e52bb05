"""What `pipeline validate` asks of a `transport: {redis: ...}` section beyond its config model:
offline, that the files it names exist where the workers read them (`check_pipeline`, P111);
with --online, and before `pipeline deploy` and `run` start anything, whether the Redis server
answers and takes the password (`check_online`: P502 could not ask, P501 refused). The file
check is asked by `validate` and `run` only: `status` or `stop` of a running deployment whose
password file was removed since still works. Found only
when the workers started, a wrong or missing password failed every one of them (exit 78) after
`deploy` had called the file valid and submitted their jobs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import ReportFinding

SECTION = ("transport", "redis")
#: the settings naming a file the transport reads when it opens
FILES = ("password_file", "ca_file", "cert_file", "key_file")


def _redis(pipeline: Any) -> tuple[Any, dict[str, Any]] | None:
    """The section's config and its options as workers get them, or None for another
    transport. Relative paths are read from the pipeline file's folder, or, in a worker
    started on a copy of the file, from the original's (`BASE_DIR_ENV`), as the worker does."""
    from asapo_pipelines.sdk.executors import BASE_DIR_ENV

    if pipeline.transport.kind != "redis":
        return None
    config = pipeline.transport.config
    base = os.environ.get(BASE_DIR_ENV)
    options = config.open_options(Path(base)) if base else pipeline.transport.options()
    return config, dict(options)


def check_files(pipeline: Any, report: ReportFinding) -> None:
    """Each file the section names that does not exist (a relative path is read from the
    pipeline file's folder, on every node)."""
    found = _redis(pipeline)
    if found is None:
        return
    config, options = found
    for key in FILES:
        given = getattr(config, key)
        if not given or Path(options[key]).is_file():
            continue
        where = "" if Path(given).expanduser().is_absolute() else f" ({options[key]})"
        report(
            (*SECTION, key),
            "P111",
            f"{key} {given} does not exist{where}; the transport reads it when it opens, on "
            "every node",
        )


def _missing_password(config: Any, options: dict[str, Any]) -> str | None:
    """Why the password the section names cannot be had here, or None."""
    if config.password_env and not os.environ.get(config.password_env):
        return f"the environment variable {config.password_env} (the Redis password) is not set"
    if config.password_file:
        try:
            Path(options["password_file"]).read_bytes()
        except OSError as exc:
            return f"cannot read the Redis password file {options['password_file']}: {exc.strerror}"
    return None


def check_server(pipeline: Any, report: ReportFinding) -> None:
    """Ask the Redis server, within the section's `timeout`: unreachable or slow is P502 at
    the url, a refused password P501 at the setting that gives it."""
    from asapo_pipelines.sdk.transports import CredentialsError, TransportError, Unavailable
    from asapo_pipelines_redis.transport import open_transport

    found = _redis(pipeline)
    if found is None:
        return
    config, options = found
    secret = next((k for k in ("password_file", "password_env") if getattr(config, k)), None)
    at = (*SECTION, secret) if secret else SECTION
    missing = _missing_password(config, options)
    if missing is not None:
        # not asked: the password is not here (`deploy` and `start` refuse, as the workers
        # would find it missing too)
        report(at, "P502", f"Redis was not asked: {missing}")
        return
    try:
        transport = open_transport(options)
    except CredentialsError as exc:
        report(at, "P501", exc.message)
    except Unavailable as exc:
        report((*SECTION, "url"), "P502", exc.message)
    except TransportError as exc:  # too old a server, a TLS file it cannot use
        report(SECTION, "P501", exc.message)
    else:
        transport.close()
