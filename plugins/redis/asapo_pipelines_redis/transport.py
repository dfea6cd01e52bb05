"""The Redis Streams transport: the transport interface on one redis-server.

Key layout (``P`` is ``<key_prefix>:{<data source>}``; the braces are a Redis Cluster hash tag,
so every key of one data source lives in one slot and each Lua script touches one slot)::

    <key_prefix>:sources        SET     the data sources written so far
    <key_prefix>:store-id       STRING  a random id given the store when it is first written
    <key_prefix>:writes         STRING  the store's write count (an integer)
    P:meta                      STRING  the data source's metadata (JSON)
    P:streams                   ZSET    stream name -> creation time (listing order)
    P:i:<stream>                HASH    created, last_id, max_id, last_ts, finished, finish_id,
                                        next_stream, meta, size (the stream's state)
    P:x:<stream>                STREAM  one entry per message: id, ts, size, meta and either
                                        p (the payload inline) or f (its file under payload_dir)
    P:n:<stream>                HASH    message id -> stream entry id (random access by id)

A message's id (1-based, chosen by the producer or the next free one) is not the Redis entry id:
messages may arrive late and out of order, and Redis entry ids only grow. Each send is one Lua
script, so the entry, its id index and the stream's state change together or not at all.

Consumer groups are Redis consumer groups on ``P:x:<stream>`` (created at id 0 by the first
consumer that reads, so a group sees every message). Each consumer object is one Redis consumer
(a unique name); ``get_next`` first reclaims entries idle for longer than the lease with
XAUTOCLAIM (a consumer that died, or a nack), then reads new ones with XREADGROUP. A nack with a
delay sets the entry's idle time to ``lease - delay`` (XCLAIM IDLE): it comes back after the
delay; ``extend_lease`` sets it to 0 (a whole lease from now), only while the entry is still
pending with this consumer. Acknowledgement is XACK.

Payloads above ``inline_max`` are written to a file under ``payload_dir`` (a directory every node
mounts) before the message that names them, so a message never points at a missing file; a
producer killed between the two leaves an unreferenced file that retention removes with its
stream. Every call has a deadline (``timeout``, socket and connect timeouts). A call that may be
repeated safely (a send, with its token; a read; XACK; XAUTOCLAIM, whose entries an answer lost
stay pending and come back after the lease) is tried again while the connection breaks, for up
to ``RIDE_OUT_TIMEOUTS`` times ``timeout``, so a Redis restarted with its data costs a worker
nothing; a Redis that stays down, is slow or refuses the password gives `Unavailable` or
`TransportConfigError` with one sentence.

A Redis may also come back without its data (no persistence, a lost disk) or be emptied under
the workers (FLUSHALL). Its stream ids then start again at 1, and a worker going on would write
outputs keyed by input ids that its results already hold (skipped as duplicates, in silence).
So the store has an id (``<key_prefix>:store-id``), written by the first producer a transport
opens on a store without one (`pipeline run` and `deploy` record the run through one; a store
written before the id existed is adopted so). Every new connection compares it with the id the
transport knows, and so do the send, finish and claim scripts (FLUSHALL breaks no connection):
a missing or changed id is `StoreLost` (exit 78, no restart), and the transport reads and
writes nothing more.

A Redis restarted from an older RDB snapshot (no append-only file) keeps the id but not the
writes since: messages sent after it are gone (their ids are given again), acknowledgements
undone (messages delivered again). So the send, finish and acknowledge scripts, and a claim
that hands out messages, add one to the store's write count (``<key_prefix>:writes``) in the
same script as their write, and answer it; each transport keeps the highest count it saw and
gives it to those scripts, and every new connection compares it too. A store counting fewer
went back in time: `StoreLost` as above. A worker that wrote nothing since the snapshot cannot
tell; those whose writes were lost can (docs/transports.md says what stays undetected).
"""

from __future__ import annotations

import contextlib
import functools
import json
import mmap
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote, urlsplit

import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from asapo_pipelines.sdk.transports import (
    DEFAULT_LEASE_SECONDS,
    Consumer,
    CorruptPayload,
    CredentialsError,
    DuplicateId,
    EndOfStream,
    Message,
    MissingId,
    NoData,
    Producer,
    PruneReport,
    StorageError,
    StreamFinished,
    StreamInfo,
    Transport,
    TransportConfigError,
    TransportError,
    Unavailable,
    check_group,
    check_source,
    check_stream,
    decode_metadata,
    encode_metadata,
)
from asapo_pipelines_redis.config import RedisConfig

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: payloads from this size on are memory-mapped instead of read (no copy)
MMAP_MIN = 256 * 1024
#: longest a blocking XREADGROUP waits before the consumer looks for expired leases again
BLOCK_SLICE_S = 0.2
#: how often a producer applies the retention policy to a stream it writes
RETENTION_EVERY_S = 1.0
#: entries one retention script call looks at (keeps each script call short)
TRIM_CHUNK = 500
#: a call whose connection breaks is tried again for up to this many times the `timeout`: long
#: enough for a Redis restarted with its data, short enough that one down ends the worker
RIDE_OUT_TIMEOUTS = 3


class StoreLost(StorageError):
    """The Redis lost the store's data (restarted empty, or flushed) while a transport used it:
    its store id is gone or another. A restart of the worker would meet the same (`damaged`:
    exit 78, not restarted); what the run had written is gone, so only a fresh run can go on."""

    def __init__(self, message: str) -> None:
        from asapo_pipelines.sdk import storage

        super().__init__(message, storage.DAMAGED)


# -- Lua scripts (each runs atomically inside Redis) ------------------------------------------


#: Lua lines that refuse to work on a store other than the transport's: KEYS[n] is the store id
#: key, ARGV[m] the id the transport knows ("" for one that knows none: it checks nothing).
#: Redis answers "STORELOST <id found>" (`_Conn.error` makes it `StoreLost`).
#: Then the store's write count: KEYS[n + 1] the counter, ARGV[m + 1] the highest count this
#: transport has seen. A count below it means the store went back in time (Redis restarted from
#: an older snapshot): "STOREBEHIND <count found> <count seen>". `writes` is the count found;
#: a script that writes counts itself with `writes = redis.call('INCR', KEYS[n + 1])`.
def _store_check(key: int, arg: int) -> str:
    return (
        f"local sid = redis.call('GET', KEYS[{key}])\n"
        f"if ARGV[{arg}] ~= '' and sid ~= ARGV[{arg}] then\n"
        "  return redis.error_reply('STORELOST ' .. (sid or ''))\n"
        "end\n"
        f"local counted = redis.call('GET', KEYS[{key + 1}]) or '0'\n"
        "local writes = tonumber(counted)\n"
        f"if writes < tonumber(ARGV[{arg + 1}]) then\n"
        f"  return redis.error_reply('STOREBEHIND ' .. counted .. ' ' .. ARGV[{arg + 1}])\n"
        "end\n"
    )


