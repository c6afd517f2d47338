"""Fixes from adversarial testing: each test pins one finding down."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time

import httpx
import pytest

from engine import Engine, EngineConfig, KemKeygenIn, Kind, OpKey
from engine.errors import ConfigError
from service.client import ClientHandshake, PqcClient, pins_from_document
from service.config import Settings
from service.errors import StoreUnavailable
from service.sessions import MemorySessionStore
from tests.server import assert_error, delete_headers, verify_body

HELLO = "/api/pqc/handshake/hello"
DEFAULT = "MLKEM768-MLDSA65-AES256GCM-SHA384"


def _hello_body(suites: list[str]) -> dict:
    return {
        "client_random": base64.b64encode(os.urandom(32)).decode(),
        "suites": suites,
    }


def test_a_comma_inside_a_suite_name_is_refused(default_server) -> None:
    # join(",", suites) would read the same for a regrouped list: a downgrade.
    regrouped = ["FUTURE-SUITE,MLKEM1024-MLDSA87-AES256GCM-SHA384", DEFAULT]
    with httpx.Client(base_url=default_server.url) as http:
        answer = http.post(HELLO, json=_hello_body(regrouped))
    assert_error(answer, 400, "bad_request")

    with pytest.raises(ValueError, match="comma"):
        ClientHandshake(regrouped, {})


def test_a_body_cut_short_runs_nothing(default_server) -> None:
    with httpx.Client(base_url=default_server.url) as http:
        before = http.get("/api/pqc/stats").json()["operations"]

    chunk = b'{"client_random": "AAAA'  # a chunked hello that never ends
    with socket.create_connection(("127.0.0.1", default_server.port)) as sock:
        sock.sendall(
            b"POST /api/pqc/handshake/hello HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(chunk):x}\r\n".encode()
            + chunk
            + b"\r\n"
        )
    time.sleep(0.5)

    with httpx.Client(base_url=default_server.url) as http:
        assert http.get("/api/pqc/stats").json()["operations"] == before


def test_timestamp_header_with_leading_zeros_is_refused(default_server) -> None:
    with PqcClient(default_server.url, trust_on_first_use=True) as client:
        session = client.handshake()
    headers = delete_headers(session)
    headers["X-PQC-Timestamp"] = "0" + headers["X-PQC-Timestamp"]

    with httpx.Client(base_url=default_server.url) as http:
        answer = http.delete(f"/api/pqc/session/{session.session_id}", headers=headers)
    assert_error(answer, 400, "bad_request")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_deleting_an_expired_session_does_not_extend_its_grace(serve) -> None:
    server = serve.start(
        {"PQC_SESSION_TTL_SECONDS": "2", "PQC_SESSION_GRACE_SECONDS": "3"}
    )
    with PqcClient(server.url, trust_on_first_use=True) as client:
        session = client.handshake()
    ends = time.time() + 2  # expires_at is whole seconds, so at most this
    time.sleep(max(0.0, ends + 0.5 - time.time()))

    with httpx.Client(base_url=server.url) as http:
        path = f"/api/pqc/session/{session.session_id}"
        assert http.delete(path, headers=delete_headers(session)).status_code == 204
        time.sleep(max(0.0, ends + 3 + 0.5 - time.time()))  # past end + grace
        gone = http.post("/api/pqc/session/verify", json=verify_body(session))
    assert_error(gone, 404, "unknown_session")


def test_a_full_memory_store_fails_its_ping() -> None:
    async def scenario() -> None:
        store = MemorySessionStore(max_entries=2)
        await store.put_session("a" * 22, {"x": 1}, 60)
        await store.ping()
        await store.put_session("b" * 22, {"x": 1}, 60)
        with pytest.raises(StoreUnavailable, match="full"):
            await store.ping()
        await store.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PQC_SESSION_TTL_SECONDS", "40000000"),
        ("PQC_CLOCK_SKEW_SECONDS", "20000000"),
        ("PQC_HANDSHAKE_TIMEOUT_SECONDS", "100000"),
    ],
)
def test_settings_beyond_store_lifetimes_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_a_strange_lane_fails_its_caller_only() -> None:
    with Engine(EngineConfig(offload="off")) as engine:
        with pytest.raises(TypeError, match="seed must be bytes"):
            engine.submit(Kind.KEM_KEYGEN, "ML-KEM-768", KemKeygenIn("x" * 64))

        strided = memoryview(os.urandom(128))[::2]  # not contiguous
        pair = engine.run_sync(Kind.KEM_KEYGEN, "ML-KEM-768", KemKeygenIn(strided), 30)
        assert pair.dk_seed == bytes(strided)
        assert engine.statistics()["fallbacks"] == 0


def test_the_device_refuses_a_strange_lane_alone() -> None:
    device_module = pytest.importorskip("engine.backends.device")
    backend = device_module.DeviceBackend(EngineConfig())
    try:
        good = [KemKeygenIn(os.urandom(64)) for _ in range(3)]
        odd = [KemKeygenIn("not bytes"), KemKeygenIn(memoryview(os.urandom(128))[::2])]
        results = backend.run_batch(OpKey(Kind.KEM_KEYGEN, "ML-KEM-512"), good + odd)
    finally:
        backend.close()

    assert [type(r).__name__ for r in results] == [
        "KemKeyPair",
        "KemKeyPair",
        "KemKeyPair",
        "InvalidInput",
        "KemKeyPair",
    ]


def test_pins_from_document_round_trip(default_server) -> None:
    with httpx.Client(base_url=default_server.url) as http:
        pins = pins_from_document(http.get("/api/pqc/keys").json())
    assert all(len(key_id) == 32 for key_id in pins)
