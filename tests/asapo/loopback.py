"""A loopback ASAP::O that DESY's real asapo_consumer / asapo_producer 25.3.0 wheels talk to.

No ASAP::O service can run on a CI machine (it needs Docker and MongoDB), so this module answers
as the services do, on 127.0.0.1, keeping everything in memory. It was written from the public
source of ASAP::O (github SergeyYakubov/asapo) and checked against what the 25.3.0 wheels send
(protocol v0.7); none of that code is copied here. What it implements, and where it comes from:

Discovery (discovery/src/asapo_discovery/server/routes.go), on the endpoint the clients are given:
  GET /asapo-discovery/v0.1/asapo-broker?protocol=v0.7         -> "127.0.0.1:<broker port>"
  GET /asapo-discovery/v0.1/asapo-file-transfer?protocol=v0.7  -> "127.0.0.1:<this port>"
  GET /asapo-discovery/v0.1/asapo-receiver?protocol=v0.7       -> {"MaxConnections":32,"Uris":[..]}

Authorizer (authorizer/src/asapo_authorizer/server/folder_token.go):
  POST /asapo-authorizer/v0.2/folder {"Folder","BeamtimeId","Token"} -> a folder token (text)

File transfer (file_transfer/src/asapo_file_transfer/server/transfer.go), the path the consumer
uses for payloads when it has no filesystem and a message's buf_id is 0 (no receiver cache):
  POST /v0.2/transfer[?sizeonly=true] {"Folder","FileName"}, cookie "Authorization=Bearer <folder
  token>" -> the bytes, or {"file_size": n}

Broker (broker/src/asapo_broker/server/listroutes.go, database/mongodb.go; consumer side in
consumer/api/cpp/src/consumer_impl.cpp), every route under
/v0.7/beamtime/{beamtime}/{source}/{stream}/..., token in the query (401 when it is wrong):
  {group}/next[?resend_nacks=true&delay_ms=&resend_attempts=]   next for the group; redelivery of
      unacknowledged ids after delay_ms ("in process" records, as mongodb.go keeps them)
  0/{id}          by id          0/last        largest id           {group}/groupedlast
  0/meta/0|1      data source / stream metadata                     size      delete (POST)
  {group}/{id}    POST {"Op":"ackmessage"} | {"Op":"negackmessage","Params":{"DelayMs":n}}
  {group}/nacks?from=&to=        {group}/lastack    {group}/resetcounter?value= (POST)
  0/streams?from=&filter=all|finished|unfinished[&single=true]  (stream is "0")
  POST /v0.7/creategroup
  0/sources       {"sources": [...]} (the beamtime's data sources)
  Errors as the broker gives them: 409 with {"op":"get_record_by_id","id","id_max","next_stream"}
  for no data / end of stream / finished stream (a record named "asapo_finish_stream", id last+1,
  meta {"next_stream"}), 400 for wrong input ("already acknowledged"), 401 for a wrong token.
  Message records as the v0.7 client parses them (_id, time_id, size, name, timestamp (ns),
  source, ib_source, buf_id, stream, dataset_substream, ingest_mode, meta).

Receiver (receiver/src/request_handler/*, producer/api/cpp/src/request_handler_tcp.cpp), TCP:
  request = GenericRequestHeader (common/cpp/include/asapo/common/networking.h), little endian,
  2120 bytes: op_code u8 (+7 pad), data_id u64, data_size u64, meta_size u64, custom_data 3 x u64
  (ingest mode, meta ingest mode), message char[1024] (file name), stream char[1024],
  api_version char[10] (+6 pad); then meta_size bytes of metadata, then data_size bytes of data.
  response = GenericNetworkResponse: op_code u8, pad, error_code u16, message char[1024].
  Opcodes handled: 7 authorize (meta = "type%instance%step%beamtime%beamline%source%token"),
  2 transfer data, 4 stream info, 5 last stream, 8 transfer metadata, 9 delete stream, 10 get
  meta. Error codes: 0 ok, 2 warning ("duplicated request"), 3 wrong request, 6 authorization.

Faults for tests: `restart_broker()` (the broker goes away and comes back on the same port, state
kept, as it is in MongoDB), `receiver_delay` (a receiver that answers slowly), `revoke_token()`,
`authorizer_refusal` (the authorizer refuses a token with 401 or 403 and the broker passes that on
as its HTTP 503, broker/src/asapo_broker/server/authorizer.go and request_common.go).

Run it by hand with `python tests/asapo/loopback.py TOKEN [BEAMTIME]`: prints the endpoint.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API = "v0.7"
FINISH = "asapo_finish_stream"
NO_NEXT = "asapo_no_next"

HEADER = struct.Struct("<B7xQQQ3Q1024s1024s10s6x")
RESPONSE = struct.Struct("<BxH1024s")
assert HEADER.size == 2120
assert RESPONSE.size == 1028

OP_TRANSFER_DATA = 2
OP_STREAM_INFO = 4
OP_LAST_STREAM = 5
OP_AUTHORIZE = 7
OP_TRANSFER_META = 8
OP_DELETE_STREAM = 9
OP_GET_META = 10

NET_OK = 0
NET_WARNING = 2
NET_WRONG_REQUEST = 3
NET_AUTH_ERROR = 6

INGEST_TRANSFER_DATA = 1


def _now_ns() -> int:
    return time.time_ns()


@dataclass
class _Stream:
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: time_id (arrival order, 1-based) -> message id; unordered get_next walks this order
    arrivals: dict[int, int] = field(default_factory=dict)
    created: int = 0
    last: int = 0

    def max_id(self) -> int:
        return max(self.records, default=0)

    def finish(self) -> dict[str, Any] | None:
        top = self.records.get(self.max_id())
        return top if top is not None and top["name"] == FINISH else None


@dataclass
class _Group:
    pointer: int = 0
    # id -> [delay until (ns), resend attempts, max resend attempts]
    inprocess: dict[int, list[int]] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    last_set: int = 0


class _HttpError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status, self.body = status, body


def _no_data(id_: int, id_max: int, next_stream: str = "") -> _HttpError:
    body = json.dumps(
        {"op": "get_record_by_id", "id": id_, "id_max": id_max, "next_stream": next_stream}
    )
    return _HttpError(409, body)


class _State:
    """What ASAP::O keeps in MongoDB and on its file system: records, groups, metadata, files."""

    def __init__(self, token: str, beamtime: str) -> None:
        self.lock = threading.RLock()
        self.tokens = {token}
        self.beamtime = beamtime
        self.streams: dict[tuple[str, str], _Stream] = {}
        self.groups: dict[tuple[str, str, str], _Group] = {}
        self.meta: dict[tuple[str, str], Any] = {}  # (source, "bt" | "st_<stream>") -> meta
        self.files: dict[str, bytes] = {}
        self.folder_tokens: set[str] = set()
        self.requests = 0

    # -- receiver side -------------------------------------------------------------------------
    def stream(self, source: str, stream: str) -> _Stream:
        key = (source, stream)
        if key not in self.streams:
            now = _now_ns()
            self.streams[key] = _Stream(created=now, last=now)
        return self.streams[key]

    def insert(
        self,
        source: str,
        stream: str,
        id_: int,
        name: str,
        meta: Any,
        data: bytes | None,
        mode: int,
    ) -> tuple[int, str]:
        with self.lock:
            s = self.stream(source, stream)
            record = {
                "_id": id_,
                "time_id": 0,
                "size": len(data) if data is not None else 0,
                "name": name,
                "timestamp": _now_ns(),
                "source": "",
                "ib_source": "",
                "buf_id": 0,
                "stream": stream,
                "dataset_substream": 0,
                "ingest_mode": mode,
                "meta": meta,
            }
            old = s.records.get(id_)
            if old is not None:
                same = (old["name"], old["size"], old["meta"]) == (
                    record["name"],
                    record["size"],
                    record["meta"],
                )
                if same:
                    return NET_WARNING, "duplicated request"
                return NET_WRONG_REQUEST, f"duplicate id {id_} in stream {stream}"
            record["time_id"] = len(s.arrivals) + 1
            s.arrivals[record["time_id"]] = id_
            s.records[id_] = record
            s.last = record["timestamp"]
            if data is not None:
                self.files[f"{source}/{name}"] = data
            return NET_OK, ""

    def stream_info(self, source: str, stream: str) -> dict[str, Any]:
        s = self.streams.get((source, stream)) or _Stream()
        fin = s.finish()
        return {
            "lastId": fin["_id"] - 1 if fin else s.max_id(),
            "name": stream,
            "timestampCreated": s.created,
            "timestampLast": s.last,
            "finished": fin is not None,
            "nextStream": (fin["meta"].get("next_stream", "") if fin else ""),
        }

    def set_meta(self, source: str, key: str, meta: Any, mode: int) -> None:
        op = mode % 10  # MetaIngestMode.Encode: op + 10 * upsert (data_structs.h)
        with self.lock:
            old = self.meta.get((source, key))
            if op == 3 and isinstance(old, dict) and isinstance(meta, dict):  # update
                meta = {**old, **meta}
            self.meta[(source, key)] = meta

    # -- broker side ---------------------------------------------------------------------------
    def group(self, source: str, stream: str, group: str) -> _Group:
        key = (source, stream, group)
        if key not in self.groups:
            self.groups[key] = _Group()
        return self.groups[key]

    def record(self, source: str, stream: str, id_: int, id_max: int) -> dict[str, Any]:
        s = self.streams.get((source, stream)) or _Stream()
        rec = s.records.get(id_)
        if rec is None:
            raise _no_data(id_, id_max)
        if id_ == id_max and rec["name"] == FINISH:
            nxt = rec["meta"].get("next_stream") or NO_NEXT
            raise _no_data(rec["_id"] - 1, rec["_id"] - 1, nxt)
        return rec

    def _from_inprocess(self, g: _Group, delay_ms: int, attempts: int) -> int:
        now = _now_ns()
        for id_, (until, tries, max_tries) in sorted(g.inprocess.items()):
            limit = attempts if attempts > 0 else (2**31 if attempts == 0 else max_tries)
            if until <= now and tries < limit:
                g.inprocess[id_] = [now + delay_ms * 1_000_000, tries + 1, limit]
                return id_
        return 0

    def next(
        self,
        source: str,
        stream: str,
        group: str,
        resend: tuple[int, int] | None,
        by_time: bool,
    ) -> dict[str, Any]:
        """The group's next record: walks ids, or arrival order (time_id) for unordered reads."""
        with self.lock:
            g = self.group(source, stream, group)
            s = self.streams.get((source, stream)) or _Stream()
            id_max = s.max_id()
            delay_ms, attempts = resend if resend else (0, -1)
            id_ = self._from_inprocess(g, delay_ms, attempts)
            if id_:
                rec = s.records.get(id_)
                if rec is None:
                    raise _no_data(id_, id_max)
                return rec
            top = len(s.arrivals) if by_time else id_max
            while True:
                if top == 0:
                    raise _no_data(0, 0)
                if g.pointer >= top:
                    fin = s.finish()
                    if fin is not None:
                        nxt = fin["meta"].get("next_stream") or NO_NEXT
                        raise _no_data(fin["_id"] - 1, fin["_id"] - 1, nxt)
                    raise _no_data(top, top)
                g.pointer += 1
                if not by_time:
                    rec = self.record(source, stream, g.pointer, id_max)
                    break
                rec = s.records[s.arrivals[g.pointer]]
                if rec["name"] != FINISH:
                    break
                # a finish flag that is no longer the last arrival: late messages follow it
            if resend and rec["_id"] not in g.inprocess:
                g.inprocess[rec["_id"]] = [
                    _now_ns() + delay_ms * 1_000_000,
                    0,
                    attempts if attempts > 0 else 2**31,
                ]
            return rec

    def by_id(self, source: str, stream: str, id_: int) -> dict[str, Any]:
        with self.lock:
            s = self.streams.get((source, stream)) or _Stream()
            return self.record(source, stream, id_, s.max_id())

    def last(self, source: str, stream: str, group: str | None) -> dict[str, Any]:
        with self.lock:
            s = self.streams.get((source, stream)) or _Stream()
            id_max = s.max_id()
            if group is not None:
                self.group(source, stream, group).last_set = id_max
            return self.record(source, stream, id_max, id_max)

    def ack(self, source: str, stream: str, group: str, id_: int) -> None:
        with self.lock:
            g = self.group(source, stream, group)
            if id_ in g.acked:
                raise _HttpError(400, "already acknowledged")
            g.acked.add(id_)
            g.inprocess.pop(id_, None)

    def nack(self, source: str, stream: str, group: str, id_: int, delay_ms: int) -> None:
        with self.lock:
            g = self.group(source, stream, group)
            # InsertRecordToInprocess(..., nResendAttempts=1, replaceIfExist=true)
            g.inprocess[id_] = [_now_ns() + delay_ms * 1_000_000, 0, 1]

    def streams_of(self, source: str, from_: str, filter_: str) -> list[dict[str, Any]]:
        with self.lock:
            infos = [
                self.stream_info(src, name)
                for (src, name), s in sorted(self.streams.items(), key=lambda kv: kv[1].created)
                if src == source and s.records
            ]
        if from_:
            names = [i["name"] for i in infos]
            infos = infos[names.index(from_) :] if from_ in names else []
        if filter_ == "finished":
            infos = [i for i in infos if i["finished"]]
        elif filter_ == "unfinished":
            infos = [i for i in infos if not i["finished"]]
        return infos

    def delete_stream(self, source: str, stream: str) -> bool:
        with self.lock:
            s = self.streams.pop((source, stream), None)
            for key in [k for k in self.groups if k[:2] == (source, stream)]:
                del self.groups[key]
            self.meta.pop((source, f"st_{stream}"), None)
            if s:
                for rec in s.records.values():
                    self.files.pop(f"{source}/{rec['name']}", None)
            return s is not None