#: KEYS: streams zset, info hash, stream, id index, send token, store id, write count. ARGV:
#: stream name, now, explicit id or "", store id, write count seen, then per message: size,
#: meta, kind ("p" inline, "f" file, "n" none), data. Returns {write count, id, id, ...}.
#: The token remembers a batch's ids for a while: a send retried after a lost answer (the
#: connection broke after Redis stored it) gets the same ids instead of storing it twice.
#: The shebang makes Redis refuse the whole script up front when it is out of memory: a script
#: is not rolled back, and one stopped half-way would leave entries without their stream state.
SEND = (
    "#!lua\n"
    + _store_check(6, 4)
    + """local done = redis.call('GET', KEYS[5])
if done then
  local again = cjson.decode(done)
  table.insert(again, 1, writes)
  return again
end
writes = redis.call('INCR', KEYS[7])
local name, now, explicit = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HEXISTS', KEYS[2], 'created') == 0 then
  redis.call('ZADD', KEYS[1], 'NX', now, name)
  redis.call('HSET', KEYS[2], 'created', now, 'last_id', 0, 'max_id', 0, 'size', 0,
             'finished', 0)
end
local last = tonumber(redis.call('HGET', KEYS[2], 'last_id'))
local maxid = tonumber(redis.call('HGET', KEYS[2], 'max_id'))
local ids, added = {}, 0
local i = 6
while i <= #ARGV do
  local size, meta, kind, data = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local mid
  if explicit ~= '' then mid = tonumber(explicit) else mid = last + 1 end
  local existing = redis.call('HGET', KEYS[4], mid)
  if existing then
    local old = redis.call('XRANGE', KEYS[3], existing, existing)
    local same = false
    if #old > 0 then
      local f = old[1][2]
      local osize, ometa
      for j = 1, #f, 2 do
        if f[j] == 'size' then osize = f[j + 1] elseif f[j] == 'meta' then ometa = f[j + 1] end
      end
      same = (osize == size and ometa == meta)
    end
    if not same then return redis.error_reply('DUPLICATE ' .. mid) end
  else
    local eid
    if kind == 'n' then
      eid = redis.call('XADD', KEYS[3], '*', 'id', mid, 'ts', now, 'size', size, 'meta', meta)
    else
      eid = redis.call('XADD', KEYS[3], '*', 'id', mid, 'ts', now, 'size', size, 'meta', meta,
                       kind, data)
    end
    redis.call('HSET', KEYS[4], mid, eid)
    added = added + tonumber(size)
    if mid > maxid then maxid = mid end
  end
  if mid > last then last = mid end
  ids[#ids + 1] = mid
end
redis.call('HSET', KEYS[2], 'last_id', last, 'max_id', maxid, 'last_ts', now)
redis.call('HINCRBY', KEYS[2], 'size', added)
redis.call('SET', KEYS[5], cjson.encode(ids), 'EX', 600)
table.insert(ids, 1, writes)
return ids
"""
)

#: KEYS: stream, info hash, store id, write count. ARGV: group, consumer, lease ms, count,
#: store id, write count seen. Returns {0, write count} (no stream yet), {1, write count,
#: finished, next_stream, pending, newest entry id} (nothing to hand out) or
#: {2, write count, {{entry id, fields, delivery count}, ...}}. Only a claim that hands out
#: messages counts as a write: a consumer waiting for messages writes nothing.
CLAIM = (
    _store_check(3, 5)
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, writes} end
local g, c, lease, count = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
redis.pcall('XGROUP', 'CREATE', KEYS[1], g, '0')
local out = {}
local claimed = redis.call('XAUTOCLAIM', KEYS[1], g, c, lease, '0-0', 'COUNT', count)
for _, e in ipairs(claimed[2]) do
  local p = redis.call('XPENDING', KEYS[1], g, e[1], e[1], 1)
  local n = 1
  if #p > 0 then n = p[1][4] end
  out[#out + 1] = {e[1], e[2], n}
end
if #out == 0 then
  local r = redis.call('XREADGROUP', 'GROUP', g, c, 'COUNT', count, 'STREAMS', KEYS[1], '>')
  if r then
    for _, e in ipairs(r[1][2]) do out[#out + 1] = {e[1], e[2], 1} end
  end
end
if #out > 0 then return {2, redis.call('INCR', KEYS[4]), out} end
local state = redis.call('HMGET', KEYS[2], 'finished', 'next_stream')
local pending = redis.call('XPENDING', KEYS[1], g)[1]
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last = '0-0'
if #newest > 0 then last = newest[1][1] end
return {1, writes, state[1] or '0', state[2] or '', pending, last}
"""
)

#: KEYS: stream, id index, info hash. ARGV: minimum entry id to keep or "", max length or "",
#: chunk. Trims the oldest entries the policy condemns (at most a chunk per call) with XTRIM
#: MINID; returns {trimmed, more to do (0/1), payload bytes trimmed (inline and in files),
#: file, file, ...}.
#: Redis counts a group's lag as entries added minus entries the group read, so entries trimmed
#: before a group read them would count as unread for ever: such a group is moved past them
#: (XGROUP SETID, which leaves its pending entries alone) with the count it has passed.
TRIM = """
local function older(a, b)
  local ams, aseq = string.match(a, '(%d+)-(%d+)')
  local bms, bseq = string.match(b, '(%d+)-(%d+)')
  return tonumber(ams) < tonumber(bms) or (ams == bms and tonumber(aseq) < tonumber(bseq))
end
local function field(flat, name)
  for j = 1, #flat, 2 do if flat[j] == name then return flat[j + 1] end end
end
local minid, maxlen, chunk = ARGV[1], ARGV[2], tonumber(ARGV[3])
local len = redis.call('XLEN', KEYS[1])
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', chunk)
local files, doomed, freed, last, topid = {}, 0, 0, nil, 0
for _, e in ipairs(entries) do
  local by_age = minid ~= '' and older(e[1], minid)
  local by_len = maxlen ~= '' and (len - doomed) > tonumber(maxlen)
  if not (by_age or by_len) then break end
  local f = e[2]
  for j = 1, #f, 2 do
    if f[j] == 'id' then
      redis.call('HDEL', KEYS[2], f[j + 1])
      if tonumber(f[j + 1]) > topid then topid = tonumber(f[j + 1]) end
    elseif f[j] == 'size' then freed = freed + tonumber(f[j + 1])
    elseif f[j] == 'f' then files[#files + 1] = f[j + 1] end
  end
  doomed = doomed + 1
  last = e[1]
end
if last then
  local ms, seq = string.match(last, '(%d+)-(%d+)')
  redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. (tonumber(seq) + 1))
  -- every entry up to `last` is gone, the others are after it: those it stands for
  local passed = field(redis.call('XINFO', 'STREAM', KEYS[1]), 'entries-added')
                 - redis.call('XLEN', KEYS[1])
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    if older(field(g, 'last-delivered-id'), last) then
      redis.call('XGROUP', 'SETID', KEYS[1], field(g, 'name'), last, 'ENTRIESREAD', passed)
    end
  end
  -- never -0: Lua passes it as the text '-0', which HINCRBY refuses (payload-less messages)
  if freed > 0 then redis.call('HINCRBY', KEYS[3], 'size', -freed) end
  local before = tonumber(redis.call('HGET', KEYS[3], 'trimmed_id') or '0')
  if topid > before then redis.call('HSET', KEYS[3], 'trimmed_id', topid) end
end
local more = 0
if doomed == #entries and doomed == chunk then more = 1 end
local out = {doomed, more, freed}
for _, f in ipairs(files) do out[#out + 1] = f end
return out
"""

#: KEYS: streams zset, info hash, store id, write count. ARGV: stream name, now, last id or ""
#: (or "meta"), next stream (or the metadata), store id, write count seen. Marks a stream
#: finished, or sets its metadata; returns the write count.
FINISH = (
    "#!lua\n"
    + _store_check(3, 5)
    + """writes = redis.call('INCR', KEYS[4])
local name, now = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEYS[2], 'created') == 0 then
  redis.call('ZADD', KEYS[1], 'NX', now, name)
  redis.call('HSET', KEYS[2], 'created', now, 'last_id', 0, 'max_id', 0, 'size', 0,
             'finished', 0)
end
if ARGV[3] == 'meta' then
  redis.call('HSET', KEYS[2], 'meta', ARGV[4])
  return writes
end
local last = tonumber(redis.call('HGET', KEYS[2], 'last_id'))
local finish = last
if ARGV[3] ~= '' then finish = tonumber(ARGV[3]) end
if finish > last then last = finish end
redis.call('HSET', KEYS[2], 'finished', 1, 'finish_id', finish, 'last_id', last)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'next_stream', ARGV[4])
else redis.call('HDEL', KEYS[2], 'next_stream') end
if redis.call('HEXISTS', KEYS[2], 'last_ts') == 0 then
  redis.call('HSET', KEYS[2], 'last_ts', now)
end
return writes
"""
)

#: KEYS: stream, store id, write count. ARGV: group, store id, write count seen, entry ids.
#: XACK, counted as a write: an acknowledgement a snapshot lost would deliver the message again.
#: Returns the write count.
ACK = (
    _store_check(2, 2)
    + """redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 4))
