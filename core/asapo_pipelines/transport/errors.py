"""The transport's one exception family. Every backend maps its own failures onto these, so a
unit or worker handles "wait", "move on" and "give up" the same way on any backend."""

from __future__ import annotations

from asapo_pipelines.errors import PipelinesError


class TransportError(PipelinesError):
    """Base of every transport error; the message names the data source, stream and id."""


class NoData(TransportError):
    """Nothing to hand out right now: wait and ask again (more may come)."""


class StreamFinished(TransportError):
    """The stream was finished and everything in it was delivered and acknowledged."""

    def __init__(self, message: str, next_stream: str | None = None) -> None:
        super().__init__(message)
        self.next_stream = next_stream


class EndOfStream(TransportError):
    """The asked id is past the last message written so far (it may still come)."""


class MissingId(TransportError):
    """The asked id does not exist although later ids do: a hole (or pruned by retention)."""


class DuplicateId(TransportError):
    """A different message with the same id already exists in the stream."""


class Unavailable(TransportError):
    """The service did not answer in time or refused the connection; retry later."""


class TransportConfigError(TransportError):
    """The transport settings are wrong (bad path, missing token, unknown backend)."""


class CredentialsError(TransportConfigError):
    """The transport's credentials are missing (an unset environment variable, an unreadable
    password file) or its service refuses them. Unlike a service out of reach, this holds for
    every worker too, which reads the same: `pipeline deploy` refuses rather than submitting
    jobs that would all fail on it."""


class StorageError(TransportError):
    """The storage under the transport failed (full disk, no permission, a damaged file): a
    failure of everything using it, never of one message. The sentence names the path and the
    remedy; `kind` is `asapo_pipelines.storage`'s (full, denied, read-only, damaged, other)."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


class IndexLost(StorageError):
    """A data source's index is missing or empty while its folder says it held data (the
    embedded store's `_lost_index`). A configuration error (exit 78, as for a damaged index in
    a worker): no restart brings the index back, and opening it as a new one would process
    every input again. Here, not with its backend, so that a command can tell it from a store
    it cannot reach without importing a backend by name."""

    exit_code = 78


class CorruptPayload(TransportError):
    """A payload cannot be read or decoded with the format its message records.

    `damaged` is the message as far as it could be read (metadata, no payload) when a
    consumer handed it out: the worker reports it on the error stream and moves on."""

    def __init__(self, message: str, damaged: object = None) -> None:
        super().__init__(message)
        self.damaged = damaged


__all__ = [
    "CorruptPayload",
    "CredentialsError",
    "DuplicateId",
    "EndOfStream",
    "MissingId",
    "NoData",
    "StorageError",
    "StreamFinished",
    "TransportConfigError",
    "TransportError",
    "Unavailable",
]
