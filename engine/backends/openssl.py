"""The OpenSSL backend, through pyca/cryptography (50 or newer).

cryptography exposes ML-KEM-768/1024 and ML-DSA-44/65/87. It draws its own
randomness for encapsulation and signing, so this backend refuses
caller-given coins or rnd (``deterministic`` is False); key generation from
seeds is deterministic and byte-identical to FIPS 203/204.

ML-DSA signing and verification release the GIL inside OpenSSL and scale
over a thread pool; ML-KEM operations are a few tens of microseconds, where
handing lanes to threads costs more than it saves, so they run in the
calling thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem

from engine import params as P
from engine.backends.base import Backend, check_bytes
from engine.errors import InvalidInput
from engine.ops import KemEncapsOut, KemKeyPair, Kind, OpKey, SigKeyPair

_KEM_CLASSES = {
    "ML-KEM-768": (mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey),
    "ML-KEM-1024": (mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey),
}
_SIG_CLASSES = {
    "ML-DSA-44": (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
    "ML-DSA-65": (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
    "ML-DSA-87": (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
}
# Lanes of these kinds are spread over the pool (see the module docstring).
_THREADED = frozenset({Kind.SIG_SIGN, Kind.SIG_VERIFY, Kind.SIG_KEYGEN})
_MIN_LANES_PER_TASK = 4


class OpenSSLBackend(Backend):
    """ML-KEM and ML-DSA from OpenSSL, batch by batch."""

    name = "openssl"
    path = "cpu"
    deterministic = False

    def __init__(self, threads: int | None = None) -> None:
        self._threads = max(1, threads or os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="pqc-ossl")
        self._slots: dict[int, object] = {}
        self._lock = threading.Lock()
        caps = {OpKey(k, p) for p in _KEM_CLASSES for k in Kind if k.is_kem}
        caps |= {OpKey(k, p) for p in _SIG_CLASSES for k in Kind if not k.is_kem}
        self._caps = frozenset(caps)

    def capabilities(self) -> frozenset[OpKey]:
        return self._caps

    def describe(self) -> dict[str, object]:
        from cryptography.hazmat.backends.openssl import backend as ossl

        return {
            "name": self.name,
            "path": self.path,
            "threads": self._threads,
            "library": ossl.openssl_version_text(),
        }

    def run_batch(self, key: OpKey, lanes: Sequence[tuple]) -> list[object]:
        one = self._lane_function(key)
        if key.kind not in _THREADED or len(lanes) < 2 * _MIN_LANES_PER_TASK:
            return [_guard(one, lane) for lane in lanes]

        return list(self._pool.map(lambda lane: _guard(one, lane), lanes))

    def load_signing_key(self, slot: int, param: str, seed: bytes) -> bytes:
        priv_cls, _ = _sig_classes(param)
        if len(seed) == P.sig_params(param).sk_bytes:
            raise InvalidInput(
                "The OpenSSL backend loads signing keys from seeds only."
            )
        seed = check_bytes("The ML-DSA seed", seed, P.SIG_SEED_BYTES)
        key = priv_cls.from_seed_bytes(seed)
        with self._lock:
            self._slots[slot] = key
        return key.public_key().public_bytes_raw()

    def drop_signing_key(self, slot: int) -> None:
        with self._lock:
            self._slots.pop(slot, None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._slots.clear()

    def _lane_function(self, key: OpKey) -> Callable[[tuple], object]:
        table = {
            Kind.KEM_KEYGEN: self._kem_keygen,
            Kind.KEM_ENCAPS: self._kem_encaps,
            Kind.KEM_DECAPS: self._kem_decaps,
            Kind.SIG_KEYGEN: self._sig_keygen,
            Kind.SIG_SIGN: self._sig_sign,
            Kind.SIG_VERIFY: self._sig_verify,
        }
        fn = table[key.kind]
        return lambda lane: fn(key.param, lane)

    def _kem_keygen(self, param: str, lane: tuple) -> KemKeyPair:
        priv_cls, _ = _kem_classes(param)
        seed = check_bytes("The ML-KEM seed", lane.seed, P.KEM_SEED_BYTES)
        ek = priv_cls.from_seed_bytes(seed).public_key().public_bytes_raw()
        return KemKeyPair(ek, seed)

    def _kem_encaps(self, param: str, lane: tuple) -> KemEncapsOut:
        _, pub_cls = _kem_classes(param)
        if lane.coins is not None:
            raise InvalidInput(
                "The OpenSSL backend cannot encapsulate with caller-given coins."
            )
        ek = check_bytes("The encapsulation key", lane.ek, P.kem_params(param).ek_bytes)
        ss, ct = pub_cls.from_public_bytes(ek).encapsulate()
        return KemEncapsOut(ct, ss)

    def _kem_decaps(self, param: str, lane: tuple) -> bytes:
        priv_cls, _ = _kem_classes(param)
        spec = P.kem_params(param)
        if len(lane.dk) == spec.dk_bytes:
            raise InvalidInput(
                "The OpenSSL backend takes decapsulation keys in seed form only."
            )
        seed = check_bytes("The decapsulation key seed", lane.dk, spec.seed_bytes)
        ct = check_bytes("The ciphertext", lane.ct, spec.ct_bytes)
        return priv_cls.from_seed_bytes(seed).decapsulate(ct)

    def _sig_keygen(self, param: str, lane: tuple) -> SigKeyPair:
        priv_cls, _ = _sig_classes(param)
        seed = check_bytes("The ML-DSA seed", lane.seed, P.SIG_SEED_BYTES)
        pk = priv_cls.from_seed_bytes(seed).public_key().public_bytes_raw()
        return SigKeyPair(pk, seed)

    def _sig_sign(self, param: str, lane: tuple) -> bytes:
        if lane.rnd is not None:
            raise InvalidInput("The OpenSSL backend cannot sign with caller-given rnd.")
        _check_mode(lane.mode)
        context = _check_context(lane.context)
        message = check_bytes("The message", lane.message)
        with self._lock:
            key = self._slots.get(lane.slot)
        if key is None:
            raise InvalidInput(f"No signing key is loaded in slot {lane.slot}.")
        if lane.mode == "mu":
            return key.sign_mu(check_bytes("mu", message, 64))
        return key.sign(message, context)

    def _sig_verify(self, param: str, lane: tuple) -> bool:
        _, pub_cls = _sig_classes(param)
        spec = P.sig_params(param)
        pk = check_bytes("The ML-DSA public key", lane.pk, spec.pk_bytes)
        signature = check_bytes("The signature", lane.signature)
        message = check_bytes("The message", lane.message)
        context = _check_context(lane.context)
        _check_mode(lane.mode)
        if len(signature) != spec.sig_bytes:
            return False
        key = pub_cls.from_public_bytes(pk)
        try:
            if lane.mode == "mu":
                key.verify_mu(signature, check_bytes("mu", message, 64))
            else:
                key.verify(signature, message, context)
        except InvalidSignature:
            return False
        return True


def _guard(fn: Callable[[tuple], object], lane: tuple) -> object:
    """Run one lane; turn a refusal of its input into that lane's result."""
    try:
        return fn(lane)
    except InvalidInput as exc:
        return exc
    except (ValueError, TypeError) as exc:
        # cryptography says ValueError for keys that fail FIPS 203's checks.
        return InvalidInput(f"The input was refused: {exc}")


def _check_mode(mode: str) -> None:
    # cryptography exposes pure ML-DSA and external mu, not Sign_internal.
    if mode not in ("pure", "mu"):
        raise InvalidInput(
            f"The OpenSSL backend cannot sign or verify in {mode!r} mode."
        )


def _check_context(context: object) -> bytes:
    data = check_bytes("The context", context)
    if len(data) > P.SIG_MAX_CONTEXT_BYTES:
        raise InvalidInput(
            f"The context must be at most {P.SIG_MAX_CONTEXT_BYTES} bytes long, "
            f"but it is {len(data)} bytes."
        )
    return data


def _kem_classes(param: str) -> tuple:
    P.kem_params(param)
    return _KEM_CLASSES[param]


def _sig_classes(param: str) -> tuple:
    P.sig_params(param)
    return _SIG_CLASSES[param]
