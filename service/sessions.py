"""Where handshakes wait for their key exchange and sessions live until they end.

Two stores keep one contract (:class:`SessionStore`): the memory store serves a
single process; the Redis store is shared by every worker and host, so a hello
answered by one worker can be completed on another.

Records are flat dicts of str, int, float, bool, None and bytes values. Both
stores check them the same way and give back an equal, fresh dict: the memory
store keeps a private copy (no serialising on the handshake's hot path), the
Redis store keeps JSON text with each bytes value as ``{"b64": "..."}``. Every
write carries a time to live: nothing outlasts its handshake or session, even
when the process that wrote it dies.

Records hold key material, so nothing here logs a record; an outage is logged
once when it starts and once when it ends, not on every call.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import json
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from service.errors import StoreUnavailable

logger = logging.getLogger(__name__)

Value = str | int | float | bool | bytes | None
Record = dict[str, Value]

# How a write treats an existing live entry: overwrite it, only create
# (Redis NX), or only overwrite (Redis XX).
Mode = Literal["always", "absent", "present"]

_VALUE_TYPES = (str, int, float, bool, bytes, type(None))
_MAX_ID_LENGTH = 256
_MIN_INT, _MAX_INT = -(2**63), 2**63 - 1  # what every JSON reader keeps exact
_MAX_NONCE_LENGTH = 64

# One year: longer is surely a unit mistake, and Redis refuses huge PX values.
_MAX_TTL = 365 * 24 * 3600.0

# The socket timeouts bound each network step; this margin over op_timeout
# bounds a whole operation that needed several (a reconnect, then a reply).
_DEADLINE_MARGIN = 0.25

# Pooled connections idle longer than this are PINGed before reuse, so one
# that died with a Redis restart is replaced before a request depends on it.
_HEALTH_CHECK_SECONDS = 5

# The sweeper drops at most this many entries per lock hold, so requests never
# queue behind a long sweep.
_SWEEP_CHUNK = 1024


class SessionStore(ABC):
    """Pending handshakes, sessions and seen nonces, each with a time to live.

    Subclasses provide three primitives on string keys and checked records
    (``_NONCE`` for a seen nonce); this class checks arguments and builds the
    keys, so both stores refuse the same inputs the same way.
    """

    backend_name: str

    async def put_pending(self, handshake_id: str, record: Record, ttl: float) -> None:
        """Store a handshake waiting for its key exchange."""
        key = _key("hs:", handshake_id)
        await self._write(key, _checked(record), _check_ttl(ttl), "always")

    async def take_pending(self, handshake_id: str) -> Record | None:
        """Remove and return a pending handshake; of concurrent takers one wins."""
        return await self._take(_key("hs:", handshake_id))

    async def put_session(self, session_id: str, record: Record, ttl: float) -> None:
        """Store a new session."""
        key = _key("s:", session_id)
        await self._write(key, _checked(record), _check_ttl(ttl), "always")

    async def get_session(self, session_id: str) -> Record | None:
        """Return a session, or None when it is unknown or has expired."""
        return await self._read(_key("s:", session_id))

    async def replace_session(
        self, session_id: str, record: Record, ttl: float
    ) -> bool:
        """Overwrite a session that still exists; return False if it was gone.

        A session that has expired or was never stored is not recreated, so a
        late update cannot revive it.
        """
        key = _key("s:", session_id)
        return await self._write(key, _checked(record), _check_ttl(ttl), "present")

    async def check_nonce(self, session_id: str, nonce: bytes, ttl: float) -> bool:
        """Record a nonce; return False if it was already seen within its TTL."""
        key = _nonce_key(session_id, nonce)
        return await self._write(key, _NONCE, _check_ttl(ttl), "absent")

    @abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store can serve requests now."""

    @abstractmethod
    async def close(self) -> None:
        """Release the store's resources; later calls raise StoreUnavailable."""

    @abstractmethod
    async def _write(self, key: str, value: Record, ttl: float, mode: Mode) -> bool:
        """Store ``value`` for ``ttl`` seconds; return False if ``mode`` refused."""

    @abstractmethod
    async def _read(self, key: str) -> Record | None:
        """Return a fresh copy of the live record under ``key``, or None."""

    @abstractmethod
    async def _take(self, key: str) -> Record | None:
        """Atomically remove the live record under ``key`` and return it, or None."""


