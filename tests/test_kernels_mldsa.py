"""The portable ML-DSA kernels (kernels/ref/mldsa*.c) against FIPS 204 vectors.

Every ACVP keyGen, sigGen and sigVer case and every Wycheproof ML-DSA-65 case in
tests/vectors runs through the compiled C, on each interface it exercises
(pure, pre-hash, internal, external mu, and the expanded key slots). The batch
entry points are compared with single calls, and keys and signatures are
checked both ways against OpenSSL through ``cryptography``. The magic
constants of the C are recomputed here from their formulas.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa as openssl_mldsa

from engine.params import SIG_PARAMS, SigParams
from tests.kernel_build import (
    COMPILE_ARGS,
    INCLUDE_DIRS,
    MLDSA_SOURCES,
    REF_DIR,
    build_kernels,
)
from tests.vectors import hexbytes, load

CDEF = """
#define PQC_OK 0
#define PQC_ERR_INVALID_ARG -1
#define PQC_ERR_INVALID_KEY -3
#define PQC_ERR_INVALID_SIGNATURE -4
#define PQC_ERR_INVALID_CONTEXT -5
#define MLDSA_CONST_QINV 0
#define MLDSA_CONST_MONT 1
#define MLDSA_CONST_INTT_SCALE 2
#define MLDSA_CONST_DIV93_MUL 3
#define MLDSA_CONST_DIV1023_MUL 4
#define MLDSA_CONST_DIV5_MUL 5
size_t mldsa_pk_bytes(unsigned ps);
size_t mldsa_sk_bytes(unsigned ps);
size_t mldsa_sig_bytes(unsigned ps);
size_t mldsa_expanded_sk_bytes(unsigned ps);
int mldsa_keygen(unsigned ps, uint8_t *pk, uint8_t *sk, const uint8_t xi[32]);
int mldsa_sign_internal(unsigned ps, uint8_t *sig, const uint8_t *sk,
                        const uint8_t *mprime, size_t mlen,
                        const uint8_t rnd[32]);
int mldsa_sign_mu(unsigned ps, uint8_t *sig, const uint8_t *sk,
                  const uint8_t mu[64], const uint8_t rnd[32]);
int mldsa_sign(unsigned ps, uint8_t *sig, const uint8_t *sk,
               const uint8_t *msg, size_t mlen, const uint8_t *ctx,
               size_t ctxlen, const uint8_t rnd[32]);
int mldsa_verify_internal(unsigned ps, const uint8_t *pk,
                          const uint8_t *mprime, size_t mlen,
                          const uint8_t *sig, size_t siglen);
int mldsa_verify_mu(unsigned ps, const uint8_t *pk, const uint8_t mu[64],
                    const uint8_t *sig, size_t siglen);
int mldsa_verify(unsigned ps, const uint8_t *pk, const uint8_t *msg,
                 size_t mlen, const uint8_t *ctx, size_t ctxlen,
                 const uint8_t *sig, size_t siglen);
int mldsa_tr_from_pk(unsigned ps, uint8_t tr[64], const uint8_t *pk);
void mldsa_compute_mu(uint8_t mu[64], const uint8_t tr[64],
                      const uint8_t *mprime, size_t mlen);
int mldsa_expand_sk(unsigned ps, void *expanded, const uint8_t *sk);
int mldsa_sign_expanded_mu(unsigned ps, uint8_t *sig, const void *expanded,
                           const uint8_t mu[64], const uint8_t rnd[32]);
int mldsa_keygen_batch(unsigned ps, size_t n, uint8_t *pk, uint8_t *sk,
                       const uint8_t *xi, int32_t *status);
int mldsa_sign_mu_batch(unsigned ps, size_t n, uint8_t *sig,
                        const void *const *expanded, const uint8_t *mu,
                        const uint8_t *rnd, int32_t *status);
int mldsa_verify_mu_batch(unsigned ps, size_t n, const uint8_t *pk,
                          const uint8_t *mu, const uint8_t *sig,
                          int32_t *status);
int32_t mldsa_zeta(unsigned i);
int64_t mldsa_constant(unsigned id);
int mldsa_decompose_many(unsigned ps, int32_t *r1, int32_t *r0,
                         const int32_t *r, size_t n);
