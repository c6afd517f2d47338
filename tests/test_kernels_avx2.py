"""The AVX2 backend (kernels/x86_64/avx2) and the dispatch table.

Every fast path must give the reference's bytes. The Keccak permutations and
4-way SHAKE are compared with the portable Keccak and with hashlib; whole
operations run through the built extension (which picks AVX2 when the CPU has
it) and are compared lane by lane with an oracle built from kernels/ref alone.
The oracle links without the dispatch table: its weak reference to
``pqc_impl_get`` stays null (Python loads extensions RTLD_LOCAL, so the
extension's definition is not visible to it) and it always runs the reference.

On a CPU with AVX-512 the extension picks the avx512 backend, which reuses
most of this one; tests/test_kernels_avx512.py runs the whole-operation checks
under each backend. Run the whole kernel suite once more with
``PQC_KERNEL_IMPL=ref`` to check the reference path of the extension against
the ACVP vectors as well.
"""

from __future__ import annotations

import hashlib
import os
import platform
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bindings._pqc_kernels import ffi as ext_ffi
from bindings._pqc_kernels import lib as ext_lib

from bindings.runtime import Device, Kernel
from engine.params import KEM_PARAMS, SIG_PARAMS, KemParams
from tests import test_kernels_mldsa, test_kernels_mlkem
from tests.kernel_build import (
    COMPILE_ARGS,
    INCLUDE_DIRS,
    REF_DIR,
    REF_SOURCES,
    build_kernels,
)

ROOT = Path(__file__).resolve().parent.parent
AVX2_DIR = ROOT / "kernels" / "x86_64" / "avx2"
SHAKE128_RATE, SHAKE256_RATE = 168, 136
BATCH_SIZES = (1, 7, 65)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    found = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(found[1].split()) if found else set()


# The features the dispatch probe (kernels/dispatch.c) asks for.
AVX2_FEATURES = {"avx2", "bmi1", "bmi2", "popcnt"}
HAS_AVX2 = (
    platform.machine().lower() in ("x86_64", "amd64") and _cpu_flags() >= AVX2_FEATURES
)
needs_avx2 = pytest.mark.skipif(
    not HAS_AVX2,
    reason="The AVX2 backend needs an x86-64 CPU with AVX2, BMI1, BMI2 and POPCNT.",
)
# The avx512 backend's further needs (kernels/dispatch.c).
AVX512_FEATURES = AVX2_FEATURES | {"avx512f", "avx512vl", "avx512bw"}
HAS_AVX512 = HAS_AVX2 and _cpu_flags() >= AVX512_FEATURES
FORCED = os.environ.get("PQC_KERNEL_IMPL", "")


def expected_impl(forced: str) -> str:
    """The probe's choice under ``PQC_KERNEL_IMPL=forced``: a cap, best first."""
    if HAS_AVX512 and forced not in ("ref", "avx2"):
        return "avx512"
    return "avx2" if HAS_AVX2 and forced != "ref" else "ref"


KECCAK_CDEF = """
typedef struct {
    uint64_t s[100];
    unsigned rate;
    void (*permute)(uint64_t s[100]);
} pqc_keccakx4;
void keccak_f1600(uint64_t s[25]);
void shake128(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen);
void pqc_avx2_keccak_f1600(uint64_t s[25]);
void pqc_avx2_keccak_f1600_x4(uint64_t s[100]);
void pqc_avx2_shake_x4(unsigned rate, uint8_t *const out[4], size_t outlen,
                       const uint8_t *const in[4], size_t inlen);
"""

ORACLE_CDEF = """
int mlkem_keygen(unsigned k, uint8_t *ek, uint8_t *dk, const uint8_t seed[64]);
int mlkem_encaps(unsigned k, uint8_t *ct, uint8_t ss[32], const uint8_t *ek,
                 const uint8_t m[32]);
int mlkem_decaps(unsigned k, uint8_t ss[32], const uint8_t *ct,
                 const uint8_t *dk);
int mlkem_decaps_seed(unsigned k, uint8_t ss[32], const uint8_t *ct,
                      const uint8_t seed[64]);
int mldsa_keygen(unsigned ps, uint8_t *pk, uint8_t *sk, const uint8_t xi[32]);
int mldsa_sign_mu(unsigned ps, uint8_t *sig, const uint8_t *sk,
                  const uint8_t mu[64], const uint8_t rnd[32]);
int mldsa_verify_mu(unsigned ps, const uint8_t *pk, const uint8_t mu[64],
                    const uint8_t *sig, size_t siglen);
"""