return redis.call('INCR', KEYS[3])
"""
)

#: KEYS: stream. ARGV: group, consumer, entry id, idle ms. Renews a lease only while the entry
#: is still pending with this consumer: one XAUTOCLAIM already gave to another stays with it.
#: Returns 1 (renewed) or 0 (not held: acknowledged, taken over, no such group).
EXTEND = """
local held = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if held.err then
  if string.find(held.err, 'NOGROUP', 1, true) then return 0 end
  return held
end
if #held == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
return 1
"""

#: KEYS: stream. ARGV: group, consumer. Forget a consumer that holds nothing (it would list
#: forever in XINFO CONSUMERS); one with pending entries stays, so that they are reclaimed.
FORGET = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if ok and #pending == 0 then
  return redis.pcall('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(flat: list[Any]) -> dict[str, Any]:
    """A stream entry's field list (as Lua returns it) as a dict with str keys."""
    return {_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def _stream_dir(stream: str) -> str:
    """A stream's name as one safe directory name ('..' and '.x' included)."""
    name = quote(stream, safe="")
    return "%2E" + name[1:] if name.startswith(".") else name


#: the servers whose missing password was said already (`_Conn.warn_if_unprotected`)
_WARNED_UNPROTECTED: set[str] = set()


class _Conn:
    """The transport's client, its label for messages and the error mapping around calls."""

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        parts = urlsplit(config.url)
        # what sentences name: host and port, never credentials
        self.label = (
            f"Redis at {parts.path}"
            if parts.scheme == "unix"
            else f"Redis at {parts.hostname}:{parts.port or 6379}"
        )
        self.store_key = f"{config.key_prefix}:store-id"
        self.writes_key = f"{config.key_prefix}:writes"
        #: the store id this transport works on (None: it has not written, and found none)
        self.store_id: str | None = None
        #: the highest write count of the store this transport has seen: a store that counts
        #: fewer went back in time (Redis restarted from an older snapshot)
        self.writes_seen = 0
        #: once the store is lost, every call says so again: nothing more is read or written
        self.lost: str | None = None
        kwargs: dict[str, Any] = {
            "socket_timeout": config.timeout,
            "socket_connect_timeout": config.timeout,
            # a deadline means one attempt: redis-py's default retries would multiply it
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
            "health_check_interval": 0,
            # every connection made again (after a restart) checks the store id first
            "redis_connect_func": self._on_connect,
        }
        if config.username:
            kwargs["username"] = config.username
        password = self._password()
        if password is not None:
            kwargs["password"] = password
        if config.use_tls and parts.scheme != "unix":
            kwargs["ssl"] = True
            kwargs["ssl_cert_reqs"] = "required"
            for key, option in (
                ("ssl_ca_certs", config.ca_file),
                ("ssl_certfile", config.cert_file),
                ("ssl_keyfile", config.key_file),
            ):
                if option:
                    if not Path(option).is_file():
                        raise TransportConfigError(f"the TLS file {option} does not exist")
                    kwargs[key] = option
        url = config.url.replace("rediss://", "redis://") if kwargs.get("ssl") else config.url
        try:
            self.client = redis.Redis.from_url(url, **kwargs)
        except (ValueError, rex.RedisError) as exc:
            raise TransportConfigError(f"the redis transport's url is unusable: {exc}") from None
        self._url, self._kwargs, self.has_password = url, kwargs, password is not None

    def takes_anyone(self) -> bool:
        """Whether a client without credentials may read the transport's keys: a server with
        no password configured answers a password with OK over RESP3 (the `default` user is
        `nopass`), so a password the file gives protects nothing there. False when unsure."""
        anonymous = {
            **self._kwargs,
            "username": None,
            "password": None,
            "redis_connect_func": None,
        }
        try:
            probe = redis.Redis.from_url(self._url, **anonymous)
        except (ValueError, rex.RedisError):
            return False
        try:
            probe.exists(f"{self.config.key_prefix}:sources")
        except rex.RedisError:  # NOAUTH, NOPERM: the password is needed
            return False
        finally:
            probe.close()
        return True

    def warn_if_unprotected(self) -> None:
        """Once per process and server: a password given for a server that takes anyone."""
        if not self.has_password or self.label in _WARNED_UNPROTECTED or not self.takes_anyone():
            return
        _WARNED_UNPROTECTED.add(self.label)
        given = (
            f"password_file {self.config.password_file}"
            if self.config.password_file
            else f"password_env {self.config.password_env}"
        )
        # on stderr, as the CLI's warnings are (a plugin reaches the core through the SDK only)
        print(
            f"warning: {self.label} has no password configured and takes any client, so the "
            f"{given} protects nothing: set requirepass (or an ACL user) on the server to "
            "protect the pipeline's data",
            file=sys.stderr,
        )

    def _password(self) -> str | None:
        config = self.config
        if config.password_file:
            path = Path(config.password_file)
            try:
                return path.read_text().strip()
            except OSError as exc:
                raise CredentialsError(
                    f"cannot read the Redis password file {path}: {exc.strerror}"
                ) from None
        if config.password_env:
            value = os.environ.get(config.password_env)
            if not value:
                raise CredentialsError(
                    f"the environment variable {config.password_env} (the Redis password) "
                    "is not set"
                )
            return value
        return None

    # -- the store id ----------------------------------------------------------------------
    def _on_connect(self, connection: Any) -> None:
        """redis-py's hook for a new connection: its handshake (AUTH, SELECT), then the store
        id, compared with the one this transport works on, and the store's write count, with
        the highest this transport has seen. Never writes them: a reconnect that finds no id
        met a Redis that lost its data, one that finds fewer writes met an older snapshot."""
        connection.on_connect()
        # taken before asking: another thread may see a newer count meanwhile
        seen = self.writes_seen
        if self.store_id is None and not seen:
            return
        connection.send_command("MGET", self.store_key, self.writes_key)
        found, writes = connection.read_response()
        if self.store_id is not None and (found is None or _text(found) != self.store_id):
            raise self.store_lost(found)
        if int(writes or 0) < seen:
            raise self.store_behind(int(writes or 0), seen)
        self.saw(writes)

    def learn_store_id(self) -> None:
        """The store id and write count as the store holds them now, when opened (None: not
        written yet)."""
        found, writes = self.client.mget(self.store_key, self.writes_key)
        self.store_id = _text(found) if found is not None else None
        self.writes_seen = int(writes or 0)

    def saw(self, writes: Any) -> None:
        """A write count a script answered (it compared the count with the one it was given:
        an answer of another thread may come after a newer one, so this only keeps the most)."""
        self.writes_seen = max(self.writes_seen, int(writes or 0))

    def check_args(self) -> list[Any]:
        """The ARGV a script's store check takes (`_store_check`): store id, writes seen."""
        return [self.store_id or "", self.writes_seen]

    def adopt_store(self) -> None:
        """Give the store an id unless it has one: at the first producer a transport opens, so
        on `pipeline run` and `deploy` (which record the run through one) and in the workers. A
        store written before ids existed (data, no id) is adopted so rather than refused."""
        if self.store_id is not None:
            return
        mine = uuid.uuid4().hex
        # NX GET: of two processes opening at once, both end with the one that came first
        before = self.retrying(lambda: self.client.set(self.store_key, mine, nx=True, get=True))
        self.store_id = _text(before) if before is not None else mine

    def store_lost(self, found: Any) -> StoreLost:
        """`StoreLost` for a store id found missing or changed; the transport is done."""
        if self.lost is None:
            what = "is gone" if not found else "was replaced by another"
            self.lost = (
                f"{self.label} lost the data of this pipeline's store (its store id "
                f"{self.store_key} {what}: Redis restarted without its data or was emptied), "
                "so nothing more is read or written; `pipeline deploy --fresh FILE` or "
                "`pipeline run --fresh FILE` processes every input again"
            )
        return StoreLost(self.lost)

    def store_behind(self, found: int, seen: int) -> StoreLost:
        """`StoreLost` for a store that counts fewer writes than this transport has seen."""
        if self.lost is None:
            self.lost = (
                f"{self.label} came back with older data than this worker had seen (write "
                f"{seen} of this pipeline's store is gone, it counts {found}: "
                "Redis restarted from an older snapshot without appendonly), so nothing more "
                "is read or written; messages sent or acknowledged since that snapshot are "
                "lost or would be processed again: `pipeline deploy --fresh FILE` or "
                "`pipeline run --fresh FILE` processes every input again, and `appendonly "
                "yes` in redis.conf keeps every write through a restart"
            )
        return StoreLost(self.lost)

    def check_store(self) -> None:
        """Refuse any further call once the store was found lost."""
        if self.lost is not None:
            raise StoreLost(self.lost)

    def error(self, exc: BaseException, doing: str) -> TransportError:
        """One sentence for a failed call; never the password."""
        if isinstance(exc, rex.ResponseError) and str(exc).startswith("STORELOST"):
            return self.store_lost(str(exc).partition(" ")[2])
        if isinstance(exc, rex.ResponseError) and str(exc).startswith("STOREBEHIND"):
            found, seen = str(exc).split()[1:3]
            return self.store_behind(int(found), int(seen))
        if isinstance(exc, rex.AuthenticationError | rex.AuthorizationError) or (
            isinstance(exc, rex.ResponseError)
            and str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM"))
        ):
            where = (
                f"the password from {self.config.password_file}"
                if self.config.password_file
                else f"the password from ${self.config.password_env}"
                if self.config.password_env
                else "no password (set password_file or password_env)"
            )
            # every worker reads the same password: it is refused as surely as here
            return CredentialsError(f"{self.label} refused {where} while {doing}")
        if isinstance(exc, rex.TimeoutError):
            return Unavailable(
                f"{self.label} did not answer within {self.config.timeout:g} s while {doing}"
            )
        if isinstance(exc, rex.ConnectionError):
            reason = str(exc).split("\n")[0].rstrip(".")
            return Unavailable(f"{self.label} is unreachable while {doing} ({reason})")
        if isinstance(exc, rex.OutOfMemoryError) or (
            isinstance(exc, rex.ResponseError) and "maxmemory" in str(exc)
        ):
            return StorageError(f"{self.label} is out of memory (maxmemory) while {doing}")
        if isinstance(exc, rex.ResponseError) and str(exc).startswith(
            ("READONLY", "MISCONF", "LOADING")
        ):
            return Unavailable(f"{self.label} cannot take writes now while {doing}: {exc}")
        return TransportError(f"{self.label} failed while {doing}: {exc}")

    def retrying(self, call: Callable[[], _R]) -> _R:
        """Run an idempotent call again while the connection breaks (a server restarting, a
        dropped connection, Redis loading its data), for up to `RIDE_OUT_TIMEOUTS` times the
        timeout; then the error goes up as `Unavailable`. Each new connection checks the store
        id (`_on_connect`): a Redis back without its data raises `StoreLost`, not retried."""
        deadline = time.monotonic() + RIDE_OUT_TIMEOUTS * self.config.timeout
        pause = 0.05
        while True:
            try:
                return call()
            except (rex.AuthenticationError, rex.AuthorizationError):
                raise
            except (rex.ConnectionError, rex.TimeoutError):
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    def close(self) -> None:
        with contextlib.suppress(rex.RedisError):
            self.client.close()


def _guarded(doing: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Turns a redis-py failure inside a public method into the interface's error, in one
    sentence naming the server and what was being done."""

    def wrap(method: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(method)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            self: Any = args[0]
            self._conn.check_store()
            try:
                return method(*args, **kwargs)
            except rex.RedisError as exc:
                raise self._conn.error(exc, f"{doing} (data source {self.data_source!r})") from None

        return wrapper

    return wrap


class _Keys:
    """The key names of one data source."""

    def __init__(self, prefix: str, data_source: str) -> None:
        base = f"{prefix}:{{{data_source}}}"
        self.meta = f"{base}:meta"
        self.streams = f"{base}:streams"
        self._base = base

    def info(self, stream: str) -> str:
        return f"{self._base}:i:{stream}"

    def log(self, stream: str) -> str:
        return f"{self._base}:x:{stream}"

    def index(self, stream: str) -> str:
        return f"{self._base}:n:{stream}"

    def token(self) -> str:
        return f"{self._base}:t:{uuid.uuid4().hex}"


class RedisProducer(Producer):
    def __init__(self, transport: RedisTransport, data_source: str) -> None:
        self.data_source = data_source
        self._transport = transport
        self._conn = transport._conn
        self._keys = _Keys(transport.config.key_prefix, data_source)
        self._send = transport._scripts["send"]
        self._trimmed: dict[str, float] = {}
        self._closed = False
        self._conn.check_store()
        try:
            # the store is written from here: it gets its id now, if it has none yet
            self._conn.adopt_store()
            self._conn.retrying(lambda: self._conn.client.sadd(transport.sources_key, data_source))
        except rex.RedisError as exc:
            raise self._conn.error(exc, f"opening a producer for {data_source!r}") from None

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"producer of data source {self.data_source!r} is closed")

    # -- payload files ---------------------------------------------------------------------
    def _write_file(self, stream: str, payload: bytes | bytearray | memoryview) -> str:
        root = self._transport.payload_root
        if root is None:
            raise TransportConfigError(
                f"a payload of {memoryview(payload).nbytes} bytes is larger than the redis "
                f"transport's inline_max ({self._transport.config.inline_max}); set payload_dir "
                "to a directory every node mounts"
            )
        rel = (
            f"{self.data_source}/{_stream_dir(stream)}/"
            f"{int(time.time() * 1000)}-{uuid.uuid4().hex}.bin"
        )
        path = root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(payload).cast("B")
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
                if self._transport.config.fsync:
                    os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            from asapo_pipelines.sdk import storage

            raise StorageError(
                storage.describe("the redis transport's payload directory", path, exc)
            ) from None
        return rel

    # -- sending ---------------------------------------------------------------------------
    @_guarded("sending")
    def send(
        self,
        stream: str,
        payload: bytes | bytearray | memoryview | None,
        metadata: Mapping[str, Any] | None = None,
        *,
        id: int | None = None,
    ) -> int:
        if id is not None and (not isinstance(id, int) or isinstance(id, bool) or id < 1):
            raise TransportConfigError(f"message ids start at 1, got {id!r}")
        return self._send_batch(stream, [(payload, metadata)], id)[0]

    @_guarded("sending")
    def send_many(
        self,
        stream: str,
        items: Iterable[tuple[bytes | bytearray | memoryview | None, Mapping[str, Any] | None]],
    ) -> list[int]:
        return self._send_batch(stream, list(items), None)

    def _send_batch(
        self,
        stream: str,
        items: list[tuple[bytes | bytearray | memoryview | None, Mapping[str, Any] | None]],
        explicit_id: int | None,
    ) -> list[int]:
        self._check_open()
        check_stream(stream)
        if not items:
            return []
        inline_max = self._transport.config.inline_max
        args: list[Any] = [
            stream,
            repr(time.time()),
            "" if explicit_id is None else explicit_id,
            *self._conn.check_args(),
        ]
        for payload, meta in items:
            meta_text = encode_metadata(meta, "message metadata")
            if payload is None:
                args += [0, meta_text, "n", ""]
                continue
            size = memoryview(payload).nbytes
            if size <= inline_max:
                data = payload if isinstance(payload, bytes) else bytes(payload)
                args += [size, meta_text, "p", data]
            else:
                args += [size, meta_text, "f", self._write_file(stream, payload)]
        k = self._keys
        keys = [
            k.streams,
            k.info(stream),
            k.log(stream),
            k.index(stream),
            k.token(),
            self._conn.store_key,
            self._conn.writes_key,
        ]
        try:
            writes, *ids = self._conn.retrying(lambda: self._send(keys=keys, args=args))
        except rex.ResponseError as exc:
            if str(exc).startswith("DUPLICATE"):
                raise DuplicateId(
                    f"stream {stream!r} of data source {self.data_source!r} already holds a "
                    f"different message {explicit_id}"
                ) from None
            raise
        self._conn.saw(writes)
        self._apply_retention(stream)
        return [int(i) for i in ids]

    def _apply_retention(self, stream: str) -> None:
        policy = self._transport.config.retention
        if policy is None:
            return
        now = time.monotonic()
        if now - self._trimmed.get(stream, 0.0) < RETENTION_EVERY_S:
            return
        self._trimmed[stream] = now
        min_ms = None
        if policy.max_age_seconds is not None:
            min_ms = self._transport._entry_cutoff(policy.max_age_seconds)
        self._transport._trim(self.data_source, stream, min_ms, policy.max_messages)

    @_guarded("finishing a stream")
    def finish_stream(
        self, stream: str, *, last_id: int | None = None, next_stream: str | None = None
    ) -> None:
        self._check_open()
        check_stream(stream)
        if next_stream is not None:
            check_stream(next_stream)
        self._finish_script(stream, "" if last_id is None else last_id, next_stream or "")

    def _finish_script(self, stream: str, what: Any, value: str) -> None:
        """The FINISH script (a stream finished, or its metadata set): a repeat does no harm."""
        keys = [
            self._keys.streams,
            self._keys.info(stream),
            self._conn.store_key,
            self._conn.writes_key,
        ]
        args = [stream, repr(time.time()), what, value, *self._conn.check_args()]
        writes = self._conn.retrying(
            lambda: self._transport._scripts["finish"](keys=keys, args=args)
        )
        self._conn.saw(writes)

    @_guarded("writing stream metadata")
    def set_stream_metadata(self, stream: str, metadata: Mapping[str, Any]) -> None:
        self._check_open()
        check_stream(stream)
        text = encode_metadata(metadata, "stream metadata")
        self._finish_script(stream, "meta", text)

    @_guarded("writing data source metadata")
    def set_source_metadata(self, metadata: Mapping[str, Any]) -> None:
        self._check_open()
        text = encode_metadata(metadata, "data source metadata")
        self._conn.retrying(lambda: self._conn.client.set(self._keys.meta, text))

    def flush(self, timeout: float = 10.0) -> None:
        """Nothing to wait for: a send returns once Redis has stored the message (and, with
        ``appendfsync always``, written it to its append-only file)."""

    def close(self) -> None:
        self._closed = True


class RedisConsumer(Consumer):
    def __init__(
        self,
        transport: RedisTransport,
        data_source: str,
        group: str,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        prefetch: int = 1,
    ) -> None:
        self.data_source = data_source
        self.group = check_group(group)
        if lease_seconds <= 0:
            raise TransportConfigError(f"lease_seconds must be positive, got {lease_seconds}")
        self.lease_seconds = float(lease_seconds)
        self.prefetch = max(1, int(prefetch))
        self._transport = transport
        self._conn = transport._conn
        self._keys = _Keys(transport.config.key_prefix, data_source)
        self._claim = transport._scripts["claim"]
        # one Redis consumer per object: a restarted worker is a new consumer, and what the old
        # one held comes back through XAUTOCLAIM after the lease
        self.name = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._buffer: dict[str, list[tuple[float, Message | CorruptPayload]]] = {}
        # entry ids of the messages handed out, for ack and nack: message id -> entry id
        self._entries: dict[tuple[str, int], str] = {}
        self._touched: set[str] = set()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"consumer of data source {self.data_source!r} is closed")

    def _where(self, stream: str, mid: int) -> str:
        return f"message {mid} of stream {stream!r} in data source {self.data_source!r}"

    # -- messages --------------------------------------------------------------------------
    def _message(self, stream: str, fields: dict[str, Any], count: int) -> Message:
        mid = int(fields["id"])
        try:
            metadata = decode_metadata(_text(fields.get("meta") or b"{}"))
        except ValueError:
            raise CorruptPayload(self._where(stream, mid) + " has unreadable metadata") from None
        msg = Message(
            data_source=self.data_source,
            stream=stream,
            id=mid,
            payload=None,
            metadata=metadata,
            delivery_count=count,
            timestamp=float(fields.get("ts") or 0.0),
            # Redis counts deliveries per group: a count above one is the only sign of a
            # message that another (dead) consumer may have half-processed
            possibly_redelivered=count > 1,
        )
        if "p" in fields:
            msg.payload = fields["p"]
        elif "f" in fields:
            try:
                msg.payload = self._read_file(stream, mid, _text(fields["f"]), int(fields["size"]))
            except CorruptPayload as exc:
                # the metadata (provenance keys) is still good: the worker reports the message
                raise CorruptPayload(str(exc), damaged=msg) from None
        return msg

    def _read_file(self, stream: str, mid: int, rel: str, size: int) -> memoryview | bytes:
        root = self._transport.payload_root
        if root is None:
            raise CorruptPayload(
                self._where(stream, mid) + f"'s payload is in a file ({rel}) and this "
                "transport has no payload_dir"
            )
        path = root / rel
        try:
            with open(path, "rb") as fh:
                if size >= MMAP_MIN:
                    mm = mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ)
                    if len(mm) < size:
                        raise CorruptPayload(
                            self._where(stream, mid)
                            + f": its payload file {path} is shorter than the {size} bytes sent"
                        )
                    return memoryview(mm)[:size]
                data = fh.read(size)
        except FileNotFoundError:
            raise CorruptPayload(
                self._where(stream, mid) + f" lost its payload file {path} (is payload_dir "
                "the same shared directory on every node?)"
            ) from None
        except (OSError, ValueError) as exc:
            raise CorruptPayload(
                self._where(stream, mid) + f": cannot read {path}: {exc}"
            ) from None
        if len(data) != size:
            raise CorruptPayload(
                self._where(stream, mid) + f": its payload file {path} holds {len(data)} of "
                f"the {size} bytes sent"
            )
        return data

    # -- group delivery --------------------------------------------------------------------
    def _take(
        self, stream: str
    ) -> list[Message | CorruptPayload] | tuple[bool, str | None, int, str] | None:
        """Messages leased to this consumer now (a damaged one as its CorruptPayload); else
        (finished, next stream, entries pending in the group, newest entry id), or None when
        the stream does not exist yet."""
        k = self._keys
        # retried while the connection breaks (a Redis restarting): entries an answer lost are
        # pending with this consumer, and XAUTOCLAIM hands them out again after the lease,
        # so a retry neither loses nor repeats a message
        result = self._conn.retrying(
            lambda: self._claim(
                keys=[k.log(stream), k.info(stream), self._conn.store_key, self._conn.writes_key],
                args=[
                    self.group,
                    self.name,
                    int(self.lease_seconds * 1000),
                    self.prefetch,
                    *self._conn.check_args(),
                ],
            )
        )
        tag = int(result[0])
        self._conn.saw(result[1])
        if tag == 0:
            return None
        if tag == 1:
            nxt = _text(result[3])
            return _text(result[2]) == "1", nxt or None, int(result[4]), _text(result[5])
        self._touched.add(stream)
        out: list[Message | CorruptPayload] = []
        for entry_id, flat, count in result[2]:
            fields = _fields(flat)
            self._entries[(stream, int(fields["id"]))] = _text(entry_id)
            try:
                out.append(self._message(stream, fields, int(count)))
            except CorruptPayload as exc:
                # leased to us like the others: handed out in turn, as damaged
                out.append(exc)
        return out

    @_guarded("taking the next message")
    def get_next(self, stream: str, *, timeout: float = 0.0) -> Message:
        self._check_open()
        check_stream(stream)
        buffer = self._buffer.setdefault(stream, [])
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            while buffer:
                due, first = buffer.pop(0)
                # a prefetched message whose lease ran out may be with another consumer now:
                # leave it to XAUTOCLAIM rather than process it twice
                if time.monotonic() >= due:
                    continue
                if isinstance(first, CorruptPayload):
                    raise first
                return first
            claimed_at = time.monotonic()
            taken = self._take(stream)
            if isinstance(taken, list):
                due = claimed_at + 0.95 * self.lease_seconds
                buffer.extend((due, one) for one in taken)
                continue
            newest = None
            if taken is not None:
                finished, next_stream, pending, newest = taken
                if finished and pending == 0:
                    raise StreamFinished(
                        f"stream {stream!r} of data source {self.data_source!r} is finished"
                        + (f"; next stream is {next_stream!r}" if next_stream else ""),
                        next_stream,
                    )
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoData(
                    f"no new message in stream {stream!r} of data source "
                    f"{self.data_source!r} for group {self.group!r}"
                )
            self._wait(stream, newest, min(left, BLOCK_SLICE_S, self._conn.config.timeout / 2))

    def _wait(self, stream: str, newest: str | None, seconds: float) -> None:
        """Sleep until an entry newer than ``newest`` is added, or ``seconds``. XREAD (not
        XREADGROUP) delivers nothing to the group: the next claim takes what woke us. A slice
        at a time, so leases that run out meanwhile are reclaimed soon after."""
        if newest is None:  # no stream yet: nothing to block on
            time.sleep(min(seconds, 0.02))
            return
        self._conn.retrying(  # XREAD only reads
            lambda: self._conn.client.xread(
                {self._keys.log(stream): newest}, count=1, block=max(1, int(seconds * 1000))
            )
        )

    @_guarded("acknowledging")
    def acknowledge(self, stream: str, id: int) -> None:
        self.acknowledge_many(stream, (id,))

    @_guarded("acknowledging")
    def acknowledge_many(self, stream: str, ids: Iterable[int]) -> None:
        self._check_open()
        check_stream(stream)
        ids = list(ids)
        if not ids:
            return
        entries = self._entry_ids(stream, ids, "acknowledge")
        keys = [self._keys.log(stream), self._conn.store_key, self._conn.writes_key]
        args = [self.group, *self._conn.check_args(), *entries]
        # XACK is idempotent: safe to repeat when an answer was lost (counted once more)
        writes = self._conn.retrying(lambda: self._transport._scripts["ack"](keys=keys, args=args))
        self._conn.saw(writes)
        for mid in ids:
            self._entries.pop((stream, mid), None)

    def _entry_ids(self, stream: str, ids: list[int], doing: str) -> list[str]:
        entries: list[str] = []
        missing = [mid for mid in ids if (stream, mid) not in self._entries]
        looked = (
            self._conn.retrying(
                lambda: self._conn.client.hmget(self._keys.index(stream), [str(m) for m in missing])
            )
            if missing
            else []
        )
        found = dict(zip(missing, looked, strict=True))
        for mid in ids:
            entry = self._entries.get((stream, mid)) or found.get(mid)
            if entry is None:
                raise MissingId(f"cannot {doing} {self._where(stream, mid)}: no such id")
            entries.append(_text(entry))
        return entries

    @_guarded("giving a message back")
    def nack(self, stream: str, id: int, delay: float = 0.0) -> None:
        self._check_open()
        check_stream(stream)
        (entry,) = self._entry_ids(stream, [id], "nack")
        # idle = lease - delay: XAUTOCLAIM (min idle = lease) takes it again after `delay`;
        # JUSTID leaves the delivery count alone, the next delivery counts itself
        lease_ms = int(self.lease_seconds * 1000)
        idle = max(0, lease_ms - int(max(0.0, delay) * 1000))
        self._conn.retrying(  # XCLAIM IDLE sets the idle time: a repeat does no harm
            lambda: self._conn.client.xclaim(
                self._keys.log(stream), self.group, self.name, 0, [entry], idle=idle, justid=True
            )
        )

    @_guarded("asking which leases it still holds")
    def lost_leases(self, stream: str, held: Mapping[int, int]) -> set[int]:
        # a message this consumer still holds is pending with it, delivered as often as when
        # it was handed out: XAUTOCLAIM by another consumer moved it, an XACK removed it
        self._check_open()
        check_stream(stream)
        key = self._keys.log(stream)
        entries = {
            mid: entry for mid in held if (entry := self._entries.get((stream, mid))) is not None
        }
        asked = list(entries)

        def read_pending() -> list[Any]:
            pipe = self._conn.client.pipeline(transaction=False)
            for mid in asked:
                entry = entries[mid]
                pipe.xpending_range(key, self.group, min=entry, max=entry, count=1)
            return list(pipe.execute())

        answers = dict(zip(asked, self._conn.retrying(read_pending) if asked else [], strict=True))
        lost = set()
        for mid, count in held.items():
            pending = answers.get(mid) or []
            mine = pending and _text(pending[0]["consumer"]) == self.name
            if not mine or int(pending[0]["times_delivered"]) != count:
                lost.add(mid)
        return lost

    @_guarded("extending a lease")
    def extend_lease(self, stream: str, id: int, seconds: float | None = None) -> None:
        """Keep a message that takes long to process from being delivered to another consumer:
        its lease runs for ``seconds`` from now (the whole lease by default; never longer, as
        XAUTOCLAIM counts idle time against the lease: a longer call extends again). Only a
        message this consumer still holds is extended; one already acknowledged, or handed to
        another consumer after its lease ran out, is left as it is."""
        self._check_open()
        check_stream(stream)
        if seconds is not None and not seconds > 0:
            raise TransportConfigError(f"a lease extension must be positive, got {seconds}")
        entry = self._entries.get((stream, id))
        if entry is None:  # never handed to this consumer, or acknowledged since
            return
        lease_ms = int(self.lease_seconds * 1000)
        extension = self.lease_seconds if seconds is None else min(seconds, self.lease_seconds)
        idle = max(0, lease_ms - int(extension * 1000))
        started = time.monotonic()
        held = self._conn.retrying(  # XCLAIM IDLE sets, so a repeat does no harm
            lambda: self._transport._scripts["extend"](
                keys=[self._keys.log(stream)], args=[self.group, self.name, entry, idle]
            )
        )
        self._rebuffer(stream, id, started + 0.95 * extension if held else None)

    def _rebuffer(self, stream: str, id: int, due: float | None) -> None:
        """A prefetched message's new hand-out deadline after an extension (`get_next` leaves
        one past it to XAUTOCLAIM), or, with None, drop it: another consumer holds it."""
        buffer = self._buffer.get(stream, [])
        for i, (_, one) in enumerate(buffer):
            held = one.id if isinstance(one, Message) else getattr(one.damaged, "id", None)
            if held == id:
                if due is None:
                    del buffer[i]
                else:
                    buffer[i] = (due, one)
                return

    # -- random access ---------------------------------------------------------------------
    def _poll(self, timeout: float, fetch: Callable[[], Message]) -> Message:
        deadline = time.monotonic() + max(0.0, timeout)
        pause = 0.002
        while True:
            try:
                # reads only: retried while the connection breaks, as sends are
                return self._conn.retrying(fetch)
            except (EndOfStream, MissingId, NoData):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(left, pause))
                pause = min(pause * 2, 0.05)

    @_guarded("reading a message by id")
    def get_by_id(self, stream: str, id: int, *, timeout: float = 0.0) -> Message:
        return self._by_id(stream, id, timeout, with_payload=True)

    @_guarded("reading a message's metadata by id")
    def get_metadata_by_id(self, stream: str, id: int, *, timeout: float = 0.0) -> Message:
        # the entry alone: a payload kept in a file (payload_dir) is not read
        return self._by_id(stream, id, timeout, with_payload=False)

    def _by_id(self, stream: str, id: int, timeout: float, *, with_payload: bool) -> Message:
        self._check_open()
        check_stream(stream)
        k = self._keys

        def fetch() -> Message:
            pipe = self._conn.client.pipeline(transaction=False)
            pipe.hget(k.index(stream), str(id))
            pipe.hmget(
                k.info(stream), "last_id", "finished", "finish_id", "next_stream", "trimmed_id"
            )
            entry, (last_id, finished, finish_id, next_stream, trimmed) = pipe.execute()
            if entry is not None:
                found = self._conn.client.xrange(k.log(stream), entry, entry)
                if found:
                    fields = _decode_fields(found[0][1] or {})
                    if not with_payload:
                        fields.pop("p", None)
                        fields.pop("f", None)
                    return self._message(stream, fields, 0)
                raise MissingId(f"{self._where(stream, id)} was removed by retention")
            if last_id is None:
                raise EndOfStream(
                    f"stream {stream!r} of data source {self.data_source!r} has no message "
                    f"{id} yet (the stream is empty)"
                )
            if finished == b"1" and finish_id is not None and id > int(finish_id):
                nxt = _text(next_stream) if next_stream else None
                raise StreamFinished(
                    f"stream {stream!r} of data source {self.data_source!r} finished at "
                    f"id {int(finish_id)}; there is no message {id}",
                    nxt,
                )
            if trimmed is not None and id <= int(trimmed):
                raise MissingId(f"{self._where(stream, id)} was removed by retention")
            if id < int(last_id):
                raise MissingId(f"{self._where(stream, id)} does not exist (a hole)")
            raise EndOfStream(f"{self._where(stream, id)} was not written yet")

        return self._poll(timeout, fetch)

    @_guarded("reading the last message")
    def get_last(self, stream: str, *, timeout: float = 0.0) -> Message:
        self._check_open()
        check_stream(stream)
        k = self._keys

        def fetch() -> Message:
            max_id = self._conn.client.hget(k.info(stream), "max_id")
            if max_id is None or int(max_id) == 0:
                raise EndOfStream(
                    f"stream {stream!r} of data source {self.data_source!r} has no message yet"
                )
            return self.get_by_id(stream, int(max_id))

        return self._poll(timeout, fetch)

    # -- information -----------------------------------------------------------------------
    @_guarded("listing streams")
    def streams(self) -> list[StreamInfo]:
        self._check_open()
        return self._transport._stream_infos(self.data_source)

    @_guarded("reading a stream's state")
    def stream_info(self, stream: str) -> StreamInfo:
        self._check_open()
        check_stream(stream)
        found = self._transport._stream_infos(self.data_source, [stream])
        return found[0] if found else StreamInfo(name=stream)

    @_guarded("reading stream metadata")
    def get_stream_metadata(self, stream: str) -> dict[str, Any]:
        text = self._conn.retrying(lambda: self._conn.client.hget(self._keys.info(stream), "meta"))
        return json.loads(text) if text else {}

    @_guarded("reading data source metadata")
    def get_source_metadata(self) -> dict[str, Any]:
        text = self._conn.retrying(lambda: self._conn.client.get(self._keys.meta))
        return json.loads(text) if text else {}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        # a consumer that holds nothing leaves the group's list; pending entries stay claimable
        forget = self._transport._scripts["forget"]
        if self._conn.lost is not None:  # the store is gone: nothing to tidy, nothing written
            return
        for stream in self._touched:
            with contextlib.suppress(rex.RedisError):
                forget(keys=[self._keys.log(stream)], args=[self.group, self.name])


def _decode_fields(raw: Mapping[Any, Any]) -> dict[str, Any]:
    return {_text(key): value for key, value in raw.items()}


def _unlink(path: Path) -> int:
    """Delete one payload file; returns the bytes it held (0 when it is gone already)."""
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        from asapo_pipelines.sdk import storage

        raise StorageError(storage.describe("deleting a payload file", path, exc)) from None
    return size


def _remove_tree(directory: Path) -> int:
    """Delete a stream's payload directory; returns the bytes of the files in it, including
    unreferenced ones a producer killed mid-send left."""
    freed = 0
    for parent, _dirs, files in os.walk(directory, topdown=False):
        freed += sum(_unlink(Path(parent, name)) for name in files)
        with contextlib.suppress(OSError):
            os.rmdir(parent)
    return freed


class RedisTransport(Transport):
    """Producers and consumers on the Redis server ``config.url`` (checked when opened)."""

    kind = "redis"
    separate_store = "key_prefix"

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.sources_key = f"{config.key_prefix}:sources"
        self.payload_root = (
            Path(config.payload_dir).expanduser().absolute() if config.payload_dir else None
        )
        self._conn = _Conn(config)
        client = self._conn.client
        self._scripts = {
            "send": client.register_script(SEND),
            "claim": client.register_script(CLAIM),
            "finish": client.register_script(FINISH),
            "ack": client.register_script(ACK),
            "trim": client.register_script(TRIM),
            "forget": client.register_script(FORGET),
            "extend": client.register_script(EXTEND),
        }
        try:
            info = client.info("server")
            self._conn.learn_store_id()
        except rex.RedisError as exc:
            self._conn.close()
            raise self._conn.error(exc, "connecting") from None
        version = tuple(int(p) for p in str(info.get("redis_version", "0")).split(".")[:2])
        if version < (7, 0):
            self._conn.close()
            raise TransportConfigError(
                f"{self._conn.label} runs Redis {info.get('redis_version')}; the redis "
                "transport needs Redis 7.0 or newer (XAUTOCLAIM, consumer group lag)"
            )
        # the data still flows; the user believes the store is protected and must hear otherwise
        self._conn.warn_if_unprotected()

    def producer(self, data_source: str) -> RedisProducer:
        return RedisProducer(self, check_source(data_source))

    def consumer(
        self,
        data_source: str,
        group: str,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        prefetch: int = 1,
    ) -> RedisConsumer:
        return RedisConsumer(
            self, check_source(data_source), group, lease_seconds=lease_seconds, prefetch=prefetch
        )

    @property
    def data_source(self) -> str:  # for the error sentences of the transport-wide calls
        return "*"

    @_guarded("listing data sources")
    def data_sources(self) -> list[str]:
        members = self._conn.retrying(lambda: self._conn.client.smembers(self.sources_key))
        return sorted(_text(s) for s in members)

    def _stream_infos(self, data_source: str, only: list[str] | None = None) -> list[StreamInfo]:
        # read only: tried again while the connection breaks (a worker asks this as it works)
        return self._conn.retrying(lambda: self._read_stream_infos(data_source, only))

    def _read_stream_infos(self, data_source: str, only: list[str] | None) -> list[StreamInfo]:
        client = self._conn.client
        keys = _Keys(self.config.key_prefix, data_source)
        names = only if only is not None else [_text(n) for n in client.zrange(keys.streams, 0, -1)]
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.info(name))
            pipe.xlen(keys.log(name))
        answers = pipe.execute()
        infos = []
        for i, name in enumerate(names):
            state = _decode_fields(answers[2 * i])
            if not state:
                continue
            count = int(answers[2 * i + 1])
            lag: dict[str, int] = {}
            if count or client.exists(keys.log(name)):
                for group in client.xinfo_groups(keys.log(name)):
                    gname = _text(group["name"])
                    unread = group.get("lag")
                    if unread is None:  # unknown after a trim: count from what was read
                        unread = max(0, count - int(group.get("entries-read") or 0))
                    lag[gname] = int(unread) + int(group.get("pending") or 0)
            infos.append(
                StreamInfo(
                    name=name,
                    last_id=int(state.get("last_id") or 0),
                    finished=_text(state.get("finished") or b"0") == "1",
                    next_stream=_text(state["next_stream"]) if state.get("next_stream") else None,
                    created=float(state["created"]) if state.get("created") else None,
                    last_timestamp=float(state["last_ts"]) if state.get("last_ts") else None,
                    message_count=count,
                    size_bytes=int(state.get("size") or 0),
                    group_lag=lag,
                )
            )
        return infos

    @_guarded("describing the data sources")
    def describe(self) -> dict[str, list[StreamInfo]]:
        """Every data source with its streams, counts, sizes and group lags."""
        return {name: self._stream_infos(name) for name in self.data_sources()}

    def _entry_cutoff(self, seconds: float) -> int:
        """The entry id time (ms) of ``seconds`` ago: entry ids carry the Redis server's clock,
        so compare with that, not the clock of the node asking."""
        now_s, now_us = self._conn.client.time()
        return int((now_s + now_us / 1e6 - seconds) * 1000)

    def _trim(
        self, data_source: str, stream: str, min_ms: int | None, max_messages: int | None
    ) -> tuple[int, int]:
        """Apply a retention policy to one stream; returns (messages trimmed, bytes of payload
        files removed)."""
        keys = _Keys(self.config.key_prefix, data_source)
        total = freed = 0
        while True:
            out = self._scripts["trim"](
                keys=[keys.log(stream), keys.index(stream), keys.info(stream)],
                args=[
                    "" if min_ms is None else f"{min_ms}-0",
                    "" if max_messages is None else max_messages,
                    TRIM_CHUNK,
                ],
            )
            total += int(out[0])
            # out[2] counts inline payloads too: freed bytes are those of files removed
            if self.payload_root is not None:
                freed += sum(_unlink(self.payload_root / _text(rel)) for rel in out[3:])
            if not int(out[1]):
                return total, freed

    @_guarded("dropping a stream")
    def drop_stream(self, data_source: str, stream: str) -> int:
        """Delete a stream with its messages, groups and payload files; returns the bytes of
        payload files removed (as the embedded store: inline payloads are not files)."""
        check_source(data_source)
        keys = _Keys(self.config.key_prefix, data_source)
        client = self._conn.client
        if not client.exists(keys.info(stream)):
            raise TransportConfigError(f"data source {data_source!r} has no stream {stream!r}")
        pipe = client.pipeline(transaction=True)
        pipe.delete(keys.info(stream), keys.log(stream), keys.index(stream))
        pipe.zrem(keys.streams, stream)
        pipe.execute()
        if self.payload_root is None:
            return 0
        return _remove_tree(self.payload_root / data_source / _stream_dir(stream))

    @_guarded("pruning")
    def prune(self, older_than: float, data_source: str | None = None) -> PruneReport:
        """Drop streams idle for longer than ``older_than`` seconds, and trim older messages
        from the others (the same as the retention policy's max_age_seconds)."""
        if older_than < 0:
            raise TransportConfigError("the age limit must not be negative")
        # a stream's times are its producers' clocks, its entry ids the server's
        cutoff = time.time() - older_than
        min_ms = self._entry_cutoff(older_than)
        report = PruneReport([], 0, 0)
        for name in [check_source(data_source)] if data_source else self.data_sources():
            for info in self._stream_infos(name):
                if (info.last_timestamp or info.created or 0) < cutoff:
                    report.deleted_messages += info.message_count or 0
                    report.freed_bytes += self.drop_stream(name, info.name)
                    report.dropped_streams.append((name, info.name))
                    continue
                trimmed, freed = self._trim(name, info.name, min_ms, None)
                report.deleted_messages += trimmed
                report.freed_bytes += freed
        return report

    def close(self) -> None:
        self._conn.close()


def open_transport(options: Mapping[str, Any]) -> RedisTransport:
    """The runtime of the `redis` transport descriptor: options as `RedisConfig.open_options`
    gives them (or a pipeline file's section as it is)."""
    from pydantic import ValidationError

    try:
        config = RedisConfig.model_validate(dict(options or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "transport"
        raise TransportConfigError(
            f"redis transport option {where}: {first['msg']}"
            + (f" ({len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else "")
        ) from None
    return RedisTransport(config)
