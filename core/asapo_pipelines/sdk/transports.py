"""The import door for transport authors (`register_transports`): the interface a transport's
runtime implements and the errors it raises, as `asapo_pipelines.sdk` is the door for units.

A transport passes the contract suite (`asapo_pipelines.testing.transport_contract`) when it
implements `Transport`, `Producer` and `Consumer` with these semantics: messages are bytes and
JSON metadata, ids start at 1 per stream, groups lease and acknowledge, `StreamInfo` counts what
`pipeline status` shows. The
message class here is the transport's own (`Message`: stream, id, payload, metadata...), not the
unit's view of it that `asapo_pipelines.sdk.Message` is. Metadata is stored as
`encode_metadata` writes it (which also keeps the text the runner already encoded) and read
back with `decode_metadata`.

A plugin's tests open its transport as a pipeline file's ``transport:`` section gives it with
`open_transport` (validated by the plugin's config model, as `pipeline run` does), and run the
contract suite on it; docs/transports.md, "Adding a transport", says what each case checks.

A config model states rules across its fields by deriving from `CrossChecked` and listing
`NotBoth`, `ExactlyOne` or `NeedsWhen` rules: validate reports them with the fields' own
problems, and the editor schema shows the same conditions.
"""

from __future__ import annotations

from asapo_pipelines.pipeline.checks import CrossChecked, ExactlyOne, NeedsWhen, NotBoth
from asapo_pipelines.transport import open_transport
from asapo_pipelines.transport.base import (
    DEFAULT_LEASE_SECONDS,
    Consumer,
    Message,
    Producer,
    PruneReport,
    StreamInfo,
    Transport,
    check_group,
    check_source,
    check_stream,
    decode_metadata,
    encode_metadata,
)
from asapo_pipelines.transport.errors import (
    CorruptPayload,
    CredentialsError,
    DuplicateId,
    EndOfStream,
    MissingId,
    NoData,
    StorageError,
    StreamFinished,
    TransportConfigError,
    TransportError,
    Unavailable,
)

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "Consumer",
    "CorruptPayload",
    "CredentialsError",
    "CrossChecked",
    "DuplicateId",
    "EndOfStream",
    "ExactlyOne",
    "Message",
    "MissingId",
    "NeedsWhen",
    "NoData",
    "NotBoth",
    "Producer",
    "PruneReport",
    "StorageError",
    "StreamFinished",
    "StreamInfo",
    "Transport",
    "TransportConfigError",
    "TransportError",
    "Unavailable",
    "check_group",
    "check_source",
    "check_stream",
    "decode_metadata",
    "encode_metadata",
    "open_transport",
]