ORACLE_SOURCES = REF_SOURCES

KEM = pytest.mark.parametrize("params", list(KEM_PARAMS.values()), ids=list(KEM_PARAMS))
SIG = pytest.mark.parametrize("params", list(SIG_PARAMS.values()), ids=list(SIG_PARAMS))
SIZES = pytest.mark.parametrize("n", BATCH_SIZES, ids=[f"n{n}" for n in BATCH_SIZES])


@pytest.fixture(scope="module")
def keccak():
    sources = ["fips202.c", "../x86_64/avx2/keccak1x.c", "../x86_64/avx2/keccak4x.c"]
    headers = ["fips202.h", "../x86_64/avx2/keccak.h"]
    return build_kernels("_test_avx2_keccak", KECCAK_CDEF, sources, headers)


@pytest.fixture(scope="module")
def oracle():
    """ML-KEM and ML-DSA from kernels/ref alone: always the reference."""
    return build_kernels(
        "_test_avx2_oracle", ORACLE_CDEF, ORACLE_SOURCES, ["mlkem.h", "mldsa.h"]
    )


@pytest.fixture(scope="module")
def device():
    with Device(threads=2) as dev:
        yield dev


def _random_states(rng: random.Random, count: int) -> list[list[int]]:
    return [[rng.getrandbits(64) for _ in range(25)] for _ in range(count)]


def _interleave(ffi, states: list[list[int]]):
    """Four states as a 4-way permutation takes them: lane i of state j at 4i+j."""
    lanes = ffi.new("uint64_t[100]")
    for j, state in enumerate(states):
        for i, lane in enumerate(state):
            lanes[4 * i + j] = lane
    return lanes


def check_one_way(kernels, permute, states: list[list[int]]) -> None:
    """``permute`` (a one-state Keccak-f[1600]) equals the reference."""
    ffi, lib = kernels.ffi, kernels.lib
    for state in states:
        ref, fast = ffi.new("uint64_t[25]", state), ffi.new("uint64_t[25]", state)
        lib.keccak_f1600(ref)
        permute(fast)
        assert list(fast) == list(ref)


def check_four_way(kernels, permute, states: list[list[int]]) -> None:
    """``permute`` (a 4-way Keccak-f[1600]) equals four reference calls."""
    ffi, lib = kernels.ffi, kernels.lib
    lanes = _interleave(ffi, states)
    permute(lanes)
    for j, state in enumerate(states):
        ref = ffi.new("uint64_t[25]", state)
        lib.keccak_f1600(ref)
        assert [lanes[4 * i + j] for i in range(25)] == list(ref)


# -- Keccak


@needs_avx2
@pytest.mark.timeout(60)
def test_scalar_permutation_matches_reference(keccak):
    states = _random_states(random.Random(1), 200)
    check_one_way(keccak, keccak.lib.pqc_avx2_keccak_f1600, states)


@needs_avx2
@pytest.mark.timeout(60)
def test_four_way_permutation_matches_four_reference_calls(keccak):
    rng = random.Random(2)
    for _ in range(100):
        check_four_way(
            keccak, keccak.lib.pqc_avx2_keccak_f1600_x4, _random_states(rng, 4)
        )


def _shake_x4(keccak, rate: int, inputs: list[bytes], outlen: int) -> list[bytes]:
    ffi, lib = keccak.ffi, keccak.lib
    ins = [ffi.new("uint8_t[]", x or b"\0") for x in inputs]
    outs = [ffi.new("uint8_t[]", max(outlen, 1)) for _ in inputs]
    lib.pqc_avx2_shake_x4(
        rate, ffi.new("uint8_t *[4]", outs), outlen, ffi.new("uint8_t *[4]", ins),
        len(inputs[0]),
    )  # fmt: skip
    return [ffi.buffer(o, outlen)[:] for o in outs]


