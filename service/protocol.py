"""pqc-hs/1: transcript pieces, key schedule and proofs of possession.

Everything here is a pure function of bytes, written from protocol.md and
RFC 5869; the HTTP routes and the client SDK both call it, so the server and
the client cannot drift apart. ``tests/test_protocol.py`` reproduces the
worked examples in ``tests/vectors/protocol/pqc-hs-1.json`` byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

from engine.errors import PqcError

PROTOCOL = "pqc-hs/1"
SIGNATURE_CONTEXT = b"pqc-hs/1 server-hello"
RANDOM_BYTES = 32
X25519_BYTES = 32
NONCE_BYTES = 16
ID_BYTES = 16  # handshake and session ids: 16 random bytes, base64url
IV_BYTES = 12
MAX_OFFERED_SUITES = 16


class ProtocolError(PqcError):
    """A message breaks protocol.md; ``code`` is the wire error code."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Suite:
    """One row of protocol.md's suite table."""

    name: str
    kem: str
    sig: str
    aead: str
    hash_name: str  # hashlib name
    hybrid: bool = False

    @property
    def hash_len(self) -> int:
        return _HASHES[self.hash_name].digest_size

    @property
    def aead_key_len(self) -> int:
        return 16 if self.aead == "AES-128-GCM" else 32

    def hash(self, data: bytes) -> bytes:
        return _HASHES[self.hash_name].new(data).digest()


class _Hash:
    """A hash function's constructor and size, looked up once per name:
    ``hashlib.new(name)`` costs more than the hashing of a transcript."""

    def __init__(self, name: str) -> None:
        self.new = getattr(hashlib, name)
        self.digest_size = self.new().digest_size


_HASHES = {name: _Hash(name) for name in ("sha256", "sha384")}


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "MLKEM768-MLDSA65-AES256GCM-SHA384",
            "ML-KEM-768", "ML-DSA-65", "AES-256-GCM", "sha384",
        ),
        Suite(
            "MLKEM1024-MLDSA87-AES256GCM-SHA384",
            "ML-KEM-1024", "ML-DSA-87", "AES-256-GCM", "sha384",
        ),
        Suite(
            "MLKEM512-MLDSA44-AES128GCM-SHA256",
            "ML-KEM-512", "ML-DSA-44", "AES-128-GCM", "sha256",
        ),
        Suite(
            "X25519MLKEM768-MLDSA65-AES256GCM-SHA384",
            "ML-KEM-768", "ML-DSA-65", "AES-256-GCM", "sha384", hybrid=True,
        ),
    )
}  # fmt: skip
DEFAULT_SUITE = "MLKEM768-MLDSA65-AES256GCM-SHA384"

_B64URL_ID = re.compile(r"[A-Za-z0-9_-]{22}")


# -- encodings -----------------------------------------------------------


def enc(data: bytes | str) -> bytes:
    """4-byte big-endian length, then the bytes (strings as UTF-8)."""
    raw = data.encode() if isinstance(data, str) else data
    return len(raw).to_bytes(4, "big") + raw


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(value: object, field: str, length: int | None = None) -> bytes:
    """Strict standard base64 (RFC 4648 section 4), as protocol.md demands.

    Refuses whitespace, the URL-safe alphabet, missing or extra padding and
    non-zero trailing bits (by re-encoding), then checks the decoded length.
    """
    if not isinstance(value, str):
        raise ProtocolError(f"The field {field!r} must be a base64 string.")
    try:
        # strict_mode refuses characters outside the alphabet (whitespace,
        # "-" and "_" included) and misplaced padding.
        data = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"The field {field!r} is not canonical base64.") from None
    # Re-encoding catches the rest: missing padding, non-zero trailing bits.
    if binascii.b2a_base64(data, newline=False) != value.encode("ascii"):
        raise ProtocolError(f"The field {field!r} is not canonical base64.")
    if length is not None and len(data) != length:
        raise ProtocolError(
            f"The field {field!r} must decode to {length} bytes, not {len(data)}."
        )
    return data


def new_id(random_bytes: bytes) -> str:
    """A handshake or session id: base64url of 16 bytes, no padding."""
    return base64.urlsafe_b64encode(random_bytes).decode("ascii").rstrip("=")


