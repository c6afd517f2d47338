"""The session stores: one contract, checked on memory and on a real Redis."""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import logging
import math
import threading
import time
import uuid

import pytest

from service.errors import StoreUnavailable
from service.sessions import (
    MemorySessionStore,
    RedisSessionStore,
    SessionStore,
    open_store,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)

LONG = 60.0  # a TTL that no test outlives
SHORT = 0.3  # a TTL that tests wait out
AFTER_SHORT = 0.6  # how long to wait before checking that SHORT has lapsed
HANG_GUARD = 5.0  # a store call that takes this long has hung

RECORD = {
    "suite": "MLKEM768-MLDSA65-AES256GCM-SHA384",
    "auth_key": b"secret auth key material\x00\xff",
    "created_at": 1_767_225_600,
    "ratio": 0.25,
    "hybrid": False,
    "client_address": None,
}
# Every form a careless log line could give the secret in.
SECRET_FORMS = (
    repr(RECORD["auth_key"]),
    RECORD["auth_key"].hex(),
    base64.b64encode(RECORD["auth_key"]).decode(),
    "secret auth key",
)
NONCE = bytes(range(16))


class Kind(enum.IntEnum):
    """An int subclass: Redis would give back a plain int, so both refuse it."""

    A = 1


def _new_id() -> str:
    return uuid.uuid4().hex


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest):
    if request.param == "memory":
        store = MemorySessionStore(sweep_interval=0.05)
    else:
        url = request.getfixturevalue("redis_url")
        store = RedisSessionStore(url, prefix=f"test-{_new_id()}:")
    yield store
    await store.close()


