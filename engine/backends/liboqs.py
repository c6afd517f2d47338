"""The liboqs backend, through liboqs-python, used where the host has liboqs.

Importing liboqs-python on a host without the liboqs shared library makes it
try to download and build liboqs at import time. ``find_liboqs`` therefore
looks for the library first, and this module imports ``oqs`` only when it
was found: a missing library is a ``BackendUnavailable``, never a build.

liboqs keeps ML-KEM decapsulation keys and ML-DSA signing keys in their
expanded forms; the engine hands backends seeds. This backend serves the
seed-based kinds only where liboqs-python exposes key generation from a
seed, and declines them otherwise (the engine then routes those kinds to
another backend).
"""

from __future__ import annotations

import ctypes.util
import glob
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from engine import params as P
from engine.backends.base import Backend, check_bytes
from engine.errors import BackendUnavailable, InvalidInput
from engine.ops import KemEncapsOut, Kind, OpKey

logger = logging.getLogger(__name__)

_KEMS = ("ML-KEM-512", "ML-KEM-768", "ML-KEM-1024")
_SIGS = ("ML-DSA-44", "ML-DSA-65", "ML-DSA-87")
_SEEDED_KEYGEN = ("generate_keypair_seed", "generate_keypair_from_fseed")


def find_liboqs() -> str | None:
    """Return the path of the liboqs shared library, or None if absent.

    Looks where liboqs-python itself would: ``OQS_INSTALL_PATH``, ``~/_oqs``
    and the system's library path. Finding nothing is not an error.
    """
    roots = [os.environ.get("OQS_INSTALL_PATH"), str(Path.home() / "_oqs")]
    for root in filter(None, roots):
        for sub in ("lib", "lib64", "bin"):
            hits = sorted(glob.glob(os.path.join(root, sub, "*oqs.*")))
            if hits:
                return hits[0]
    return ctypes.util.find_library("oqs")


