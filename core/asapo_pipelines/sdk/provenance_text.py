"""The JSON text of an output's metadata, its provenance put together from parts encoded once.

Every output's metadata carries its provenance (`{"unit", "port", "inputs", "seq", "key"}` and
the run's `{"run", "fingerprint", "session"}`), and the runner encodes every output's metadata
where it is made (see `UnitRunner.make_output`). Encoding that dict whole for each message cost
a busy hop more than any other step of its Python: most of it is the same for every output of a
port (unit, port, run, fingerprint, session), and the rest is made of a few names (data
sources, streams) that come back message after message and numbers.

So the text is put together here: the constant part of a port's provenance encoded once, names
escaped once and kept, and per message only the numbers written. The result is the text the
metadata encoder gives for the whole dict (`encode_metadata`), character for character:
readers of a stream (`pipeline tail`, the NeXus writer, the worker's de-duplication) see what
they saw before. JSON escapes character by character, so the escaped text of `a + b` is the
escaped text of `a` followed by that of `b`: a key made of escaped names is the key escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asapo_pipelines.sdk.units import PROVENANCE_KEY
from asapo_pipelines.transport.base import (
    TransportConfigError,
    encode_json_string,
    encode_json_value,
    encode_metadata,
)

#: the keys of a message's address (`Message.ref`), in their order
REF_KEYS = ("data_source", "stream", "id")
#: the keys an output's provenance has for itself; a run's provenance naming one of them (it
#: would take that key's place) is written the slow way
OWN_KEYS = frozenset({"unit", "port", "inputs", "seq", "key"})
#: how many escaped names are kept (stream names: one per scan)
KEPT_NAMES = 4096


class ProvenanceText:
    """The JSON text of outputs' metadata for one unit (`label`) and the provenance of its run
    (`constant`: run, fingerprint, session), as `encode_metadata` writes it."""

    def __init__(self, label: str, constant: Mapping[str, Any]) -> None:
        self.label = label
        self._escaped: dict[str, str] = {}
        # the end of every provenance: the run's part, then the two closing braces; None when
        # it cannot be put together (see `OWN_KEYS`, or not JSON: said by the slow way)
        self.tail: str | None = None
        if not constant.keys() & OWN_KEYS:
            try:
                rest = encode_metadata(dict(constant), "the provenance")
            except TransportConfigError:
                pass
            else:
                self.tail = "}}" if rest == "{}" else "," + rest[1:] + "}"
        #: (data source, stream) -> what its messages' addresses begin with (`_stream`)
        self._streams: dict[tuple[str, str], tuple[str, str, str]] = {}
        #: port -> (the provenance's text up to its inputs, `<unit>|<port>` escaped)
        self.ports: dict[str, tuple[str, str]] = {}

    def escaped(self, name: str) -> str:
        """`name` as a JSON string's text between its quotes."""
        found = self._escaped.get(name)
        if found is None:
            found = encode_json_string(name)[1:-1]
            if len(self._escaped) < KEPT_NAMES:
                self._escaped[name] = found
        return found

    def refs(self, inputs: list[dict[str, Any]]) -> tuple[str, str | None, str]:
        """Message addresses `inputs` as an output's key names them (`<source>/<stream>/<id>`,
        comma-separated), that text escaped (None: escape the key whole), and `inputs` as
        JSON."""
        if len(inputs) == 1:
            # a processor's message: the same, without the loops
            r = inputs[0]
            source, stream, msg_id = r["data_source"], r["stream"], r["id"]
            if (
                tuple(r) == REF_KEYS
                and type(source) is str
                and type(stream) is str
                and type(msg_id) is int
            ):
                found = self._streams.get((source, stream)) or self._stream(source, stream)
                plain, start, text = found
                number = str(msg_id)
                return plain + number, start + number, text + number + "}]"
        refs = ",".join([f"{r['data_source']}/{r['stream']}/{r['id']}" for r in inputs])
        escaped: list[str] = []
        texts: list[str] = []
        for r in inputs:
            source, stream, msg_id = r["data_source"], r["stream"], r["id"]
            if (
                tuple(r) != REF_KEYS
                or type(source) is not str
                or type(stream) is not str
                or type(msg_id) is not int
            ):
                return refs, None, encode_json_value(inputs)  # not as `Message.ref` makes them
            s, t = self.escaped(source), self.escaped(stream)
            escaped.append(f"{s}/{t}/{msg_id}")
            texts.append(f'{{"data_source":"{s}","stream":"{t}","id":{msg_id}}}')
        return refs, ",".join(escaped), "[" + ",".join(texts) + "]"

    def _stream(self, source: str, stream: str) -> tuple[str, str, str]:
        """What the addresses of stream `stream` of data source `source` begin with: as keys
        name them, that escaped, and as JSON."""
        s, t = self.escaped(source), self.escaped(stream)
        found = (f"{source}/{stream}/", f"{s}/{t}/", f'[{{"data_source":"{s}","stream":"{t}","id":')
        if len(self._streams) < KEPT_NAMES:
            self._streams[(source, stream)] = found
        return found

    def port(self, port: str) -> tuple[str, str]:
        """(The text of a provenance of `port` up to its inputs, `<unit>|<port>` escaped)."""
        found = self.ports.get(port)
        if found is None:
            unit, name = self.escaped(self.label), self.escaped(port)
            found = self.ports[port] = (
                f'"{PROVENANCE_KEY}":{{"unit":"{unit}","port":"{name}","inputs":',
                f"{unit}|{name}",
            )
        return found
