"""The portable Keccak kernel (kernels/ref/fips202.c) against hashlib.

Lengths cluster around the block sizes (rates) of each function, where the
sponge's padding and block-switching logic can go wrong, and the incremental
interface is driven with uneven absorb and squeeze splits.
"""

from __future__ import annotations

import hashlib
import random
import re

import pytest

from tests.kernel_build import REF_DIR, build_kernels

CDEF = """
typedef struct {
    uint64_t s[25];
    unsigned pos;
    unsigned rate;
    uint8_t dsbyte;
    uint8_t squeezing;
} keccak_state;
void keccak_f1600(uint64_t s[25]);
void shake128_init(keccak_state *st);
void shake256_init(keccak_state *st);
void keccak_absorb(keccak_state *st, const uint8_t *in, size_t len);
void keccak_finalize(keccak_state *st);
void keccak_squeeze(keccak_state *st, uint8_t *out, size_t len);
void sha3_256(uint8_t out[32], const uint8_t *in, size_t len);
void sha3_512(uint8_t out[64], const uint8_t *in, size_t len);
void shake128(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen);
void shake256(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen);
"""

RATES = {"sha3_256": 136, "sha3_512": 72, "shake128": 168, "shake256": 136}
HASHLIB = {
    "sha3_256": hashlib.sha3_256,
    "sha3_512": hashlib.sha3_512,
    "shake128": hashlib.shake_128,
    "shake256": hashlib.shake_256,
}


def _edge_lengths(rate: int) -> list[int]:
    """Short lengths, then each side of the first three block boundaries."""
    around = [m * rate + d for m in (1, 2, 3) for d in (-2, -1, 0, 1, 2)]
    return sorted({*range(0, 20), *around, 1000, 4099})


@pytest.fixture(scope="module")
def keccak():
    return build_kernels("_test_fips202", CDEF, ["fips202.c"])


def _c_hash(keccak, name: str, data: bytes, outlen: int) -> bytes:
    ffi, lib = keccak.ffi, keccak.lib
    out = ffi.new("uint8_t[]", max(outlen, 1))
    if name.startswith("sha3"):
        getattr(lib, name)(out, data, len(data))
    else:
        getattr(lib, name)(out, outlen, data, len(data))
    return ffi.buffer(out, outlen)[:]


@pytest.mark.parametrize("name", ["sha3_256", "sha3_512"])
def test_sha3_matches_hashlib(keccak, name):
    rng = random.Random(name)
    digest_len = HASHLIB[name]().digest_size
    for length in _edge_lengths(RATES[name]):
        data = rng.randbytes(length)
        expected = HASHLIB[name](data).digest()
        assert _c_hash(keccak, name, data, digest_len) == expected, length


@pytest.mark.parametrize("name", ["shake128", "shake256"])
def test_shake_matches_hashlib(keccak, name):
    rng = random.Random(name)
    rate = RATES[name]
    for inlen in _edge_lengths(rate):
        data = rng.randbytes(inlen)
        for outlen in (0, 1, 32, rate - 1, rate, rate + 1, 3 * rate + 5):
            expected = HASHLIB[name](data).digest(outlen)
            got = _c_hash(keccak, name, data, outlen)
            assert got == expected, (inlen, outlen)


def _random_splits(rng: random.Random, total: int, rate: int) -> list[int]:
    """Chunk sizes summing to ``total``: empty, tiny, block-sized, odd."""
    sizes = []
    while total > 0:
        size = min(total, rng.choice([0, 1, 3, rate - 1, rate, rate + 7, 500]))
        sizes.append(size)
        total -= size
    return sizes


@pytest.mark.parametrize("name", ["shake128", "shake256"])
def test_incremental_absorb_and_squeeze(keccak, name):
    ffi, lib = keccak.ffi, keccak.lib
    rng = random.Random(f"incremental-{name}")
    rate = RATES[name]

    for trial in range(40):
        data = rng.randbytes(rng.randrange(0, 4 * rate))
        outlen = rng.randrange(1, 5 * rate)
        st = ffi.new("keccak_state *")
        getattr(lib, f"{name}_init")(st)

        offset = 0
        for size in _random_splits(rng, len(data), rate):
            lib.keccak_absorb(st, data[offset : offset + size], size)
            offset += size
        lib.keccak_finalize(st)

        out = bytearray()
        for size in _random_splits(rng, outlen, rate):
            buf = ffi.new("uint8_t[]", max(size, 1))
            lib.keccak_squeeze(st, buf, size)
            out += ffi.buffer(buf, size)
        expected = HASHLIB[name](data).digest(outlen)
        assert bytes(out) == expected, trial


def test_permutation_of_zero_state_is_shake_of_nothing(keccak):
    """SHAKE256("") is the first 136 bytes of f applied to the padded block."""
    ffi, lib = keccak.ffi, keccak.lib
    state = ffi.new("uint64_t[25]")
    state[0] = 0x1F
    state[16] = 0x80 << 56
    lib.keccak_f1600(state)
    lanes = b"".join(int(state[i]).to_bytes(8, "little") for i in range(17))
    assert lanes == hashlib.shake_256(b"").digest(136)


def _c_table(name: str) -> list[int]:
    source = (REF_DIR / "keccak_constants.h").read_text()
    body = re.search(rf"{name}\[[^\]]*\] = \{{(.*?)\}};", source, re.S)
    assert body is not None, name
    return [int(v.rstrip("ULul"), 0) for v in re.findall(r"0x\w+|\d+", body[1])]


def _lfsr_rc(t: int) -> int:
    """rc(t) of FIPS 202, Algorithm 5."""
    reg = [1, 0, 0, 0, 0, 0, 0, 0]
    for _ in range(t % 255):
        reg = [0, *reg]
        for tap in (0, 4, 5, 6):
            reg[tap] ^= reg[8]
        reg = reg[:8]
    return reg[0]


def test_round_constants_follow_algorithm_6():
    expected = []
    for round_index in range(24):
        value = 0
        for j in range(7):
            value |= _lfsr_rc(j + 7 * round_index) << ((1 << j) - 1)
        expected.append(value)
    assert _c_table("keccak_round_constants") == expected


def test_rho_offsets_follow_algorithm_2():
    expected = [0] * 25
    x, y = 1, 0
    for t in range(24):
        expected[x + 5 * y] = (t + 1) * (t + 2) // 2 % 64
        x, y = y, (2 * x + 3 * y) % 5
    assert _c_table("keccak_rho_offsets") == expected
