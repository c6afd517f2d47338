"""The AVX-512 backend (kernels/x86_64/avx512) and its place in the dispatch table.

Each entry the backend adds is called directly, from a build without the
dispatch table, and compared with the reference on random and edge inputs. The
4-way sponges run the table's permutation, so a build with the table linked
checks them against hashlib with the avx512 table chosen. Whole operations and
the ACVP vectors run through the extension once under each x86-64 backend, in
a child process because the probe chooses once per process. Tests that need
AVX-512 skip, saying so, on a CPU without it.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import test_kernels_mldsa, test_kernels_mlkem
from tests.kernel_build import REF_SOURCES, build_kernels
from tests.test_kernels_avx2 import (
    FORCED,
    HAS_AVX2,
    HAS_AVX512,
    KECCAK_CDEF,
    SHAKE128_RATE,
    SHAKE256_RATE,
    _interleave,
    _random_states,
    _shake_x4,
    build_ct_harness,
    check_four_way,
    check_one_way,
    expected_impl,
)

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "kernels"
needs_avx512 = pytest.mark.skipif(
    not HAS_AVX512,
    reason="The avx512 backend needs an x86-64 CPU with AVX-512F, VL and BW "
    "besides AVX2, BMI1, BMI2 and POPCNT.",
)

AVX512_CDEF = """
void pqc_avx512_keccak_f1600(uint64_t s[25]);
void pqc_avx512_keccak_f1600_x4(uint64_t s[100]);
"""


@pytest.fixture(scope="module")
def keccak():
    """The portable Keccak beside both 4-way permutations, no table linked."""
    sources = [
        "fips202.c",
        "../x86_64/avx2/keccak1x.c",
        "../x86_64/avx2/keccak4x.c",
        "../x86_64/avx512/keccak4x.c",
    ]
    headers = ["fips202.h", "../x86_64/avx2/keccak.h", "../x86_64/avx512/backend.h"]
    cdef = KECCAK_CDEF + AVX512_CDEF
    return build_kernels("_test_avx512_keccak", cdef, sources, headers)


@needs_avx512
@pytest.mark.timeout(60)
def test_one_state_permutation_matches_reference(keccak):
    states = [[0] * 25, [2**64 - 1] * 25, *_random_states(random.Random(3), 200)]
    check_one_way(keccak, keccak.lib.pqc_avx512_keccak_f1600, states)


@needs_avx512
@pytest.mark.timeout(60)
def test_four_way_permutation_matches_four_reference_calls(keccak):
    """Random states, and the all-zero and all-one states beside them."""
    rng = random.Random(512)
    cases = [[[0] * 25, [2**64 - 1] * 25, *_random_states(rng, 2)]]
    cases += [_random_states(rng, 4) for _ in range(100)]
    for states in cases:
        check_four_way(keccak, keccak.lib.pqc_avx512_keccak_f1600_x4, states)


@needs_avx512
def test_four_way_permutation_agrees_with_the_avx2_one(keccak):
    """24 rounds chained a few hundred times: a wrong lane anywhere spreads."""
    ffi, lib = keccak.ffi, keccak.lib
    states = _random_states(random.Random(5), 4)
    fast, other = _interleave(ffi, states), _interleave(ffi, states)
    for _ in range(300):
        lib.pqc_avx512_keccak_f1600_x4(fast)
        lib.pqc_avx2_keccak_f1600_x4(other)
    assert list(fast) == list(other)


# -- ML-DSA's NTTs and pointwise products

POLY_CDEF = """
typedef struct { int32_t c[256]; } mldsa_poly;
void mldsa_ntt(mldsa_poly *p);
void mldsa_invntt_tomont(mldsa_poly *p);
void mldsa_poly_pointwise(mldsa_poly *out, const mldsa_poly *a,
                          const mldsa_poly *b);
void mldsa_poly_pointwise_acc(mldsa_poly *acc, const mldsa_poly *a,
                              const mldsa_poly *b);
int pqc_avx512_mldsa_ntt(void *poly);
int pqc_avx512_mldsa_invntt(void *poly);
int pqc_avx512_mldsa_pointwise(void *out, const void *a, const void *b,
                               int accumulate);
