"""Session calls over HTTP: proofs of possession, deletion, expiry across
time zones, lapsed handshakes, and the memory store's one-process rule."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from service import protocol as pr
from service.client import ClientHandshake, PqcClient, Session, pins_from_document
from tests.server import (
    REPO_ROOT,
    ResponseLog,
    ServerGroup,
    ServerProcess,
    assert_error,
    b64,
    delete_headers,
    flip_bit,
    free_port,
    proof,
    server_env,
    verify_body,
)

pytestmark = pytest.mark.timeout(60)

SKEW = 60  # PQC_CLOCK_SKEW_SECONDS's default
TTL = 3  # session lifetime of the expiry servers
GRACE = 3  # how long they keep an ended session visible
ZONES = ["Pacific/Kiritimati", "America/Adak"]  # UTC+14 and UTC-10 (or -9)


def _session(server: ServerProcess, log: ResponseLog) -> tuple[httpx.Client, Session]:
    http = log.client(server.url)
    client = PqcClient(server.url, trust_on_first_use=True, http=http)
    return http, client.handshake()


@pytest.fixture
def pair(
    default_server: ServerProcess, response_log: ResponseLog
) -> tuple[httpx.Client, Session]:
    """A client and a fresh session on the module's server."""
    return _session(default_server, response_log)


def _verify(http: httpx.Client, session: Session, **options) -> httpx.Response:
    return http.post("/api/pqc/session/verify", json=verify_body(session, **options))


def _delete(http: httpx.Client, session: Session, **options) -> httpx.Response:
    headers = delete_headers(session, **options)
    return http.delete(f"/api/pqc/session/{session.session_id}", headers=headers)


def _state(http: httpx.Client, session: Session) -> str:
    response = _verify(http, session)
    assert response.status_code == 200, response.text
    return response.json()["state"]


# -- proof of possession (protocol.md section 4) -------------------------------

LABELS = {"verify": "session-verify", "delete": "session-delete"}
Proof = tuple[int, bytes, bytes]


def _send(http: httpx.Client, call: str, session: Session, pieces: Proof):
    """Send a session call carrying the given (timestamp, nonce, mac)."""
    timestamp, nonce, mac = pieces
    if call == "verify":
        body = {"session_id": session.session_id, "timestamp": timestamp}
        body.update(nonce=b64(nonce), mac=b64(mac))
        return http.post("/api/pqc/session/verify", json=body)
    headers = {"X-PQC-Timestamp": str(timestamp), "X-PQC-Nonce": b64(nonce)}
    headers["X-PQC-MAC"] = b64(mac)
    return http.delete(f"/api/pqc/session/{session.session_id}", headers=headers)


def _flipped_mac(session: Session, label: str) -> Proof:
    timestamp, nonce, mac = proof(session, label)
    return timestamp, nonce, flip_bit(mac, 5)


def _other_label(session: Session, label: str) -> Proof:
    # A MAC made for the other call must not be accepted for this one.
    other = next(x for x in LABELS.values() if x != label)
    return proof(session, other)


def _wrong_key(session: Session, label: str) -> Proof:
    impostor = replace(session, auth_key=os.urandom(len(session.auth_key)))
    return proof(impostor, label)


def _stale_past(session: Session, label: str) -> Proof:
    return proof(session, label, timestamp=int(time.time()) - 2 * SKEW)


def _stale_future(session: Session, label: str) -> Proof:
    return proof(session, label, timestamp=int(time.time()) + 2 * SKEW)


REFUSALS: dict[str, tuple[Callable[[Session, str], Proof], int, str]] = {
    "flipped-mac": (_flipped_mac, 401, "bad_mac"),
    "other-label": (_other_label, 401, "bad_mac"),
    "wrong-key": (_wrong_key, 401, "bad_mac"),
    "stale-past": (_stale_past, 401, "stale_request"),
    "stale-future": (_stale_future, 401, "stale_request"),
}