class LiboqsBackend(Backend):
    """ML-KEM and ML-DSA from liboqs."""

    name = "liboqs"
    path = "cpu"
    deterministic = False

    def __init__(self) -> None:
        library = find_liboqs()
        if library is None:
            raise BackendUnavailable(
                "The liboqs shared library was not found (set OQS_INSTALL_PATH or "
                "install liboqs); the liboqs backend is not available."
            )
        try:
            import oqs  # only now that the library is known present
        except (ImportError, RuntimeError, SystemExit) as exc:
            raise BackendUnavailable(f"liboqs-python could not load: {exc}") from exc

        self._oqs = oqs
        self._library = library
        self._slots: dict[int, tuple[str, object]] = {}
        self._lock = threading.Lock()
        self._caps = self._probe()
        logger.info("liboqs found at %s", library)

    def _probe(self) -> frozenset[OpKey]:
        oqs = self._oqs
        kems = set(oqs.get_enabled_kem_mechanisms()) & set(_KEMS)
        sigs = set(oqs.get_enabled_sig_mechanisms()) & set(_SIGS)
        caps = {OpKey(Kind.KEM_ENCAPS, p) for p in kems}
        caps |= {OpKey(Kind.SIG_VERIFY, p) for p in sigs}
        if any(hasattr(oqs.KeyEncapsulation, m) for m in _SEEDED_KEYGEN):
            seeded = (Kind.KEM_KEYGEN, Kind.KEM_DECAPS)
            caps |= {OpKey(k, p) for p in kems for k in seeded}
        if any(hasattr(oqs.Signature, m) for m in _SEEDED_KEYGEN):
            seeded = (Kind.SIG_KEYGEN, Kind.SIG_SIGN)
            caps |= {OpKey(k, p) for p in sigs for k in seeded}
        return frozenset(caps)

    def capabilities(self) -> frozenset[OpKey]:
        return self._caps

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "path": self.path, "library": self._library}

    def run_batch(self, key: OpKey, lanes: Sequence[tuple]) -> list[object]:
        fn = {
            Kind.KEM_KEYGEN: self._kem_keygen,
            Kind.KEM_ENCAPS: self._kem_encaps,
            Kind.KEM_DECAPS: self._kem_decaps,
            Kind.SIG_KEYGEN: self._sig_keygen,
            Kind.SIG_SIGN: self._sig_sign,
            Kind.SIG_VERIFY: self._sig_verify,
        }[key.kind]
        out: list[object] = []
        for lane in lanes:
            try:
                out.append(fn(key.param, lane))
            except InvalidInput as exc:
                out.append(exc)
            except (ValueError, TypeError) as exc:
                out.append(InvalidInput(f"The input was refused: {exc}"))
        return out

    def load_signing_key(self, slot: int, param: str, seed: bytes) -> bytes:
        sig = self._oqs.Signature(param)
        pk = _seeded(sig)(check_bytes("The ML-DSA seed", seed, P.SIG_SEED_BYTES))
        with self._lock:
            self._slots[slot] = (param, sig)
        return bytes(pk)

    def drop_signing_key(self, slot: int) -> None:
        with self._lock:
            self._slots.pop(slot, None)

    def _kem_keygen(self, param: str, lane: tuple) -> object:
        from engine.ops import KemKeyPair

        seed = check_bytes("The ML-KEM seed", lane.seed, P.KEM_SEED_BYTES)
        with self._oqs.KeyEncapsulation(param) as kem:
            return KemKeyPair(bytes(_seeded(kem)(seed)), seed)

    def _kem_encaps(self, param: str, lane: tuple) -> KemEncapsOut:
        if lane.coins is not None:
            raise InvalidInput("The liboqs backend cannot use caller-given coins.")
        ek = check_bytes("The encapsulation key", lane.ek, P.kem_params(param).ek_bytes)
        with self._oqs.KeyEncapsulation(param) as kem:
            ct, ss = kem.encap_secret(ek)
        return KemEncapsOut(bytes(ct), bytes(ss))

    def _kem_decaps(self, param: str, lane: tuple) -> bytes:
        spec = P.kem_params(param)
        seed = check_bytes("The decapsulation key seed", lane.dk, spec.seed_bytes)
        ct = check_bytes("The ciphertext", lane.ct, spec.ct_bytes)
        with self._oqs.KeyEncapsulation(param) as kem:
            _seeded(kem)(seed)
            return bytes(kem.decap_secret(ct))

    def _sig_keygen(self, param: str, lane: tuple) -> object:
        from engine.ops import SigKeyPair

        seed = check_bytes("The ML-DSA seed", lane.seed, P.SIG_SEED_BYTES)
        with self._oqs.Signature(param) as sig:
            return SigKeyPair(bytes(_seeded(sig)(seed)), seed)

    def _sig_sign(self, param: str, lane: tuple) -> bytes:
        if lane.rnd is not None or lane.mode != "pure":
            raise InvalidInput("The liboqs backend signs in pure mode, hedged, only.")
        with self._lock:
            entry = self._slots.get(lane.slot)
        if entry is None or entry[0] != param:
            raise InvalidInput(f"No {param} signing key is loaded in slot {lane.slot}.")
        return bytes(entry[1].sign_with_ctx_str(lane.message, lane.context))

    def _sig_verify(self, param: str, lane: tuple) -> bool:
        spec = P.sig_params(param)
        pk = check_bytes("The ML-DSA public key", lane.pk, spec.pk_bytes)
        if lane.mode != "pure":
            raise InvalidInput("The liboqs backend verifies in pure mode only.")
        if len(lane.signature) != spec.sig_bytes or len(lane.context) > 255:
            return False
        with self._oqs.Signature(param) as sig:
            return bool(
                sig.verify_with_ctx_str(lane.message, lane.signature, lane.context, pk)
            )


def _seeded(obj: object):
    for method in _SEEDED_KEYGEN:
        if hasattr(obj, method):
            return getattr(obj, method)
    raise BackendUnavailable("This liboqs-python cannot derive keys from seeds.")