def check_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not _B64URL_ID.fullmatch(value):
        raise ProtocolError(f"The field {field!r} is not a 22-character id.")
    return value


# -- transcript (protocol.md sections 2 and 3) ----------------------------


def client_hello(client_random: bytes, suites: list[str], x25519: bytes) -> bytes:
    return (
        b"pqc-hs/1 client-hello"
        + enc(client_random)
        + enc(",".join(suites))
        + enc(x25519)
    )


def server_hello(
    handshake_id: str,
    server_random: bytes,
    suite: str,
    kem_public_key: bytes,
    x25519: bytes,
    signature_key_id: str,
) -> bytes:
    return (
        b"pqc-hs/1 server-hello"
        + enc(handshake_id)
        + enc(server_random)
        + enc(suite)
        + enc(kem_public_key)
        + enc(x25519)
        + enc(signature_key_id)
    )


def key_exchange(handshake_id: str, kem_ciphertext: bytes) -> bytes:
    return b"pqc-hs/1 key-exchange" + enc(handshake_id) + enc(kem_ciphertext)


def signed_message(suite: Suite, ch: bytes, sh: bytes) -> bytes:
    """M = Hash(CH || SH), signed with ctx = "pqc-hs/1 server-hello"."""
    return suite.hash(ch + sh)


def transcript_hash(
    suite: Suite, ch: bytes, sh: bytes, signature: bytes, kx: bytes
) -> bytes:
    return suite.hash(ch + sh + enc(signature) + kx)


# -- key schedule (RFC 5869 with the suite's hash) ------------------------


def hkdf_extract(suite: Suite, salt: bytes, ikm: bytes) -> bytes:
    return hmac.digest(salt, ikm, suite.hash_name)


def hkdf_expand(suite: Suite, prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 section 2.3: T(i) = HMAC(PRK, T(i-1) || info || i)."""
    if length > 255 * suite.hash_len:
        raise ValueError("HKDF-Expand cannot produce more than 255 blocks.")
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), suite.hash_name)
        out += block
        counter += 1
    return out[:length]


@dataclass(frozen=True)
class KeySchedule:
    """Every secret of section 3; repr never shows them."""

    prk: bytes
    client_finished_key: bytes
    server_finished_key: bytes
    client_write_key: bytes
    server_write_key: bytes
    client_iv: bytes
    server_iv: bytes
    auth_key: bytes

    def __repr__(self) -> str:
        return "KeySchedule(<secret>)"


def derive_keys(
    suite: Suite, ikm: bytes, client_random: bytes, server_random: bytes, th: bytes
) -> KeySchedule:
    prk = hkdf_extract(suite, client_random + server_random, ikm)

    def expand(label: str, n: int) -> bytes:
        return hkdf_expand(suite, prk, b"pqc-hs/1 " + label.encode() + th, n)

    return KeySchedule(
        prk=prk,
        client_finished_key=expand("c finished", suite.hash_len),
        server_finished_key=expand("s finished", suite.hash_len),
        client_write_key=expand("c key", suite.aead_key_len),
        server_write_key=expand("s key", suite.aead_key_len),
        client_iv=expand("c iv", IV_BYTES),
        server_iv=expand("s iv", IV_BYTES),
        auth_key=expand("auth", suite.hash_len),
    )


def client_verify_data(suite: Suite, keys: KeySchedule, th: bytes) -> bytes:
    return hmac.digest(keys.client_finished_key, th, suite.hash_name)


def server_verify_data(
    suite: Suite, keys: KeySchedule, th: bytes, client_vd: bytes
) -> bytes:
    return hmac.digest(keys.server_finished_key, th + client_vd, suite.hash_name)


# -- proof of possession (section 4) --------------------------------------


def session_mac(
    suite: Suite,
    auth_key: bytes,
    label: str,
    session_id: str,
    timestamp: int,
    nonce: bytes,
) -> bytes:
    data = (
        b"pqc-hs/1 "
        + label.encode()
        + enc(session_id)
        + enc(str(timestamp))
        + enc(nonce)
    )
    return hmac.digest(auth_key, data, suite.hash_name)


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
