"""The server side of pqc-hs/1: hello, key-exchange and session calls.

``HandshakeService`` turns decoded request bodies into response bodies. It
talks to the engine (batched crypto), the key store (signing keys) and the
session store (pending handshakes and sessions), and raises
``ProtocolError`` with the wire code of protocol.md for anything a client
got wrong. Mapping to HTTP statuses happens only in ``service.api``.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import x25519

from engine import Engine, Kind, OpKey, QueueFull, SigningKey
from engine.params import KEM_SEED_BYTES
from service import protocol as pr
from service.config import Settings
from service.control import OffloadSwitch
from service.keystore import KeyStore
from service.protocol import ProtocolError, Suite, b64decode, b64encode
from service.sessions import SessionStore

logger = logging.getLogger(__name__)

MAX_SUITE_NAME = 128
MAX_CLIENT_ADDRESS = 256
KEY_RELOAD_INTERVAL = 1.0  # seconds between checks for a rotated key store
KEPT_SLOTS_PER_ALGORITHM = 2  # the current signing key and the one before


def rfc3339(t: float) -> str:
    """UTC, second precision, with a Z: independent of the host's time zone."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


@dataclass(frozen=True)
class SessionView:
    record: dict
    state: str


class HandshakeService:
    """pqc-hs/1 over an engine, a key store and a session store."""

    def __init__(
        self, settings: Settings, engine: Engine, keys: KeyStore, store: SessionStore
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.keys = keys
        self.store = store
        self.offload = OffloadSwitch(settings.key_dir)
        self._suites: list[str] = []
        self._suites_for: frozenset | None = None
        self._handles: dict[str, SigningKey] = {}
        self._lock = threading.Lock()
        self._next_reload = 0.0

    # -- what is offered -------------------------------------------------

    def served_suites(self) -> list[str]:
        """Suites whose every operation some enabled backend serves."""
        serving = self.engine.serving()
        if serving is not self._suites_for:
            self._suites = [s.name for s in pr.SUITES.values() if _serves(serving, s)]
            self._suites_for = serving
        return self._suites

    def signature_algorithms(self) -> list[str]:
        return sorted({pr.SUITES[name].sig for name in self.served_suites()})

    def keys_document(self) -> dict:
        self.refresh_keys()
        published = [
            {**record.public_info(), "status": status}
            for record, status in self.keys.published()
        ]
        return {
            "protocol": pr.PROTOCOL,
            "suites": self.served_suites(),
            "signature_keys": published,
        }

    def refresh_keys(self) -> None:
        """Pick up rotations made by another worker or the CLI (cheaply)."""
        now = time.monotonic()
        if now < self._next_reload:
            return
        self._next_reload = now + KEY_RELOAD_INTERVAL
        self.keys.reload_if_changed()
        if self.settings.engine.offload != "off":
            offload = self.offload.changed(default=True)
            if offload is not None:
                self.engine.set_offload(offload)

    def _signing_key(self, algorithm: str) -> tuple[str, SigningKey]:
        record = self.keys.current(algorithm)
        with self._lock:
            handle = self._handles.get(record.key_id)
        if handle is None:
            handle = self.engine.load_signing_key(algorithm, record.seed)
            with self._lock:
                self._handles[record.key_id] = handle
                self._retire_old_handles(algorithm)
        return record.key_id, handle

    def _retire_old_handles(self, algorithm: str) -> None:
        """Unload all but the newest slots of ``algorithm``.

        The previous key's slot stays loaded so that a hello that picked it up
        just before a rotation can still sign with it.
        """
        mine = [k for k, h in self._handles.items() if h.param == algorithm]
        for key_id in mine[:-KEPT_SLOTS_PER_ALGORITHM]:
            self.engine.unload_signing_key(self._handles.pop(key_id))

    # -- section 2: hello -------------------------------------------------

    async def hello(self, body: dict) -> dict:
        client_random = b64decode(_get(body, "client_random"), "client_random", 32)
        offered = _suite_list(_get(body, "suites"))
        client_share = _client_share(body, offered)
        _client_address(body)

        suite = self._choose(offered)
        self.refresh_keys()
        key_id, handle = self._signing_key(suite.sig)
        handshake_id = pr.new_id(os.urandom(pr.ID_BYTES))
        server_random = os.urandom(pr.RANDOM_BYTES)

        # X25519 first: a share it refuses then costs no KEM key generation.
        server_share, x_secret = _x25519(suite, client_share)
        pair = await self.engine.kem_keygen(suite.kem)

        ch = pr.client_hello(client_random, offered, client_share)
        sh = pr.server_hello(
            handshake_id, server_random, suite.name, pair.ek, server_share, key_id
        )
        message = pr.signed_message(suite, ch, sh)
        signature = await self.engine.sign(handle, message, pr.SIGNATURE_CONTEXT)

        # Whole seconds, so that the published expires_at is the enforced one.
        expires = float(int(time.time() + self.settings.handshake_timeout_seconds))
        pending = {
            "suite": suite.name,
            "client_random": client_random,
            "server_random": server_random,
            "transcript": ch + sh + pr.enc(signature),
            "dk_seed": pair.dk_seed,
            "x25519_secret": x_secret,
            "expires_at": expires,
        }
        ttl = self.settings.handshake_timeout_seconds
        await self.store.put_pending(handshake_id, pending, ttl)
        return {
            "handshake_id": handshake_id,
            "server_random": b64encode(server_random),
            "suite": suite.name,
            "kem_public_key": b64encode(pair.ek),
            "x25519_share": b64encode(server_share) if suite.hybrid else None,
            "signature_key_id": key_id,
            "signature": b64encode(signature),
            "expires_at": rfc3339(expires),
        }

    def _choose(self, offered: list[str]) -> Suite:
        served = set(self.served_suites())
        for name in offered:
            if name in served:
                return pr.SUITES[name]
        raise ProtocolError(
            "None of the offered suites is served here; GET /api/pqc/keys lists "
            "the served suites.",
            "no_common_suite",
        )

    # -- section 3: key-exchange ----------------------------------------

    async def key_exchange(self, body: dict) -> dict:
        handshake_id = pr.check_id(_get(body, "handshake_id"), "handshake_id")
        ciphertext = b64decode(_get(body, "kem_ciphertext"), "kem_ciphertext")
        client_vd = b64decode(_get(body, "client_verify_data"), "client_verify_data")

        # Consumed by this attempt whatever its outcome (protocol.md section 3),
        # so refuse for load before taking it: then a retry can still succeed.
        if not self.engine.has_room(Kind.KEM_DECAPS):
            raise QueueFull("The engine's decapsulation queue is full; retry shortly.")
        pending = _readable(await self.store.take_pending(handshake_id), _PENDING)
        if pending is None or pending["expires_at"] <= time.time():
            raise ProtocolError(
                "The handshake is unknown, already used or expired.",
                "unknown_handshake",
            )
        suite = pr.SUITES[pending["suite"]]
        _check_length("kem_ciphertext", ciphertext, _ct_bytes(suite))
        _check_length("client_verify_data", client_vd, suite.hash_len)

        shared = await self.engine.kem_decaps(suite.kem, pending["dk_seed"], ciphertext)
        ikm = shared + pending["x25519_secret"]

        kx = pr.key_exchange(handshake_id, ciphertext)
        th = suite.hash(pending["transcript"] + kx)
        keys = pr.derive_keys(
            suite, ikm, pending["client_random"], pending["server_random"], th
        )
        if not pr.constant_time_equal(
            pr.client_verify_data(suite, keys, th), client_vd
        ):
            raise ProtocolError(
                "The client's verify data does not match the handshake.",
                "handshake_failed",
            )
        return await self._open_session(suite, keys, th, client_vd)

    async def _open_session(
        self, suite: Suite, keys: pr.KeySchedule, th: bytes, client_vd: bytes
    ) -> dict:
        session_id = pr.new_id(os.urandom(pr.ID_BYTES))
        now = time.time()
        expires = float(int(now + self.settings.session_ttl_seconds))
        record = {
            "session_id": session_id,
            "suite": suite.name,
            "state": "active",
            "created_at": now,
            "expires_at": expires,
            "auth_key": keys.auth_key,
            "client_write_key": keys.client_write_key,
            "server_write_key": keys.server_write_key,
            "client_iv": keys.client_iv,
            "server_iv": keys.server_iv,
        }
        ttl = self.settings.session_ttl_seconds + self.settings.session_grace_seconds
        await self.store.put_session(session_id, record, ttl)
        return {
            "session_id": session_id,
            "server_verify_data": b64encode(
                pr.server_verify_data(suite, keys, th, client_vd)
            ),
            "cipher_suite": suite.name,
            "expires_at": rfc3339(expires),
            "handshake_hash": th.hex(),
        }

    # -- section 4: session calls ---------------------------------------

    async def verify_session(self, body: dict) -> dict:
        session_id = pr.check_id(_get(body, "session_id"), "session_id")
        view = await self._authenticate(
            "session-verify",
            session_id,
            _get(body, "timestamp"),
            _get(body, "nonce"),
            _get(body, "mac"),
        )
        record = view.record
        return {
            "session_id": session_id,
            "state": view.state,
            "cipher_suite": record["suite"],
            "created_at": rfc3339(record["created_at"]),
            "expires_at": rfc3339(record["expires_at"]),
        }

    async def delete_session(
        self, session_id: str, timestamp: str | None, nonce: str | None, mac: str | None
    ) -> None:
        session_id = pr.check_id(session_id, "session_id")
        stamp = _header_int(timestamp, "X-PQC-Timestamp")
        view = await self._authenticate(
            "session-delete",
            session_id,
            stamp,
            _header(nonce, "X-PQC-Nonce"),
            _header(mac, "X-PQC-MAC"),
        )
        if view.record["state"] == "invalidated":
            return
        # Visible for the grace period after the session's end: now, or its
        # expiry if that came first (protocol.md section 4).
        overdue = max(0.0, time.time() - view.record["expires_at"])
        ttl = self.settings.session_grace_seconds - overdue
        if ttl <= 0:
            return
        await self.store.replace_session(session_id, _invalidated(view.record), ttl)
        logger.info("Session %s invalidated by its holder.", session_id)

    async def _authenticate(
        self, label: str, session_id: str, timestamp: object, nonce: object, mac: object
    ) -> SessionView:
        if not isinstance(timestamp, int) or isinstance(timestamp, bool):
            raise ProtocolError("The field 'timestamp' must be an integer.")
        if timestamp < 0:
            raise ProtocolError("The field 'timestamp' must not be negative.")
        nonce_bytes = b64decode(nonce, "nonce", pr.NONCE_BYTES)
        mac_bytes = b64decode(mac, "mac")

        record = _readable(await self.store.get_session(session_id), _SESSION)
        if record is None:
            raise ProtocolError(
                "The session is unknown or forgotten.", "unknown_session"
            )
        suite = pr.SUITES[record["suite"]]
        expected = pr.session_mac(
            suite, record["auth_key"], label, session_id, timestamp, nonce_bytes
        )
        if not pr.constant_time_equal(expected, mac_bytes):
            raise ProtocolError("The request's MAC is not valid.", "bad_mac")

        # Compared, not subtracted: an int beyond float range cannot overflow.
        skew = self.settings.clock_skew_seconds
        now = time.time()
        if not now - skew <= timestamp <= now + skew:
            raise ProtocolError(
                f"The timestamp is more than {skew:g} seconds from the server's clock.",
                "stale_request",
            )
        if not await self.store.check_nonce(session_id, nonce_bytes, 2 * skew + 1):
            raise ProtocolError(
                "This nonce was already used for this session.", "replayed_request"
            )
        return SessionView(record, _state(record))


# The shape of what this server writes, field by field: a pending handshake
# (section 2) and a session (section 3).
def _one_of(*choices: str) -> Callable[[object], bool]:
    return lambda value: isinstance(value, str) and value in choices


def _bytes_of(*lengths: int) -> Callable[[object], bool]:
    """bytes of one of ``lengths`` (of any length when none is given)."""
    return lambda value: type(value) is bytes and (not lengths or len(value) in lengths)


def _number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


_PENDING: dict[str, Callable[[object], bool]] = {
    "suite": _one_of(*pr.SUITES),
    "client_random": _bytes_of(pr.RANDOM_BYTES),
    "server_random": _bytes_of(pr.RANDOM_BYTES),
    "transcript": _bytes_of(),
    "dk_seed": _bytes_of(KEM_SEED_BYTES),
    "x25519_secret": _bytes_of(0, pr.X25519_BYTES),
    "expires_at": _number,
}
_SESSION: dict[str, Callable[[object], bool]] = {
    "session_id": lambda value: isinstance(value, str),
    "suite": _one_of(*pr.SUITES),
    "state": _one_of("active", "invalidated"),
    "created_at": _number,
    "expires_at": _number,
    "auth_key": _bytes_of(*{s.hash_len for s in pr.SUITES.values()}),
}


def _readable(
    record: dict | None, fields: dict[str, Callable[[object], bool]]
) -> dict | None:
    """``record`` if it has the shape this server writes, else None.

    A record of another shape (written by an older build sharing the Redis
    store, or altered there) is treated as unknown, as if it had expired:
    its handshake or session must start again. Logged without its contents,
    which hold key material.
    """
    if record is None or all(ok(record.get(name)) for name, ok in fields.items()):
        return record
    logger.warning(
        "The session store returned a record this server cannot read (an "
        "older format, or altered); treating it as unknown."
    )
    return None


def _serves(serving: frozenset, suite: Suite) -> bool:
    needed = (
        OpKey(Kind.KEM_KEYGEN, suite.kem),
        OpKey(Kind.KEM_DECAPS, suite.kem),
        OpKey(Kind.SIG_SIGN, suite.sig),
    )
    return all(key in serving for key in needed)


def _state(record: dict) -> str:
    if record["state"] == "invalidated":
        return "invalidated"
    return "expired" if time.time() >= record["expires_at"] else "active"


def _invalidated(record: dict) -> dict:
    """The record kept through the grace period: traffic keys erased."""
    kept = ("session_id", "suite", "created_at", "expires_at", "auth_key")
    out = {k: record[k] for k in kept}
    out["state"] = "invalidated"
    return out


def _ct_bytes(suite: Suite) -> int:
    from engine.params import kem_params

    return kem_params(suite.kem).ct_bytes


def _get(body: dict, name: str) -> object:
    if name not in body:
        raise ProtocolError(f"The field {name!r} is missing.")
    return body[name]


def _check_length(name: str, data: bytes, length: int) -> None:
    if len(data) != length:
        raise ProtocolError(
            f"The field {name!r} must decode to {length} bytes, not {len(data)}."
        )


def _suite_list(value: object) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= pr.MAX_OFFERED_SUITES:
        raise ProtocolError(
            f"The field 'suites' must be a list of 1 to {pr.MAX_OFFERED_SUITES} names."
        )
    for name in value:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_SUITE_NAME:
            raise ProtocolError("Every suite name must be a non-empty short string.")
        if "," in name:
            # CH hashes join(",", suites): a comma inside a name would let an
            # attacker regroup the list (and so downgrade) without changing CH.
            raise ProtocolError("Suite names cannot contain commas.")
        if not _is_utf8(name):
            # Offered names, even unknown ones, are hashed into CH as UTF-8.
            raise ProtocolError("Every suite name must be valid Unicode text.")
    return list(value)


def _is_utf8(text: str) -> bool:
    """False for strings JSON can carry but UTF-8 cannot (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _client_share(body: dict, offered: list[str]) -> bytes:
    hybrid = any(pr.SUITES[n].hybrid for n in offered if n in pr.SUITES)
    share = body.get("x25519_share")
    if hybrid and share is None:
        raise ProtocolError("A hybrid suite is offered, but 'x25519_share' is missing.")
    if not hybrid and share is not None:
        raise ProtocolError(
            "'x25519_share' is present, but no hybrid suite is offered."
        )
    if share is None:
        return b""
    return b64decode(share, "x25519_share", pr.X25519_BYTES)


def _client_address(body: dict) -> None:
    address = body.get("client_address")
    if address is not None and (
        not isinstance(address, str) or len(address) > MAX_CLIENT_ADDRESS
    ):
        raise ProtocolError("The field 'client_address' must be a short string.")


def _x25519(suite: Suite, client_share: bytes) -> tuple[bytes, bytes]:
    """The server's X25519 share and the shared secret, for hybrid suites."""
    if not suite.hybrid:
        return b"", b""
    private = x25519.X25519PrivateKey.generate()
    peer = x25519.X25519PublicKey.from_public_bytes(client_share)
    try:
        secret = private.exchange(peer)
    except ValueError:
        # An all-zero result: the client's share is a low-order point.
        raise ProtocolError("The client's X25519 share is not usable.") from None
    return private.public_key().public_bytes_raw(), secret


def _header(value: str | None, name: str) -> str:
    if value is None:
        raise ProtocolError(f"The header {name} is missing.")
    return value


def _header_int(value: str | None, name: str) -> int:
    text = _header(value, name)
    # protocol.md: base-10 ASCII, without sign or leading zeros.
    canonical = text.isascii() and text.isdigit() and (text == "0" or text[0] != "0")
    if not canonical or len(text) > 19:
        raise ProtocolError(f"The header {name} must be a non-negative integer.")
    return int(text)
