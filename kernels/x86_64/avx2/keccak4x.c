/*
 * Four Keccak-f[1600] permutations at once on AVX2, and SHAKE sponges over
 * them (FIPS 202). Lane i of the four states sits in one __m256i, so each
 * step mapping is the scalar one applied to vectors; only the rotations
 * need two shifts and an OR, as AVX2 has no 64-bit rotate.
 */
#include "backend.h"
#include "keccak.h"

#include <immintrin.h>
#include <string.h>

#include "keccak_constants.h"

#define PQC_TARGET_AVX2 __attribute__((target("avx2")))

/* Domain byte with the first pad bit (SHAKE: 1111 then 1; FIPS 202, B.2)
 * and the last pad bit of a block. */
#define KECCAK_X4_DS_SHAKE 0x1F
#define KECCAK_X4_PAD_LAST 0x80

/* Sponge inputs and outputs may be secret (PRF keys, noise), so copies
 * are cleared; the empty asm that claims to read p and clobber memory
 * keeps the compiler from deleting the memset as a dead store. */
void pqc_avx2_wipe(void *p, size_t len)
{
    memset(p, 0, len);
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

static inline PQC_TARGET_AVX2 __m256i rotl4x(__m256i v, unsigned n)
{
    /* A count of 64 makes _mm256_srli_epi64 return 0, so n = 0 is v. */
    return _mm256_or_si256(_mm256_slli_epi64(v, (int)n),
                           _mm256_srli_epi64(v, (int)(64 - n)));
}

/* One round on four states, a into e: the scalar round (keccak1x.c, one
 * output row at a time) lane-wise. */
static inline PQC_TARGET_AVX2 void round4x(const __m256i a[25], __m256i e[25],
                                           uint64_t rc)
{
    __m256i c[5], d[5];

#pragma GCC unroll 5
    for (unsigned x = 0; x < 5; x++) {
        c[x] = _mm256_xor_si256(_mm256_xor_si256(a[x], a[x + 5]),
                                _mm256_xor_si256(a[x + 10], a[x + 15]));
        c[x] = _mm256_xor_si256(c[x], a[x + 20]);
    }
#pragma GCC unroll 5
    for (unsigned x = 0; x < 5; x++) {
        d[x] = _mm256_xor_si256(c[(x + 4) % 5], rotl4x(c[(x + 1) % 5], 1));
    }

#pragma GCC unroll 5
    for (unsigned y = 0; y < 5; y++) {
        __m256i b[5];

#pragma GCC unroll 5
        for (unsigned x = 0; x < 5; x++) {
            unsigned from = (x + 3 * y) % 5 + 5 * x;

            b[x] = rotl4x(_mm256_xor_si256(a[from], d[from % 5]),
                          keccak_rho_offsets[from]);
        }
#pragma GCC unroll 5
        for (unsigned x = 0; x < 5; x++) {
            __m256i keep = _mm256_andnot_si256(b[(x + 1) % 5], b[(x + 2) % 5]);

            e[x + 5 * y] = _mm256_xor_si256(b[x], keep);
        }
    }
    e[0] = _mm256_xor_si256(e[0], _mm256_set1_epi64x((long long)rc));
}

static inline PQC_TARGET_AVX2 void permute4x(__m256i a[25])
{
    __m256i e[25];

    for (unsigned r = 0; r < KECCAK_ROUNDS; r += 2) {
        round4x(a, e, keccak_round_constants[r]);
        round4x(e, a, keccak_round_constants[r + 1]);
    }
}

PQC_TARGET_AVX2 void pqc_avx2_keccak_f1600_x4(uint64_t s[4 * 25])
{
    __m256i a[25];

    for (unsigned i = 0; i < 25; i++) {
        a[i] = _mm256_loadu_si256((const __m256i *)&s[4 * i]);
    }
    permute4x(a);
    for (unsigned i = 0; i < 25; i++) {
        _mm256_storeu_si256((__m256i *)&s[4 * i], a[i]);
    }
}

/* Lane `lane` of a block from each of the four inputs, as one vector. The
 * byte order is little-endian (FIPS 202, B.1), which is x86's own, so a
 * plain 8-byte copy is the lane. */
static inline PQC_TARGET_AVX2 __m256i gather_lane(const uint8_t *const in[4],
                                                  size_t at)
{
    uint64_t v[4];

    for (unsigned j = 0; j < 4; j++) {
        memcpy(&v[j], in[j] + at, 8);
    }
    return _mm256_loadu_si256((const __m256i *)v);
}

static PQC_TARGET_AVX2 void xor_blocks(pqc_keccakx4 *st,
                                       const uint8_t *const in[4], size_t at)
{
    for (unsigned i = 0; i < st->rate / 8; i++) {
        __m256i *lane = (__m256i *)&st->s[4 * i];

        *lane = _mm256_xor_si256(*lane, gather_lane(in, at + 8 * i));
    }
}

/* pad10*1 (FIPS 202, Algorithm 9) of the last, partial block of each
 * input, then absorbed like a whole one. */
static PQC_TARGET_AVX2 void absorb_last(pqc_keccakx4 *st,
                                        const uint8_t *const in[4], size_t at,
                                        size_t tail)
{
    uint8_t last[4][KECCAK_X4_MAX_RATE];
    const uint8_t *rows[4];

    memset(last, 0, sizeof(last));
    for (unsigned j = 0; j < 4; j++) {
        memcpy(last[j], in[j] + at, tail);
        last[j][tail] = KECCAK_X4_DS_SHAKE;
        last[j][st->rate - 1] |= KECCAK_X4_PAD_LAST;
        rows[j] = last[j];
    }
    xor_blocks(st, rows, 0);
    pqc_avx2_wipe(last, sizeof(last));
}

/* The table's 4-way permutation, or AVX2's own where no table is linked
 * (the kernel tests build the backend without dispatch.c) or the table
 * leaves the entry empty. */
static pqc_keccakx4_permutation chosen_permutation(void)
{
    const pqc_impl *impl = pqc_impl_active();

    if (impl != NULL && impl->keccak_f1600_x4 != NULL) {
        return impl->keccak_f1600_x4;
    }
    return pqc_avx2_keccak_f1600_x4;
}

void pqc_avx2_shake_x4_absorb(pqc_keccakx4 *st, unsigned rate,
                              const uint8_t *const in[4], size_t len)
{
    size_t at = 0;

    memset(st->s, 0, sizeof(st->s));
    st->rate = rate;
    st->permute = chosen_permutation();
    for (; len - at >= rate; at += rate) {
        xor_blocks(st, in, at);
        st->permute(st->s);
    }
    absorb_last(st, in, at, len - at);
}

PQC_TARGET_AVX2 void pqc_avx2_shake_x4_squeezeblocks(pqc_keccakx4 *st,
                                                     uint8_t *const out[4],
                                                     size_t nblocks)
{
    for (size_t b = 0; b < nblocks; b++) {
        st->permute(st->s);
        for (unsigned i = 0; i < st->rate / 8; i++) {
            for (unsigned j = 0; j < 4; j++) {
                memcpy(out[j] + b * st->rate + 8 * i, &st->s[4 * i + j], 8);
            }
        }
    }
}

void pqc_avx2_shake_x4(unsigned rate, uint8_t *const out[4], size_t outlen,
                       const uint8_t *const in[4], size_t inlen)
{
    pqc_keccakx4 st;
    size_t whole = outlen / rate;

    pqc_avx2_shake_x4_absorb(&st, rate, in, inlen);
    pqc_avx2_shake_x4_squeezeblocks(&st, out, whole);
    if (outlen % rate != 0) {
        uint8_t block[4][KECCAK_X4_MAX_RATE];
        uint8_t *rows[4] = {block[0], block[1], block[2], block[3]};

        pqc_avx2_shake_x4_squeezeblocks(&st, rows, 1);
        for (unsigned j = 0; j < 4; j++) {
            memcpy(out[j] + whole * rate, block[j], outlen % rate);
        }
        pqc_avx2_wipe(block, sizeof(block));
    }
    pqc_avx2_wipe(&st, sizeof(st));
}