# ---------------------------------------------------------------------------------------------
# HTTP: discovery, authorizer, file transfer (one server) and broker (its own, restartable)


class _Http(HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type, service: LoopbackAsapo) -> None:
        self.service = service
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        self.service._track(request)
        t.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-request is not an error of the service


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without this, Nagle's algorithm and delayed
    # acknowledgements add ~40 ms to every request on a kept-alive connection
    disable_nagle_algorithm = True
    server: _Http

    def log_message(self, *args: Any) -> None:  # never log: the query carries the token
        pass

    def _reply(self, status: int, body: bytes | str, ctype: str = "text/plain") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        body = self._body() if method == "POST" else b""
        service = self.server.service
        with service.state.lock:
            service.state.requests += 1
        try:
            status, answer, ctype = self.route(method, url.path, query, body)
        except _HttpError as exc:
            status, answer, ctype = exc.status, exc.body, "text/plain"
        self._reply(status, answer, ctype)

    def route(
        self, method: str, path: str, query: dict[str, str], body: bytes
    ) -> tuple[int, bytes | str, str]:
        raise _HttpError(404, "not found")


class _FrontHandler(_Handler):
    """Discovery, authorizer and file transfer, on the endpoint the clients are given."""

    def route(
        self, method: str, path: str, query: dict[str, str], body: bytes
    ) -> tuple[int, bytes | str, str]:
        svc = self.server.service
        if path.startswith("/asapo-discovery/"):
            name = path.rsplit("/", 1)[-1]
            if query.get("protocol", API) != API:
                raise _HttpError(415, f"unsupported protocol {query.get('protocol')}")
            if name == "asapo-broker":
                return 200, f"127.0.0.1:{svc.broker_port}", "text/plain"
            if name == "asapo-file-transfer":
                return 200, f"127.0.0.1:{svc.port}", "text/plain"
            if name == "asapo-receiver":
                answer = {"MaxConnections": 32, "Uris": [f"127.0.0.1:{svc.receiver_port}"]}
                return 200, json.dumps(answer), "application/json"
            if name == "version":
                return (
                    200,
                    json.dumps({"softwareVersion": "loopback", "clientSupported": "yes"}),
                    ("application/json"),
                )
            raise _HttpError(404, f"no service {name}")
        if path.startswith("/asapo-authorizer/") and path.endswith("/folder"):
            request = json.loads(body or b"{}")
            if request.get("Token") not in svc.state.tokens:
                raise _HttpError(401, "wrong token")
            if request.get("BeamtimeId") not in (svc.state.beamtime, "auto"):
                raise _HttpError(401, "beamtime not allowed for this token")
            folder = uuid.uuid4().hex
            with svc.state.lock:
                svc.state.folder_tokens.add(folder)
            return 200, folder, "text/plain"
        if path.endswith("/transfer") and method == "POST":
            cookie = self.headers.get("Cookie", "")
            folder = cookie.split("Bearer ", 1)[-1].strip()
            if folder not in svc.state.folder_tokens:
                raise _HttpError(401, "wrong folder token")
            request = json.loads(body or b"{}")
            name = str(request.get("FileName", ""))
            with svc.state.lock:
                data = svc.state.files.get(name)
            if data is None:
                # FileName is the name the broker handed out: "<data source>/<record name>"
                raise _HttpError(404, f"no file {name}")
            if query.get("sizeonly") == "true":
                return 200, json.dumps({"file_size": len(data)}), "application/json"
            return 200, data, "application/octet-stream"
        raise _HttpError(404, "not found")