@needs_avx2
@pytest.mark.timeout(60)
@pytest.mark.parametrize("rate", [SHAKE128_RATE, SHAKE256_RATE], ids=["128", "256"])
def test_four_way_shake_matches_hashlib(keccak, rate):
    """Lengths on each side of the block boundaries, where padding can slip."""
    rng = random.Random(rate)
    shake = hashlib.shake_128 if rate == SHAKE128_RATE else hashlib.shake_256
    edges = [m * rate + d for m in (0, 1, 2) for d in (-1, 0, 1) if m * rate + d >= 0]
    for inlen in [*edges, 33, 34, 66]:
        for outlen in [*edges, 128, 640, 840]:
            inputs = [rng.randbytes(inlen) for _ in range(4)]
            got = _shake_x4(keccak, rate, inputs, outlen)
            assert got == [shake(x).digest(outlen) for x in inputs]


# -- Arithmetic and parsers, one entry at a time

POLY_CDEF = """
typedef struct { uint16_t c[256]; } mlkem_poly;
typedef struct { int32_t c[256]; } mldsa_poly;
void mlkem_poly_ntt(mlkem_poly *p);
void mlkem_poly_invntt(mlkem_poly *p);
void mlkem_poly_basemul_acc(mlkem_poly *acc, const mlkem_poly *a,
                            const mlkem_poly *b);
void mldsa_ntt(mldsa_poly *p);
void mldsa_invntt_tomont(mldsa_poly *p);
void mldsa_poly_pointwise_acc(mldsa_poly *acc, const mldsa_poly *a,
                              const mldsa_poly *b);
void mlkem_poly_encode12(uint8_t *out, const mlkem_poly *p);
uint32_t mlkem_poly_decode12(mlkem_poly *p, const uint8_t *in);
int pqc_avx2_mlkem_encode12(uint8_t *out, const void *poly);
int pqc_avx2_mlkem_decode12(void *poly, const uint8_t *in, uint32_t *bad);
int pqc_avx2_mlkem_ntt(void *poly);
int pqc_avx2_mlkem_invntt(void *poly);
int pqc_avx2_mlkem_basemul_acc(void *acc, const void *a, const void *b);
int pqc_avx2_mlkem_cbd(void *poly, const uint8_t *bits, unsigned eta);
int pqc_avx2_mldsa_ntt(void *poly);
int pqc_avx2_mldsa_invntt(void *poly);
int pqc_avx2_mldsa_pointwise(void *out, const void *a, const void *b,
                             int accumulate);
int mldsa_decompose_many(unsigned ps, int32_t *r1, int32_t *r0,
                         const int32_t *r, size_t n);
int pqc_avx2_mldsa_decompose(int32_t gamma2, int32_t *r1, int32_t *r0,
                             const int32_t *r);
unsigned pqc_avx2_rej_kem(uint16_t *buf, unsigned filled,
                          const uint8_t *stream, size_t at, size_t len);
unsigned pqc_avx2_rej_dsa(int32_t *buf, unsigned filled, const uint8_t *stream,
                          size_t at, size_t len);
"""

POLY_SOURCES = [
    "fips202.c",
    "mlkem_ntt.c",
    "mlkem_poly.c",
    "mldsa_params.c",
    "mldsa_poly.c",
    "mldsa_pack.c",
    "../x86_64/avx2/keccak4x.c",
    "../x86_64/avx2/keccak1x.c",
    "../x86_64/avx2/mlkem_ntt.c",
    "../x86_64/avx2/mlkem_sample.c",
    "../x86_64/avx2/mldsa_ntt.c",
    "../x86_64/avx2/rej.c",
]


@pytest.fixture(scope="module")
def poly():
    """The reference arithmetic (no dispatch table linked: always the
    reference) beside the AVX2 entries, called directly."""
    headers = ["mlkem_poly.h", "mldsa.h", "mldsa_internal.h"]
    headers.append("../x86_64/avx2/backend.h")
    headers.append("../x86_64/avx2/rej_avx2.h")
    return build_kernels("_test_avx2_poly", POLY_CDEF, POLY_SOURCES, headers)


