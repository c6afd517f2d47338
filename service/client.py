"""The pqc-hs/1 client SDK, synchronous and asynchronous, on httpx.

Both clients run the same ``ClientHandshake`` state machine; only the
transport differs. The server's signing keys are pinned by ``key_id``: pass
the keys you trust (``pins``, e.g. from ``pqc-engine keys export``), or opt
in to trust-on-first-use, which pins whatever ``GET /api/pqc/keys`` lists on
first contact. A hello signed by a key that is not pinned aborts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem, x25519

from engine.errors import PqcError
from engine.params import kem_params, sig_params
from service import protocol as pr
from service.protocol import ProtocolError, b64decode, b64encode

_KEM = {"ML-KEM-768": mlkem.MLKEM768PublicKey, "ML-KEM-1024": mlkem.MLKEM1024PublicKey}
_SIG = {
    "ML-DSA-44": mldsa.MLDSA44PublicKey,
    "ML-DSA-65": mldsa.MLDSA65PublicKey,
    "ML-DSA-87": mldsa.MLDSA87PublicKey,
}


def _kernels() -> tuple[Any, Any] | None:
    """This project's kernel extension, (ffi, lib), or None where not built."""
    try:
        from bindings._pqc_kernels import ffi, lib
    except ImportError:
        return None
    return ffi, lib


# The client's two public-key operations run on the kernels when they are
# built (checked against ACVP vectors and OpenSSL by the tests), else on
# OpenSSL. For one lane, verification there is about four times OpenSSL's
# speed and encapsulation about the same (it is batching that makes the
# kernels' encapsulation fast); the kernels also serve ML-KEM-512.
_KERNELS = _kernels()


def _encapsulate(kem: str, ek: bytes) -> tuple[bytes, bytes]:
    """(shared secret, ciphertext) for the server's key; aborts if refused."""
    try:
        if _KERNELS is not None:
            return _kernel_encapsulate(kem, ek)
        return _openssl_encapsulate(kem, ek)
    except ValueError:
        raise HandshakeError("The server's KEM public key is not valid.") from None


def _openssl_encapsulate(kem: str, ek: bytes) -> tuple[bytes, bytes]:
    cls = _KEM.get(kem)
    if cls is None:
        # OpenSSL (through cryptography) serves ML-KEM-768 and 1024 only.
        raise HandshakeError(f"{kem} needs the kernel extension (pip install .).")
    return cls.from_public_bytes(ek).encapsulate()


def _kernel_encapsulate(kem: str, ek: bytes) -> tuple[bytes, bytes]:
    ffi, lib = _KERNELS
    spec = kem_params(kem)
    if len(ek) != spec.ek_bytes:
        raise ValueError("wrong encapsulation key length")
    ct = ffi.new("uint8_t[]", spec.ct_bytes)
    ss = ffi.new("uint8_t[]", spec.ss_bytes)
    if lib.mlkem_encaps(spec.k, ct, ss, ek, os.urandom(32)) != lib.PQC_OK:
        raise ValueError("encapsulation key refused")
    return bytes(ss), bytes(ct)


def _verify(sig: str, pk: bytes, signature: bytes, message: bytes) -> bool:
    """ML-DSA.Verify of the server hello (protocol.md section 2)."""
    if _KERNELS is not None:
        return _kernel_verify(sig, pk, signature, message)
    return _openssl_verify(sig, pk, signature, message)


def _openssl_verify(sig: str, pk: bytes, signature: bytes, message: bytes) -> bool:
    try:
        key = _SIG[sig].from_public_bytes(pk)
        key.verify(signature, message, pr.SIGNATURE_CONTEXT)
    except (InvalidSignature, ValueError):
        return False
    return True


def _kernel_verify(sig: str, pk: bytes, signature: bytes, message: bytes) -> bool:
    _, lib = _KERNELS
    ctx, spec = pr.SIGNATURE_CONTEXT, sig_params(sig)
    if len(pk) != spec.pk_bytes:
        return False  # the kernel reads pk_bytes from pk; it checks siglen itself
    status = lib.mldsa_verify(
        spec.number, pk, message, len(message), ctx, len(ctx), signature,
        len(signature),
    )  # fmt: skip
    return status == lib.PQC_OK


