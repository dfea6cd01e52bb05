"""The asapo transport: a facility's ASAP::O through DESY's asapo_consumer / asapo_producer.

Every blocking library call runs in a daemon thread and is waited for only until a deadline this
module enforces itself: the libraries can block far past their own timeout when a server accepts
a connection and never answers. A call that misses its deadline raises `Unavailable`; its thread
is abandoned (and counted, so a hanging service cannot pile up threads without bound).

Producer sends are asynchronous in ASAP::O: `send` queues the message (bounded in flight) and the
library's callback confirms or fails it. `flush` waits for every confirmation and raises
`Unavailable` naming what failed or stayed unconfirmed; `close` flushes. Nothing the producer
did not report as failed (`failed`, `unconfirmed`) is lost.

Tokens are read from a file or an environment variable, held in memory only, never logged.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asapo_pipelines.transport.base import (
    DEFAULT_LEASE_SECONDS,
    Consumer,
    Message,
    Producer,
    StreamInfo,
    Transport,
    check_group,
    check_source,
    check_stream,
)
from asapo_pipelines.transport.errors import (
    CredentialsError,
    EndOfStream,
    MissingId,
    NoData,
    StreamFinished,
    TransportConfigError,
    TransportError,
    Unavailable,
)

#: shortest consumer timeout given to ASAP::O (seconds); see AsapoConsumer._call
MIN_WAIT = 0.5
#: ingest mode flag of a message whose payload was transferred (asapo common data_structs.h)
INGEST_TRANSFER_DATA = 1
#: in a message's user metadata on ASAP::O: its payload is b"" (sent without data, which the
#: producer needs for zero bytes); taken out again when the message is read
EMPTY_PAYLOAD_KEY = "_asapo_pipelines_empty_payload"
#: the share of a call's deadline given to the library as its own timeout, where its answer
#: at its timeout says more than ours would (`AsapoProducer._auto_id`)
LIBRARY_SHARE = 0.8
#: abandoned calls (threads still blocked in the library) tolerated before refusing new calls
MAX_STUCK_CALLS = 8
#: how often a message sent with an automatic id is sent again under a new one after the
#: service refused its id as taken by another producer (`AsapoProducer._resend_collided`)
MAX_ID_COLLISIONS = 20


def _id_taken(reason: str) -> bool:
    """The receiver refused a message because another message holds its id ("Duplicate ID";
    the loopback's "duplicate id N in stream S"), not a resend of the same one ("Duplicated
    request", which is stored)."""
    text = reason.lower()
    return "duplicate id" in text and "duplicated request" not in text


def _load_libs() -> tuple[Any, Any]:
    try:
        import asapo_consumer
        import asapo_producer
    except ImportError:
        raise TransportConfigError(
            "the asapo transport needs DESY's client libraries: "
            "pip install -e '.[asapo]' in the asapo-pipelines checkout"
        ) from None
    # 25.3 marks get_unacknowledged_messages and get_stream_list's `detailed` deprecated (since
    # 24.11.0) without a replacement for what they tell us; its warnings would reach users' logs
    warnings.filterwarnings(
        "ignore", message=r".*deprecated since version 24\.11", category=DeprecationWarning
    )
    return asapo_consumer, asapo_producer


class _Deadline:
    """Runs blocking library calls in threads and stops waiting at a deadline."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.stuck: list[threading.Thread] = []

    def call(self, what: str, timeout: float, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        self.stuck = [t for t in self.stuck if t.is_alive()]
        if len(self.stuck) >= MAX_STUCK_CALLS:
            raise Unavailable(
                f"ASAP::O at {self.endpoint} is not answering ({len(self.stuck)} earlier calls "
                "still hang); try again later"
            )
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["value"] = fn(*args, **kw)
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        thread = threading.Thread(target=run, name=f"asapo:{what}", daemon=True)
        thread.start()
        if not done.wait(max(0.0, timeout)):
            self.stuck.append(thread)
            _STUCK.append(thread)
            raise Unavailable(
                f"ASAP::O at {self.endpoint} did not answer {what} within {timeout:g} s"
            )
        if "error" in box:
            raise box["error"]
        return box.get("value")


_ABANDONED: list[Any] = []
_STUCK: list[threading.Thread] = []
_ENDPOINTS: set[str] = set()
_EXIT_HOOKED = False


def _hook_exit(endpoint: str) -> None:
    """At exit, cut the library's connections to our endpoints so no thread stays blocked.

    A request to a server that accepted the connection and never answers can block a library
    thread for ever, and the libraries' destructors wait for their threads: the process would
    never exit. Registered after the libraries are imported, so it runs before their own exit
    handlers; shutting sockets down makes the blocked reads fail at once.
    """
    global _EXIT_HOOKED
    _ENDPOINTS.add(endpoint)
    if not _EXIT_HOOKED:
        import atexit

        atexit.register(_unblock_all)
        _EXIT_HOOKED = True


def _unblock_all() -> None:
    import socket

    addresses: set[tuple[str, int]] = set()
    for endpoint in _ENDPOINTS:
        host, _, port = endpoint.rpartition(":")
        with contextlib.suppress(OSError, ValueError):
            for info in socket.getaddrinfo(
                host or "localhost", int(port), proto=socket.IPPROTO_TCP
            ):
                addresses.add((str(info[4][0]), int(info[4][1])))
    fd_dir = "/proc/self/fd"
    if not addresses or not os.path.isdir(fd_dir):
        return
    for name in os.listdir(fd_dir):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except (OSError, ValueError):
            continue
        try:
            peer = sock.getpeername()
            if isinstance(peer, tuple) and (str(peer[0]), int(peer[1])) in addresses:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.close()
    # let the unblocked calls return while the interpreter is still whole
    deadline = time.monotonic() + 3.0
    for thread in _STUCK:
        thread.join(max(0.0, deadline - time.monotonic()))


def _abandon(obj: Any) -> None:
    """Keep a library object that is blocked in a call alive for the whole process.

    Destroying it would run its C++ destructor, which waits for the hung request and so would
    hang the caller (or the interpreter's exit). One extra reference is leaked on purpose so even
    interpreter shutdown never destroys it.
    """
    _ABANDONED.append(obj)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


#: what ASAP::O's finish flag records when no next stream was named (broker mongodb.go)
NO_NEXT_STREAM = "asapo_no_next"


def _next_stream(name: Any) -> str | None:
    return None if not name or name == NO_NEXT_STREAM else str(name)


#: what ASAP::O's services say of a token they refuse: the broker's own check ("wrong or
#: expired token", "wrong token subject"), the authorizer's answer the broker passes on
#: ("authorizer rejected to authorize: ...", "authorizer returned 403 Forbidden: ..."; the broker
#: sends those with HTTP 503, so the client library calls them "service unavailable") and the
#: receiver's ("response:wrong token")
_REFUSAL = re.compile(
    r"wrong (or expired )?token|token (is )?(expired|revoked|not valid)|authorizer rejected|"
    r"authorizer returned 40[13]|not authorized|wrong token (subject|access type)"
)


def _refused_credentials(exc: BaseException | str) -> bool:
    return _REFUSAL.search(str(exc).lower()) is not None


def _reason(text: str) -> str:
    """The service's own words in an asapo library message, without the library's wrapping
    ("error: service unavailable, message: ..., details: api:...")."""
    found = re.findall(r"(?:message|response): ?(.*?)(?:, details:|$)", text)
    return (found[-1] if found else text).strip()


def _refused(settings: AsapoSettings, what: str, text: str) -> CredentialsError:
    """The token refused, said as such: a refusal the library reports as "service
    unavailable" would send an operator to check the network instead of the token."""
    where = f" in {settings.token_origin}" if settings.token_origin else ""
    return CredentialsError(
        f"ASAP::O at {settings.endpoint} refused the token{where} for beamtime "
        f"{settings.beamtime} ({what}: {_reason(text)}); put a valid, unexpired token for "
        f"beamtime {settings.beamtime} there"
    )


#: the library's answers that are about data, never about the token
_NOT_REFUSALS = ("AsapoStreamFinishedError", "AsapoEndOfStreamError", "AsapoNoDataError")


#: what the asapo library raises, instead of one of its own errors, when a service's answer is
#: not ASAP::O's and it cannot parse it: a web server's page or a proxy's body where the broker
#: should be (`'NoneType' object has no attribute 'decode'`), bytes that are no text
_NOT_ASAPO_ANSWER = (AttributeError, UnicodeDecodeError, json.JSONDecodeError)
#: how much of a service's words a sentence quotes
_QUOTED = 300


def _quoted(text: str) -> str:
    """A service's words as a sentence can carry them: an HTML page (a web server or proxy
    where ASAP::O should be) by its title, not its many lines; other text on one line, cut."""
    page = re.search(r"<!doctype html|<html", text, re.IGNORECASE)
    if page is not None:
        title = re.search(r"<title>\s*(.*?)\s*</title>", text, re.IGNORECASE | re.DOTALL)
        head = " ".join(text[: page.start()].split())  # the library's words before the page
        said = f"{head} an HTML page" if head else "an HTML page"
        return said + (f" ({title.group(1)!r})" if title else "")
    text = " ".join(text.split())
    return text if len(text) <= _QUOTED else text[: _QUOTED - 3] + "..."


def _map_error(exc: BaseException, what: str, settings: AsapoSettings) -> TransportError:
    """One of the interface's errors for an asapo library exception."""
    endpoint = settings.endpoint
    name = type(exc).__name__
    if isinstance(exc, _NOT_ASAPO_ANSWER):
        return Unavailable(
            f"ASAP::O at {endpoint} gave an answer to {what} that is not ASAP::O's ({name}: "
            f"{_quoted(str(exc))}); check that {endpoint} is the ASAP::O service"
        )
    said = str(exc).strip()
    if name not in _NOT_REFUSALS and _refused_credentials(said):  # the words in full
        return _refused(settings, what, said)
    text = _quoted(said) or name
    if name == "AsapoStreamFinishedError":
        nxt = _next_stream(getattr(exc, "next_stream", None))
        return StreamFinished(
            f"{what}: the stream is finished" + (f"; next stream is {nxt!r}" if nxt else ""), nxt
        )
    if name == "AsapoEndOfStreamError":
        return EndOfStream(f"{what}: no such message yet ({text})")
    if name == "AsapoNoDataError":
        return NoData(f"{what}: no data ({text})")
    if name in (
        "AsapoUnavailableServiceError",
        "AsapoTimeOutError",
        "AsapoRequestsPoolIsFull",
        "AsapoInterruptedTransactionError",
    ):
        return Unavailable(f"ASAP::O at {endpoint} is unavailable for {what}: {text}")
    if name in ("AsapoWrongInputError", "AsapoUnsupportedClientError"):
        return TransportConfigError(f"ASAP::O refused {what}: {text}")
    return TransportError(f"ASAP::O failed {what}: {text}")


@dataclass
class AsapoSettings:
    endpoint: str
    beamtime: str = "auto"
    beamline: str = "auto"
    data_source_prefix: str = ""
    token: str = field(default="", repr=False)
    request_timeout: float = 10.0
    source_type: str = "processed"
    max_in_flight: int = 1000
    threads: int = 2
    has_filesystem: bool = False
    source_path: str = "auto"
    #: where the token was read ("the token file /path", "the environment variable X"), said
    #: when the service refuses it
    token_origin: str = ""


class AsapoProducer(Producer):
    def __init__(self, transport: AsapoTransport, data_source: str) -> None:
        self.data_source = data_source
        self._s = transport.settings
        self._lib = transport.producer_lib
        self._deadline = _Deadline(self._s.endpoint)
        self._cond = threading.Condition()
        # (stream, message id, or a label for stream finish flags and metadata) -> queued at
        self._pending: dict[tuple[str, int | str], float] = {}
        #: (stream, id or label, reason) of everything the service did not confirm
        self.failed: list[tuple[str, int | str, str]] = []
        #: failures an earlier flush already raised: (stream, id or label)
        self._reported: set[tuple[str, int | str]] = set()
        self._next_ids: dict[str, int] = {}
        #: (stream, id) -> (data, user metadata, ingest mode, collisions so far) of each
        #: unconfirmed message whose id this producer chose (`_auto_id`): several producers of
        #: one stream (a unit's replicas, its error stream) each count from the last id the
        #: service had when they first wrote, so their ids collide; such a message is sent
        #: again under a new id (`_resend_collided`) instead of being lost
        self._chosen: dict[tuple[str, int], tuple[Any, dict[str, Any], int, int]] = {}
        #: (stream, id) of chosen-id messages the service refused as taken, to send again
        self._collided: list[tuple[str, int]] = []
        self._closed = False
        full_source = self._s.data_source_prefix + data_source
        try:
            self._p = self._deadline.call(
                "create_producer",
                self._s.request_timeout,
                self._lib.create_producer,
                self._s.endpoint,
                self._s.source_type,
                self._s.beamtime,
                self._s.beamline,
                full_source,
                self._s.token,
                self._s.threads,
                int(self._s.request_timeout * 1000),
            )
            self._p.set_requests_queue_limits(size=self._s.max_in_flight)
            self._p.set_log_level("error")
        except TransportError:
            raise
        except Exception as exc:
            raise _map_error(exc, f"creating a producer for {data_source!r}", self._s) from None

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"producer of data source {self.data_source!r} is closed")

    @property
    def unconfirmed(self) -> list[tuple[str, int | str]]:
        """Messages queued whose delivery the service has not confirmed yet."""
        with self._cond:
            return sorted(self._pending, key=str)

    def _queue(self, stream: str, key: int | str) -> Callable[[Any, Any], None]:
        with self._cond:
            self._pending[(stream, key)] = time.time()
        return lambda info, err: self._done(stream, key, info, err)

    def _done(self, stream: str, mid: int | str, _info: Any, err: Any) -> None:
        with self._cond:
            self._pending.pop((stream, mid), None)
            chosen = self._chosen.pop((stream, mid), None) if isinstance(mid, int) else None
            if err is not None and chosen is not None and _id_taken(str(err)):
                if chosen[3] < MAX_ID_COLLISIONS:
                    key = (stream, int(mid))
                    self._chosen[key] = chosen
                    self._collided.append(key)
                else:
                    self.failed.append((stream, mid, f"{err} (its id was taken {chosen[3]} times)"))
            elif err is not None and "duplicated request" not in str(err):
                self.failed.append((stream, mid, str(err)))
            else:
                # stored now (a resend of what failed before): no longer a failure
                self.failed = [f for f in self.failed if (f[0], f[1]) != (stream, mid)]
                self._reported.discard((stream, mid))
            self._cond.notify_all()

    def _wait_room(self) -> None:
        deadline = time.monotonic() + self._s.request_timeout
        with self._cond:
            while len(self._pending) >= self._s.max_in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Unavailable(
                        f"ASAP::O at {self._s.endpoint} confirmed none of "
                        f"{len(self._pending)} messages in flight within "
                        f"{self._s.request_timeout:g} s; this message was not sent"
                    )
                self._cond.wait(left)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            return self._deadline.call(what, self._s.request_timeout, fn, *args, **kw)
        except TransportError:
            raise
        except Exception as exc:
            raise _map_error(exc, what, self._s) from None

    def _auto_id(self, stream: str) -> int:
        nxt = self._next_ids.get(stream)
        if nxt is None:
            nxt = self._service_next(stream)
        self._next_ids[stream] = nxt + 1
        return nxt

    def _service_next(self, stream: str) -> int:
        """The id after the last one the service holds in `stream` (1 for a new stream)."""
        try:
            info = self._call(
                f"stream info of {stream!r}",
                self._p.get_stream_info,
                stream,
                # the library retries a broker answering 503 until its own timeout, then
                # says why (a token its authorizer refused): it gives up before we do
                int(self._s.request_timeout * 1000 * LIBRARY_SHARE),
            )
            return int(info.get("lastId", 0)) + 1
        except CredentialsError:
            raise  # a wrong or revoked token, not an unknown stream
        except (TransportConfigError, EndOfStream, NoData):
            return 1

    def _resend_collided(self) -> None:
        """Send again, each under a new id, the messages whose chosen id another producer of
        the stream took first: ids past the last one the service holds now, so that this
        producer stops meeting the others' messages."""
        with self._cond:
            collided, self._collided = self._collided, []
            entries = [(key, self._chosen.pop(key)) for key in collided if key in self._chosen]
        # the service asked once per stream and round, not once per message
        for stream in dict.fromkeys(key[0] for key, _ in entries):
            self._next_ids[stream] = max(self._next_ids.get(stream, 1), self._service_next(stream))
        for (stream, _old), (data, user_meta, mode, times) in entries:
            self._send_data(stream, self._auto_id(stream), data, user_meta, mode, times + 1)

    def send(
        self,
        stream: str,
        payload: bytes | bytearray | memoryview | None,
        metadata: Mapping[str, Any] | None = None,
        *,
        id: int | None = None,
    ) -> int:
        self._check_open()
        check_stream(stream)
        mid = self._auto_id(stream) if id is None else int(id)
        if mid < 1:
            raise TransportConfigError(f"message ids start at 1, got {mid}")
        self._wait_room()
        lib = self._lib
        user_meta = dict(metadata or {})
        if payload is not None and not memoryview(payload).nbytes:
            # the producer refuses a zero-length buffer ("Out of bounds on buffer access"):
            # sent without data, marked so that it is read back as b"", not as no payload
            user_meta[EMPTY_PAYLOAD_KEY] = True
            payload = None
        if payload is None:
            data = None
            mode = lib.INGEST_MODE_TRANSFER_METADATA_ONLY | lib.INGEST_MODE_STORE_IN_DATABASE
        else:
            import numpy as np

            data = np.frombuffer(payload, dtype=np.uint8)
            mode = lib.DEFAULT_INGEST_MODE
        # an id of our choosing may be taken by another producer: kept to send it again
        return self._send_data(stream, mid, data, user_meta, mode, None if id is not None else 0)

    def _send_data(
        self,
        stream: str,
        mid: int,
        data: Any,
        user_meta: dict[str, Any],
        mode: int,
        collisions: int | None,
    ) -> int:
        """Queue one message; `collisions`: how often its id, one `_auto_id` chose, was
        taken before (None: the caller chose the id, a refusal of it is the caller's)."""
        if collisions is not None:
            with self._cond:
                self._chosen[(stream, mid)] = (data, user_meta, mode, collisions)
        callback = self._queue(stream, mid)
        try:
            self._call(
                f"send of message {mid} to stream {stream!r}",
                self._p.send,
                mid,
                f"{self._s.source_type}/{self.data_source}/{stream}/{mid}",
                data,
                user_meta=user_meta,
                ingest_mode=mode,
                stream=stream,
                callback=callback,
            )
        except TransportError:
            with self._cond:
                self._pending.pop((stream, mid), None)
                self._chosen.pop((stream, mid), None)
            raise
        return mid

    def finish_stream(
        self, stream: str, *, last_id: int | None = None, next_stream: str | None = None
    ) -> None:
        self._check_open()
        check_stream(stream)
        if last_id is None:
            self.flush(self._s.request_timeout)
            info = self._call(
                f"stream info of {stream!r}",
                self._p.get_stream_info,
                stream,
                int(self._s.request_timeout * 1000),
            )
            last_id = int(info.get("lastId", 0))
        self._call(
            f"finishing stream {stream!r}",
            self._p.send_stream_finished_flag,
            stream,
            last_id,
            next_stream=next_stream,
            callback=self._queue(stream, "finish flag"),
        )
        self.flush(self._s.request_timeout)

    def set_stream_metadata(self, stream: str, metadata: Mapping[str, Any]) -> None:
        self._check_open()
        check_stream(stream)
        self._call(
            f"metadata of stream {stream!r}",
            self._p.send_stream_meta,
            json.dumps(dict(metadata)),
            mode="replace",
            upsert=True,
            stream=stream,
            callback=self._queue(stream, "stream metadata"),
        )
        self.flush(self._s.request_timeout)

    def set_source_metadata(self, metadata: Mapping[str, Any]) -> None:
        self._check_open()
        self._call(
            "data source metadata",
            self._p.send_beamtime_meta,
            json.dumps(dict(metadata)),
            callback=self._queue("", "data source metadata"),
        )
        self.flush(self._s.request_timeout)

    def flush(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            with self._cond:
                while self._pending and not self._collided:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if not self._collided or time.monotonic() >= deadline:
                    break
            self._resend_collided()
        with self._cond:
            # what still waits to be sent again under a new id is not stored either
            for stream, mid in self._collided:
                self.failed.append((stream, mid, "its id was taken by another producer"))
                self._chosen.pop((stream, mid), None)
            self._collided = []
            pending = sorted(self._pending, key=str)
            failed = [f for f in self.failed if (f[0], f[1]) not in self._reported]
            self._reported.update((f[0], f[1]) for f in failed)
        if failed and _refused_credentials(failed[0][2]):
            stream, what, reason = failed[0]
            what = f"message {what}" if isinstance(what, int) else what
            # not stored, as `failed` says; a retry meets the same refusal
            raise _refused(self._s, f"{len(failed)} not stored, first {what} of {stream!r}", reason)
        if failed or pending:
            parts = []
            if failed:
                stream, what, reason = failed[0]
                what = f"message {what}" if isinstance(what, int) else what
                parts.append(f"{len(failed)} failed (first: {what} of stream {stream!r}: {reason})")
            if pending:
                parts.append(f"{len(pending)} unconfirmed after {timeout:g} s")
            raise Unavailable(
                f"ASAP::O at {self._s.endpoint} did not store every message: "
                + "; ".join(parts)
                + " (see producer.failed and producer.unconfirmed)"
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.flush(self._s.request_timeout)
        finally:
            self._release()

    def _release(self) -> None:
        """Stop the library producer's threads and let it go. The library registers every
        producer's `cleanup` with atexit, which keeps it, its request threads and its
        connections alive until the process exits: a worker or a command that opens and
        closes producers would gather threads.

        Only one the service answered all along is let go: one with messages in flight, a
        request that failed or timed out, or a call that hangs is kept as it is (`_abandon`).
        Its threads may be blocked on a service that accepted a connection and never answers,
        and the library's destructor waits for them: closing hung for good (a test's silent
        server)."""
        producer, self._p = self._p, None
        with self._cond:
            troubled = bool(self._pending or self.failed)
        if troubled or any(t.is_alive() for t in self._deadline.stuck):
            _abandon(producer)
            return
        import atexit

        try:
            self._deadline.call("closing the producer", self._s.request_timeout, producer.cleanup)
        except Unavailable:
            _abandon(producer)  # its threads did not stop in time: keep it, as a hung call is
            return
        except Exception:
            pass  # the messages are flushed: only its threads were left to stop
        atexit.unregister(producer.cleanup)


class AsapoConsumer(Consumer):
    def __init__(
        self, transport: AsapoTransport, data_source: str, group: str, lease_seconds: float
    ) -> None:
        self.data_source = data_source
        self.group = check_group(group)
        self._s = transport.settings
        self._deadline = _Deadline(self._s.endpoint)
        self._counts: dict[tuple[str, int], int] = {}
        #: per stream: the highest id seen, or the stream's last id when first read
        self._high: dict[str, int] = {}
        self._closed = False
        self._lib = transport.consumer_lib
        self._lease_ms = int(lease_seconds * 1000)
        self._c = self._create()

    def _create(self) -> Any:
        full_source = self._s.data_source_prefix + self.data_source
        try:
            c = self._deadline.call(
                "create_consumer",
                self._s.request_timeout,
                self._lib.create_consumer,
                self._s.endpoint,
                self._s.source_path,
                self._s.has_filesystem,
                self._s.beamtime,
                full_source,
                self._s.token,
                int(self._s.request_timeout * 1000),
            )
            # ASAP::O's resend is the lease: unacknowledged messages come back after it
            c.set_resend_nacs(True, self._lease_ms, 1_000_000)
        except TransportError:
            raise
        except Exception as exc:
            raise _map_error(
                exc, f"creating a consumer for {self.data_source!r}", self._s
            ) from None
        return c

    def _call(
        self, what: str, wait: float, name: str | Callable[..., Any], *args: Any, **kw: Any
    ) -> Any:
        if self._closed:
            raise TransportError(f"consumer of data source {self.data_source!r} is closed")
        if self._c is None:
            self._c = self._create()
        c = self._c
        try:
            # ASAP::O's consumer timeout covers the request itself as well as the wait for
            # data, so it never goes below MIN_WAIT (a remote broker needs a round trip)
            wait = max(wait, MIN_WAIT)
            c.set_timeout(int(wait * 1000))
            fn = getattr(c, name) if isinstance(name, str) else functools.partial(name, c)
            return self._deadline.call(what, wait + self._s.request_timeout, fn, *args, **kw)
        except Unavailable:
            if self._deadline.stuck and self._deadline.stuck[-1].is_alive():
                # the library object is blocked in a call: never touch it again (its
                # destructor would wait for the hung request), use a fresh one next time
                with contextlib.suppress(Exception):
                    c.interrupt_current_operation()
                _abandon(c)
                self._c = None
            raise
        except TransportError:
            raise
        except Exception as exc:
            raise _map_error(exc, what, self._s) from None

    def _message(self, stream: str, data: Any, meta: dict, count: int) -> Message:
        payload: memoryview | bytes | None = None if data is None else memoryview(data).cast("B")
        user_meta = dict(meta.get("meta") or {})
        if user_meta.pop(EMPTY_PAYLOAD_KEY, None) is True and payload is None:
            payload = b""  # sent as b"" (see `send`)
        ts = meta.get("timestamp", 0)
        return Message(
            data_source=self.data_source,
            stream=stream,
            id=int(meta["_id"]),
            payload=payload,
            metadata=user_meta,
            delivery_count=count,
            timestamp=ts / 1e9 if ts > 1e12 else float(ts),
        )

    @staticmethod
    def _with_data(c: Any, method: str, *args: Any, **kw: Any) -> tuple[Any, dict]:
        """A message's metadata, then its payload if it has one.

        Asking the library for data (meta_only=False) fails with "data not in cache" on a
        message sent without a payload (ingest mode without transfer-data, nothing stored in a
        file), after the group's pointer has already moved past it. So read the metadata first and
        fetch the payload only when the ingest mode says one was transferred.
        """
        _, meta = getattr(c, method)(*args, meta_only=True, **kw)
        mode = int(meta.get("ingest_mode", INGEST_TRANSFER_DATA))
        if not mode & INGEST_TRANSFER_DATA:
            return None, meta
        if int(meta.get("size", 0)) == 0:
            return b"", meta
        return c.retrieve_data(meta), meta

    def get_next(self, stream: str, *, timeout: float = 0.0) -> Message:
        check_stream(stream)
        try:
            data, meta = self._call(
                f"next message of stream {stream!r}",
                timeout,
                self._with_data,
                "get_next",
                self.group,
                stream=stream,
                ordered=False,
            )
        except EndOfStream as exc:
            raise NoData(str(exc)) from None
        except StreamFinished:
            # ASAP::O's broker says "finished" once its pointer passed the finish flag, while
            # messages leased to a consumer that died are still unacknowledged; they come back
            # after their lease, so the stream is not done for this group yet
            pending = self._unacknowledged(stream)
            if pending:
                raise NoData(
                    f"next message of stream {stream!r}: the stream is finished but "
                    f"{len(pending)} of its messages are not acknowledged yet (they come back "
                    "after their lease)"
                ) from None
            raise
        mid = int(meta["_id"])
        key = (stream, mid)
        self._counts[key] = self._counts.get(key, 0) + 1
        msg = self._message(stream, data, meta, self._counts[key])
        msg.possibly_redelivered = self._possibly_redelivered(stream, mid)
        return msg

    def _unacknowledged(self, stream: str) -> list[int]:
        ids = self._call(
            f"unacknowledged messages of stream {stream!r}",
            0.0,
            "get_unacknowledged_messages",
            self.group,
            0,
            0,
            stream=stream,
        )
        return list(ids or [])

    def _possibly_redelivered(self, stream: str, mid: int) -> bool:
        """Whether `mid` may have gone to another consumer of the group before (it died).

        The broker hands out new messages in arrival order and only redelivers below that
        pointer, so a message at or below the highest id this consumer has seen, or that was
        already in the stream when this consumer first read it, may be a redelivery.
        """
        seen = self._high.get(stream)
        if seen is None:
            seen = self._high[stream] = self.stream_info(stream).last_id
        self._high[stream] = max(seen, mid)
        return self._counts[(stream, mid)] > 1 or mid <= seen

    def get_by_id(self, stream: str, id: int, *, timeout: float = 0.0) -> Message:
        return self._by_id(stream, id, timeout, self._with_data)

    def get_metadata_by_id(self, stream: str, id: int, *, timeout: float = 0.0) -> Message:
        # the broker's answer alone: no request to the file transfer service for the payload
        return self._by_id(stream, id, timeout, self._meta_only)

    def _by_id(self, stream: str, id: int, timeout: float, read: Callable[..., Any]) -> Message:
        check_stream(stream)
        try:
            data, meta = self._call(
                f"message {id} of stream {stream!r}", timeout, read, "get_by_id", id, stream=stream
            )
        except NoData as exc:
            raise MissingId(str(exc)) from None
        return self._message(stream, data, meta, 0)

    @staticmethod
    def _meta_only(c: Any, method: str, *args: Any, **kw: Any) -> tuple[Any, dict]:
        return getattr(c, method)(*args, meta_only=True, **kw)

    def get_last(self, stream: str, *, timeout: float = 0.0) -> Message:
        check_stream(stream)
        try:
            data, meta = self._call(
                f"last message of stream {stream!r}",
                timeout,
                self._with_data,
                "get_last",
                stream=stream,
            )
        except StreamFinished:
            # ASAP::O refuses get_last on finished streams; its last message still exists
            return self.get_by_id(stream, self.stream_info(stream).last_id, timeout=timeout)
        return self._message(stream, data, meta, 0)

    def acknowledge(self, stream: str, id: int) -> None:
        check_stream(stream)
        try:
            self._call(
                f"acknowledging message {id} of stream {stream!r}",
                0.0,
                "acknowledge",
                self.group,
                id,
                stream=stream,
            )
        except TransportConfigError as exc:
            if "acknowledged" not in str(exc):  # a second ack is not an error here
                raise
        self._counts.pop((stream, id), None)

    def nack(self, stream: str, id: int, delay: float = 0.0) -> None:
        check_stream(stream)
        self._call(
            f"negative acknowledgement of message {id} of stream {stream!r}",
            0.0,
            "neg_acknowledge",
            self.group,
            id,
            delay_ms=int(max(0.0, delay) * 1000),
            stream=stream,
        )

    @staticmethod
    def _info(d: Mapping[str, Any]) -> StreamInfo:
        def seconds(v: Any) -> float | None:
            return None if not v else (v / 1e9 if v > 1e12 else float(v))

        return StreamInfo(
            name=str(d.get("name", "")),
            last_id=int(d.get("lastId", 0)),
            finished=bool(d.get("finished", False)),
            next_stream=_next_stream(d.get("nextStream")),
            created=seconds(d.get("timestampCreated")),
            last_timestamp=seconds(d.get("timestampLast")),
        )

    def streams(self) -> list[StreamInfo]:
        rows = self._call("stream list", 0.0, "get_stream_list", "", "all")
        return [self._info(r) for r in rows]

    def stream_info(self, stream: str) -> StreamInfo:
        check_stream(stream)
        try:
            row = self._call(
                f"stream info of {stream!r}",
                0.0,
                "get_stream_info",
                stream,
                int(self._s.request_timeout * 1000),
            )
        except (NoData, EndOfStream):
            return StreamInfo(name=stream)
        # an unknown stream comes back as an all-zero record without a name
        return self._info({**row, "name": stream})

    def get_stream_metadata(self, stream: str) -> dict[str, Any]:
        try:
            return dict(self._call("stream metadata", 0.0, "get_stream_meta", stream) or {})
        except (NoData, EndOfStream):
            return {}

    def get_source_metadata(self) -> dict[str, Any]:
        try:
            return dict(self._call("data source metadata", 0.0, "get_beamtime_meta") or {})
        except (NoData, EndOfStream):
            return {}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._c = None


class AsapoTransport(Transport):
    """A facility's ASAP::O service. Build it with `from_spec` from a pipeline's settings."""

    kind = "asapo"
    separate_store = "data_source_prefix"

    def __init__(self, settings: AsapoSettings) -> None:
        self.settings = settings
        self.consumer_lib, self.producer_lib = _load_libs()
        _hook_exit(settings.endpoint)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> AsapoTransport:
        spec = dict(spec)
        allowed = {f for f in AsapoSettings.__dataclass_fields__ if f not in _NOT_OPTIONS}
        allowed |= {"token_file", "token_env"}
        if "token" in spec:
            raise TransportConfigError(
                "never write an ASAP::O token into a pipeline; use token_file or token_env"
            )
        extra = sorted(set(spec) - allowed)
        if extra:
            raise TransportConfigError(
                "unknown option(s) for the asapo transport: " + ", ".join(extra)
            )
        if not spec.get("endpoint"):
            raise TransportConfigError("the asapo transport needs an endpoint (host:port)")
        if not spec.get("beamtime") and not spec.get("beamline"):
            raise TransportConfigError("the asapo transport needs a beamtime or a beamline")
        token, origin = _read_token(spec.pop("token_file", None), spec.pop("token_env", None))
        try:
            settings = AsapoSettings(token=token, token_origin=origin, **spec)
        except TypeError as exc:
            raise TransportConfigError(f"bad asapo transport settings: {exc}") from None
        if settings.request_timeout <= 0:
            raise TransportConfigError("request_timeout must be positive")
        return cls(settings)

    def producer(self, data_source: str) -> AsapoProducer:
        return AsapoProducer(self, check_source(data_source))

    def consumer(
        self, data_source: str, group: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> AsapoConsumer:
        if lease_seconds <= 0:
            raise TransportConfigError(f"lease_seconds must be positive, got {lease_seconds}")
        return AsapoConsumer(self, check_source(data_source), group, lease_seconds)

    def data_sources(self) -> list[str]:
        with AsapoConsumer(self, "default", "listing", DEFAULT_LEASE_SECONDS) as probe:
            names = probe._call("data source list", 0.0, "get_source_list")
        prefix = self.settings.data_source_prefix
        return sorted(n[len(prefix) :] for n in names or [] if n.startswith(prefix))

    def close(self) -> None:
        """Producers and consumers own their library objects."""


#: settings that are not the pipeline's options
_NOT_OPTIONS = frozenset({"token", "token_origin"})


def _read_token(token_file: str | None, token_env: str | None) -> tuple[str, str]:
    """The token, and where it was read, for a sentence saying it was refused."""
    if token_file:
        path = Path(token_file).expanduser()
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise TransportConfigError(
                f"cannot read the ASAP::O token file {path}: {exc.strerror}"
            ) from None
        if not token:
            raise TransportConfigError(f"the ASAP::O token file {path} is empty")
        return token, f"the token file {path}"
    env = token_env or "ASAPO_TOKEN"
    token = os.environ.get(env, "").strip()
    if not token:
        raise TransportConfigError(
            f"no ASAP::O token: set the environment variable {env} or give token_file"
        )
    return token, f"the environment variable {env}"


def open_asapo(options: Mapping[str, Any]) -> AsapoTransport:
    """Runtime of the ``asapo`` transport (registered by `default_backends`; see
    `AsapoTransport.from_spec`)."""
    return AsapoTransport.from_spec(options)