def _authorizer_refused(status: int) -> _HttpError:
    """The broker's answer when the authorizer it asks about a token (POST /introspect) refuses
    it: broker authorizer.go wraps a 401 as "authorizer rejected to authorize: <answer>" and any
    other status as "authorizer returned <status>: <answer>", and writeAuthAnswer sends both with
    503 (its switch on the error's type does not match the pointer authorizer.go returns)."""
    answer = "token is not valid or has expired"
    if status == 401:
        return _HttpError(503, f"authorizer rejected to authorize: {answer}")
    return _HttpError(503, f"authorizer returned {status} Forbidden: {answer}")


class _BrokerHandler(_Handler):
    def route(
        self, method: str, path: str, query: dict[str, str], body: bytes
    ) -> tuple[int, bytes | str, str]:
        svc = self.server.service
        state = svc.state
        if query.get("token") not in state.tokens:
            refusal = svc.authorizer_refusal
            if refusal is not None:
                raise _authorizer_refused(refusal)
            raise _HttpError(401, "wrong or expired token")
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[1:] == ["creategroup"]:
            return 200, uuid.uuid4().hex[:20], "text/plain"
        if len(parts) < 5 or parts[1] != "beamtime":
            raise _HttpError(404, "not found")
        _, _, beamtime, source, stream, *rest = parts
        if beamtime != state.beamtime:
            raise _HttpError(401, f"token not valid for beamtime {beamtime}")
        source = source or "detector"

        def ok(value: Any) -> tuple[int, bytes | str, str]:
            return 200, json.dumps(value), "application/json"

        def record(rec: dict[str, Any]) -> tuple[int, bytes | str, str]:
            return ok({**rec, "name": f"{source}/{rec['name']}"})

        if method == "GET":
            if rest == ["sources"]:
                with state.lock:
                    names = sorted({src for (src, _name) in state.streams})
                return ok({"sources": names})
            if rest == ["streams"]:
                infos = state.streams_of(source, query.get("from", ""), query.get("filter", "all"))
                if query.get("single") == "true":  # get_stream_info: that stream only
                    infos = [i for i in infos if i["name"] == query.get("from")]
                return ok({"streams": infos})
            if rest == ["size"]:
                with state.lock:
                    s = state.streams.get((source, stream)) or _Stream()
                    n = sum(1 for r in s.records.values() if r["name"] != FINISH)
                return ok({"size": n})
            if rest == ["0", "last"]:
                return record(state.last(source, stream, None))
            if len(rest) == 3 and rest[:2] == ["0", "meta"]:
                key = {"0": "bt", "1": f"st_{stream}"}.get(rest[2])
                if key is None:
                    raise _HttpError(400, "wrong meta type")
                with state.lock:
                    if (source, key) not in state.meta:
                        raise _HttpError(409, "no metadata")
                    return ok(state.meta[(source, key)])
            if len(rest) == 2 and rest[0] == "0" and rest[1].isdigit():
                return record(state.by_id(source, stream, int(rest[1])))
            if len(rest) == 2 and rest[1] == "next":
                resend = None
                if query.get("resend_nacks") == "true":
                    resend = (int(query.get("delay_ms", 0)), int(query.get("resend_attempts", -1)))
                by_time = query.get("id_key") == "time_id"
                return record(state.next(source, stream, rest[0], resend, by_time))
            if len(rest) == 2 and rest[1] == "groupedlast":
                return record(state.last(source, stream, rest[0]))
            if len(rest) == 2 and rest[1] == "nacks":
                lo = int(query.get("from", 0) or 0)
                with state.lock:
                    s = state.streams.get((source, stream)) or _Stream()
                    fin = s.finish()  # the limit leaves out the finish flag (mongodb.go)
                    top = fin["_id"] - 1 if fin else s.max_id()
                    hi = int(query.get("to", 0) or 0) or top
                    acked = state.group(source, stream, rest[0]).acked
                    ids = [i for i in range(max(lo, 1), hi + 1) if i not in acked]
                return ok({"unacknowledged": ids})
            if len(rest) == 2 and rest[1] == "lastack":
                with state.lock:
                    acked = state.group(source, stream, rest[0]).acked
                return ok({"lastAckId": max(acked, default=0)})
        if method == "POST":
            if rest == ["delete"]:
                options = json.loads(body or b"{}")
                if not state.delete_stream(source, stream) and options.get("ErrorOnNotExist"):
                    raise _HttpError(400, f"stream {stream} does not exist")
                return 200, "", "text/plain"
            if len(rest) == 2 and rest[1] == "resetcounter":
                with state.lock:
                    state.group(source, stream, rest[0]).pointer = int(query.get("value", 0))
                return 200, "", "text/plain"
            if len(rest) == 2 and rest[1].isdigit():
                op = json.loads(body or b"{}")
                if op.get("Op") == "ackmessage":
                    state.ack(source, stream, rest[0], int(rest[1]))
                    return 200, "", "text/plain"
                if op.get("Op") == "negackmessage":
                    delay = int((op.get("Params") or {}).get("DelayMs", 0))
                    state.nack(source, stream, rest[0], int(rest[1]), delay)
                    return 200, "", "text/plain"
                raise _HttpError(400, f"wrong operation {op.get('Op')!r}")
        raise _HttpError(404, "not found")


