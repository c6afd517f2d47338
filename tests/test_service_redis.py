"""The service on a real Redis: shared by two servers, every key with a TTL,
and an outage answered with 503 until Redis is back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from service import protocol as pr
from service.client import ClientHandshake, PqcClient, Session, pins_from_document
from tests.redis_server import RedisServer
from tests.server import (
    ResponseLog,
    ServerGroup,
    ServerProcess,
    assert_error,
    delete_headers,
    verify_body,
)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]

OUTAGE_BOUND = 10.0  # seconds: an answer slower than this during an outage hangs
RECOVERY_BOUND = 10.0  # seconds to resume service once Redis is back
TRAFFIC_KEYS = {"client_write_key", "server_write_key", "client_iv", "server_iv"}


def _redis_env(redis: RedisServer, **extra: str) -> dict[str, str]:
    return {"PQC_SESSION_REDIS": "1", "PQC_SESSION_REDIS_URL": redis.url, **extra}


def _pins(http: httpx.Client) -> dict:
    return pins_from_document(http.get("/api/pqc/keys").json())


def _hello(http: httpx.Client, state: ClientHandshake) -> dict:
    response = http.post("/api/pqc/handshake/hello", json=state.hello_request())
    assert response.status_code == 200, response.text
    return response.json()


def _finish(http: httpx.Client, state: ClientHandshake, hello: dict) -> Session:
    body = state.key_exchange_request(hello)
    response = http.post("/api/pqc/handshake/key-exchange", json=body)
    assert response.status_code == 200, response.text
    return state.finish(response.json())


def _verify(http: httpx.Client, session: Session) -> httpx.Response:
    return http.post("/api/pqc/session/verify", json=verify_body(session))


def _delete(http: httpx.Client, session: Session) -> httpx.Response:
    path = f"/api/pqc/session/{session.session_id}"
    return http.delete(path, headers=delete_headers(session))


def _state(http: httpx.Client, session: Session) -> str:
    response = _verify(http, session)
    assert response.status_code == 200, response.text
    return response.json()["state"]


# -- two servers, one Redis, one key directory ------------------------------------


@pytest.fixture
def two_servers(
    fresh_redis: RedisServer, serve: ServerGroup, tmp_path
) -> list[ServerProcess]:
    # Started side by side on an empty key directory: the key store's lock
    # must leave both with the same keys.
    env = _redis_env(fresh_redis)
    return serve.start_many([env, env], key_dir=tmp_path / "keys")


def test_two_servers_publish_the_same_keys(
    two_servers: list[ServerProcess], response_log: ResponseLog
) -> None:
    docs = [response_log.client(s.url).get("/api/pqc/keys").json() for s in two_servers]
    assert docs[0]["signature_keys"] == docs[1]["signature_keys"]


def test_hello_on_one_server_completes_on_the_other(
    two_servers: list[ServerProcess], response_log: ResponseLog
) -> None:
    a, b = (response_log.client(s.url) for s in two_servers)
    pins = _pins(a)
    for suite in a.get("/api/pqc/keys").json()["suites"]:
        for first, second in ((a, b), (b, a)):
            state = ClientHandshake([suite], pins)
            session = _finish(second, state, _hello(first, state))
            assert _state(a, session) == "active"
            assert _state(b, session) == "active"

            assert _delete(second, session).status_code == 204
            assert _state(first, session) == "invalidated"


def test_handshake_id_is_consumed_for_both_servers(
    two_servers: list[ServerProcess], response_log: ResponseLog
) -> None:
    a, b = (response_log.client(s.url) for s in two_servers)
    state = ClientHandshake([pr.DEFAULT_SUITE], _pins(a))
    body = state.key_exchange_request(_hello(a, state))
    assert b.post("/api/pqc/handshake/key-exchange", json=body).status_code == 200
    response = a.post("/api/pqc/handshake/key-exchange", json=body)
    assert_error(response, 404, "unknown_handshake")


async def test_racing_key_exchanges_on_two_servers_complete_one_session(
    two_servers: list[ServerProcess], response_log: ResponseLog
) -> None:
    a, b = (response_log.async_client(s.url) for s in two_servers)
    async with a, b:
        pins = pins_from_document((await a.get("/api/pqc/keys")).json())
        state = ClientHandshake([pr.DEFAULT_SUITE], pins)
        hello = await a.post("/api/pqc/handshake/hello", json=state.hello_request())
        body = state.key_exchange_request(hello.json())
        path = "/api/pqc/handshake/key-exchange"
        racers = [http.post(path, json=body) for http in (a, b) * 4]
        responses = await asyncio.gather(*racers)

    assert sorted(r.status_code for r in responses) == [200] + [404] * 7
    for response in responses:
        if response.status_code == 404:
            assert_error(response, 404, "unknown_handshake")


@pytest.mark.slow
def test_two_workers_on_redis_serve_handshakes(
    fresh_redis: RedisServer, serve: ServerGroup, response_log: ResponseLog
) -> None:
    server = serve.start(_redis_env(fresh_redis), args=["--workers", "2"])
    http = response_log.client(server.url)
    with PqcClient(server.url, pins=_pins(http), http=http) as client:
        sessions = [client.handshake() for _ in range(8)]
        assert {client.verify_session(s)["state"] for s in sessions} == {"active"}


# -- what the server leaves in Redis -----------------------------------------------


def _all_keys(redis: RedisServer) -> dict[str, int]:
    raw = redis.client()
    try:
        return {key.decode(): raw.pttl(key) for key in raw.scan_iter(count=1000)}
    finally:
        raw.close()


def test_every_key_the_server_writes_expires(
    fresh_redis: RedisServer, serve: ServerGroup, response_log: ResponseLog
) -> None:
    server = serve.start(_redis_env(fresh_redis))
    http = response_log.client(server.url)
    pins = _pins(http)

    # A pending handshake, an active session with a seen nonce, and a
    # deleted one: every kind of record the service writes.
    _hello(http, ClientHandshake([pr.DEFAULT_SUITE], pins))
    state = ClientHandshake([pr.DEFAULT_SUITE], pins)
    live = _finish(http, state, _hello(http, state))
    assert _state(http, live) == "active"
    state = ClientHandshake([pr.DEFAULT_SUITE], pins)
    gone = _finish(http, state, _hello(http, state))
    assert _delete(http, gone).status_code == 204

    keys = _all_keys(fresh_redis)
    assert all(key.startswith("pqc:") for key in keys), sorted(keys)
    assert {key.split(":")[1] for key in keys} == {"hs", "s", "n"}
    assert all(ttl > 0 for ttl in keys.values()), keys


def test_deleted_session_keeps_no_traffic_keys_in_redis(
    fresh_redis: RedisServer, serve: ServerGroup, response_log: ResponseLog
) -> None:
    server = serve.start(_redis_env(fresh_redis))
    http = response_log.client(server.url)
    state = ClientHandshake([pr.DEFAULT_SUITE], _pins(http))
    session = _finish(http, state, _hello(http, state))

    raw = fresh_redis.client()
    try:
        stored = json.loads(raw.get(f"pqc:s:{session.session_id}"))
        assert set(stored) >= TRAFFIC_KEYS
        assert _delete(http, session).status_code == 204
        stored = json.loads(raw.get(f"pqc:s:{session.session_id}"))
    finally:
        raw.close()
    assert stored["state"] == "invalidated"
    assert not TRAFFIC_KEYS & set(stored)


# -- Redis goes away, then comes back ------------------------------------------------


def _take_down(redis: RedisServer, how: str) -> None:
    if how == "stopped":
        redis.stop()
    else:
        redis.pause()


def _bring_back(redis: RedisServer, how: str) -> None:
    if how == "stopped":
        redis.start()
    else:
        redis.resume()


@pytest.fixture
def outage_server(
    fresh_redis: RedisServer, serve: ServerGroup
) -> Iterator[ServerProcess]:
    server = serve.start(_redis_env(fresh_redis))
    yield server
    fresh_redis.resume()


def _handshake_when_back(http: httpx.Client, pins: dict) -> Session:
    """Retry a handshake until Redis serves it again, within RECOVERY_BOUND."""
    deadline = time.monotonic() + RECOVERY_BOUND
    while True:
        state = ClientHandshake([pr.DEFAULT_SUITE], pins)
        response = http.post("/api/pqc/handshake/hello", json=state.hello_request())
        if response.status_code == 200:
            return _finish(http, state, response.json())
        assert_error(response, 503, "unavailable")
        assert time.monotonic() < deadline, "the service did not resume by itself"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stopped", "paused"])
def test_redis_outage_answers_unavailable_then_recovers(
    how: str,
    fresh_redis: RedisServer,
    outage_server: ServerProcess,
    response_log: ResponseLog,
) -> None:
    # A hang fails the test through the client's timeout, not the run's.
    http = response_log.client(outage_server.url, timeout=OUTAGE_BOUND)
    pins = _pins(http)
    assert http.get("/api/pqc/health").json()["status"] == "ok"
    state = ClientHandshake([pr.DEFAULT_SUITE], pins)
    session = _finish(http, state, _hello(http, state))
    waiting = ClientHandshake([pr.DEFAULT_SUITE], pins)
    pending = waiting.key_exchange_request(_hello(http, waiting))

    _take_down(fresh_redis, how)
    health = http.get("/api/pqc/health")
    assert health.status_code == 503
    assert health.json()["status"] == "down"
    assert health.json()["session_store"] == {"backend": "redis", "reachable": False}

    fresh = ClientHandshake([pr.DEFAULT_SUITE], pins).hello_request()
    refused = [
        http.post("/api/pqc/handshake/hello", json=fresh),
        http.post("/api/pqc/handshake/key-exchange", json=pending),
        _verify(http, session),
        _delete(http, session),
    ]
    for response in refused:
        assert_error(response, 503, "unavailable")

    _bring_back(fresh_redis, how)
    after = _handshake_when_back(http, pins)
    assert _state(http, after) == "active"
    assert http.get("/api/pqc/health").json()["status"] == "ok"
    if how == "paused":
        # Nothing was lost, and the refused delete did not end the session.
        assert _state(http, session) == "active"
    else:
        # The restarted Redis is empty: the old session is gone for good.
        assert_error(_verify(http, session), 404, "unknown_session")


# -- records the server did not write ---------------------------------------------


def _rewrite(redis: RedisServer, key: str, change) -> None:
    """Rewrite a stored record in place, keeping its TTL."""
    raw = redis.client()
    try:
        record = json.loads(raw.get(key))
        raw.set(key, json.dumps(change(record)), px=raw.pttl(key))
    finally:
        raw.close()


def _old_format(record: dict) -> dict:
    """The format of earlier builds: bytes as bare base64 strings."""
    return {k: v["b64"] if isinstance(v, dict) else v for k, v in record.items()}


_SHORT = {"b64": "AAAA"}
RESHAPED = {
    "old-format": _old_format,
    "bad-number": lambda r: {**r, "expires_at": "soon"},
    "bad-suite": lambda r: {**r, "suite": "no-such-suite"},
    "missing-field": lambda r: {
        k: v for k, v in r.items() if k not in ("dk_seed", "auth_key")
    },
    "short-key": lambda r: {**r, "dk_seed": _SHORT, "auth_key": _SHORT},
}


def _outcome(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_a_record_of_another_shape_is_unknown_not_a_crash(
    fresh_redis: RedisServer, serve: ServerGroup, response_log: ResponseLog
) -> None:
    server = serve.start(_redis_env(fresh_redis))
    http = response_log.client(server.url)
    pins = _pins(http)
    seen = {}

    for name, change in RESHAPED.items():
        state = ClientHandshake([pr.DEFAULT_SUITE], pins)
        session = _finish(http, state, _hello(http, state))
        _rewrite(fresh_redis, f"pqc:s:{session.session_id}", change)
        verified = _verify(http, session)

        state = ClientHandshake([pr.DEFAULT_SUITE], pins)
        hello = _hello(http, state)
        _rewrite(fresh_redis, f"pqc:hs:{hello['handshake_id']}", change)
        body = state.key_exchange_request(hello)
        exchanged = http.post("/api/pqc/handshake/key-exchange", json=body)
        seen[name] = (_outcome(verified), _outcome(exchanged))

    expected = ((404, "unknown_session"), (404, "unknown_handshake"))
    assert seen == dict.fromkeys(RESHAPED, expected)
    assert server.log_text().count("cannot read") == 2 * len(RESHAPED)