async def _eventually(predicate, what: str, limit: float = 10.0) -> None:
    """Poll until ``predicate()`` holds; ``limit`` only guards against hangs."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen"
        await asyncio.sleep(0.02)


async def _open_connections(store: SessionStore, count: int) -> None:
    """Fill a Redis store's connection pool before a race.

    Racing callers then meet on the server instead of queueing behind
    connection set-up. For the memory store this does nothing.
    """
    pings = asyncio.gather(*(store.ping() for _ in range(count)))
    await asyncio.wait_for(pings, HANG_GUARD)


# The contract, on both stores.


async def test_pending_is_taken_once(store: SessionStore) -> None:
    hid = _new_id()
    await store.put_pending(hid, RECORD, LONG)

    assert await store.take_pending(hid) == RECORD
    assert await store.take_pending(hid) is None


async def test_unknown_ids_are_absent(store: SessionStore) -> None:
    assert await store.take_pending(_new_id()) is None
    assert await store.get_session(_new_id()) is None


async def test_session_round_trip(store: SessionStore) -> None:
    sid = _new_id()
    await store.put_session(sid, RECORD, LONG)

    first = await store.get_session(sid)
    first["suite"] = "changed by the caller"

    assert first is not RECORD
    assert await store.get_session(sid) == RECORD


async def test_a_stored_record_is_a_copy(store: SessionStore) -> None:
    hid = _new_id()
    mine = dict(RECORD)
    await store.put_pending(hid, mine, LONG)
    mine["suite"] = "changed after the write"

    assert await store.take_pending(hid) == RECORD


async def test_pending_and_sessions_do_not_collide(store: SessionStore) -> None:
    shared = _new_id()
    await store.put_pending(shared, {"kind": "pending"}, LONG)
    await store.put_session(shared, {"kind": "session"}, LONG)

    assert await store.get_session(shared) == {"kind": "session"}
    assert await store.take_pending(shared) == {"kind": "pending"}
    assert await store.get_session(shared) == {"kind": "session"}


async def test_replace_session_overwrites(store: SessionStore) -> None:
    sid = _new_id()
    await store.put_session(sid, RECORD, LONG)
    updated = {**RECORD, "state": "invalidated", "auth_key": None}

    assert await store.replace_session(sid, updated, LONG) is True
    assert await store.get_session(sid) == updated


async def test_replace_never_recreates_a_gone_session(store: SessionStore) -> None:
    never_stored = _new_id()
    assert await store.replace_session(never_stored, RECORD, LONG) is False
    assert await store.get_session(never_stored) is None

    lapsed = _new_id()
    await store.put_session(lapsed, RECORD, SHORT)
    await asyncio.sleep(AFTER_SHORT)
    assert await store.replace_session(lapsed, RECORD, LONG) is False
    assert await store.get_session(lapsed) is None


async def test_take_is_atomic_under_concurrency(store: SessionStore) -> None:
    hid = _new_id()
    await store.put_pending(hid, RECORD, LONG)
    await _open_connections(store, 50)

    takers = [store.take_pending(hid) for _ in range(50)]
    results = await asyncio.wait_for(asyncio.gather(*takers), HANG_GUARD)

    assert [r for r in results if r is not None] == [RECORD]
    assert results.count(None) == 49


async def test_entries_expire(store: SessionStore) -> None:
    hid, sid = _new_id(), _new_id()
    await store.put_pending(hid, RECORD, SHORT)
    await store.put_session(sid, RECORD, SHORT)
    await store.check_nonce(sid, NONCE, SHORT)

    await asyncio.sleep(AFTER_SHORT)

    assert await store.take_pending(hid) is None
    assert await store.get_session(sid) is None
    assert await store.check_nonce(sid, NONCE, LONG) is True


async def test_nonce_replay_is_detected(store: SessionStore) -> None:
    sid = _new_id()

    assert await store.check_nonce(sid, NONCE, LONG) is True
    assert await store.check_nonce(sid, NONCE, LONG) is False
    assert await store.check_nonce(sid, NONCE[::-1], LONG) is True
    assert await store.check_nonce(_new_id(), NONCE, LONG) is True


async def test_nonce_is_forgotten_after_its_ttl(store: SessionStore) -> None:
    sid = _new_id()
    assert await store.check_nonce(sid, NONCE, SHORT) is True

    await asyncio.sleep(AFTER_SHORT)

    assert await store.check_nonce(sid, NONCE, LONG) is True
    assert await store.check_nonce(sid, NONCE, LONG) is False


async def test_concurrent_nonce_checks_admit_one(store: SessionStore) -> None:
    sid = _new_id()
    await _open_connections(store, 50)
    checks = [store.check_nonce(sid, NONCE, LONG) for _ in range(50)]
    results = await asyncio.wait_for(asyncio.gather(*checks), HANG_GUARD)

    assert results.count(True) == 1


async def test_ping_answers(store: SessionStore) -> None:
    await asyncio.wait_for(store.ping(), HANG_GUARD)


async def test_closed_store_refuses(store: SessionStore) -> None:
    await store.close()

    with pytest.raises(StoreUnavailable):
        await store.get_session(_new_id())
    with pytest.raises(StoreUnavailable):
        await store.ping()


# Argument checks, identical on both stores; nothing is written on refusal.


@pytest.mark.parametrize(
    ("ttl", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (1e9, ValueError),
        (True, TypeError),
        ("60", TypeError),
        (None, TypeError),
    ],
    ids=["zero", "negative", "nan", "inf", "huge", "bool", "str", "none"],
)
async def test_bad_ttl_is_refused(store: SessionStore, ttl, error) -> None:
    sid = _new_id()
    writes = [
        store.put_pending(sid, RECORD, ttl),
        store.put_session(sid, RECORD, ttl),
        store.replace_session(sid, RECORD, ttl),
        store.check_nonce(sid, NONCE, ttl),
    ]
    for write in writes:
        with pytest.raises(error):
            await write

    assert await store.take_pending(sid) is None
    assert await store.get_session(sid) is None
    assert await store.check_nonce(sid, NONCE, LONG) is True


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ({"key": bytearray(b"mutable")}, TypeError),
        ({"kind": Kind.A}, TypeError),
        ({"big": 2**64}, ValueError),
        ({"nested": {"a": 1}}, TypeError),
        ({"list": [1, 2]}, TypeError),
        ({1: "int name"}, TypeError),
        ([("a", 1)], TypeError),
        ({"x": math.nan}, ValueError),
    ],
    ids=[
        "bytearray",
        "enum",
        "huge-int",
        "nested",
        "list",
        "int-name",
        "not-a-dict",
        "nan",
    ],
)
async def test_bad_record_is_refused(store: SessionStore, record, error) -> None:
    sid = _new_id()
    with pytest.raises(error):
        await store.put_session(sid, record, LONG)
    with pytest.raises(error):
        await store.put_pending(sid, record, LONG)

    assert await store.get_session(sid) is None


@pytest.mark.parametrize(
    ("ident", "error"),
    [
        ("", ValueError),
        ("has space", ValueError),
        ("line\nbreak", ValueError),
        ("é", ValueError),
        ("x" * 257, ValueError),
        (b"bytes-id", TypeError),
        (7, TypeError),
    ],
    ids=["empty", "space", "newline", "non-ascii", "too-long", "bytes", "int"],
)
async def test_bad_identifier_is_refused(store: SessionStore, ident, error) -> None:
    with pytest.raises(error):
        await store.put_session(ident, RECORD, LONG)
    with pytest.raises(error):
        await store.take_pending(ident)
    with pytest.raises(error):
        await store.check_nonce(ident, NONCE, LONG)


@pytest.mark.parametrize(
    ("nonce", "error"),
    [(b"", ValueError), (bytes(65), ValueError), ("00" * 16, TypeError)],
    ids=["empty", "too-long", "str"],
)
async def test_bad_nonce_is_refused(store: SessionStore, nonce, error) -> None:
    with pytest.raises(error):
        await store.check_nonce(_new_id(), nonce, LONG)


# The memory store.


async def test_memory_expired_entries_hidden_before_the_sweep() -> None:
    store = MemorySessionStore(sweep_interval=3600)
    hid, sid = _new_id(), _new_id()
    await store.put_pending(hid, RECORD, SHORT)
    await store.put_session(sid, RECORD, SHORT)
    await asyncio.sleep(AFTER_SHORT)

    assert store.entry_count == 2
    assert await store.take_pending(hid) is None
    assert await store.get_session(sid) is None
    assert await store.replace_session(sid, RECORD, LONG) is False
    await store.close()


async def test_memory_sweeper_removes_expired_entries() -> None:
    store = MemorySessionStore(sweep_interval=0.05)
    keeper = _new_id()
    await store.put_session(keeper, RECORD, LONG)
    for _ in range(3000):
        await store.put_pending(_new_id(), RECORD, SHORT)
    await store.check_nonce(keeper, NONCE, SHORT)
    assert store.entry_count == 3002

    await _eventually(lambda: store.entry_count == 1, "the sweep")

    assert await store.get_session(keeper) == RECORD
    await store.close()


async def test_memory_rewrites_do_not_grow_without_limit() -> None:
    store = MemorySessionStore(sweep_interval=3600)
    sid = _new_id()
    await store.put_session(sid, RECORD, LONG)
    for _ in range(5000):
        assert await store.replace_session(sid, RECORD, LONG) is True

    store.sweep()

    # Each rewrite left a deadline behind; the sweep rebuilt the heap (a
    # private seam, read here because its growth is the thing under test).
    assert len(store._deadlines) == 1
    assert store.entry_count == 1
    await store.close()


async def test_memory_close_stops_the_sweeper() -> None:
    def sweepers() -> set[threading.Thread]:
        threads = threading.enumerate()
        return {t for t in threads if t.name == "pqc-session-sweeper"}

    before = sweepers()
    store = MemorySessionStore(sweep_interval=0.05)
    assert sweepers() == before  # started lazily, by the first write

    await store.put_session(_new_id(), RECORD, LONG)
    (sweeper,) = sweepers() - before
    await store.close()

    assert not sweeper.is_alive()
    assert store.entry_count == 0


async def test_memory_store_refuses_to_grow_past_its_limit(caplog) -> None:
    store = MemorySessionStore(sweep_interval=3600, max_entries=3)
    sid, hid = _new_id(), _new_id()
    await store.put_session(sid, RECORD, LONG)
    await store.put_pending(hid, RECORD, LONG)
    await store.check_nonce(sid, NONCE, SHORT)

    with pytest.raises(StoreUnavailable, match="full"):
        await store.put_session(_new_id(), RECORD, LONG)
    with pytest.raises(StoreUnavailable):
        await store.check_nonce(sid, NONCE[::-1], LONG)

    # Overwriting an entry does not grow the store; taking one frees a place.
    await store.put_session(sid, {"state": "active"}, LONG)
    assert await store.replace_session(sid, RECORD, LONG) is True
    assert await store.take_pending(hid) == RECORD
    await store.put_pending(_new_id(), RECORD, LONG)

    # A lapsed entry frees its place once swept.
    await asyncio.sleep(AFTER_SHORT)
    store.sweep()
    await store.put_pending(_new_id(), RECORD, LONG)
    assert store.entry_count == 3

    assert not any(form in caplog.text for form in SECRET_FORMS)
    await store.close()


async def test_memory_take_is_atomic_across_threads() -> None:
    store = MemorySessionStore()
    hid = _new_id()
    await store.put_pending(hid, RECORD, LONG)
    start = threading.Barrier(8)
    results: list[dict | None] = []

    def take() -> None:
        start.wait()
        results.append(asyncio.run(store.take_pending(hid)))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD)

    assert len(results) == 8
    assert [r for r in results if r is not None] == [RECORD]
    await store.close()


def test_memory_store_checks_its_settings() -> None:
    with pytest.raises(ValueError):
        MemorySessionStore(sweep_interval=0)
    with pytest.raises(ValueError):
        MemorySessionStore(max_entries=0)
    with pytest.raises(TypeError):
        MemorySessionStore(max_entries=10.5)


# The Redis store against a real redis-server.


def _every_call() -> dict[str, object]:
    sid = _new_id()
    return {
        "put_pending": lambda s: s.put_pending(_new_id(), RECORD, LONG),
        "take_pending": lambda s: s.take_pending(_new_id()),
        "put_session": lambda s: s.put_session(sid, RECORD, LONG),
        "get_session": lambda s: s.get_session(sid),
        "replace_session": lambda s: s.replace_session(sid, RECORD, LONG),
        "check_nonce": lambda s: s.check_nonce(sid, NONCE, LONG),
        "ping": lambda s: s.ping(),
    }


async def _assert_unavailable(store: SessionStore) -> None:
    for name, call in _every_call().items():
        try:
            await asyncio.wait_for(call(store), HANG_GUARD)
        except StoreUnavailable:
            continue
        except TimeoutError:
            pytest.fail(f"{name} hung instead of raising StoreUnavailable.")
        pytest.fail(f"{name} succeeded on a store that is down.")


async def _assert_available(store: SessionStore) -> None:
    for call in _every_call().values():
        await asyncio.wait_for(call(store), HANG_GUARD)


def _records(caplog, level: int) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "service.sessions" and r.levelno == level
    ]


@pytest.mark.redis
async def test_redis_every_key_has_a_ttl(redis_server: RedisServer) -> None:
    prefix = f"ttl-{_new_id()}:"
    store = RedisSessionStore(redis_server.url, prefix=prefix)
    hids = [_new_id() for _ in range(5)]
    sids = [_new_id() for _ in range(5)]
    for hid in hids:
        await store.put_pending(hid, RECORD, LONG)
    for sid in sids:
        await store.put_session(sid, RECORD, LONG)
        await store.check_nonce(sid, NONCE, LONG)
        await store.check_nonce(sid, NONCE, LONG)
    await store.take_pending(hids[0])
    await store.replace_session(sids[0], {"state": "invalidated"}, 30.0)
    await store.replace_session(_new_id(), RECORD, LONG)
    await store.close()

    raw = redis_server.client()
    keys = {k.decode() for k in raw.scan_iter(match=prefix + "*", count=1000)}
    expected = (
        {prefix + "hs:" + hid for hid in hids[1:]}
        | {prefix + "s:" + sid for sid in sids}
        | {prefix + "n:" + sid + ":" + NONCE.hex() for sid in sids}
    )
    assert keys == expected
    for key in keys:
        assert 0 < raw.pttl(key) <= LONG * 1000, key
    assert 0 < raw.pttl(prefix + "s:" + sids[0]) <= 30_000
    stored = json.loads(raw.get(prefix + "s:" + sids[1]))
    auth_key = base64.b64encode(RECORD["auth_key"]).decode()
    assert stored == {**RECORD, "auth_key": {"b64": auth_key}}
    raw.close()


@pytest.mark.redis
async def test_redis_store_is_shared_between_workers(redis_url: str) -> None:
    prefix = f"shared-{_new_id()}:"
    hello_worker = RedisSessionStore(redis_url, prefix=prefix)
    exchange_worker = RedisSessionStore(redis_url, prefix=prefix)
    hid = _new_id()

    await hello_worker.put_pending(hid, RECORD, LONG)
    assert await exchange_worker.take_pending(hid) == RECORD
    assert await hello_worker.take_pending(hid) is None

    await hello_worker.close()
    await exchange_worker.close()


@pytest.mark.redis
async def test_redis_foreign_data_is_refused(redis_server: RedisServer) -> None:
    prefix = f"foreign-{_new_id()}:"
    store = RedisSessionStore(redis_server.url, prefix=prefix)
    raw = redis_server.client()
    raw.set(prefix + "s:not-json", b"\xff{", px=60_000)
    raw.set(prefix + "s:a-list", b"[1, 2]", px=60_000)

    for sid in ("not-json", "a-list"):
        with pytest.raises(StoreUnavailable, match="JSON object"):
            await store.get_session(sid)
    raw.set(prefix + "s:odd-field", b'{"k": {"hex": "00"}}', px=60_000)
    raw.set(prefix + "s:bad-b64", b'{"k": {"b64": "not base64!"}}', px=60_000)
    for sid in ("odd-field", "bad-b64"):
        with pytest.raises(StoreUnavailable, match="did not write"):
            await store.get_session(sid)
    raw.close()
    await store.close()


@pytest.mark.redis
async def test_redis_stopped_then_restarted(fresh_redis: RedisServer, caplog) -> None:
    caplog.set_level(logging.INFO, logger="service.sessions")
    store = RedisSessionStore(fresh_redis.url, op_timeout=0.5)
    sid = _new_id()
    await store.put_session(sid, RECORD, LONG)

    fresh_redis.stop()
    await _assert_unavailable(store)
    await _assert_unavailable(store)

    # The same store object recovers; nothing survived (no persistence).
    fresh_redis.start()
    await _assert_available(store)
    assert await store.get_session(sid) is None
    await store.close()

    assert len(_records(caplog, logging.WARNING)) == 1
    recovered = [r for r in _records(caplog, logging.INFO) if "again" in r.message]
    assert len(recovered) == 1
    assert not any(form in caplog.text for form in SECRET_FORMS)


@pytest.mark.redis
async def test_redis_restart_between_calls_is_invisible(
    fresh_redis: RedisServer, caplog
) -> None:
    store = RedisSessionStore(fresh_redis.url, op_timeout=0.5)
    await _assert_available(store)

    # Every pooled connection is now dead, but no call has noticed yet.
    fresh_redis.stop()
    fresh_redis.start()

    await _assert_available(store)
    await store.close()
    assert _records(caplog, logging.WARNING) == []


@pytest.mark.redis
async def test_redis_hung_server_times_out(fresh_redis: RedisServer, caplog) -> None:
    store = RedisSessionStore(fresh_redis.url, op_timeout=0.3)
    await store.ping()

    fresh_redis.pause()
    try:
        await _assert_unavailable(store)
    finally:
        fresh_redis.resume()

    await _assert_available(store)
    await store.close()
    assert len(_records(caplog, logging.WARNING)) == 1


@pytest.mark.redis
async def test_redis_store_opened_before_redis_is_up(
    fresh_redis: RedisServer,
) -> None:
    fresh_redis.stop()
    store = RedisSessionStore(fresh_redis.url, op_timeout=0.5)
    await _assert_unavailable(store)

    fresh_redis.start()
    await _assert_available(store)
    await store.close()


def test_redis_store_checks_its_settings() -> None:
    with pytest.raises(ValueError):
        RedisSessionStore("http://127.0.0.1:6379/0")
    with pytest.raises(ValueError):
        RedisSessionStore("redis://127.0.0.1:6379/0", op_timeout=0)
    with pytest.raises(TypeError):
        RedisSessionStore("redis://127.0.0.1:6379/0", prefix=None)


# Choosing a store.


async def test_open_store_memory() -> None:
    store = open_store(False, "redis://127.0.0.1:1/0", sweep_interval=0.5)
    assert isinstance(store, MemorySessionStore)
    assert store.backend_name == "memory"
    await store.close()


@pytest.mark.redis
async def test_open_store_redis(redis_server: RedisServer, caplog) -> None:
    caplog.set_level(logging.INFO, logger="service.sessions")
    url = f"redis://user:hunter2@127.0.0.1:{redis_server.port}/0"
    store = open_store(True, url, prefix="x:", op_timeout=0.5)

    assert isinstance(store, RedisSessionStore)
    assert store.backend_name == "redis"
    assert f"127.0.0.1:{redis_server.port}" in caplog.text
    assert "hunter2" not in caplog.text
    await store.close()
