"""Handshakes against a real uvicorn server: every suite, both clients, pins,
key-exchange refusals, batching under load, and a log free of secrets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import mldsa

from service import protocol as pr
from service.client import (
    AsyncPqcClient,
    ClientHandshake,
    HandshakeError,
    PinnedKey,
    PqcClient,
    Session,
    pins_from_document,
)
from tests.server import (
    ResponseLog,
    ServerGroup,
    ServerProcess,
    assert_error,
    delete_headers,
    flip_b64,
    verify_body,
)

pytestmark = pytest.mark.timeout(60)

ALL_SUITES = list(pr.SUITES)
ID = re.compile(r"[A-Za-z0-9_-]{22}")
RFC3339_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
CONCURRENT = 200


@pytest.fixture(scope="module")
def keys_document(default_server: ServerProcess) -> dict:
    with httpx.Client(base_url=default_server.url, timeout=10) as http:
        response = http.get("/api/pqc/keys")
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="module")
def pins(keys_document: dict) -> dict[str, PinnedKey]:
    return pins_from_document(keys_document)


@pytest.fixture
def served(keys_document: dict, request: pytest.FixtureRequest) -> str:
    """The suite under test, skipped where this server does not serve it."""
    suite = request.param
    if suite not in keys_document["suites"]:
        pytest.skip(f"{suite} is not served here (GET /api/pqc/keys).")
    return suite


@pytest.fixture
def http(default_server: ServerProcess, response_log: ResponseLog) -> httpx.Client:
    return response_log.client(default_server.url)


def _hello(http: httpx.Client, state: ClientHandshake) -> dict:
    response = http.post("/api/pqc/handshake/hello", json=state.hello_request())
    assert response.status_code == 200, response.text
    return response.json()


def _check_verified(answer: dict, session: Session, state: str) -> None:
    assert answer["session_id"] == session.session_id
    assert answer["state"] == state
    assert answer["cipher_suite"] == session.suite
    assert answer["expires_at"] == session.expires_at
    assert RFC3339_Z.fullmatch(answer["created_at"])


# -- what is served ------------------------------------------------------


def test_keys_document_lists_suites_and_pinnable_keys(keys_document: dict) -> None:
    assert keys_document["protocol"] == "pqc-hs/1"
    assert pr.DEFAULT_SUITE in keys_document["suites"]
    assert set(keys_document["suites"]) <= set(pr.SUITES)

    needed = {pr.SUITES[name].sig for name in keys_document["suites"]}
    current = [k for k in keys_document["signature_keys"] if k["status"] == "current"]
    assert sorted(k["algorithm"] for k in current) == sorted(needed)
    for key in keys_document["signature_keys"]:
        public = base64.b64decode(key["public_key"])
        assert key["key_id"] == hashlib.sha256(public).digest()[:16].hex()


# -- full handshakes -------------------------------------------------------


@pytest.mark.parametrize("served", ALL_SUITES, indirect=True)
def test_sync_client_handshake_verify_delete(
    served: str,
    default_server: ServerProcess,
    pins: dict[str, PinnedKey],
    response_log: ResponseLog,
) -> None:
    http = response_log.client(default_server.url)
    with PqcClient(default_server.url, pins=pins, suites=[served], http=http) as c:
        session = c.handshake()
        assert session.suite == served
        _check_verified(c.verify_session(session), session, "active")

        c.delete_session(session)
        assert response_log.seen[-1][2] == 204
        _check_verified(c.verify_session(session), session, "invalidated")


@pytest.mark.parametrize("served", ALL_SUITES, indirect=True)
async def test_async_client_handshake_verify_delete(
    served: str,
    default_server: ServerProcess,
    pins: dict[str, PinnedKey],
    response_log: ResponseLog,
) -> None:
    http = response_log.async_client(default_server.url)
    async with AsyncPqcClient(
        default_server.url, pins=pins, suites=[served], http=http
    ) as client:
        session = await client.handshake()
        assert session.suite == served
        _check_verified(await client.verify_session(session), session, "active")

        await client.delete_session(session)
        assert response_log.seen[-1][2] == 204
        answer = await client.verify_session(session)
        _check_verified(answer, session, "invalidated")


@pytest.mark.parametrize("served", ALL_SUITES, indirect=True)
def test_raw_messages_match_protocol(
    served: str, http: httpx.Client, pins: dict[str, PinnedKey]
) -> None:
    state = ClientHandshake([served], pins)
    hello = _hello(http, state)
    suite = pr.SUITES[served]
    assert ID.fullmatch(hello["handshake_id"])
    assert hello["suite"] == served
    assert len(base64.b64decode(hello["server_random"])) == 32
    assert (hello["x25519_share"] is not None) == suite.hybrid
    assert RFC3339_Z.fullmatch(hello["expires_at"])

    response = http.post(
        "/api/pqc/handshake/key-exchange", json=state.key_exchange_request(hello)
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert ID.fullmatch(answer["session_id"])
    assert answer["cipher_suite"] == served
    assert len(bytes.fromhex(answer["handshake_hash"])) == suite.hash_len
    assert state.finish(answer).session_id == answer["session_id"]

    response = http.delete(
        f"/api/pqc/session/{answer['session_id']}",
        headers=delete_headers(state.finish(answer)),
    )
    assert response.status_code == 204
    assert response.content == b""


def test_server_picks_first_served_suite_in_client_order(
    http: httpx.Client, pins: dict[str, PinnedKey], keys_document: dict
) -> None:
    offered = ["NOT-A-SUITE", *reversed(keys_document["suites"])]
    hello = _hello(http, ClientHandshake(offered, pins))
    assert hello["suite"] == keys_document["suites"][-1]


def test_trust_on_first_use_pins_the_published_keys(
    default_server: ServerProcess, response_log: ResponseLog
) -> None:
    http = response_log.client(default_server.url)
    with PqcClient(default_server.url, trust_on_first_use=True, http=http) as client:
        session = client.handshake()
        assert client.verify_session(session)["state"] == "active"


# -- pinning -----------------------------------------------------------------


def _other_key() -> PinnedKey:
    public = mldsa.MLDSA65PrivateKey.generate().public_key().public_bytes_raw()
    key_id = hashlib.sha256(public).digest()[:16].hex()
    return PinnedKey(key_id, "ML-DSA-65", public)


def test_client_pinned_to_another_key_aborts(
    default_server: ServerProcess, response_log: ResponseLog
) -> None:
    other = _other_key()
    http = response_log.client(default_server.url)
    with (
        PqcClient(default_server.url, pins={other.key_id: other}, http=http) as c,
        pytest.raises(HandshakeError, match="not pinned"),
    ):
        c.handshake()


def test_pin_with_the_right_id_but_another_key_aborts(
    default_server: ServerProcess,
    pins: dict[str, PinnedKey],
    response_log: ResponseLog,
) -> None:
    real = next(p for p in pins.values() if p.algorithm == "ML-DSA-65")
    forged = PinnedKey(real.key_id, real.algorithm, _other_key().public_key)
    http = response_log.client(default_server.url)
    with (
        PqcClient(default_server.url, pins={real.key_id: forged}, http=http) as c,
        pytest.raises(HandshakeError, match="signature is not valid"),
    ):
        c.handshake()


# -- key-exchange refusals (protocol.md section 3) --------------------------


def _key_exchange(http: httpx.Client, body: dict) -> httpx.Response:
    return http.post("/api/pqc/handshake/key-exchange", json=body)


def test_replayed_key_exchange_is_unknown_handshake(
    http: httpx.Client, pins: dict[str, PinnedKey]
) -> None:
    state = ClientHandshake([pr.DEFAULT_SUITE], pins)
    body = state.key_exchange_request(_hello(http, state))
    assert _key_exchange(http, body).status_code == 200
    assert_error(_key_exchange(http, body), 404, "unknown_handshake")


@pytest.mark.parametrize("field", ["kem_ciphertext", "client_verify_data"])
def test_tampered_key_exchange_fails_and_consumes_the_handshake(
    field: str, http: httpx.Client, pins: dict[str, PinnedKey]
) -> None:
    # A flipped ciphertext bit decapsulates to ML-KEM's implicit-rejection
    # secret (FIPS 203, Algorithm 18), so it surfaces as a verify-data
    # mismatch, exactly like tampered verify data.
    state = ClientHandshake([pr.DEFAULT_SUITE], pins)
    body = state.key_exchange_request(_hello(http, state))
    tampered = {**body, field: flip_b64(body[field], 7)}
    assert_error(_key_exchange(http, tampered), 401, "handshake_failed")

    # The honest message now comes too late: the id was consumed.
    assert_error(_key_exchange(http, body), 404, "unknown_handshake")


def test_key_exchange_with_wrong_ciphertext_length_consumes_the_handshake(
    http: httpx.Client, pins: dict[str, PinnedKey]
) -> None:
    state = ClientHandshake([pr.DEFAULT_SUITE], pins)
    body = state.key_exchange_request(_hello(http, state))
    short = base64.b64encode(base64.b64decode(body["kem_ciphertext"])[:-1]).decode()
    assert_error(
        _key_exchange(http, {**body, "kem_ciphertext": short}), 400, "bad_request"
    )
    assert_error(_key_exchange(http, body), 404, "unknown_handshake")


async def test_racing_key_exchanges_complete_one_session(
    default_server: ServerProcess,
    pins: dict[str, PinnedKey],
    response_log: ResponseLog,
) -> None:
    state = ClientHandshake([pr.DEFAULT_SUITE], pins)
    async with response_log.async_client(default_server.url) as http:
        hello = await http.post("/api/pqc/handshake/hello", json=state.hello_request())
        body = state.key_exchange_request(hello.json())
        racers = [
            http.post("/api/pqc/handshake/key-exchange", json=body) for _ in range(8)
        ]
        responses = await asyncio.gather(*racers)

    assert sorted(r.status_code for r in responses) == [200] + [404] * 7
    for response in responses:
        if response.status_code == 404:
            assert_error(response, 404, "unknown_handshake")


# -- batching under load -------------------------------------------------------


async def _stats(http: httpx.AsyncClient) -> dict:
    response = await http.get("/api/pqc/stats")
    assert response.status_code == 200
    return response.json()


def _histogram_growth(before: dict, after: dict) -> dict[str, int]:
    old, new = before["batch_size_histogram"], after["batch_size_histogram"]
    return {b: n - old.get(b, 0) for b, n in new.items() if n > old.get(b, 0)}


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_concurrent_handshakes_all_succeed_in_shared_batches(
    default_server: ServerProcess,
    pins: dict[str, PinnedKey],
    response_log: ResponseLog,
) -> None:
    limits = httpx.Limits(max_connections=CONCURRENT + 16)
    http = response_log.async_client(default_server.url, timeout=120, limits=limits)
    async with AsyncPqcClient(default_server.url, pins=pins, http=http) as client:
        before = await _stats(http)
        tasks = (client.handshake() for _ in range(CONCURRENT))
        sessions = await asyncio.gather(*tasks)
        after = await _stats(http)
        states = await asyncio.gather(*(client.verify_session(s) for s in sessions))

    assert len({s.session_id for s in sessions}) == CONCURRENT
    assert {s["state"] for s in states} == {"active"}

    # Each handshake is three engine operations: keygen, sign, decaps.
    operations = after["operations"] - before["operations"]
    batches = after["batches"] - before["batches"]
    assert operations == 3 * CONCURRENT
    assert batches < operations
    grown = _histogram_growth(before, after)
    assert set(grown) - {"<=1"}, f"no batch above one operation: {grown}"


# -- the log keeps no secrets ---------------------------------------------------


def _secret_texts(session: Session) -> list[str]:
    secrets = [
        session.auth_key,
        session.client_write_key,
        session.server_write_key,
        session.client_iv,
        session.server_iv,
    ]
    texts = []
    for secret in secrets:
        texts += [secret.hex(), base64.b64encode(secret).decode()]
        texts.append(base64.urlsafe_b64encode(secret).decode().rstrip("="))
    return texts


def test_server_log_holds_no_session_keys_or_macs(
    serve: ServerGroup, response_log: ResponseLog, keys_document: dict
) -> None:
    # Debug logging shows the most a deployment could ever log.
    server = serve.start({"PQC_LOG_LEVEL": "debug"})
    http = response_log.client(server.url)
    pins = pins_from_document(http.get("/api/pqc/keys").json())
    secrets: list[str] = []
    for suite in keys_document["suites"]:
        state = ClientHandshake([suite], pins)
        body = state.key_exchange_request(_hello(http, state))
        answer = _key_exchange(http, body).json()
        session = state.finish(answer)

        verify = verify_body(session)
        headers = delete_headers(session)
        assert http.post("/api/pqc/session/verify", json=verify).status_code == 200
        path = f"/api/pqc/session/{session.session_id}"
        assert http.delete(path, headers=headers).status_code == 204

        secrets += _secret_texts(session)
        secrets += [verify["mac"], headers["X-PQC-MAC"]]
        secrets += [body["client_verify_data"], answer["server_verify_data"]]
    server.stop()

    log = server.log_text()
    assert '"log_level": "debug"' in log and "/api/pqc/session/verify" in log
    leaked = [text for text in secrets if text in log]
    assert not leaked, "the server log holds key material"