def _kem_poly(ffi, values):
    return ffi.new("mlkem_poly *", {"c": list(values)})


@needs_avx2
@pytest.mark.timeout(60)
def test_mlkem_arithmetic_matches_reference(poly):
    ffi, lib = poly.ffi, poly.lib
    rng = random.Random(7)
    cases = [[0] * 256, [3328] * 256, list(range(256))]
    cases += [[rng.randrange(3329) for _ in range(256)] for _ in range(200)]
    for a, b in zip(cases, cases[1:] + cases[:1], strict=True):
        for ref_fn, fast_fn in (
            (lib.mlkem_poly_ntt, lib.pqc_avx2_mlkem_ntt),
            (lib.mlkem_poly_invntt, lib.pqc_avx2_mlkem_invntt),
        ):
            ref, fast = _kem_poly(ffi, a), _kem_poly(ffi, a)
            ref_fn(ref)
            assert fast_fn(fast) == 0
            assert list(fast.c) == list(ref.c)

        ref, fast = _kem_poly(ffi, b), _kem_poly(ffi, b)
        lib.mlkem_poly_basemul_acc(ref, _kem_poly(ffi, a), _kem_poly(ffi, a[::-1]))
        lib.pqc_avx2_mlkem_basemul_acc(fast, _kem_poly(ffi, a), _kem_poly(ffi, a[::-1]))
        assert list(fast.c) == list(ref.c)


@needs_avx2
def test_mlkem_12_bit_coding_matches_reference(poly):
    """Encodings with values of q and more (rejected keys) included."""
    ffi, lib = poly.ffi, poly.lib
    rng = random.Random(11)
    inputs = [b"\0" * 384, b"\xff" * 384, *(rng.randbytes(384) for _ in range(50))]
    for data in inputs:
        ref, fast = ffi.new("mlkem_poly *"), ffi.new("mlkem_poly *")
        bad = ffi.new("uint32_t *")
        assert lib.pqc_avx2_mlkem_decode12(fast, data, bad) == 0
        assert bad[0] == lib.mlkem_poly_decode12(ref, data)
        assert list(fast.c) == list(ref.c)

        want, got = ffi.new("uint8_t[384]"), ffi.new("uint8_t[384]")
        lib.mlkem_poly_encode12(want, ref)
        assert lib.pqc_avx2_mlkem_encode12(got, ref) == 0
        assert bytes(got) == bytes(want)