"""

Q = 8380417


@pytest.fixture(scope="module")
def poly():
    """The reference arithmetic (no table linked: always the reference) beside
    the AVX-512 entries, called directly."""
    sources = ["mldsa_params.c", "mldsa_poly.c", "../x86_64/avx512/mldsa_ntt.c"]
    headers = ["mldsa_internal.h", "../x86_64/avx512/backend.h"]
    return build_kernels("_test_avx512_poly", POLY_CDEF, sources, headers)


def _ntt_inputs(rng: random.Random) -> list[tuple[list[int], list[int]]]:
    """(NTT input, NTT^-1 input) pairs at the reference's bounds: below 2^30
    in magnitude forward, below q inverse; the extremes first."""
    edges = [
        ([2**30 - 1] * 256, [Q - 1] * 256),
        ([-(2**30) + 1] * 256, [-Q + 1] * 256),
        ([0] * 256, [0] * 256),
        ([(-1) ** i * (2**30 - 1) for i in range(256)], list(range(256))),
    ]
    return edges + [
        (
            [rng.randrange(-(2**30) + 1, 2**30) for _ in range(256)],
            [rng.randrange(-Q + 1, Q) for _ in range(256)],
        )
        for _ in range(300)
    ]


@needs_avx512
@pytest.mark.timeout(60)
def test_mldsa_ntts_match_reference_integer_for_integer(poly):
    ffi, lib = poly.ffi, poly.lib
    for big, small in _ntt_inputs(random.Random(41)):
        for ref_fn, fast_fn, values in (
            (lib.mldsa_ntt, lib.pqc_avx512_mldsa_ntt, big),
            (lib.mldsa_invntt_tomont, lib.pqc_avx512_mldsa_invntt, small),
        ):
            ref = ffi.new("mldsa_poly *", {"c": values})
            fast = ffi.new("mldsa_poly *", {"c": values})
            ref_fn(ref)
            assert fast_fn(fast) == 0
            assert list(fast.c) == list(ref.c)


def _dsa_poly(ffi, values: list[int]):
    return ffi.new("mldsa_poly *", {"c": values})


@needs_avx512
@pytest.mark.timeout(60)
@pytest.mark.parametrize("accumulate", [0, 1], ids=["set", "acc"])
def test_mldsa_pointwise_matches_reference(poly, accumulate):
    """Values up to 2^31 - 1 times values below q (the reference's bounds),
    into a third polynomial, then into b itself (out may alias an input)."""
    ffi, lib = poly.ffi, poly.lib
    rng = random.Random(42 + accumulate)
    ref_fn = lib.mldsa_poly_pointwise_acc if accumulate else lib.mldsa_poly_pointwise
    for _ in range(200):
        big = [rng.randrange(-(2**31) + 1, 2**31) for _ in range(256)]
        small = [rng.randrange(-Q + 1, Q) for _ in range(256)]
        acc = [rng.randrange(-Q + 1, Q) for _ in range(256)]
        a, b = _dsa_poly(ffi, big), _dsa_poly(ffi, small)
        want, got = _dsa_poly(ffi, acc), _dsa_poly(ffi, acc)
        ref_fn(want, a, b)
        assert lib.pqc_avx512_mldsa_pointwise(got, a, b, accumulate) == 0
        assert list(got.c) == list(want.c)

        want = _dsa_poly(ffi, small)
        ref_fn(want, a, _dsa_poly(ffi, small))
        assert lib.pqc_avx512_mldsa_pointwise(b, a, b, accumulate) == 0
        assert list(b.c) == list(want.c)


# -- The table: the AVX2 sponges over the AVX-512 permutation

TABLE_CDEF = """
typedef struct pqc_impl {
    const char *name;
    void (*keccak_f1600_x4)(uint64_t s[100]);
    ...;
} pqc_impl;
const pqc_impl *pqc_impl_get(void);
void keccak_f1600(uint64_t s[25]);
void pqc_avx2_shake_x4(unsigned rate, uint8_t *const out[4], size_t outlen,
                       const uint8_t *const in[4], size_t inlen);
"""


@pytest.fixture(scope="module")
def table():
    """The reference, the dispatch table and both x86-64 backends, as the
    extension links them; the probe follows this process's PQC_KERNEL_IMPL.
    (cffi's addresses of C functions are of its wrappers, so the table's
    entries are checked by calling them, not by comparing pointers.)"""
    native = [
        f"../x86_64/{backend}/{c.name}"
        for backend in ("avx2", "avx512")
        for c in sorted((KERNELS / "x86_64" / backend).glob("*.c"))
    ]
    return build_kernels(
        "_test_avx512_table",
        TABLE_CDEF,
        [*REF_SOURCES, "../dispatch.c", *native],
        ["fips202.h", "../dispatch.h", "../x86_64/avx2/keccak.h"],
        defines=("PQC_BACKEND_AVX2", "PQC_BACKEND_AVX512"),
    )


def test_table_names_the_probes_choice_and_its_permutation(table):
    """The chosen table's 4-way permutation, called through the table, is
    Keccak-f[1600]; the reference's table has none."""
    ffi = table.ffi
    impl = table.lib.pqc_impl_get()
    assert ffi.string(impl.name).decode() == expected_impl(FORCED)
    if expected_impl(FORCED) == "ref":
        assert impl.keccak_f1600_x4 == ffi.NULL
        return
    check_four_way(table, impl.keccak_f1600_x4, _random_states(random.Random(6), 4))


@needs_avx512
@pytest.mark.timeout(60)
@pytest.mark.parametrize("rate", [SHAKE128_RATE, SHAKE256_RATE], ids=["128", "256"])
def test_four_way_shake_over_the_table_matches_hashlib(table, rate):
    """Lengths on each side of the block boundaries, with the avx512 table
    chosen, so that every permutation of the sponge is the AVX-512 one."""
    if expected_impl(FORCED) != "avx512":
        pytest.skip(f"PQC_KERNEL_IMPL={FORCED} keeps the probe below avx512.")
    rng = random.Random(rate + 512)
    shake = hashlib.shake_128 if rate == SHAKE128_RATE else hashlib.shake_256
    edges = [m * rate + d for m in (0, 1, 2) for d in (-1, 0, 1) if m * rate + d >= 0]
    for inlen in [*edges, 34, 66]:
        for outlen in [*edges, 640, 840]:
            inputs = [rng.randbytes(inlen) for _ in range(4)]
            got = _shake_x4(table, rate, inputs, outlen)
            assert got == [shake(x).digest(outlen) for x in inputs]


# -- Dispatch


@pytest.mark.timeout(60)
@pytest.mark.parametrize("forced", ["ref", "avx2", "avx512", "auto", "other", ""])
def test_environment_caps_the_choice(forced):
    """PQC_KERNEL_IMPL=avx2 forces AVX2 on an AVX-512 CPU; a name the CPU
    cannot run falls to the best one below it."""
    code = (
        "from bindings._pqc_kernels import ffi, lib;"
        "print(ffi.string(lib.pqc_impl_name()).decode())"
    )
    env = {**os.environ, "PQC_KERNEL_IMPL": forced}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert run.stdout.strip() == expected_impl(forced)


# -- Whole operations and vectors under each backend

WHOLE_OPERATION_TESTS = (
    "tests/test_kernels_avx2.py::test_extension_reports_the_chosen_implementation",
    "tests/test_kernels_avx2.py::test_kem_matches_reference",
    "tests/test_kernels_avx2.py::test_sig_matches_reference",
    "tests/test_runtime.py::test_kem_batches_match_acvp",
    "tests/test_runtime.py::test_sig_batches_match_acvp",
)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("impl", ["avx2", "avx512"])
def test_whole_kernels_under_each_backend(impl):
    """The differential tests (every lane against a reference-only build) and
    the ACVP batches, in a child process whose probe is forced to ``impl``;
    the first test there checks that the probe obeyed."""
    if impl == "avx512" and not HAS_AVX512:
        pytest.skip("This CPU lacks AVX-512F, VL or BW.")
    if not HAS_AVX2:
        pytest.skip("This CPU lacks AVX2, BMI1, BMI2 or POPCNT.")
    env = {**os.environ, "PQC_KERNEL_IMPL": impl}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         *WHOLE_OPERATION_TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:]
    assert "skipped" not in run.stdout.splitlines()[-1]