@contextlib.contextmanager
def _answer(what: str) -> Iterator[None]:
    """Turn the Python error a malformed ``what`` causes into HandshakeError.

    A broken or hostile server must not crash the caller with a KeyError or
    TypeError from deep inside the checks; every refusal is one exception.
    """
    try:
        yield
    except HandshakeError:
        raise
    except (ProtocolError, KeyError, TypeError, AttributeError, ValueError) as exc:
        # ValueError includes UnicodeError and json.JSONDecodeError.
        raise HandshakeError(
            f"The server's {what} is malformed ({type(exc).__name__})."
        ) from None


class ClientError(PqcError):
    """The server refused a request; ``code`` and ``status`` say how."""

    def __init__(self, message: str, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retryable = status == 503


class HandshakeError(PqcError):
    """The server's answer failed a check: the handshake is aborted."""


@dataclass(frozen=True)
class PinnedKey:
    key_id: str
    algorithm: str
    public_key: bytes = field(repr=False)


@dataclass(frozen=True)
class Session:
    """An established session; repr never shows its keys."""

    session_id: str
    suite: str
    expires_at: str
    handshake_hash: str
    auth_key: bytes = field(repr=False)
    client_write_key: bytes = field(repr=False)
    server_write_key: bytes = field(repr=False)
    client_iv: bytes = field(repr=False)
    server_iv: bytes = field(repr=False)


def pins_from_document(document: Mapping[str, Any]) -> dict[str, PinnedKey]:
    """Pins from a keys document (``GET /api/pqc/keys`` or ``keys export``)."""
    pins: dict[str, PinnedKey] = {}
    with _answer("keys document"):
        for entry in document.get("signature_keys", []):
            public = b64decode(entry["public_key"], "public_key")
            key_id = hashlib.sha256(public).digest()[:16].hex()
            if key_id != entry["key_id"]:
                raise HandshakeError(
                    "A published key_id does not match its public key."
                )
            pins[key_id] = PinnedKey(key_id, entry["algorithm"], public)
    return pins


def load_pins(path: str | os.PathLike[str]) -> dict[str, PinnedKey]:
    with open(path, encoding="utf-8") as handle:
        return pins_from_document(json.load(handle))


def session_proof(session: Session, label: str) -> tuple[int, bytes, bytes]:
    """A fresh (timestamp, nonce, mac) for a session call (section 4)."""
    suite = pr.SUITES[session.suite]
    timestamp = int(time.time())
    nonce = os.urandom(pr.NONCE_BYTES)
    mac = pr.session_mac(
        suite, session.auth_key, label, session.session_id, timestamp, nonce
    )
    return timestamp, nonce, mac


class ClientHandshake:
    """One handshake's client state: build the hello, check the answers."""

    def __init__(self, suites: Iterable[str], pins: Mapping[str, PinnedKey]) -> None:
        self.suites = list(suites)
        if any("," in name for name in self.suites):
            # CH joins the names with commas: one inside a name is ambiguous.
            raise ValueError("Suite names cannot contain commas.")
        self.pins = pins
        self.client_random = os.urandom(pr.RANDOM_BYTES)
        hybrid = any(pr.SUITES[n].hybrid for n in self.suites if n in pr.SUITES)
        self._x_private = x25519.X25519PrivateKey.generate() if hybrid else None
        self._share = (
            self._x_private.public_key().public_bytes_raw() if self._x_private else b""
        )

    def hello_request(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "client_random": b64encode(self.client_random),
            "suites": self.suites,
        }
        if self._x_private is not None:
            body["x25519_share"] = b64encode(self._share)
        return body

    def key_exchange_request(self, hello: Mapping[str, Any]) -> dict[str, Any]:
        """Check the server hello's signature, then encapsulate and finish."""
        with _answer("hello"):
            return self._key_exchange_request(hello)

    def _key_exchange_request(self, hello: Mapping[str, Any]) -> dict[str, Any]:
        suite, sh, signature = self._check_hello(hello)
        ek = b64decode(hello["kem_public_key"], "kem_public_key")
        shared, ciphertext = _encapsulate(suite.kem, ek)
        ikm = shared + self._x25519_secret(suite, hello)

        ch = pr.client_hello(self.client_random, self.suites, self._share)
        kx = pr.key_exchange(hello["handshake_id"], ciphertext)
        self._th = pr.transcript_hash(suite, ch, sh, signature, kx)
        server_random = b64decode(hello["server_random"], "server_random", 32)
        self._keys = pr.derive_keys(
            suite, ikm, self.client_random, server_random, self._th
        )
        self._suite = suite
        self._client_vd = pr.client_verify_data(suite, self._keys, self._th)
        return {
            "handshake_id": hello["handshake_id"],
            "kem_ciphertext": b64encode(ciphertext),
            "client_verify_data": b64encode(self._client_vd),
        }

    def finish(self, answer: Mapping[str, Any]) -> Session:
        """Check the server's verify data; return the established session."""
        with _answer("key-exchange answer"):
            return self._finish(answer)

    def _finish(self, answer: Mapping[str, Any]) -> Session:
        got = b64decode(answer["server_verify_data"], "server_verify_data")
        want = pr.server_verify_data(self._suite, self._keys, self._th, self._client_vd)
        if not pr.constant_time_equal(got, want):
            raise HandshakeError("The server's verify data does not match.")
        if answer.get("handshake_hash") != self._th.hex():
            raise HandshakeError("The server's handshake hash does not match.")
        keys = self._keys
        return Session(
            session_id=answer["session_id"],
            suite=self._suite.name,
            expires_at=answer["expires_at"],
            handshake_hash=answer["handshake_hash"],
            auth_key=keys.auth_key,
            client_write_key=keys.client_write_key,
            server_write_key=keys.server_write_key,
            client_iv=keys.client_iv,
            server_iv=keys.server_iv,
        )

    def _check_hello(self, hello: Mapping[str, Any]) -> tuple[pr.Suite, bytes, bytes]:
        name = hello.get("suite")
        if name not in self.suites or name not in pr.SUITES:
            raise HandshakeError("The server chose a suite that was not offered.")
        suite = pr.SUITES[name]
        pin = self.pins.get(hello.get("signature_key_id", ""))
        if pin is None or pin.algorithm != suite.sig:
            raise HandshakeError("The server signed with a key that is not pinned.")
        server_share = b""
        if suite.hybrid:
            server_share = b64decode(hello["x25519_share"], "x25519_share", 32)
        sh = pr.server_hello(
            hello["handshake_id"],
            b64decode(hello["server_random"], "server_random", 32),
            suite.name,
            b64decode(hello["kem_public_key"], "kem_public_key"),
            server_share,
            pin.key_id,
        )
        signature = b64decode(hello["signature"], "signature")
        ch = pr.client_hello(self.client_random, self.suites, self._share)
        message = pr.signed_message(suite, ch, sh)
        if not _verify(suite.sig, pin.public_key, signature, message):
            raise HandshakeError("The server hello's signature is not valid.")
        return suite, sh, signature

    def _x25519_secret(self, suite: pr.Suite, hello: Mapping[str, Any]) -> bytes:
        if not suite.hybrid or self._x_private is None:
            return b""
        peer = b64decode(hello["x25519_share"], "x25519_share", 32)
        try:
            return self._x_private.exchange(
                x25519.X25519PublicKey.from_public_bytes(peer)
            )
        except ValueError:
            raise HandshakeError("The X25519 shared secret is all zero.") from None


def client_error(body: object, status: int) -> ClientError:
    """The refusal an error answer states (protocol.md's ``{"error": {"code",
    "message"}}``), or ``http_<status>`` when its body says nothing usable."""
    error = body.get("error") if isinstance(body, dict) else None
    fields = error if isinstance(error, dict) else {}
    code, message = fields.get("code"), fields.get("message")
    if not isinstance(code, str):
        code = f"http_{status}"
    if not isinstance(message, str):
        message = f"HTTP {status}"
    return ClientError(message, code, status)


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    raise client_error(body, response.status_code)


def _delete_headers(session: Session) -> dict[str, str]:
    timestamp, nonce, mac = session_proof(session, "session-delete")
    return {
        "X-PQC-Timestamp": str(timestamp),
        "X-PQC-Nonce": b64encode(nonce),
        "X-PQC-MAC": b64encode(mac),
    }


def verify_request(session: Session) -> dict[str, Any]:
    timestamp, nonce, mac = session_proof(session, "session-verify")
    return {
        "session_id": session.session_id,
        "timestamp": timestamp,
        "nonce": b64encode(nonce),
        "mac": b64encode(mac),
    }


class _Common:
    def __init__(
        self,
        base_url: str,
        *,
        pins: Mapping[str, PinnedKey] | None,
        trust_on_first_use: bool,
        suites: Iterable[str] | None,
    ) -> None:
        if pins is None and not trust_on_first_use:
            raise ValueError("Pass pins, or trust_on_first_use=True to pin on contact.")
        self.base_url = base_url.rstrip("/")
        self.pins: dict[str, PinnedKey] | None = dict(pins) if pins else None
        self.suites = list(suites or [pr.DEFAULT_SUITE])

    def _new_handshake(self, suites: Iterable[str] | None) -> ClientHandshake:
        assert self.pins is not None
        return ClientHandshake(list(suites or self.suites), self.pins)


class PqcClient(_Common):
    """Synchronous client: ``with PqcClient(url, ...) as c: c.handshake()``."""

    def __init__(
        self,
        base_url: str,
        *,
        pins: Mapping[str, PinnedKey] | None = None,
        trust_on_first_use: bool = False,
        suites: Iterable[str] | None = None,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            base_url, pins=pins, trust_on_first_use=trust_on_first_use, suites=suites
        )
        self._http = http or httpx.Client(base_url=self.base_url, timeout=timeout)

    def __enter__(self) -> PqcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def keys(self) -> dict[str, Any]:
        return self._call("GET", "/api/pqc/keys")

    def handshake(self, suites: Iterable[str] | None = None) -> Session:
        if self.pins is None:
            self.pins = pins_from_document(self.keys())
        state = self._new_handshake(suites)
        hello = self._call("POST", "/api/pqc/handshake/hello", state.hello_request())
        answer = self._call(
            "POST", "/api/pqc/handshake/key-exchange", state.key_exchange_request(hello)
        )
        return state.finish(answer)

    def verify_session(self, session: Session) -> dict[str, Any]:
        return self._call("POST", "/api/pqc/session/verify", verify_request(session))

    def delete_session(self, session: Session) -> None:
        path = f"/api/pqc/session/{session.session_id}"
        response = self._http.delete(path, headers=_delete_headers(session))
        _raise_for_error(response)

    def health(self) -> dict[str, Any]:
        return self._http.get("/api/pqc/health").json()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, path, json=body)
        _raise_for_error(response)
        with _answer(f"answer to {path}"):
            return response.json()