def _cbd(bits: bytes, eta: int) -> list[int]:
    """SamplePolyCBD_eta (FIPS 203, Algorithm 8) in Python."""
    b = [(bits[i // 8] >> (i % 8)) & 1 for i in range(8 * len(bits))]
    out = []
    for i in range(256):
        x = sum(b[2 * i * eta : 2 * i * eta + eta])
        y = sum(b[2 * i * eta + eta : 2 * i * eta + 2 * eta])
        out.append((x - y) % 3329)
    return out


@needs_avx2
def test_mlkem_cbd_matches_algorithm_8(poly):
    ffi, lib = poly.ffi, poly.lib
    rng = random.Random(8)
    for bits in [b"\0" * 128, b"\xff" * 128, *(rng.randbytes(128) for _ in range(50))]:
        p = ffi.new("mlkem_poly *")
        assert lib.pqc_avx2_mlkem_cbd(p, bits, 2) == 0
        assert list(p.c) == _cbd(bits, 2)
    assert lib.pqc_avx2_mlkem_cbd(ffi.new("mlkem_poly *"), b"\0" * 192, 3) != 0


@needs_avx2
@pytest.mark.timeout(60)
def test_mldsa_arithmetic_matches_reference_integer_for_integer(poly):
    ffi, lib = poly.ffi, poly.lib
    rng = random.Random(9)
    q = 8380417
    for _ in range(200):
        big = [rng.randrange(-(2**30) + 1, 2**30) for _ in range(256)]
        small = [rng.randrange(-q + 1, q) for _ in range(256)]
        for ref_fn, fast_fn, values in (
            (lib.mldsa_ntt, lib.pqc_avx2_mldsa_ntt, big),
            (lib.mldsa_invntt_tomont, lib.pqc_avx2_mldsa_invntt, small),
        ):
            ref = ffi.new("mldsa_poly *", {"c": values})
            fast = ffi.new("mldsa_poly *", {"c": values})
            ref_fn(ref)
            assert fast_fn(fast) == 0
            assert list(fast.c) == list(ref.c)

        a = ffi.new("mldsa_poly *", {"c": small})
        b = ffi.new("mldsa_poly *", {"c": big})
        ref = ffi.new("mldsa_poly *", {"c": small[::-1]})
        fast = ffi.new("mldsa_poly *", {"c": small[::-1]})
        lib.mldsa_poly_pointwise_acc(ref, a, b)
        assert lib.pqc_avx2_mldsa_pointwise(fast, a, b, 1) == 0
        assert list(fast.c) == list(ref.c)


@needs_avx2
@SIG
def test_mldsa_decompose_matches_reference(poly, params):
    """Values around every multiple of 2 gamma2 and the wrap at q - 1 - gamma2,
    then random ones."""
    ffi, lib = poly.ffi, poly.lib
    q, gamma2 = 8380417, (8380417 - 1) // params.gamma2_divisor
    rng = random.Random(params.gamma2_divisor)
    edges = {0, q - 1, q - 1 - gamma2, q - gamma2}
    edges |= {
        m * 2 * gamma2 + d
        for m in range(params.gamma2_divisor // 2 + 1)
        for d in (-1, 0, 1)
    }
    values = sorted(v for v in edges if 0 <= v < q)
    values += [rng.randrange(q) for _ in range(-len(values) % 256 + 2048)]
    for at in range(0, len(values), 256):
        r = ffi.new("int32_t[256]", values[at : at + 256])
        want1, want0 = ffi.new("int32_t[256]"), ffi.new("int32_t[256]")
        got1, got0 = ffi.new("int32_t[256]"), ffi.new("int32_t[256]")
        assert lib.mldsa_decompose_many(params.number, want1, want0, r, 256) == 0
        assert lib.pqc_avx2_mldsa_decompose(gamma2, got1, got0, r) == 0
        assert (list(got1), list(got0)) == (list(want1), list(want0))


def _rej_kem(stream: bytes) -> list[int]:
    """SampleNTT's parse (FIPS 203, Algorithm 7, steps 5-14)."""
    out = []
    for i in range(0, len(stream), 3):
        d1 = stream[i] | (stream[i + 1] & 15) << 8
        d2 = stream[i + 1] >> 4 | stream[i + 2] << 4
        out += [d for d in (d1, d2) if d < 3329]
    return out


def _rej_dsa(stream: bytes) -> list[int]:
    """RejNTTPoly's parse (FIPS 204, Algorithms 14 and 30)."""
    values = (
        int.from_bytes(stream[i : i + 3], "little") & 0x7FFFFF
        for i in range(0, len(stream), 3)
    )
    return [v for v in values if v < 8380417]


@needs_avx2
@pytest.mark.parametrize("scheme", ["kem", "dsa"])
def test_rejection_parsers_keep_what_the_scalar_rule_keeps(poly, scheme):
    """Streams where candidates are rejected at every rate, up to all of them;
    started mid-stream and with 256 reached part-way through a step."""
    ffi, lib = poly.ffi, poly.lib
    rng = random.Random(10)
    parse, rule = (
        (lib.pqc_avx2_rej_kem, _rej_kem)
        if scheme == "kem"
        else (lib.pqc_avx2_rej_dsa, _rej_dsa)
    )
    ctype = "uint16_t[]" if scheme == "kem" else "int32_t[]"
    for reject_bias in (0.0, 0.3, 0.9, 1.0):
        for _ in range(20):
            length = 24 * rng.randrange(1, 40)
            stream = bytes(
                0xFF if rng.random() < reject_bias else rng.randrange(256)
                for _ in range(length)
            )
            start = 24 * rng.randrange(0, length // 24)
            already = rng.randrange(0, 200)
            buf = ffi.new(ctype, 256 + 16)
            padded = ffi.new("uint8_t[]", stream + bytes(8))
            got = parse(buf, already, padded, start, length)
            kept = rule(stream[start:])
            want = min(already + len(kept), 256) if already < 256 else already
            assert min(got, 256) == want
            assert list(buf[already:want]) == kept[: want - already]


# -- Dispatch


def test_extension_reports_the_chosen_implementation():
    name = ext_ffi.string(ext_lib.pqc_impl_name()).decode()
    expected = expected_impl(FORCED)
    assert name == expected
    with Device(threads=1) as dev:
        assert dev.info().implementation == expected


@pytest.mark.timeout(60)
def test_environment_forces_the_reference():
    code = (
        "from bindings._pqc_kernels import ffi, lib;"
        "print(ffi.string(lib.pqc_impl_name()).decode())"
    )
    env = {**os.environ, "PQC_KERNEL_IMPL": "ref"}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert run.stdout.strip() == "ref"


# -- Whole operations against the reference


def _rand(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return rng.integers(0, 256, (n, size), dtype=np.uint8)


def _call(ffi, fn, *args) -> None:
    status = fn(*[ffi.from_buffer(a) if isinstance(a, bytes) else a for a in args])
    assert status == 0


def _oracle_kem_keygen(oracle, p: KemParams, seed: bytes) -> tuple[bytes, bytes]:
    ffi, lib = oracle.ffi, oracle.lib
    ek, dk = ffi.new("uint8_t[]", p.ek_bytes), ffi.new("uint8_t[]", p.dk_bytes)
    _call(ffi, lib.mlkem_keygen, p.k, ek, dk, seed)
    return ffi.buffer(ek)[:], ffi.buffer(dk)[:]


@needs_avx2
@pytest.mark.timeout(120)
@KEM
@SIZES
def test_kem_matches_reference(device, oracle, params, n):
    ffi, lib = oracle.ffi, oracle.lib
    rng = np.random.default_rng(params.k * 1000 + n)
    seeds, m = _rand(rng, n, 64), _rand(rng, n, 32)

    got, status = device.run(Kernel.MLKEM_KEYGEN, params.name, n, {"seed": seeds})
    assert not status.any()
    keys = [_oracle_kem_keygen(oracle, params, s.tobytes()) for s in seeds]
    assert [
        (e.tobytes(), d.tobytes()) for e, d in zip(got["ek"], got["dk"], strict=True)
    ] == keys

    enc, status = device.run(
        Kernel.MLKEM_ENCAPS, params.name, n, {"ek": got["ek"], "m": m}
    )
    assert not status.any()
    for i, (ek, _dk) in enumerate(keys):
        ct, ss = ffi.new("uint8_t[]", params.ct_bytes), ffi.new("uint8_t[32]")
        _call(ffi, lib.mlkem_encaps, params.k, ct, ss, ek, m[i].tobytes())
        assert enc["ct"][i].tobytes() == ffi.buffer(ct)[:]
        assert enc["ss"][i].tobytes() == ffi.buffer(ss)[:]

    # Every other ciphertext corrupted: implicit rejection must agree too.
    cts = enc["ct"].copy()
    cts[::2, 0] ^= 1
    dec, status = device.run(
        Kernel.MLKEM_DECAPS, params.name, n, {"ct": cts, "dk": got["dk"]}
    )
    assert not status.any()
    for i, (_ek, dk) in enumerate(keys):
        ss = ffi.new("uint8_t[32]")
        _call(ffi, lib.mlkem_decaps, params.k, ss, cts[i].tobytes(), dk)
        assert dec["ss"][i].tobytes() == ffi.buffer(ss)[:]


@needs_avx2
@pytest.mark.timeout(300)
@SIG
@SIZES
def test_sig_matches_reference(device, oracle, params, n):
    ffi, lib = oracle.ffi, oracle.lib
    ps = params.number
    rng = np.random.default_rng(ps * 1000 + n)
    xi, mu, rnd = _rand(rng, n, 32), _rand(rng, n, 64), _rand(rng, n, 32)

    got, status = device.run(Kernel.MLDSA_KEYGEN, params.name, n, {"xi": xi})
    assert not status.any()
    pk0 = ffi.new("uint8_t[]", params.pk_bytes)
    sk0 = ffi.new("uint8_t[]", params.sk_bytes)
    for i in range(n):
        _call(ffi, lib.mldsa_keygen, ps, pk0, sk0, xi[i].tobytes())
        assert got["pk"][i].tobytes() == ffi.buffer(pk0)[:]
        assert got["sk"][i].tobytes() == ffi.buffer(sk0)[:]

    # One expanded key signs every lane (its ExpandA runs in the slot).
    sk, pk = got["sk"][0].tobytes(), got["pk"][0].tobytes()
    slot = device.load_key_sk(params.name, sk)
    try:
        signed, status = device.run(
            Kernel.MLDSA_SIGN_MU, params.name, n,
            {"slot": [slot] * n, "mu": mu, "rnd": rnd},
        )  # fmt: skip
    finally:
        device.free_key(slot)
    assert not status.any()
    sig = ffi.new("uint8_t[]", params.sig_bytes)
    for i in range(n):
        _call(ffi, lib.mldsa_sign_mu, ps, sig, sk, mu[i].tobytes(), rnd[i].tobytes())
        assert signed["sig"][i].tobytes() == ffi.buffer(sig)[:]

    # Every other signature corrupted: the verdicts must agree.
    sigs = signed["sig"].copy()
    sigs[::2, 5] ^= 1
    pks = np.frombuffer(pk * n, dtype=np.uint8)
    _, status = device.run(
        Kernel.MLDSA_VERIFY_MU, params.name, n, {"pk": pks, "mu": mu, "sig": sigs}
    )
    for i in range(n):
        ok = lib.mldsa_verify_mu(
            ps, pk, mu[i].tobytes(), sigs[i].tobytes(), params.sig_bytes
        )
        assert (status[i] == 0) == (ok == 0)
    assert (status[1::2] == 0).all()


# -- Constant time under valgrind, with the AVX2 paths in


def build_ct_harness(
    tmp_path: Path, source: str, define: str, backends: tuple[str, ...] = ("avx2",)
) -> str:
    """The reference kernels' valgrind harness, linked with the dispatch table
    and the named x86-64 backends, so that the probe picks the best of them
    that valgrind's CPU offers (it emulates AVX2, BMI1 and BMI2) and memcheck
    watches the fast paths."""
    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("gcc is needed to build the C harness.")
    harness, program = tmp_path / "harness.c", tmp_path / "harness"
    harness.write_text(source)
    kernels = ROOT / "kernels"
    sources = [*sorted(REF_DIR.glob("*.c")), kernels / "dispatch.c"]
    for backend in backends:
        sources += sorted((kernels / "x86_64" / backend).glob("*.c"))
    flags = [*COMPILE_ARGS, "-g", "-pthread", "-DNDEBUG", f"-D{define}"]
    flags += [f"-DPQC_BACKEND_{b.upper()}" for b in backends]
    includes = [f"-I{d}" for d in (*INCLUDE_DIRS, kernels)]
    subprocess.run(
        [cc, *flags, *includes, str(harness), *map(str, sources), "-o", str(program)],
        check=True,
    )
    return str(program)


@needs_avx2
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("source", "define"),
    [
        (test_kernels_mlkem.CT_HARNESS, "MLKEM_CT_TESTING"),
        (test_kernels_mldsa.CT_HARNESS, "MLDSA_CT_TESTING"),
    ],
    ids=["ML-KEM", "ML-DSA"],
)
def test_no_secret_dependent_branches_under_valgrind(tmp_path, source, define):
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is needed for the constant-time check.")
    program = build_ct_harness(tmp_path, source, define)
    env = {k: v for k, v in os.environ.items() if k != "PQC_KERNEL_IMPL"}
    run = subprocess.run(
        [valgrind, "-q", "--error-exitcode=99", program],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "ok\n"
