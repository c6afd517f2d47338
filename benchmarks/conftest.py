"""Shared set-up for the benchmarks: lanes are built outside timed regions."""

from __future__ import annotations

import os

import pytest

from engine.backends.openssl import OpenSSLBackend
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


def backends() -> dict[str, object]:
    """Every backend that can be built on this host, by name."""
    found: dict[str, object] = {"openssl": OpenSSLBackend}
    return found


@pytest.fixture(scope="session")
def backend_cache():
    made: dict[str, object] = {}
    yield made
    for backend in made.values():
        backend.close()


def make_lanes(backend, key: OpKey, n: int) -> list[tuple]:
    """n lanes of ``key`` with real inputs made by ``backend`` itself."""
    kind, param = key.kind, key.param
    if kind is Kind.KEM_KEYGEN:
        return [KemKeygenIn(os.urandom(64)) for _ in range(n)]
    if kind is Kind.SIG_KEYGEN:
        return [SigKeygenIn(os.urandom(32)) for _ in range(n)]
    if kind in (Kind.KEM_ENCAPS, Kind.KEM_DECAPS):
        (pair,) = backend.run_batch(
            OpKey(Kind.KEM_KEYGEN, param), [KemKeygenIn(os.urandom(64))]
        )
        if kind is Kind.KEM_ENCAPS:
            return [KemEncapsIn(pair.ek) for _ in range(n)]
        (enc,) = backend.run_batch(
            OpKey(Kind.KEM_ENCAPS, param), [KemEncapsIn(pair.ek)]
        )
        return [KemDecapsIn(pair.dk_seed, enc.ct) for _ in range(n)]
    public = backend.load_signing_key(SLOT, param, os.urandom(32))
    if kind is Kind.SIG_SIGN:
        return [SigSignIn(SLOT, MESSAGE, CONTEXT) for _ in range(n)]
    (sig,) = backend.run_batch(
        OpKey(Kind.SIG_SIGN, param), [SigSignIn(SLOT, MESSAGE, CONTEXT)]
    )
    return [SigVerifyIn(public, MESSAGE, sig, CONTEXT) for _ in range(n)]