"""

SOURCES = ["fips202.c", *MLDSA_SOURCES]

Q = 8380417
PARAM_NAMES = list(SIG_PARAMS)
PUBLISHED_SIZES = {  # FIPS 204, Table 2: pk, sk, signature
    "ML-DSA-44": (1312, 2560, 2420),
    "ML-DSA-65": (1952, 4032, 3309),
    "ML-DSA-87": (2592, 4896, 4627),
}
ZERO_RND = bytes(32)

# HashML-DSA (FIPS 204, Algorithm 4): the DER OID of each pre-hash and the hash.
_OID_PREFIX = bytes.fromhex("06096086480165030402")
PRE_HASHES = {
    "SHA2-256": (0x01, lambda m: hashlib.sha256(m).digest()),
    "SHA2-384": (0x02, lambda m: hashlib.sha384(m).digest()),
    "SHA2-512": (0x03, lambda m: hashlib.sha512(m).digest()),
    "SHA2-224": (0x04, lambda m: hashlib.sha224(m).digest()),
    "SHA2-512/224": (0x05, lambda m: hashlib.new("sha512_224", m).digest()),
    "SHA2-512/256": (0x06, lambda m: hashlib.new("sha512_256", m).digest()),
    "SHA3-224": (0x07, lambda m: hashlib.sha3_224(m).digest()),
    "SHA3-256": (0x08, lambda m: hashlib.sha3_256(m).digest()),
    "SHA3-384": (0x09, lambda m: hashlib.sha3_384(m).digest()),
    "SHA3-512": (0x0A, lambda m: hashlib.sha3_512(m).digest()),
    "SHAKE-128": (0x0B, lambda m: hashlib.shake_128(m).digest(32)),
    "SHAKE-256": (0x0C, lambda m: hashlib.shake_256(m).digest(64)),
}

OPENSSL_KEYS = {
    "ML-DSA-44": openssl_mldsa.MLDSA44PrivateKey,
    "ML-DSA-65": openssl_mldsa.MLDSA65PrivateKey,
    "ML-DSA-87": openssl_mldsa.MLDSA87PrivateKey,
}


def ps_of(name: str) -> int:
    """The C parameter-set number of a FIPS name: "ML-DSA-65" -> 65."""
    return int(name.rsplit("-", 1)[1])


def pure_mprime(msg: bytes, ctx: bytes) -> bytes:
    """M' of ML-DSA.Sign (FIPS 204, Algorithm 2, step 10)."""
    return bytes([0, len(ctx)]) + ctx + msg


def prehash_mprime(msg: bytes, ctx: bytes, hash_alg: str) -> bytes:
    """M' of HashML-DSA.Sign (FIPS 204, Algorithm 4, steps 10-23)."""
    oid_byte, digest = PRE_HASHES[hash_alg]
    return bytes([1, len(ctx)]) + ctx + _OID_PREFIX + bytes([oid_byte]) + digest(msg)


class MlDsa:
    """Thin Python calls over the compiled kernels; each returns (status, ...)."""

    def __init__(self, module: Any) -> None:
        self.ffi = module.ffi
        self.lib = module.lib

    def _out(self, size: int) -> Any:
        return self.ffi.new("uint8_t[]", max(size, 1))

    def _bytes(self, buf: Any, size: int) -> bytes:
        return bytes(self.ffi.buffer(buf, size))

    def keygen(self, ps: int, xi: bytes) -> tuple[int, bytes, bytes]:
        pk_len, sk_len = self.lib.mldsa_pk_bytes(ps), self.lib.mldsa_sk_bytes(ps)
        pk, sk = self._out(pk_len), self._out(sk_len)
        rc = self.lib.mldsa_keygen(ps, pk, sk, xi)
        return rc, self._bytes(pk, pk_len), self._bytes(sk, sk_len)

    def sign(
        self, ps: int, sk: bytes, msg: bytes, ctx: bytes, rnd: bytes = ZERO_RND
    ) -> tuple[int, bytes]:
        size = self.lib.mldsa_sig_bytes(ps)
        sig = self._out(size)
        rc = self.lib.mldsa_sign(ps, sig, sk, msg, len(msg), ctx, len(ctx), rnd)
        return rc, self._bytes(sig, size)

    def sign_internal(
        self, ps: int, sk: bytes, mprime: bytes, rnd: bytes = ZERO_RND
    ) -> tuple[int, bytes]:
        size = self.lib.mldsa_sig_bytes(ps)
        sig = self._out(size)
        rc = self.lib.mldsa_sign_internal(ps, sig, sk, mprime, len(mprime), rnd)
        return rc, self._bytes(sig, size)

    def sign_mu(
        self, ps: int, sk: bytes, mu: bytes, rnd: bytes = ZERO_RND
    ) -> tuple[int, bytes]:
        size = self.lib.mldsa_sig_bytes(ps)
        sig = self._out(size)
        rc = self.lib.mldsa_sign_mu(ps, sig, sk, mu, rnd)
        return rc, self._bytes(sig, size)

    def expand(self, ps: int, sk: bytes) -> tuple[int, Any]:
        slot = self.ffi.new("uint8_t[]", self.lib.mldsa_expanded_sk_bytes(ps))
        return self.lib.mldsa_expand_sk(ps, slot, sk), slot

    def sign_slot(
        self, ps: int, slot: Any, mu: bytes, rnd: bytes = ZERO_RND
    ) -> tuple[int, bytes]:
        size = self.lib.mldsa_sig_bytes(ps)
        sig = self._out(size)
        rc = self.lib.mldsa_sign_expanded_mu(ps, sig, slot, mu, rnd)
        return rc, self._bytes(sig, size)

    def verify(self, ps: int, pk: bytes, msg: bytes, ctx: bytes, sig: bytes) -> int:
        return self.lib.mldsa_verify(
            ps, pk, msg, len(msg), ctx, len(ctx), sig, len(sig)
        )

    def verify_internal(self, ps: int, pk: bytes, mprime: bytes, sig: bytes) -> int:
        return self.lib.mldsa_verify_internal(
            ps, pk, mprime, len(mprime), sig, len(sig)
        )

    def verify_mu(self, ps: int, pk: bytes, mu: bytes, sig: bytes) -> int:
        return self.lib.mldsa_verify_mu(ps, pk, mu, sig, len(sig))

    def tr(self, ps: int, pk: bytes) -> bytes:
        out = self._out(64)
        assert self.lib.mldsa_tr_from_pk(ps, out, pk) == self.lib.PQC_OK
        return self._bytes(out, 64)

    def mu(self, tr: bytes, mprime: bytes) -> bytes:
        out = self._out(64)
        self.lib.mldsa_compute_mu(out, tr, mprime, len(mprime))
        return self._bytes(out, 64)