class MemorySessionStore(SessionStore):
    """A store for one process: a dict under a lock, swept by a daemon thread.

    Deadlines are ``time.monotonic()`` values, so clock changes on the host do
    not expire or revive anything. Expired entries are never returned; the
    sweeper only reclaims their memory. The sweeper is a thread rather than a
    task so that the store works from any thread and any event loop.
    """

    backend_name = "memory"

    def __init__(
        self, *, sweep_interval: float = 1.0, max_entries: int = 1_000_000
    ) -> None:
        if not _is_seconds(sweep_interval):
            raise ValueError("The sweep interval must be a positive number.")
        if isinstance(max_entries, bool) or not isinstance(max_entries, int):
            raise TypeError("max_entries must be an int.")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1.")

        self._sweep_interval = float(sweep_interval)
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Record]] = {}
        # A heap of (deadline, key); it may hold stale pairs for keys since
        # rewritten or taken, which the sweeper skips.
        self._deadlines: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._closed = False

    @property
    def entry_count(self) -> int:
        """Entries held, counting expired ones the sweeper has not removed yet."""
        with self._lock:
            return len(self._entries)

    async def ping(self) -> None:
        with self._lock:
            self._check_open()
        # A full store cannot take new handshakes: health must say so.
        if self.entry_count >= self._max_entries:
            self.sweep()
            if self.entry_count >= self._max_entries:
                raise StoreUnavailable(
                    f"The memory session store is full ({self._max_entries} entries)."
                )

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            self._entries.clear()
            self._deadlines.clear()
            sweeper, self._sweeper = self._sweeper, None

        self._stop.set()
        if sweeper is not None:
            sweeper.join()

    async def _write(self, key: str, value: Record, ttl: float, mode: Mode) -> bool:
        now = time.monotonic()
        with self._lock:
            self._check_open()
            exists = self._live(key, now) is not None
            if (mode == "absent" and exists) or (mode == "present" and not exists):
                return False
            if not exists and len(self._entries) >= self._max_entries:
                raise StoreUnavailable(
                    f"The memory session store is full ({self._max_entries} "
                    "entries); retry once some have expired."
                )

            self._entries[key] = (now + ttl, value)
            heapq.heappush(self._deadlines, (now + ttl, key))
            self._start_sweeper()
        return True

    async def _read(self, key: str) -> Record | None:
        with self._lock:
            self._check_open()
            value = self._live(key, time.monotonic())
        # A copy, as Redis would give: the caller may change what it reads.
        return None if value is None else dict(value)

    async def _take(self, key: str) -> Record | None:
        with self._lock:
            self._check_open()
            value = self._live(key, time.monotonic())
            if value is not None:
                del self._entries[key]
        # No copy needed: nothing else holds the removed record.
        return value

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("The memory session store is closed.")

    def _live(self, key: str, now: float) -> Record | None:
        """Return the value under ``key`` if it has not expired (lock held)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        return entry[1]

    def _start_sweeper(self) -> None:
        if self._sweeper is None:
            self._sweeper = threading.Thread(
                target=self._sweep_forever, name="pqc-session-sweeper", daemon=True
            )
            self._sweeper.start()

    def _sweep_forever(self) -> None:
        while not self._stop.wait(self._sweep_interval):
            self.sweep()

    def sweep(self) -> None:
        """Drop every expired entry now, one chunk per lock hold."""
        more = True
        while more and not self._stop.is_set():
            with self._lock:
                more = self._sweep_chunk(time.monotonic())

    def _sweep_chunk(self, now: float) -> bool:
        """Drop up to one chunk of expired entries; True if more may remain."""
        heap = self._deadlines
        for _ in range(_SWEEP_CHUNK):
            if not heap or heap[0][0] > now:
                self._compact()
                return False

            _, key = heapq.heappop(heap)
            entry = self._entries.get(key)
            if entry is not None and entry[0] <= now:
                del self._entries[key]
        return True

    def _compact(self) -> None:
        """Rebuild the heap once stale pairs outnumber live entries (lock held).

        Rewrites and takes leave their old pairs behind until those deadlines
        pass; rebuilding at twice the live size keeps the heap linear in the
        entries at an amortised constant cost per write.
        """
        if len(self._deadlines) <= 2 * len(self._entries) + _SWEEP_CHUNK:
            return
        self._deadlines = [(entry[0], key) for key, entry in self._entries.items()]
        heapq.heapify(self._deadlines)


class RedisSessionStore(SessionStore):
    """A store shared through Redis; expiry is Redis's own (SET ... PX).

    Every operation completes or raises StoreUnavailable within about
    ``op_timeout`` seconds, whether Redis is down, hung or refusing commands.
    Connections that die with a Redis restart are replaced by the pool, so the
    store recovers by itself once Redis answers again.

    Like any redis.asyncio client, a store belongs to the event loop that
    first uses it; each worker process opens its own.
    """

    backend_name = "redis"

    def __init__(
        self, url: str, *, prefix: str = "pqc:", op_timeout: float = 1.0
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError("The key prefix must be a str.")
        if not _is_seconds(op_timeout):
            raise ValueError("op_timeout must be a positive number of seconds.")

        self._prefix = prefix
        self._deadline = op_timeout + _DEADLINE_MARGIN
        # One immediate retry on a connection error replaces a pooled
        # connection that died with a restart. Timeouts are not retried: that
        # would double the time a caller waits on a hung server.
        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=op_timeout,
            socket_connect_timeout=op_timeout,
            health_check_interval=_HEALTH_CHECK_SECONDS,
            retry=retry,
        )
        self.location = _describe(self._client)
        self._outage = False
        self._closed = False

    async def ping(self) -> None:
        await self._call(self._client.ping)

    async def close(self) -> None:
        self._closed = True
        try:
            async with asyncio.timeout(self._deadline):
                await self._client.aclose()
        except (RedisError, OSError, TimeoutError) as exc:
            logger.debug("Closing the Redis session store failed: %s", exc)

    async def _write(self, key: str, value: Record, ttl: float, mode: Mode) -> bool:
        reply = await self._call(
            self._client.set,
            self._prefix + key,
            _to_json(value),
            px=max(1, math.ceil(ttl * 1000)),
            nx=mode == "absent",
            xx=mode == "present",
        )
        # SET answers OK, or nil when NX or XX refused the write.
        return bool(reply)

    async def _read(self, key: str) -> Record | None:
        return _from_json(await self._call(self._client.get, self._prefix + key))

    async def _take(self, key: str) -> Record | None:
        return _from_json(await self._call(self._client.getdel, self._prefix + key))

    async def _call(self, command: Any, *args: Any, **options: Any) -> Any:
        """Run one client command under the deadline, mapping every failure.

        A command cut off by the deadline disconnects its connection (redis-py
        drops a connection whose reply was abandoned), so the pool never hands
        out one with a stale reply pending.
        """
        if self._closed:
            raise StoreUnavailable("The Redis session store is closed.")
        try:
            async with asyncio.timeout(self._deadline):
                reply = await command(*args, **options)
        except (RedisError, OSError, TimeoutError) as exc:
            self._note_outage(exc)
            raise StoreUnavailable(
                "The Redis session store did not answer; handshakes cannot be "
                "served until it does."
            ) from exc

        self._note_recovery()
        return reply

    def _note_outage(self, exc: BaseException) -> None:
        if self._outage:
            return
        self._outage = True
        logger.warning(
            "The Redis session store at %s is unavailable (%s); session calls "
            "fail until it answers again.",
            self.location,
            type(exc).__name__,
        )

    def _note_recovery(self) -> None:
        if not self._outage:
            return
        self._outage = False
        logger.info("The Redis session store at %s answers again.", self.location)


def open_store(use_redis: bool, redis_url: str, **kw: Any) -> SessionStore:
    """Open the configured store; ``kw`` goes to that store's constructor."""
    if not use_redis:
        logger.info("Session store: memory, for this process only.")
        return MemorySessionStore(**kw)

    store = RedisSessionStore(redis_url, **kw)
    logger.info("Session store: Redis at %s.", store.location)
    return store