# -- Constant time under valgrind


PROBE_SOURCE = """
#include <stdio.h>
#include "dispatch.h"
int main(void) { puts(pqc_impl_name()); return 0; }
"""


def _valgrind_sees_avx512(tmp_path: Path, valgrind: str) -> bool:
    """Whether the probe, run under valgrind, finds AVX-512: valgrind answers
    CPUID for the CPU it emulates, not for the host."""
    workdir = tmp_path / "probe"
    workdir.mkdir()
    program = build_ct_harness(
        workdir, PROBE_SOURCE, "PQC_IMPL_PROBE", ("avx2", "avx512")
    )
    env = {k: v for k, v in os.environ.items() if k != "PQC_KERNEL_IMPL"}
    run = subprocess.run(
        [valgrind, "-q", program], capture_output=True, text=True, env=env,
        check=True,
    )  # fmt: skip
    return run.stdout.strip() == "avx512"


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
    """The reference's harnesses (secrets marked undefined) linked with both
    backends, as the extension is, run under memcheck. valgrind (3.19 here)
    emulates no AVX-512 and hides it from CPUID, so there the probe falls back
    to avx2: the run shows that the avx512 build works and stays constant
    time on a CPU without AVX-512, and the test then skips, saying that the
    AVX-512 code itself went unwatched."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is needed for the constant-time check.")
    program = build_ct_harness(tmp_path, source, define, ("avx2", "avx512"))
    env = {k: v for k, v in os.environ.items() if k != "PQC_KERNEL_IMPL"}
    run = subprocess.run(
        [valgrind, "-q", "--error-exitcode=99", program],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == "ok\n"
    if not _valgrind_sees_avx512(tmp_path, valgrind):
        pytest.skip(
            "The avx512 build passed on its AVX2 fallback, but this valgrind "
            "does not emulate AVX-512, so memcheck did not watch the avx512 "
            "paths; their constant-time claim rests on review "
            "(docs/limitations.md)."
        )