@pytest.fixture(scope="module")
def kernel() -> MlDsa:
    return MlDsa(build_kernels("_test_mldsa", CDEF, SOURCES, ["mldsa.h"]))


def _params(name: str) -> SigParams:
    return SIG_PARAMS[name]


# --- Sizes and constants ---------------------------------------------------------


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_sizes_match_fips204(kernel: MlDsa, name: str) -> None:
    ps, p = ps_of(name), _params(name)
    sizes = (
        kernel.lib.mldsa_pk_bytes(ps),
        kernel.lib.mldsa_sk_bytes(ps),
        kernel.lib.mldsa_sig_bytes(ps),
    )
    assert sizes == PUBLISHED_SIZES[name] == (p.pk_bytes, p.sk_bytes, p.sig_bytes)
    # A-hat, NTT(s1), NTT(s2), NTT(t0) at 1 KiB each, after a 136-byte header.
    polys = p.k * p.l + p.l + 2 * p.k
    assert kernel.lib.mldsa_expanded_sk_bytes(ps) == 136 + 1024 * polys


@pytest.mark.parametrize("ps", [0, 43, 66, 128])
def test_unknown_parameter_sets_are_refused(kernel: MlDsa, ps: int) -> None:
    lib = kernel.lib
    assert lib.mldsa_pk_bytes(ps) == lib.mldsa_sk_bytes(ps) == 0
    assert lib.mldsa_sig_bytes(ps) == lib.mldsa_expanded_sk_bytes(ps) == 0
    pk, sk = kernel._out(4096), kernel._out(8192)
    assert lib.mldsa_keygen(ps, pk, sk, bytes(32)) == lib.PQC_ERR_INVALID_ARG
    sig = kernel._out(4627)
    assert lib.mldsa_sign_mu(ps, sig, sk, bytes(64), ZERO_RND) == (
        lib.PQC_ERR_INVALID_ARG
    )
    assert lib.mldsa_verify_mu(ps, pk, bytes(64), sig, 4627) == (
        lib.PQC_ERR_INVALID_ARG
    )


def _bitrev8(i: int) -> int:
    return int(f"{i:08b}"[::-1], 2)


def _centred(x: int) -> int:
    x %= Q
    return x - Q if x > (Q - 1) // 2 else x


def test_zeta_table_is_1753_to_bitrev_in_montgomery_form(kernel: MlDsa) -> None:
    # FIPS 204, Appendix B: zeta = 1753, a primitive 512-th root of unity mod q.
    assert pow(1753, 256, Q) == Q - 1
    expected = [_centred(pow(1753, _bitrev8(i), Q) * 2**32) for i in range(256)]
    assert [kernel.lib.mldsa_zeta(i) for i in range(256)] == expected