# ---------------------------------------------------------------------------------------------
# Receiver: the producer's binary protocol over TCP


class _ReceiverHandler(socketserver.BaseRequestHandler):
    server: _Receiver

    def handle(self) -> None:
        svc = self.server.service
        conn: socket.socket = self.request
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        svc._track(conn)
        credentials: dict[str, str] | None = None
        while True:
            try:
                raw = _recv_exact(conn, HEADER.size)
            except ConnectionError:
                return
            op, id_, data_size, meta_size, mode, meta_mode, _c2, message, stream, _ver = (
                HEADER.unpack(raw)
            )
            name = message.split(b"\0", 1)[0].decode()
            stream_name = stream.split(b"\0", 1)[0].decode()
            try:
                meta = _recv_exact(conn, meta_size) if meta_size else b""
                send_data = op in (OP_TRANSFER_DATA, OP_TRANSFER_META) and (
                    op == OP_TRANSFER_META or mode & INGEST_TRANSFER_DATA
                )
                data = _recv_exact(conn, data_size) if data_size and send_data else None
            except ConnectionError:
                return
            if svc.receiver_delay:
                time.sleep(svc.receiver_delay)
            with svc.state.lock:
                svc.state.requests += 1
            if op == OP_AUTHORIZE:
                credentials, code, text = svc._authorize(meta.decode(errors="replace"))
            elif credentials is None:
                code, text = NET_AUTH_ERROR, "not authorized"
            elif credentials["token"] not in svc.state.tokens:
                credentials, code, text = None, NET_AUTH_ERROR, "token revoked"
            else:
                code, text = self.process(
                    credentials, op, id_, mode, meta_mode, name, stream_name, meta, data
                )
            try:
                conn.sendall(RESPONSE.pack(op, code, text.encode()[:1023]))
            except OSError:
                return
            if code == NET_AUTH_ERROR:
                return  # the receiver drops connections it did not authorize

    def process(
        self,
        cred: dict[str, str],
        op: int,
        id_: int,
        mode: int,
        meta_mode: int,
        name: str,
        stream: str,
        meta: bytes,
        data: bytes | None,
    ) -> tuple[int, str]:
        state = self.server.service.state
        source = cred["source"]
        if op == OP_TRANSFER_DATA:
            try:
                user_meta = json.loads(meta) if meta else {}
            except ValueError:
                return NET_WRONG_REQUEST, "metadata is not JSON"
            return state.insert(source, stream, id_, name, user_meta, data, mode)
        if op == OP_STREAM_INFO:
            with state.lock:
                return NET_OK, json.dumps(state.stream_info(source, stream))
        if op == OP_LAST_STREAM:
            with state.lock:
                infos = state.streams_of(source, "", "all")
            if not infos:
                return NET_OK, json.dumps(state.stream_info(source, ""))
            return NET_OK, json.dumps(max(infos, key=lambda i: i["timestampLast"]))
        if op == OP_TRANSFER_META:
            try:
                value = json.loads(data or meta or b"{}")
            except ValueError:
                return NET_WRONG_REQUEST, "metadata is not JSON"
            state.set_meta(source, f"st_{stream}" if stream else "bt", value, meta_mode)
            return NET_OK, ""
        if op == OP_GET_META:
            with state.lock:
                value = state.meta.get((source, f"st_{stream}" if stream else "bt"))
            return NET_OK, "" if value is None else json.dumps(value)
        if op == OP_DELETE_STREAM:
            state.delete_stream(source, stream)
            return NET_OK, ""
        return NET_WRONG_REQUEST, f"unknown op {op}"


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = conn.recv(min(n - len(chunks), 1 << 20))
        if not chunk:
            raise ConnectionError("closed")
        chunks += chunk
    return bytes(chunks)


