"""protocol.md's error table, produced over HTTP by requests that earn it.

This module covers bad_request, no_common_suite, unknown_handshake,
unknown_session, request_too_large and overloaded. Proof-of-possession
refusals (bad_mac, stale_request, replayed_request) are in
test_service_sessions.py, handshake_failed in test_service_handshake.py and
unavailable (Redis down) in test_service_redis.py. Every check goes through
``assert_error``, which holds the body to exactly ``{"error": {"code",
"message"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os

import httpx
import pytest

from service import protocol as pr
from service.client import ClientHandshake, pins_from_document
from tests.server import (
    ResponseLog,
    ServerGroup,
    ServerProcess,
    assert_error,
    b64,
)

pytestmark = pytest.mark.timeout(60)

HYBRID = "X25519MLKEM768-MLDSA65-AES256GCM-SHA384"
BODY_LIMIT = 65536  # PQC_MAX_BODY_BYTES's default
HAMMER = 60  # concurrent hellos against a one-slot queue
HAMMER_ROUNDS = 3
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@pytest.fixture
def http(default_server: ServerProcess, response_log: ResponseLog) -> httpx.Client:
    return response_log.client(default_server.url)


def _new_id() -> str:
    return pr.new_id(os.urandom(pr.ID_BYTES))


def _hello_body(**changes: object) -> dict:
    body = {"client_random": b64(os.urandom(32)), "suites": [pr.DEFAULT_SUITE]}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _kx_body(**changes: object) -> dict:
    body = {
        "handshake_id": _new_id(),
        "kem_ciphertext": b64(os.urandom(1088)),
        "client_verify_data": b64(os.urandom(48)),
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _verify_fields(**changes: object) -> dict:
    body = {
        "session_id": _new_id(),
        "timestamp": 1_700_000_000,
        "nonce": b64(os.urandom(16)),
        "mac": b64(os.urandom(48)),
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


# -- malformed requests ---------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b"[]",
        b'"text"',
        b"\xff\xfe{}",
        b'{"a": 1} trailing',
        b"[" * 50_000,
        b'{"a": ' * 5_000 + b"1" + b"}" * 5_000,
    ],
    ids=[
        "broken",
        "empty",
        "array",
        "string",
        "not-utf8",
        "trailing",
        "deep-array",
        "deep-object",
    ],
)
@pytest.mark.parametrize(
    "path",
    ["handshake/hello", "handshake/key-exchange", "session/verify"],
)
def test_malformed_json_is_bad_request(path: str, raw: bytes, http: httpx.Client):
    headers = {"Content-Type": "application/json"}
    response = http.post(f"/api/pqc/{path}", content=raw, headers=headers)
    assert_error(response, 400, "bad_request")


def _base64_variants(data: bytes) -> dict[str, str]:
    """Non-canonical spellings of ``data`` that a lenient decoder accepts."""
    good = b64(data)
    half = len(good) // 8 * 4
    variants = {
        "spaces": good[:half] + "  \r\n" + good[half:],
        "newline-end": good + "\n",
        "url-safe": good.replace("+", "-").replace("/", "_"),
        "extra-padding": good + "====",
    }
    if good.endswith("="):
        stripped = good.rstrip("=")
        variants["missing-padding"] = stripped
        # The last data character carries unused low bits; set one of them.
        last = ALPHABET.index(stripped[-1])
        spoiled = stripped[:-1] + ALPHABET[last | 1] + good[len(stripped) :]
        variants["trailing-bits"] = spoiled
    return variants


# Values that hold '+' and '/' (so the URL-safe spelling differs) and whose
# length leaves padding (so padding and trailing-bit variants exist).
_SAMPLE = {
    32: b"\xfb\xef\xbe\xff\xff\xff" + bytes(range(26)),
    16: b"\xfb\xef\xbe\xff\xff\xff" + bytes(range(10)),
    1088: b"\xfb\xef\xbe\xff\xff\xff" + bytes(1082),
}
VARIANTS = ["spaces", "newline-end", "url-safe", "extra-padding"]
VARIANTS += ["missing-padding", "trailing-bits"]


def _bad_base64_request(field: str, variant: str) -> tuple[str, dict]:
    if field == "client_random":
        value = _base64_variants(_SAMPLE[32])[variant]
        return "handshake/hello", _hello_body(client_random=value)
    if field == "x25519_share":
        value = _base64_variants(_SAMPLE[32])[variant]
        return "handshake/hello", _hello_body(suites=[HYBRID], x25519_share=value)
    if field == "kem_ciphertext":
        value = _base64_variants(_SAMPLE[1088])[variant]
        return "handshake/key-exchange", _kx_body(kem_ciphertext=value)
    value = _base64_variants(_SAMPLE[16])[variant]
    return "session/verify", _verify_fields(nonce=value)


def test_base64_samples_are_lenient_spellings_of_the_same_bytes() -> None:
    # Guards the next test: every variant must decode to the right bytes
    # under a lenient decoder, so only strictness can refuse it.
    for data in _SAMPLE.values():
        for name, text in _base64_variants(data).items():
            if name == "url-safe":
                assert base64.urlsafe_b64decode(text) == data
            elif name == "missing-padding":
                assert base64.b64decode(text + "=" * (-len(text) % 4)) == data
            elif name != "extra-padding":
                assert base64.b64decode(text) == data
            assert text != b64(data)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "field", ["client_random", "x25519_share", "kem_ciphertext", "nonce"]
)
def test_non_canonical_base64_is_bad_request(
    field: str, variant: str, http: httpx.Client
) -> None:
    path, body = _bad_base64_request(field, variant)
    message = assert_error(http.post(f"/api/pqc/{path}", json=body), 400, "bad_request")
    assert field in message


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("handshake/hello", _hello_body(client_random=b64(bytes(31))), "client_random"),
        ("handshake/hello", _hello_body(client_random=b64(bytes(33))), "client_random"),
        (
            "handshake/hello",
            _hello_body(suites=[HYBRID], x25519_share=b64(bytes(31))),
            "x25519_share",
        ),
        ("session/verify", _verify_fields(nonce=b64(bytes(15))), "nonce"),
        ("session/verify", _verify_fields(session_id="short"), "session_id"),
        ("handshake/key-exchange", _kx_body(handshake_id="A" * 23), "handshake_id"),
    ],
    ids=["random-31", "random-33", "share-31", "nonce-15", "session-id", "hs-id"],
)
def test_wrong_lengths_are_bad_request(
    path: str, body: dict, field: str, http: httpx.Client
) -> None:
    message = assert_error(http.post(f"/api/pqc/{path}", json=body), 400, "bad_request")
    assert field in message


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("handshake/hello", "client_random"),
        ("handshake/hello", "suites"),
        ("handshake/key-exchange", "handshake_id"),
        ("handshake/key-exchange", "kem_ciphertext"),
        ("handshake/key-exchange", "client_verify_data"),
        ("session/verify", "session_id"),
        ("session/verify", "timestamp"),
        ("session/verify", "nonce"),
        ("session/verify", "mac"),
    ],
)
def test_missing_fields_are_bad_request(path: str, field: str, http: httpx.Client):
    full = {
        "handshake/hello": _hello_body(),
        "handshake/key-exchange": _kx_body(),
        "session/verify": _verify_fields(),
    }[path]
    body = {k: v for k, v in full.items() if k != field}
    message = assert_error(http.post(f"/api/pqc/{path}", json=body), 400, "bad_request")
    assert field in message


@pytest.mark.parametrize(
    "body",
    [
        _hello_body(suites=[]),
        _hello_body(suites=[pr.DEFAULT_SUITE] * 17),
        _hello_body(suites="MLKEM768-MLDSA65-AES256GCM-SHA384"),
        _hello_body(suites=[7]),
        _hello_body(client_random=12345),
        _hello_body(client_address=["not", "a", "string"]),
        _verify_fields(timestamp="1700000000"),
        _verify_fields(timestamp=True),
        _verify_fields(timestamp=-5),
    ],
    ids=[
        "no-suites",
        "17-suites",
        "suites-string",
        "suite-number",
        "random-number",
        "address-list",
        "timestamp-string",
        "timestamp-bool",
        "timestamp-negative",
    ],
)
def test_wrong_types_are_bad_request(body: dict, http: httpx.Client) -> None:
    path = "session/verify" if "timestamp" in body else "handshake/hello"
    assert_error(http.post(f"/api/pqc/{path}", json=body), 400, "bad_request")


def test_suite_name_that_is_not_unicode_text_is_bad_request(
    http: httpx.Client,
) -> None:
    # JSON can carry a lone surrogate, which has no UTF-8 form to hash into
    # CH; the served suite after it must not get the hello through.
    raw = '{"client_random": "%s", "suites": ["\\ud800", "%s"]}'
    body = (raw % (b64(os.urandom(32)), pr.DEFAULT_SUITE)).encode()
    response = http.post("/api/pqc/handshake/hello", content=body)
    assert_error(response, 400, "bad_request")


def test_x25519_share_present_without_a_hybrid_suite_is_bad_request(
    http: httpx.Client,
) -> None:
    body = _hello_body(x25519_share=b64(os.urandom(32)))
    message = assert_error(
        http.post("/api/pqc/handshake/hello", json=body), 400, "bad_request"
    )
    assert "x25519_share" in message


def test_x25519_share_absent_with_a_hybrid_suite_is_bad_request(
    http: httpx.Client,
) -> None:
    body = _hello_body(suites=[pr.DEFAULT_SUITE, HYBRID])
    message = assert_error(
        http.post("/api/pqc/handshake/hello", json=body), 400, "bad_request"
    )
    assert "x25519_share" in message


def test_low_order_x25519_share_is_refused(http: httpx.Client) -> None:
    # The all-zero point gives an all-zero shared secret, which must abort,
    # before the server spends a KEM key generation on the hello.
    before = http.get("/api/pqc/stats").json()["operations"]
    body = _hello_body(suites=[HYBRID], x25519_share=b64(bytes(32)))
    assert_error(http.post("/api/pqc/handshake/hello", json=body), 400, "bad_request")
    assert http.get("/api/pqc/stats").json()["operations"] == before


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-PQC-Timestamp", None),
        ("X-PQC-Nonce", None),
        ("X-PQC-MAC", None),
        ("X-PQC-Timestamp", "-1"),
        ("X-PQC-Timestamp", "12.5"),
        ("X-PQC-Nonce", "not base64!"),
    ],
)
def test_bad_delete_headers_are_bad_request(
    name: str, value: str | None, http: httpx.Client
) -> None:
    session_id = _new_id()
    headers = {
        "X-PQC-Timestamp": "1700000000",
        "X-PQC-Nonce": b64(os.urandom(16)),
        "X-PQC-MAC": b64(os.urandom(48)),
    }
    headers.pop(name)
    if value is not None:
        headers[name] = value
    response = http.delete(f"/api/pqc/session/{session_id}", headers=headers)
    assert_error(response, 400, "bad_request")


def test_malformed_session_id_in_delete_path_is_bad_request(
    http: httpx.Client,
) -> None:
    response = http.delete(
        "/api/pqc/session/not-an-id",
        headers={
            "X-PQC-Timestamp": "1",
            "X-PQC-Nonce": b64(bytes(16)),
            "X-PQC-MAC": "",
        },
    )
    assert_error(response, 400, "bad_request")


# -- suites, unknown ids ----------------------------------------------------


def test_no_offered_suite_served_is_no_common_suite(http: httpx.Client) -> None:
    served = http.get("/api/pqc/keys").json()["suites"]
    unserved = [name for name in pr.SUITES if name not in served]
    body = _hello_body(suites=["NOT-A-SUITE", "mlkem768-mldsa65", *unserved])
    response = http.post("/api/pqc/handshake/hello", json=body)
    assert_error(response, 400, "no_common_suite")


def test_unknown_handshake_id_is_unknown_handshake(http: httpx.Client) -> None:
    response = http.post("/api/pqc/handshake/key-exchange", json=_kx_body())
    assert_error(response, 404, "unknown_handshake")


def test_unknown_session_is_unknown_session_for_verify_and_delete(
    http: httpx.Client,
) -> None:
    body = _verify_fields(timestamp=1_700_000_000)
    response = http.post("/api/pqc/session/verify", json=body)
    assert_error(response, 404, "unknown_session")

    session_id = _new_id()
    headers = {"X-PQC-Timestamp": "1700000000", "X-PQC-Nonce": b64(bytes(16))}
    headers["X-PQC-MAC"] = b64(bytes(48))
    response = http.delete(f"/api/pqc/session/{session_id}", headers=headers)
    assert_error(response, 404, "unknown_session")


def test_unknown_route_and_method_use_the_error_body(http: httpx.Client) -> None:
    assert_error(http.get("/api/pqc/nothing-here"), 404, "not_found")
    for path in (
        "/api/pqc/handshake/hello",
        "/api/pqc/handshake/key-exchange",
        "/api/pqc/session/verify",
    ):
        response = http.get(path)
        assert_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "POST"


# -- body limit ---------------------------------------------------------------


def _json_padding(size: int) -> bytes:
    """A syntactically valid JSON object of exactly ``size`` bytes."""
    head, tail = b'{"pad": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_declared_length_over_the_limit_is_request_too_large(
    http: httpx.Client,
) -> None:
    body = _json_padding(BODY_LIMIT + 1)
    response = http.post("/api/pqc/handshake/hello", content=body)
    message = assert_error(response, 413, "request_too_large")
    assert str(BODY_LIMIT) in message


def test_chunked_body_over_the_limit_is_request_too_large(
    http: httpx.Client,
) -> None:
    chunks = [b'{"pad": "'] + [b"x" * 4096] * 17

    def stream():
        yield from chunks

    request = http.build_request("POST", "/api/pqc/handshake/hello", content=stream())
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    assert_error(http.send(request), 413, "request_too_large")


def test_body_at_the_limit_is_read(http: httpx.Client) -> None:
    response = http.post("/api/pqc/handshake/hello", content=_json_padding(BODY_LIMIT))
    message = assert_error(response, 400, "bad_request")
    assert "client_random" in message


def test_chunked_body_under_the_limit_is_read(http: httpx.Client) -> None:
    keys = pins_from_document(http.get("/api/pqc/keys").json())
    state = ClientHandshake([pr.DEFAULT_SUITE], keys)
    text = json.dumps(state.hello_request()).encode()

    def stream():
        for start in range(0, len(text), 16):
            yield text[start : start + 16]

    response = http.post("/api/pqc/handshake/hello", content=stream())
    assert response.status_code == 200, response.text


# -- overload -------------------------------------------------------------------


async def _hammer(http: httpx.AsyncClient) -> list[httpx.Response]:
    hellos = [_hello_body() for _ in range(HAMMER)]
    path = "/api/pqc/handshake/hello"
    return await asyncio.gather(*(http.post(path, json=body) for body in hellos))


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_full_queue_answers_overloaded_with_retry_after(
    serve: ServerGroup, response_log: ResponseLog
) -> None:
    # One queue slot, one lane per batch and one backend thread; a few rounds
    # at most, in case a round happens to be served without a pile-up.
    env = {"PQC_QUEUE_MAX": "1", "PQC_BATCH_MAX": "1", "PQC_CPU_THREADS": "1"}
    server = serve.start(env)
    limits = httpx.Limits(max_connections=HAMMER + 8)
    responses: list[httpx.Response] = []
    async with response_log.async_client(server.url, timeout=60, limits=limits) as http:
        for _ in range(HAMMER_ROUNDS):
            responses += await _hammer(http)
            if any(r.status_code == 503 for r in responses):
                break
        stats = (await http.get("/api/pqc/stats")).json()

    statuses = sorted({r.status_code for r in responses})
    assert set(statuses) <= {200, 503}, statuses
    refused = [r for r in responses if r.status_code == 503]
    assert refused, "no hello was refused by a one-slot queue"
    for response in refused:
        assert_error(response, 503, "overloaded")
        assert int(response.headers["Retry-After"]) >= 1
    assert stats["rejections"] >= len(refused)


# -- the recorder behind every test's no-500 check ------------------------------


def test_response_log_catches_a_500() -> None:
    # A mock transport stands in for a broken server: the seam under test
    # is the recorder, which the real-server tests rely on.
    log = ResponseLog()
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    http = log.client("http://127.0.0.1:9", transport=transport)
    http.get("/api/pqc/health")
    log.close()
    assert log.server_errors() == [("GET", "http://127.0.0.1:9/api/pqc/health", 500)]