def test_arithmetic_constants(kernel: MlDsa) -> None:
    const = kernel.lib.mldsa_constant
    lib = kernel.lib
    assert const(lib.MLDSA_CONST_QINV) == pow(Q, -1, 2**32)
    assert const(lib.MLDSA_CONST_MONT) == _centred(2**32)
    assert const(lib.MLDSA_CONST_INTT_SCALE) == 2**64 * pow(256, -1, Q) % Q
    assert const(lib.MLDSA_CONST_DIV93_MUL) == -(-(2**20) // 93)
    assert const(lib.MLDSA_CONST_DIV1023_MUL) == -(-(2**25) // 1023)
    assert const(lib.MLDSA_CONST_DIV5_MUL) == -(-(2**10) // 5)
    assert const(99) == 0


@pytest.mark.parametrize(
    ("divisor", "shift", "below"), [(1023, 25, 2**15), (93, 20, 2**13), (5, 10, 2**6)]
)
def test_division_by_multiplication_is_exact(
    divisor: int, shift: int, below: int
) -> None:
    """floor(x * ceil(2^s / d) / 2^s) = floor(x / d) over each documented range."""
    mul = -(-(2**shift) // divisor)
    assert all((x * mul) >> shift == x // divisor for x in range(below))


def _decompose_spec(r: np.ndarray, gamma2: int) -> tuple[np.ndarray, np.ndarray]:
    """Decompose (FIPS 204, Algorithm 36) over numpy arrays, as written."""
    r0 = r % (2 * gamma2)
    r0 = np.where(r0 > gamma2, r0 - 2 * gamma2, r0)
    wrap = (r - r0) == Q - 1
    r1 = np.where(wrap, 0, (r - r0) // (2 * gamma2))
    return r1, np.where(wrap, r0 - 1, r0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["ML-DSA-44", "ML-DSA-65"])
def test_decompose_on_every_residue(kernel: MlDsa, name: str) -> None:
    """The multiply-shift Decompose equals the standard's for all q inputs."""
    gamma2 = (Q - 1) // _params(name).gamma2_divisor
    r = np.arange(Q, dtype=np.int32)
    r1 = np.empty_like(r)
    r0 = np.empty_like(r)
    ffi = kernel.ffi
    rc = kernel.lib.mldsa_decompose_many(
        ps_of(name),
        ffi.cast("int32_t *", ffi.from_buffer(r1)),
        ffi.cast("int32_t *", ffi.from_buffer(r0)),
        ffi.cast("int32_t *", ffi.from_buffer(r)),
        Q,
    )
    assert rc == kernel.lib.PQC_OK
    want1, want0 = _decompose_spec(r.astype(np.int64), gamma2)
    assert np.array_equal(r1, want1)
    assert np.array_equal(r0, want0)


# --- ACVP --------------------------------------------------------------------------


def _acvp_cases(relative: str) -> list[tuple[dict, dict]]:
    return [
        (group, case)
        for group in load(relative)["testGroups"]
        for case in group["tests"]
    ]


def _case_id(group: dict, case: dict) -> str:
    return f"{group['parameterSet']}-tc{case['tcId']}"


KEYGEN_CASES = _acvp_cases("acvp/ML-DSA-keyGen-FIPS204/internalProjection.json")
SIGVER_CASES = _acvp_cases("acvp/ML-DSA-sigVer-FIPS204/internalProjection.json")


def _siggen_cases() -> list[tuple[dict, dict]]:
    """prompt.json joined with expectedResults.json on tcId."""
    results = load("acvp/ML-DSA-sigGen-FIPS204/expectedResults.json")
    signature = {
        case["tcId"]: case["signature"]
        for group in results["testGroups"]
        for case in group["tests"]
    }
    cases = _acvp_cases("acvp/ML-DSA-sigGen-FIPS204/prompt.json")
    return [(g, {**c, "signature": signature[c["tcId"]]}) for g, c in cases]


SIGGEN_CASES = _siggen_cases()


def test_acvp_case_counts() -> None:
    assert (len(KEYGEN_CASES), len(SIGGEN_CASES), len(SIGVER_CASES)) == (75, 360, 180)


@pytest.mark.parametrize(
    ("group", "case"), KEYGEN_CASES, ids=[_case_id(*c) for c in KEYGEN_CASES]
)
def test_acvp_keygen(kernel: MlDsa, group: dict, case: dict) -> None:
    rc, pk, sk = kernel.keygen(ps_of(group["parameterSet"]), hexbytes(case["seed"]))
    assert rc == kernel.lib.PQC_OK
    assert pk == hexbytes(case["pk"])
    assert sk == hexbytes(case["sk"])


def _acvp_mprime(group: dict, case: dict) -> bytes:
    """M' for a non-external-mu case (tests/vectors/README.md, section 2)."""
    msg = hexbytes(case["message"])
    if group["signatureInterface"] == "internal":
        return msg
    ctx = hexbytes(case.get("context"))
    if group["preHash"] == "preHash":
        return prehash_mprime(msg, ctx, case["hashAlg"])
    return pure_mprime(msg, ctx)


@pytest.mark.parametrize(
    ("group", "case"), SIGGEN_CASES, ids=[_case_id(*c) for c in SIGGEN_CASES]
)
def test_acvp_siggen(kernel: MlDsa, group: dict, case: dict) -> None:
    ps, sk = ps_of(group["parameterSet"]), hexbytes(case["sk"])
    rnd = ZERO_RND if group["deterministic"] else hexbytes(case["rnd"])
    expected = hexbytes(case["signature"])

    if group.get("externalMu"):
        mu = hexbytes(case["mu"])
        rc, sig = kernel.sign_mu(ps, sk, mu, rnd)
    else:
        mprime = _acvp_mprime(group, case)
        mu = kernel.mu(sk[64:128], mprime)
        if group.get("preHash") == "pure":
            msg, ctx = hexbytes(case["message"]), hexbytes(case.get("context"))
            rc, sig = kernel.sign(ps, sk, msg, ctx, rnd)
        else:
            rc, sig = kernel.sign_internal(ps, sk, mprime, rnd)
    assert rc == kernel.lib.PQC_OK
    assert sig == expected

    # The key-slot path gives the same signature from the same mu.
    rc, slot = kernel.expand(ps, sk)
    assert rc == kernel.lib.PQC_OK
    assert kernel.sign_slot(ps, slot, mu, rnd) == (kernel.lib.PQC_OK, expected)


@pytest.mark.parametrize(
    ("group", "case"), SIGVER_CASES, ids=[_case_id(*c) for c in SIGVER_CASES]
)
def test_acvp_sigver(kernel: MlDsa, group: dict, case: dict) -> None:
    ps, pk = ps_of(group["parameterSet"]), hexbytes(case["pk"])
    sig = hexbytes(case["signature"])

    if group["externalMu"]:
        rc = kernel.verify_mu(ps, pk, hexbytes(case["mu"]), sig)
    elif group["preHash"] == "pure":
        msg, ctx = hexbytes(case["message"]), hexbytes(case.get("context"))
        rc = kernel.verify(ps, pk, msg, ctx, sig)
    else:
        rc = kernel.verify_internal(ps, pk, _acvp_mprime(group, case), sig)

    want = "PQC_OK" if case["testPassed"] else "PQC_ERR_INVALID_SIGNATURE"
    assert rc == getattr(kernel.lib, want), case["reason"]


# --- Wycheproof (ML-DSA-65) ----------------------------------------------------


def _wycheproof(kind: str) -> list[tuple[dict, dict]]:
    data = load(f"wycheproof/mldsa_65_{kind}_test.json")
    return [(g, c) for g in data["testGroups"] for c in g["tests"]]


def _wid(cases: list[tuple[dict, dict]]) -> list[str]:
    return [f"ML-DSA-65-tc{c['tcId']}" for _, c in cases]


SIGN_SEED_CASES = _wycheproof("sign_seed")
SIGN_NOSEED_CASES = _wycheproof("sign_noseed")
VERIFY_CASES = _wycheproof("verify")


def test_wycheproof_case_counts() -> None:
    counts = (len(SIGN_SEED_CASES), len(SIGN_NOSEED_CASES), len(VERIFY_CASES))
    assert counts == (105, 78, 210)


def _check_wycheproof_sign(kernel: MlDsa, sk: bytes, case: dict) -> None:
    """Sign as the case says and compare; ``sk`` is already a valid key."""
    lib = kernel.lib
    rnd = hexbytes(case.get("rnd")) or ZERO_RND
    ctx = hexbytes(case.get("ctx"))
    if "msg" in case:
        msg = hexbytes(case["msg"])
        rc, sig = kernel.sign(65, sk, msg, ctx, rnd)
        if "mu" in case and len(ctx) <= 255:
            mu = kernel.mu(sk[64:128], pure_mprime(msg, ctx))
            assert mu == hexbytes(case["mu"])
    else:
        rc, sig = kernel.sign_mu(65, sk, hexbytes(case["mu"]), rnd)

    if case["result"] == "valid":
        assert rc == lib.PQC_OK
        assert sig == hexbytes(case["sig"])
    else:
        assert case["flags"] == ["InvalidContext"]
        assert rc == lib.PQC_ERR_INVALID_CONTEXT
        assert sig == bytes(len(sig))


@pytest.mark.parametrize(("group", "case"), SIGN_SEED_CASES, ids=_wid(SIGN_SEED_CASES))
def test_wycheproof_sign_seed(kernel: MlDsa, group: dict, case: dict) -> None:
    seed = hexbytes(group["privateSeed"])
    if len(seed) != 32:
        # The C API takes a fixed 32-byte xi; a binding refuses other lengths.
        assert case["result"] == "invalid"
        assert case["flags"] == ["IncorrectPrivateKeyLength"]
        return
    rc, pk, sk = kernel.keygen(65, seed)
    assert rc == kernel.lib.PQC_OK
    assert pk == hexbytes(group["publicKey"])
    _check_wycheproof_sign(kernel, sk, case)


@pytest.mark.parametrize(
    ("group", "case"), SIGN_NOSEED_CASES, ids=_wid(SIGN_NOSEED_CASES)
)
def test_wycheproof_sign_noseed(kernel: MlDsa, group: dict, case: dict) -> None:
    sk = hexbytes(group["privateKey"])
    lib = kernel.lib
    if len(sk) != lib.mldsa_sk_bytes(65):
        assert case["result"] == "invalid"
        assert case["flags"] == ["IncorrectPrivateKeyLength"]
        return
    if "InvalidPrivateKey" in case["flags"]:
        # s1 or s2 has a coefficient outside [-eta, eta]: refused, not signed.
        assert case["result"] == "invalid"
        rc, sig = kernel.sign(65, sk, hexbytes(case.get("msg")), b"")
        assert (rc, sig) == (lib.PQC_ERR_INVALID_KEY, bytes(len(sig)))
        rc, slot = kernel.expand(65, sk)
        assert rc == lib.PQC_ERR_INVALID_KEY
        assert bytes(slot) == bytes(len(slot))
        return
    _check_wycheproof_sign(kernel, sk, case)


@pytest.mark.parametrize(("group", "case"), VERIFY_CASES, ids=_wid(VERIFY_CASES))
def test_wycheproof_verify(kernel: MlDsa, group: dict, case: dict) -> None:
    pk = hexbytes(group["publicKey"])
    lib = kernel.lib
    if len(pk) != lib.mldsa_pk_bytes(65):
        # The C API takes a fixed-size pk; a binding refuses other lengths.
        assert case["result"] == "invalid"
        assert case["flags"] == ["IncorrectPublicKeyLength"]
        return
    msg, ctx = hexbytes(case["msg"]), hexbytes(case.get("ctx"))
    rc = kernel.verify(65, pk, msg, ctx, hexbytes(case["sig"]))
    if case["result"] == "valid":
        assert rc == lib.PQC_OK
    elif "InvalidContext" in case["flags"]:
        assert rc == lib.PQC_ERR_INVALID_CONTEXT
    else:
        assert rc == lib.PQC_ERR_INVALID_SIGNATURE


# --- Strict decoding and refusals ----------------------------------------------


@dataclass
class Signed:
    """A key pair and a valid signature over ``msg`` for one parameter set."""

    ps: int
    params: SigParams
    pk: bytes
    sk: bytes
    msg: bytes
    sig: bytes

    @property
    def hint_at(self) -> int:
        """Offset of the hint encoding (omega + k bytes) in the signature."""
        p = self.params
        return p.lam // 4 + 32 * (p.gamma1_bits + 1) * p.l


def _signed(kernel: MlDsa, name: str, seed: int = 1) -> Signed:
    rc, pk, sk = kernel.keygen(ps_of(name), bytes([seed]) * 32)
    assert rc == kernel.lib.PQC_OK
    # Try messages until the signature has hints in at least two polynomials,
    # so that the encoding mutations below have something to work on.
    for i in range(1000):
        msg = f"message {i}".encode()
        rc, sig = kernel.sign(ps_of(name), sk, msg, b"")
        assert rc == kernel.lib.PQC_OK
        s = Signed(ps_of(name), _params(name), pk, sk, msg, sig)
        counts = sig[s.hint_at + s.params.omega :]
        if len(set(counts)) > 2 and counts[0] >= 2:
            return s
    raise AssertionError("no signature with hints in two polynomials")


def _with(sig: bytes, at: int, value: int) -> bytes:
    return sig[:at] + bytes([value]) + sig[at + 1 :]


def _hint_mutations(s: Signed) -> dict[str, bytes]:
    omega, k, at = s.params.omega, s.params.k, s.hint_at
    counts = s.sig[at + omega : at + omega + k]
    first = s.sig[at : at + counts[0]]
    total = counts[-1]
    cases = {
        # Indices within the first polynomial out of order (swap two).
        "indices not increasing": _with(_with(s.sig, at, first[1]), at + 1, first[0]),
        "repeated index": _with(s.sig, at + 1, first[0]),
        "count above omega": _with(s.sig, at + omega + k - 1, omega + 1),
        "counts decreasing": _with(s.sig, at + omega, counts[1] + 1)
        if counts[1] + 1 <= omega
        else _with(s.sig, at + omega + 1, counts[0] - 1),
    }
    if total < omega:
        cases["nonzero unused index byte"] = _with(s.sig, at + omega - 1, 1)
    return cases


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_malformed_hint_encodings_are_refused(kernel: MlDsa, name: str) -> None:
    s = _signed(kernel, name)
    lib = kernel.lib
    assert kernel.verify(s.ps, s.pk, s.msg, b"", s.sig) == lib.PQC_OK
    mutations = _hint_mutations(s)
    assert len(mutations) >= 4
    for label, bad in mutations.items():
        assert bad != s.sig, label
        rc = kernel.verify(s.ps, s.pk, s.msg, b"", bad)
        assert rc == lib.PQC_ERR_INVALID_SIGNATURE, label


def _set_z0(s: Signed, value: int) -> bytes:
    """The signature with z[0][0] replaced (BitPack stores gamma1 - z)."""
    p, at = s.params, s.params.lam // 4
    bits = p.gamma1_bits + 1
    field = (1 << p.gamma1_bits) - value
    word = int.from_bytes(s.sig[at : at + 3], "little")
    word = (word & ~((1 << bits) - 1)) | field
    return s.sig[:at] + word.to_bytes(3, "little") + s.sig[at + 3 :]


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_z_infinity_norm_is_enforced(kernel: MlDsa, name: str) -> None:
    s, lib = _signed(kernel, name), kernel.lib
    p = s.params
    bound = (1 << p.gamma1_bits) - p.tau * p.eta  # gamma1 - beta
    for value in (bound, -bound, 1 << p.gamma1_bits):
        rc = kernel.verify(s.ps, s.pk, s.msg, b"", _set_z0(s, value))
        assert rc == lib.PQC_ERR_INVALID_SIGNATURE, value
    # One inside the bound decodes; the challenge then no longer matches.
    assert _set_z0(s, bound - 1) != s.sig


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_wrong_lengths_and_contexts(kernel: MlDsa, name: str) -> None:
    s, lib = _signed(kernel, name), kernel.lib
    for sig in (s.sig[:-1], s.sig + b"\0", b""):
        assert kernel.verify(s.ps, s.pk, s.msg, b"", sig) == (
            lib.PQC_ERR_INVALID_SIGNATURE
        )
    long_ctx = bytes(256)
    assert kernel.verify(s.ps, s.pk, s.msg, long_ctx, s.sig) == (
        lib.PQC_ERR_INVALID_CONTEXT
    )
    rc, sig = kernel.sign(s.ps, s.sk, s.msg, long_ctx)
    assert (rc, sig) == (lib.PQC_ERR_INVALID_CONTEXT, bytes(len(sig)))

    ctx = bytes(range(255))
    rc, sig = kernel.sign(s.ps, s.sk, s.msg, ctx)
    assert rc == lib.PQC_OK
    assert kernel.verify(s.ps, s.pk, s.msg, ctx, sig) == lib.PQC_OK
    assert kernel.verify(s.ps, s.pk, s.msg, ctx[:-1], sig) == (
        lib.PQC_ERR_INVALID_SIGNATURE
    )


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_out_of_range_secret_key_is_refused(kernel: MlDsa, name: str) -> None:
    """A coefficient of s1 (or s2) outside [-eta, eta] makes the key invalid."""
    s, lib, p = _signed(kernel, name), kernel.lib, _params(name)
    # Field value 7 (eta = 2, 3 bits) or 15 (eta = 4, 4 bits) decodes to
    # eta - field < -eta. Set the first field of s1, then of s2.
    eta_bits = 3 if p.eta == 2 else 4
    for at in (128, 128 + 32 * eta_bits * p.l):
        bad = bytearray(s.sk)
        bad[at] |= (1 << eta_bits) - 1
        bad = bytes(bad)
        rc, sig = kernel.sign(s.ps, bad, s.msg, b"")
        assert (rc, sig) == (lib.PQC_ERR_INVALID_KEY, bytes(len(sig)))
        assert kernel.expand(s.ps, bad)[0] == lib.PQC_ERR_INVALID_KEY


def test_slot_of_another_parameter_set_is_refused(kernel: MlDsa) -> None:
    s, lib = _signed(kernel, "ML-DSA-44"), kernel.lib
    rc, slot = kernel.expand(44, s.sk)
    assert rc == lib.PQC_OK
    big = kernel.ffi.new("uint8_t[]", lib.mldsa_expanded_sk_bytes(87))
    kernel.ffi.memmove(big, slot, len(slot))
    rc, sig = kernel.sign_slot(87, big, bytes(64))
    assert (rc, sig) == (lib.PQC_ERR_INVALID_KEY, bytes(len(sig)))
    zeroed = kernel.ffi.new("uint8_t[]", len(slot))
    assert kernel.sign_slot(44, zeroed, bytes(64))[0] == lib.PQC_ERR_INVALID_KEY


# --- Batches -----------------------------------------------------------------


def _seeds(rng: random.Random, n: int, size: int) -> bytes:
    return rng.randbytes(n * size)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("n", [0, 1, 7, 65])
@pytest.mark.parametrize("name", PARAM_NAMES)
def test_batches_equal_single_calls(kernel: MlDsa, name: str, n: int) -> None:
    ps, p, lib, ffi = ps_of(name), _params(name), kernel.lib, kernel.ffi
    rng = random.Random(f"{name}-{n}")
    xi = _seeds(rng, n, 32)
    pk, sk = kernel._out(n * p.pk_bytes), kernel._out(n * p.sk_bytes)
    status = ffi.new("int32_t[]", max(n, 1))
    assert lib.mldsa_keygen_batch(ps, n, pk, sk, xi, status) == lib.PQC_OK
    pks = [kernel._bytes(pk + i * p.pk_bytes, p.pk_bytes) for i in range(n)]
    sks = [kernel._bytes(sk + i * p.sk_bytes, p.sk_bytes) for i in range(n)]
    for i in range(n):
        assert status[i] == lib.PQC_OK
        assert kernel.keygen(ps, xi[32 * i : 32 * i + 32]) == (
            lib.PQC_OK,
            pks[i],
            sks[i],
        )

    slots = [kernel.expand(ps, key)[1] for key in sks]
    slot_ptrs = ffi.new("void *[]", slots or [ffi.NULL])
    mu, rnd = _seeds(rng, n, 64), _seeds(rng, n, 32)
    sig = kernel._out(n * p.sig_bytes)
    assert lib.mldsa_sign_mu_batch(ps, n, sig, slot_ptrs, mu, rnd, status) == (
        lib.PQC_OK
    )
    sigs = [kernel._bytes(sig + i * p.sig_bytes, p.sig_bytes) for i in range(n)]
    for i in range(n):
        assert status[i] == lib.PQC_OK
        one = kernel.sign_mu(ps, sks[i], mu[64 * i : 64 * i + 64], rnd[32 * i :][:32])
        assert one == (lib.PQC_OK, sigs[i])

    pk_all = b"".join(pks)
    assert lib.mldsa_verify_mu_batch(ps, n, pk_all, mu, b"".join(sigs), status) == (
        lib.PQC_OK
    )
    assert list(status)[:n] == [lib.PQC_OK] * n


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_one_bad_lane_fails_alone(kernel: MlDsa, name: str) -> None:
    ps, p, lib, ffi = ps_of(name), _params(name), kernel.lib, kernel.ffi
    n, bad = 8, 5
    rng = random.Random(name)
    keys = [kernel.keygen(ps, rng.randbytes(32)) for _ in range(n)]
    mu, rnd = rng.randbytes(64 * n), rng.randbytes(32 * n)
    sigs = [
        kernel.sign_mu(ps, keys[i][2], mu[64 * i : 64 * i + 64], rnd[32 * i :][:32])[1]
        for i in range(n)
    ]
    status = ffi.new("int32_t[]", n)

    # Verification: flip one bit of the commitment hash of lane 5.
    tampered = list(sigs)
    tampered[bad] = _with(sigs[bad], 3, sigs[bad][3] ^ 0x10)
    pk_all = b"".join(k[1] for k in keys)
    rc = lib.mldsa_verify_mu_batch(ps, n, pk_all, mu, b"".join(tampered), status)
    assert rc == lib.PQC_OK
    want = [lib.PQC_OK] * n
    want[bad] = lib.PQC_ERR_INVALID_SIGNATURE
    assert list(status) == want

    # Signing: lane 5 gets a zeroed (never expanded) slot.
    slots = [kernel.expand(ps, k[2])[1] for k in keys]
    slots[bad] = ffi.new("uint8_t[]", lib.mldsa_expanded_sk_bytes(ps))
    out = kernel._out(n * p.sig_bytes)
    sig_all = ffi.new("void *[]", slots)
    assert lib.mldsa_sign_mu_batch(ps, n, out, sig_all, mu, rnd, status) == lib.PQC_OK
    want[bad] = lib.PQC_ERR_INVALID_KEY
    assert list(status) == want
    got = [kernel._bytes(out + i * p.sig_bytes, p.sig_bytes) for i in range(n)]
    expected = list(sigs)
    expected[bad] = bytes(p.sig_bytes)
    assert got == expected


# --- Differential against OpenSSL ----------------------------------------------


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_openssl_agrees(kernel: MlDsa, name: str) -> None:
    ps, lib = ps_of(name), kernel.lib
    rng = random.Random(f"openssl-{name}")
    for trial in range(4):
        xi = rng.randbytes(32)
        msg = rng.randbytes(rng.choice([0, 1, 33, 1000]))
        ctx = rng.randbytes(rng.choice([0, 1, 255]))
        theirs = OPENSSL_KEYS[name].from_seed_bytes(xi)
        rc, pk, sk = kernel.keygen(ps, xi)
        assert rc == lib.PQC_OK
        assert pk == theirs.public_key().public_bytes_raw(), trial

        # Each side verifies the other's signature (OpenSSL signs hedged).
        their_sig = theirs.sign(msg, ctx)
        assert kernel.verify(ps, pk, msg, ctx, their_sig) == lib.PQC_OK
        rc, our_sig = kernel.sign(ps, sk, msg, ctx, rng.randbytes(32))
        assert rc == lib.PQC_OK
        theirs.public_key().verify(our_sig, msg, ctx)

        # A tampered signature fails on both sides.
        bad = _with(our_sig, len(our_sig) // 2, our_sig[len(our_sig) // 2] ^ 1)
        assert kernel.verify(ps, pk, msg, ctx, bad) == lib.PQC_ERR_INVALID_SIGNATURE
        with pytest.raises(InvalidSignature):
            theirs.public_key().verify(bad, msg, ctx)


# --- Constant time under valgrind ----------------------------------------------

# xi, sk and rnd are marked undefined; memcheck then reports any branch or
# memory index that depends on them. The kernels declassify only rho, the
# samplers' accept/reject decisions, the signing loop's outcome and an accepted
# signature's hints; the harness declassifies what is published (pk, sig).
CT_HARNESS = r"""
#include <stdio.h>
#include <string.h>
#include <valgrind/memcheck.h>

#include "mldsa.h"

static uint8_t pk[2592], sk[4896], sig[4627];
static _Alignas(8) uint8_t slot[90000];

static int check(unsigned ps, uint8_t fill)
{
    uint8_t xi[32], rnd[32], mu[64], msg[3] = {1, 2, 3}, ctx[1] = {9};

    memset(xi, fill, sizeof xi);
    memset(rnd, fill ^ 0x5a, sizeof rnd);
    memset(mu, 0x77, sizeof mu);
    VALGRIND_MAKE_MEM_UNDEFINED(xi, sizeof xi);
    VALGRIND_MAKE_MEM_UNDEFINED(rnd, sizeof rnd);
    if (mldsa_keygen(ps, pk, sk, xi) != PQC_OK) {
        return 2;
    }
    VALGRIND_MAKE_MEM_DEFINED(pk, mldsa_pk_bytes(ps));

    VALGRIND_MAKE_MEM_UNDEFINED(sk, mldsa_sk_bytes(ps));
    if (mldsa_sign(ps, sig, sk, msg, sizeof msg, ctx, sizeof ctx, rnd) != 0) {
        return 3;
    }
    VALGRIND_MAKE_MEM_DEFINED(sig, mldsa_sig_bytes(ps));
    if (mldsa_verify(ps, pk, msg, sizeof msg, ctx, sizeof ctx, sig,
                     mldsa_sig_bytes(ps)) != PQC_OK) {
        return 4;
    }

    if (mldsa_expand_sk(ps, slot, sk) != PQC_OK ||
        mldsa_sign_expanded_mu(ps, sig, slot, mu, rnd) != PQC_OK) {
        return 5;
    }
    VALGRIND_MAKE_MEM_DEFINED(sig, mldsa_sig_bytes(ps));
    return mldsa_verify_mu(ps, pk, mu, sig, mldsa_sig_bytes(ps)) == 0 ? 0 : 6;
}

int main(void)
{
    static const unsigned sets[] = {44, 65, 87};
    for (unsigned i = 0; i < 3; i++) {
        if (mldsa_expanded_sk_bytes(sets[i]) > sizeof slot) {
            return 7;
        }
        int rc = check(sets[i], (uint8_t)(0x31 + i));
        if (rc != 0) {
            return rc;
        }
    }
    puts("ok");
    return 0;
}
"""


def _build_harness(tmp_path, *defines: str) -> str:
    """Compile CT_HARNESS with the kernels into an executable; return its path."""
    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("gcc is needed to build the C harness.")
    harness = tmp_path / "harness.c"
    harness.write_text(CT_HARNESS)
    program = tmp_path / "harness"
    flags = [*COMPILE_ARGS, "-g", *(f"-D{d}" for d in defines)]
    includes = [f"-I{d}" for d in INCLUDE_DIRS]
    sources = [str(REF_DIR / s) for s in SOURCES]
    subprocess.run(
        [cc, *flags, *includes, str(harness), *sources, "-o", str(program)],
        check=True,
    )
    return str(program)


@pytest.mark.timeout(180)
def test_no_secret_dependent_branches_under_valgrind(tmp_path) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is needed for the constant-time check.")
    # NDEBUG: the debug-only bound assertions branch on coefficients.
    program = _build_harness(tmp_path, "NDEBUG", "MLDSA_CT_TESTING")
    run = subprocess.run(
        [valgrind, "-q", "--error-exitcode=99", program],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "ok\n"


@pytest.mark.timeout(120)
def test_debug_build_bound_assertions_hold(tmp_path) -> None:
    """cffi builds define NDEBUG; this build keeps the coefficient-bound asserts."""
    run = subprocess.run(
        [_build_harness(tmp_path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "ok\n"
