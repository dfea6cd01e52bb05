"""The `transport: {redis: {...}}` section of a pipeline file (pydantic only: imported when the
catalog lists, so it must stay light)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_PREFIX = "asapo-pipelines"
DEFAULT_INLINE_MAX = 1024 * 1024
#: Redis refuses a single value above 512 MB (proto-max-bulk-len); stay well under it
INLINE_LIMIT = 256 * 1024 * 1024


class RetentionConfig(BaseModel):
    """How much of each stream Redis keeps; older messages are trimmed (XTRIM) whether or not a
    consumer group has acknowledged them, as ASAP::O's retention does."""

    model_config = ConfigDict(extra="forbid")

    max_messages: Annotated[
        int | None, Field(ge=1, description="Keep at most this many messages per stream.")
    ] = None
    max_age_seconds: Annotated[
        float | None, Field(gt=0, description="Trim messages older than this many seconds.")
    ] = None


class RedisConfig(BaseModel):
    """Connection and storage settings of the Redis Streams transport."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[
        str,
        Field(
            description=(
                "redis://host:port/db, or rediss:// for TLS. No password in the URL: use "
                "password_file or password_env."
            )
        ),
    ] = "redis://127.0.0.1:6379/0"
    username: Annotated[str | None, Field(description="ACL user name (Redis 6+).")] = None
    password_file: Annotated[
        str | None, Field(description="File holding the password (relative: to the pipeline file).")
    ] = None
    password_env: Annotated[
        str | None, Field(description="Environment variable holding the password.")
    ] = None
    tls: Annotated[bool, Field(description="Use TLS (implied by a rediss:// URL).")] = False
    ca_file: Annotated[str | None, Field(description="CA bundle to verify the server with.")] = None
    cert_file: Annotated[str | None, Field(description="Client certificate (mutual TLS).")] = None
    key_file: Annotated[str | None, Field(description="Client certificate's key.")] = None
    key_prefix: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$",
            description="Prefix of every key this transport writes; one per facility or project.",
        ),
    ] = DEFAULT_PREFIX
    payload_dir: Annotated[
        str | None,
        Field(
            description=(
                "Directory shared by every node (NFS, GPFS, Lustre) for payloads above "
                "inline_max; without it such payloads are refused."
            )
        ),
    ] = None
    inline_max: Annotated[
        int,
        Field(
            ge=0,
            le=INLINE_LIMIT,
            description="Payloads up to this many bytes travel inside Redis.",
        ),
    ] = DEFAULT_INLINE_MAX
    fsync: Annotated[
        bool, Field(description="fsync each payload file before its message is written.")
    ] = False
    timeout: Annotated[
        float,
        Field(gt=0, le=300, description="Deadline in seconds of every call to Redis."),
    ] = 5.0
    retention: RetentionConfig | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise ValueError("url is not a valid redis:// URL") from None
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("url must start with redis://, rediss:// or unix://")
        if parts.password is not None:
            # the pipeline file is copied to every node and into run records: never a secret
            raise ValueError(
                "url must not hold a password (it would be copied with the pipeline file); "
                "use password_file or password_env"
            )
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("url names no host")
        del port
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> RedisConfig:
        if self.password_file and self.password_env:
            raise ValueError("give the password in password_file or password_env, not both")
        return self

    @property
    def use_tls(self) -> bool:
        return self.tls or self.url.startswith("rediss://")

    def open_options(self, base_dir: Path) -> dict[str, Any]:
        """The options workers get: relative paths made absolute against the pipeline file's
        folder, so that every node finds the same files."""
        options = self.model_dump(mode="json", exclude_none=True)
        for key in ("password_file", "ca_file", "cert_file", "key_file", "payload_dir"):
            if options.get(key):
                path = Path(options[key]).expanduser()
                options[key] = str(path if path.is_absolute() else (base_dir / path).absolute())
        return options
