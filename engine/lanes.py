"""Real lanes for any operation, made by a backend, for benchmarks.

Timed regions must hold only the operation, so the inputs it needs (keys,
ciphertexts, signatures) are made here beforehand by the backend under test
itself: a backend that keeps keys in its own form (the device's key slots)
measures with them.
"""

from __future__ import annotations

import os

from engine.ops import (
    KemDecapsIn,
    KemEncapsIn,
    KemKeygenIn,
    Kind,
    OpKey,
    SigKeygenIn,
    SigSignIn,
    SigVerifyIn,
)

SLOT = 1
MESSAGE = b"\x5a" * 48  # a SHA-384 digest, like the handshake signs
CONTEXT = b"pqc-hs/1 server-hello"


def make_lanes(backend, key: OpKey, n: int, slot: int = SLOT) -> list[tuple]:
    """n lanes of ``key`` with real inputs made by ``backend`` itself.

    Signing lanes use a fresh key loaded into ``slot``, replacing what was
    there: give each parameter set its own slot when lanes of several are
    kept at once.
    """
    kind, param = key.kind, key.param
    if kind is Kind.KEM_KEYGEN:
        return [KemKeygenIn(os.urandom(64)) for _ in range(n)]
    if kind is Kind.SIG_KEYGEN:
        return [SigKeygenIn(os.urandom(32)) for _ in range(n)]
    if kind in (Kind.KEM_ENCAPS, Kind.KEM_DECAPS):
        return _kem_lanes(backend, key, n)

    public = backend.load_signing_key(slot, param, os.urandom(32))
    if kind is Kind.SIG_SIGN:
        return [SigSignIn(slot, MESSAGE, CONTEXT) for _ in range(n)]
    (sig,) = backend.run_batch(
        OpKey(Kind.SIG_SIGN, param), [SigSignIn(slot, MESSAGE, CONTEXT)]
    )
    return [SigVerifyIn(public, MESSAGE, sig, CONTEXT) for _ in range(n)]


def _kem_lanes(backend, key: OpKey, n: int) -> list[tuple]:
    (pair,) = backend.run_batch(
        OpKey(Kind.KEM_KEYGEN, key.param), [KemKeygenIn(os.urandom(64))]
    )
    if key.kind is Kind.KEM_ENCAPS:
        return [KemEncapsIn(pair.ek) for _ in range(n)]

    (enc,) = backend.run_batch(
        OpKey(Kind.KEM_ENCAPS, key.param), [KemEncapsIn(pair.ek)]
    )
    return [KemDecapsIn(pair.dk_seed, enc.ct) for _ in range(n)]