@pytest.mark.parametrize("call", list(LABELS))
@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_session_call_refusals(
    refusal: str, call: str, pair: tuple[httpx.Client, Session]
) -> None:
    http, session = pair
    make, status, code = REFUSALS[refusal]
    response = _send(http, call, session, make(session, LABELS[call]))
    assert_error(response, status, code)

    # A refused call changes nothing: the session is still active.
    assert _state(http, session) == "active"


@pytest.mark.parametrize("call", list(LABELS))
def test_timestamp_within_the_skew_is_accepted(
    call: str, pair: tuple[httpx.Client, Session]
) -> None:
    http, session = pair
    for offset in (-SKEW // 2, SKEW // 2):
        moment = int(time.time()) + offset
        pieces = proof(session, LABELS[call], timestamp=moment)
        assert _send(http, call, session, pieces).status_code in (200, 204)


@pytest.mark.parametrize(
    ("call", "timestamp", "status", "code"),
    [
        ("verify", 10**400, 401, "stale_request"),
        ("verify", 2**64, 401, "stale_request"),
        ("delete", 10**19 - 1, 401, "stale_request"),
        ("delete", 10**19, 400, "bad_request"),
    ],
    ids=["verify-beyond-float", "verify-2**64", "delete-19-digits", "delete-20"],
)
def test_far_out_timestamps_are_refused(
    call: str,
    timestamp: int,
    status: int,
    code: str,
    pair: tuple[httpx.Client, Session],
) -> None:
    # Properly MACed, so only the timestamp's size is on trial; the headers
    # carry at most 19 digits.
    http, session = pair
    pieces = proof(session, LABELS[call], timestamp=timestamp)
    assert_error(_send(http, call, session, pieces), status, code)


@pytest.mark.parametrize("call", list(LABELS))
def test_replayed_nonce_is_refused(
    call: str, pair: tuple[httpx.Client, Session]
) -> None:
    http, session = pair
    pieces = proof(session, LABELS[call])
    assert _send(http, call, session, pieces).status_code in (200, 204)
    assert_error(_send(http, call, session, pieces), 401, "replayed_request")

    # The same nonce under a fresh timestamp, with a MAC over both, is
    # refused too: the nonce is what must be fresh.
    later = proof(session, LABELS[call], timestamp=pieces[0] + 1, nonce=pieces[1])
    assert_error(_send(http, call, session, later), 401, "replayed_request")


def test_nonce_is_single_use_across_calls(pair: tuple[httpx.Client, Session]):
    http, session = pair
    verify = proof(session, LABELS["verify"])
    assert _send(http, "verify", session, verify).status_code == 200
    delete = proof(session, LABELS["delete"], nonce=verify[1])
    assert_error(_send(http, "delete", session, delete), 401, "replayed_request")
    assert _state(http, session) == "active"


# -- deletion --------------------------------------------------------------------


def test_deleting_twice_answers_204_and_the_session_stays_invalidated(
    pair: tuple[httpx.Client, Session],
) -> None:
    http, session = pair
    assert _delete(http, session).status_code == 204
    assert _delete(http, session).status_code == 204
    assert _state(http, session) == "invalidated"
    assert _state(http, session) == "invalidated"


# -- expiry, whatever the server's time zone ---------------------------------


def _utc_seconds(text: str) -> float:
    assert text.endswith("Z"), text
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return parsed.timestamp()


def _zone_offset(zone: str) -> str:
    """The UTC offset a child process sees under TZ=zone (proves TZ applies)."""
    code = "import time; print(time.strftime('%z'))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=server_env({"TZ": zone}),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip()


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


class _Expiry:
    """One server's run of the expiry scenario, step by step."""

    def __init__(self, server: ServerProcess, log: ResponseLog) -> None:
        self.http = log.client(server.url)
        pins = pins_from_document(self.http.get("/api/pqc/keys").json())
        self.client = PqcClient(server.url, pins=pins, http=self.http)
        self.seen: list[object] = []

    def open(self) -> float:
        """Two sessions: ``kept`` lives out its life, ``dropped`` is deleted."""
        started = time.time()
        self.kept = self.client.handshake()
        self.dropped = self.client.handshake()
        answer = _verify(self.http, self.kept).json()
        self.seen.append(answer["state"])

        assert abs(_utc_seconds(answer["created_at"]) - started) < 5
        assert abs(_utc_seconds(answer["expires_at"]) - (started + TTL)) < 5
        self.seen.append(_delete(self.http, self.dropped).status_code)
        self.seen.append(_state(self.http, self.dropped))
        return _utc_seconds(self.kept.expires_at)

    def after_lifetime(self) -> None:
        self.seen.append(_state(self.http, self.kept))

    def after_grace(self) -> None:
        # Gone, and a late delete does not bring the record back.
        for session in (self.kept, self.dropped):
            for send in (_verify, _delete, _verify):
                self.seen.append(send(self.http, session).json()["error"]["code"])


EXPECTED = ["active", 204, "invalidated", "expired"] + ["unknown_session"] * 6


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "store", ["memory", pytest.param("redis", marks=pytest.mark.redis)]
)
def test_sessions_expire_then_vanish_in_any_time_zone(
    store: str,
    serve: ServerGroup,
    response_log: ResponseLog,
    request: pytest.FixtureRequest,
) -> None:
    for zone in ZONES:
        assert _zone_offset(zone) == datetime.now(ZoneInfo(zone)).strftime("%z")
        assert _zone_offset(zone) != "+0000"

    common = {"PQC_SESSION_TTL_SECONDS": str(TTL)}
    common["PQC_SESSION_GRACE_SECONDS"] = str(GRACE)
    if store == "redis":
        redis = request.getfixturevalue("redis_server")
        common.update(PQC_SESSION_REDIS="1", PQC_SESSION_REDIS_URL=redis.url)
    servers = serve.start_many([{**common, "TZ": zone} for zone in ZONES])
    runs = [_Expiry(server, response_log) for server in servers]

    # expires_at has whole seconds, truncated: the true end is within 1 s.
    ends = [run.open() + 1 for run in runs]
    _sleep_until(max(ends) + 0.2)
    for run in runs:
        run.after_lifetime()
    _sleep_until(max(ends) + GRACE + 1)
    for run in runs:
        run.after_grace()

    assert [run.seen for run in runs] == [EXPECTED, EXPECTED]


