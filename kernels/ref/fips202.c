/*
 * Keccak-f[1600] and the SHA3/SHAKE sponges (FIPS 202), portable C11.
 *
 * The permutation follows the five step mappings of FIPS 202 section 3.2
 * directly (theta, rho, pi, chi, iota), with rho and pi fused into one pass.
 * The sponge keeps a byte position inside the current block so that absorb
 * and squeeze may be split across any number of calls.
 */
#include "fips202.h"

#include <string.h>

#include "../dispatch.h"
#include "keccak_constants.h"

/* Domain separation byte with the first bit of pad10*1 already appended:
 * SHA3 appends 01 and SHAKE appends 1111 (FIPS 202, section 6 and B.2). */
#define KECCAK_DS_SHA3 0x06
#define KECCAK_DS_SHAKE 0x1F

static uint64_t rotl64(uint64_t v, unsigned n)
{
    return (v << n) | (v >> ((64 - n) & 63));
}

/* FIPS 202, Algorithm 1: each lane absorbs the parity of two columns. */
static void keccak_theta(uint64_t s[25])
{
    uint64_t parity[5];

    for (unsigned x = 0; x < 5; x++) {
        parity[x] = s[x] ^ s[x + 5] ^ s[x + 10] ^ s[x + 15] ^ s[x + 20];
    }

    for (unsigned x = 0; x < 5; x++) {
        uint64_t d = parity[(x + 4) % 5] ^ rotl64(parity[(x + 1) % 5], 1);
        for (unsigned y = 0; y < 5; y++) {
            s[x + 5 * y] ^= d;
        }
    }
}

/* FIPS 202, Algorithms 2 and 3: pi moves lane (x, y) to (y, 2x + 3y), and
 * each lane is rotated by its rho offset on the way. */
static void keccak_rho_pi(uint64_t s[25])
{
    uint64_t moved[25];

    for (unsigned y = 0; y < 5; y++) {
        for (unsigned x = 0; x < 5; x++) {
            unsigned from = x + 5 * y;
            unsigned to = y + 5 * ((2 * x + 3 * y) % 5);
            moved[to] = rotl64(s[from], keccak_rho_offsets[from]);
        }
    }
    memcpy(s, moved, sizeof(moved));
}

/* FIPS 202, Algorithm 4: the only non-linear step, row by row. */
static void keccak_chi(uint64_t s[25])
{
    for (unsigned y = 0; y < 25; y += 5) {
        uint64_t row[5];

        memcpy(row, &s[y], sizeof(row));
        for (unsigned x = 0; x < 5; x++) {
            s[y + x] = row[x] ^ (~row[(x + 1) % 5] & row[(x + 2) % 5]);
        }
    }
}

void keccak_f1600(uint64_t s[25])
{
    for (unsigned round = 0; round < KECCAK_ROUNDS; round++) {
        keccak_theta(s);
        keccak_rho_pi(s);
        keccak_chi(s);
        s[0] ^= keccak_round_constants[round];
    }
}

/* The sponges permute through the dispatch table (kernels/dispatch.h), so
 * a faster backend serves every SHA3 and SHAKE call; keccak_f1600 above
 * stays the reference. */
static void keccak_permute(uint64_t s[25])
{
    const pqc_impl *impl = pqc_impl_active();

    if (impl != NULL && impl->keccak_f1600 != NULL) {
        impl->keccak_f1600(s);
        return;
    }
    keccak_f1600(s);
}

/* Lanes hold bytes little-endian: byte i of the block is bits 8i..8i+7 of
 * the state string (FIPS 202, section 3.1.2 and B.1). */
static void keccak_xor_bytes(uint64_t s[25], unsigned off, const uint8_t *in,
                             size_t len)
{
    for (size_t i = 0; i < len; i++, off++) {
        s[off / 8] ^= (uint64_t)in[i] << (8 * (off % 8));
    }
}

static void keccak_read_bytes(const uint64_t s[25], unsigned off, uint8_t *out,
                              size_t len)
{
    for (size_t i = 0; i < len; i++, off++) {
        out[i] = (uint8_t)(s[off / 8] >> (8 * (off % 8)));
    }
}