class AsyncPqcClient(_Common):
    """Asynchronous client: ``async with AsyncPqcClient(url, ...) as c: ...``."""

    def __init__(
        self,
        base_url: str,
        *,
        pins: Mapping[str, PinnedKey] | None = None,
        trust_on_first_use: bool = False,
        suites: Iterable[str] | None = None,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url, pins=pins, trust_on_first_use=trust_on_first_use, suites=suites
        )
        self._http = http or httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def __aenter__(self) -> AsyncPqcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def keys(self) -> dict[str, Any]:
        return await self._call("GET", "/api/pqc/keys")

    async def handshake(self, suites: Iterable[str] | None = None) -> Session:
        if self.pins is None:
            self.pins = pins_from_document(await self.keys())
        state = self._new_handshake(suites)
        hello = await self._call(
            "POST", "/api/pqc/handshake/hello", state.hello_request()
        )
        answer = await self._call(
            "POST", "/api/pqc/handshake/key-exchange", state.key_exchange_request(hello)
        )
        return state.finish(answer)

    async def verify_session(self, session: Session) -> dict[str, Any]:
        return await self._call(
            "POST", "/api/pqc/session/verify", verify_request(session)
        )

    async def delete_session(self, session: Session) -> None:
        path = f"/api/pqc/session/{session.session_id}"
        response = await self._http.delete(path, headers=_delete_headers(session))
        _raise_for_error(response)

    async def health(self) -> dict[str, Any]:
        return (await self._http.get("/api/pqc/health")).json()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = await self._http.request(method, path, json=body)
        _raise_for_error(response)
        with _answer(f"answer to {path}"):
            return response.json()


__all__ = [
    "AsyncPqcClient",
    "ClientError",
    "HandshakeError",
    "PinnedKey",
    "PqcClient",
    "ProtocolError",
    "Session",
    "load_pins",
    "pins_from_document",
    "verify_request",
]