@pytest.mark.slow
def test_handshake_not_completed_in_time_is_unknown_handshake(
    serve: ServerGroup, response_log: ResponseLog
) -> None:
    server = serve.start({"PQC_HANDSHAKE_TIMEOUT_SECONDS": "1"})
    http = response_log.client(server.url)
    pins = pins_from_document(http.get("/api/pqc/keys").json())
    state = ClientHandshake([pr.DEFAULT_SUITE], pins)
    sent = time.time()
    hello = http.post("/api/pqc/handshake/hello", json=state.hello_request()).json()
    lapses = _utc_seconds(hello["expires_at"])
    assert abs(lapses - (sent + 1)) < 5

    _sleep_until(max(lapses + 2, sent + 2))
    response = http.post(
        "/api/pqc/handshake/key-exchange", json=state.key_exchange_request(hello)
    )
    assert_error(response, 404, "unknown_handshake")


# -- one process only for the memory store ---------------------------------------


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--workers", "2"], {}), ([], {"PQC_WORKERS": "2"})],
    ids=["flag", "env"],
)
def test_memory_store_with_two_workers_refuses_to_start(
    args: list[str], env: dict[str, str], tmp_path
) -> None:
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(free_port()), *args]
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=server_env({"PQC_KEY_DIR": str(tmp_path / "keys"), **env}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    message = result.stderr.lower()
    assert "memory store" in message and "redis" in message
    assert "Uvicorn running" not in result.stdout + result.stderr