class _Receiver(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], service: LoopbackAsapo) -> None:
        self.service = service
        super().__init__(address, _ReceiverHandler)


# ---------------------------------------------------------------------------------------------


class LoopbackAsapo:
    """Discovery, authorizer, broker, file transfer and receiver of one beamtime on 127.0.0.1."""

    def __init__(self, token: str, beamtime: str = "asapo_test") -> None:
        self.state = _State(token, beamtime)
        self.receiver_delay = 0.0
        #: 401 or 403: the broker's authorizer refuses unknown tokens with it (None: the broker
        #: refuses them itself with 401, as an older broker does)
        self.authorizer_refusal: int | None = None
        self._front = _Http(("127.0.0.1", 0), _FrontHandler, self)
        self._broker: _Http | None = None
        self.broker_port = 0
        self._receiver = _Receiver(("127.0.0.1", 0), self)
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._conns_lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self._front.server_address[1])

    @property
    def receiver_port(self) -> int:
        return int(self._receiver.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def beamtime(self) -> str:
        return self.state.beamtime

    def _track(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._conns = [c for c in self._conns if c.fileno() != -1]
            self._conns.append(conn)

    def _serve(self, server: socketserver.BaseServer) -> None:
        t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        t.daemon = True
        t.start()
        self._threads.append(t)

    def _start_broker(self, port: int = 0) -> None:
        deadline = time.monotonic() + 5
        while True:
            try:
                self._broker = _Http(("127.0.0.1", port), _BrokerHandler, self)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.broker_port = int(self._broker.server_address[1])
        self._serve(self._broker)

    def start(self) -> LoopbackAsapo:
        self._start_broker()
        self._serve(self._front)
        self._serve(self._receiver)
        return self

    def _authorize(self, text: str) -> tuple[dict[str, str] | None, int, str]:
        parts = text.split("%")
        if len(parts) != 7:
            return None, NET_WRONG_REQUEST, "malformed source credentials"
        kind, _instance, _step, beamtime, _beamline, source, token = parts
        if token not in self.state.tokens:
            return None, NET_AUTH_ERROR, "wrong token"
        if beamtime not in (self.state.beamtime, "auto"):
            return None, NET_AUTH_ERROR, f"token not valid for beamtime {beamtime}"
        cred = {"type": kind, "beamtime": self.state.beamtime, "source": source, "token": token}
        return cred, NET_OK, ""

    # -- faults ----------------------------------------------------------------------------------
    def revoke_token(self, token: str) -> None:
        """The token is no longer accepted by any service (as after `asapo token revoke`)."""
        with self.state.lock:
            self.state.tokens.discard(token)

    def restart_broker(self, down_seconds: float = 1.0) -> None:
        """Stop the broker, cut its open connections, and start it again on the same port."""
        assert self._broker is not None
        port = self.broker_port
        self._broker.shutdown()
        self._broker.server_close()
        self._cut(port)
        time.sleep(down_seconds)
        self._start_broker(port)

    def _cut(self, port: int) -> None:
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    if conn.getsockname()[1] == port:
                        conn.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        for server in (self._broker, self._front, self._receiver):
            if server is not None:
                server.shutdown()
                server.server_close()
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> LoopbackAsapo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(token: str, beamtime: str = "asapo_test") -> Iterator[LoopbackAsapo]:
    with LoopbackAsapo(token, beamtime) as service:
        yield service


def main(argv: list[str]) -> None:
    token = argv[1] if len(argv) > 1 else "loopback-token"
    beamtime = argv[2] if len(argv) > 2 else "asapo_test"
    with running(token, beamtime) as service:
        print(service.endpoint, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv)