def _is_seconds(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value > 0


def _check_ttl(ttl: float) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError(f"A TTL must be a number of seconds, not {type(ttl).__name__}.")
    if not (math.isfinite(ttl) and 0 < ttl <= _MAX_TTL):
        raise ValueError(
            f"A TTL must be above 0 and at most {_MAX_TTL:.0f} seconds; got {ttl}."
        )
    return float(ttl)


def _key(kind: str, ident: str) -> str:
    """Build a key from an identifier that cannot reach into other keys."""
    if not isinstance(ident, str):
        raise TypeError(f"An identifier must be a str, not {type(ident).__name__}.")
    if not (0 < len(ident) <= _MAX_ID_LENGTH and ident.isascii()):
        raise ValueError(
            f"An identifier must be 1 to {_MAX_ID_LENGTH} ASCII characters."
        )
    if not ident.isprintable() or " " in ident:
        raise ValueError("An identifier must not contain spaces or controls.")
    return kind + ident


def _nonce_key(session_id: str, nonce: bytes) -> str:
    if not isinstance(nonce, bytes):
        raise TypeError(f"A nonce must be bytes, not {type(nonce).__name__}.")
    if not 0 < len(nonce) <= _MAX_NONCE_LENGTH:
        raise ValueError(
            f"A nonce must be 1 to {_MAX_NONCE_LENGTH} bytes; got {len(nonce)}."
        )
    # A hex nonce holds no ':', so the last ':' always separates the two parts.
    return _key("n:", session_id) + ":" + nonce.hex()


# What a seen nonce's key holds; a record like any other, so one write path.
_NONCE: Record = {}


def _checked(record: Record) -> Record:
    """A private copy of ``record`` after checking it; refuses what JSON cannot hold.

    Both stores take the same records, so the memory store refuses exactly
    what the Redis store could not write.
    """
    if not isinstance(record, dict):
        raise TypeError(f"A record must be a dict, not {type(record).__name__}.")
    for name, value in record.items():
        if type(name) is not str:
            raise TypeError("Record field names must be str.")
        # Exact types: a subclass (an enum, say) would come back from Redis
        # as its base type but from memory as itself.
        if type(value) not in _VALUE_TYPES:
            raise TypeError(
                f"Record field {name!r} must be a str, int, float, bool, bytes or "
                f"None, not {type(value).__name__}."
            )
        if type(value) is float and not math.isfinite(value):
            raise ValueError(f"Record field {name!r} must be a finite number.")
        if type(value) is int and not _MIN_INT <= value <= _MAX_INT:
            raise ValueError(f"Record field {name!r} must fit in 64 bits.")
    return dict(record)


def _to_json(record: Record) -> str:
    """JSON text, with each bytes value as ``{"b64": "..."}``."""
    return json.dumps(
        {
            name: {"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v
            for name, v in record.items()
        },
        separators=(",", ":"),
        allow_nan=False,
    )


def _from_json(raw: bytes | None) -> Record | None:
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):
        raise StoreUnavailable(
            "The session store holds a record that is not a JSON object."
        )
    for name, value in record.items():
        if isinstance(value, dict):
            record[name] = _bytes_field(value)
    return record


def _bytes_field(value: dict) -> bytes:
    encoded = value.get("b64")
    if len(value) != 1 or not isinstance(encoded, str):
        raise StoreUnavailable("The session store holds a record it did not write.")
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        raise StoreUnavailable(
            "The session store holds a record it did not write."
        ) from None


def _describe(client: aioredis.Redis) -> str:
    """Name the server without the credentials a URL may carry."""
    params = client.connection_pool.connection_kwargs
    if "path" in params:
        return f"unix:{params['path']}"
    return f"{params.get('host', 'localhost')}:{params.get('port', 6379)}"