/* Whole blocks are the common case for long inputs: XOR a lane at a time. */
static void keccak_xor_block(uint64_t s[25], const uint8_t *in, unsigned rate)
{
    for (unsigned lane = 0; lane < rate / 8; lane++) {
        uint64_t v = 0;
        for (unsigned b = 0; b < 8; b++) {
            v |= (uint64_t)in[8 * lane + b] << (8 * b);
        }
        s[lane] ^= v;
    }
}

static void keccak_init(keccak_state *st, unsigned rate, uint8_t dsbyte)
{
    memset(st, 0, sizeof(*st));
    st->rate = rate;
    st->dsbyte = dsbyte;
}

void shake128_init(keccak_state *st)
{
    keccak_init(st, KECCAK_SHAKE128_RATE, KECCAK_DS_SHAKE);
}

void shake256_init(keccak_state *st)
{
    keccak_init(st, KECCAK_SHAKE256_RATE, KECCAK_DS_SHAKE);
}

void keccak_absorb(keccak_state *st, const uint8_t *in, size_t len)
{
    while (len > 0) {
        if (st->pos == 0 && len >= st->rate) {
            keccak_xor_block(st->s, in, st->rate);
            keccak_permute(st->s);
            in += st->rate;
            len -= st->rate;
            continue;
        }

        size_t room = st->rate - st->pos;
        size_t chunk = len < room ? len : room;
        keccak_xor_bytes(st->s, st->pos, in, chunk);
        st->pos += (unsigned)chunk;
        in += chunk;
        len -= chunk;

        if (st->pos == st->rate) {
            keccak_permute(st->s);
            st->pos = 0;
        }
    }
}

/* pad10*1 (FIPS 202, Algorithm 9): the domain byte carries the first 1 bit,
 * the last bit of the block is the final 1. When the block has one byte
 * left both land in it, which XOR handles. The permutation is left to the
 * first squeeze, which finds the block full. */
void keccak_finalize(keccak_state *st)
{
    uint8_t first = st->dsbyte;
    uint8_t last = 0x80;

    keccak_xor_bytes(st->s, st->pos, &first, 1);
    keccak_xor_bytes(st->s, st->rate - 1, &last, 1);
    st->pos = st->rate;
    st->squeezing = 1;
}

void keccak_squeeze(keccak_state *st, uint8_t *out, size_t len)
{
    while (len > 0) {
        if (st->pos == st->rate) {
            keccak_permute(st->s);
            st->pos = 0;
        }

        size_t room = st->rate - st->pos;
        size_t chunk = len < room ? len : room;
        keccak_read_bytes(st->s, st->pos, out, chunk);
        st->pos += (unsigned)chunk;
        out += chunk;
        len -= chunk;
    }
}

/* The state holds sponge output derived from the input; callers may hash
 * secrets, so it is cleared through a volatile pointer the compiler cannot
 * drop as a dead store. */
static void keccak_wipe(keccak_state *st)
{
    volatile uint8_t *p = (volatile uint8_t *)st;

    for (size_t i = 0; i < sizeof(*st); i++) {
        p[i] = 0;
    }
}

static void keccak_oneshot(unsigned rate, uint8_t dsbyte, uint8_t *out,
                           size_t outlen, const uint8_t *in, size_t inlen)
{
    keccak_state st;

    keccak_init(&st, rate, dsbyte);
    keccak_absorb(&st, in, inlen);
    keccak_finalize(&st);
    keccak_squeeze(&st, out, outlen);
    keccak_wipe(&st);
}

void sha3_256(uint8_t out[32], const uint8_t *in, size_t len)
{
    keccak_oneshot(KECCAK_SHA3_256_RATE, KECCAK_DS_SHA3, out, 32, in, len);
}

void sha3_512(uint8_t out[64], const uint8_t *in, size_t len)
{
    keccak_oneshot(KECCAK_SHA3_512_RATE, KECCAK_DS_SHA3, out, 64, in, len);
}

void shake128(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen)
{
    keccak_oneshot(KECCAK_SHAKE128_RATE, KECCAK_DS_SHAKE, out, outlen, in,
                   inlen);
}

void shake256(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen)
{
    keccak_oneshot(KECCAK_SHAKE256_RATE, KECCAK_DS_SHAKE, out, outlen, in,
                   inlen);
}
