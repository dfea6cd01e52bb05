"""The `transport: {redis: {...}}` section of a pipeline file (pydantic only: imported when the
catalog lists, so it must stay light)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from asapo_pipelines.sdk.transports import CrossChecked, NotBoth

DEFAULT_PREFIX = "asapo-pipelines"
DEFAULT_INLINE_MAX = 1024 * 1024
#: Redis refuses a single value above 512 MB (proto-max-bulk-len); stay well under it
INLINE_LIMIT = 256 * 1024 * 1024

#: Every URL `url` takes, also written into the editor schema: redis:// or rediss:// with a
#: host, unix:// (a socket path), an optional user name but never a password, a port of 0 to
#: 65535, then a path, query or fragment. The validator's own checks name the likely mistake.
_USER = r"(?:[^\s:@/?#\[\]]+@)?"
_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[^\s:@/?#\[\]]+)"
_PORT = r"(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
URL_PATTERN = f"^(?:rediss?://{_USER}{_HOST}|unix://{_USER}{_HOST}?){_PORT}(?:[/?#]\\S*)?$"
_URL = re.compile(URL_PATTERN)
_URL_SHAPE = "url is not a valid redis:// URL (redis://[user@]host[:port][/db])"


def _refused(sentence: str) -> PydanticCustomError:
    """A value error whose message is the sentence alone: a plain ValueError's starts with
    pydantic's "Value error, ", which `pipeline validate` would print before it."""
    return PydanticCustomError("value_error", sentence)


def _holds_password(url: str) -> bool:
    """Whether `url` holds `user:secret@` as urlsplit reads it, found before anything else: a
    URL that is wrong in another way too must not be shown with its secret."""
    _, scheme, rest = url.partition("://")
    authority = re.split(r"[/?#]", rest if scheme else url, maxsplit=1)[0]
    return ":" in authority.rpartition("@")[0]


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


class RedisConfig(CrossChecked):
    """Connection and storage settings of the Redis Streams transport."""

    model_config = ConfigDict(extra="forbid")
    section_rules = (
        NotBoth(
            "password_file",
            "password_env",
            "value_error",
            "give the password in password_file or password_env, not both",
        ),
    )

    url: Annotated[
        str,
        Field(
            description=(
                "redis://host:port/db, or rediss:// for TLS. No password in the URL: use "
                "password_file or password_env."
            ),
            json_schema_extra={
                "pattern": URL_PATTERN,
                "patternErrorMessage": "url is redis://[user@]host[:port][/db] (rediss:// for "
                "TLS, or unix://), with no password in it: use password_file or password_env",
            },
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
        if _holds_password(value):
            # the pipeline file is copied to every node and into run records: never a secret.
            # P106 is `pipeline validate`'s code for a secret in the file, whose report then
            # does not repeat the value
            raise PydanticCustomError(
                "P106",
                "url must not hold a password (it would be copied with the pipeline file); "
                "use password_file or password_env",
            )
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises for a port that is not 0 to 65535)
        except ValueError:
            raise _refused(_URL_SHAPE) from None
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise _refused("url must start with redis://, rediss:// or unix://")
        if parts.scheme != "unix" and not parts.hostname:
            raise _refused("url names no host")
        # what the editor schema accepts: anything beyond it is refused here too
        if not _URL.fullmatch(value):
            raise _refused(_URL_SHAPE)
        return value

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
