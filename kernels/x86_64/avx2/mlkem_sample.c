/*
 * ML-KEM's matrix sampler four entries at a time (FIPS 203, Algorithm 7):
 * the four SHAKE128 streams come from the 4-way sponge, and each is parsed
 * exactly as the reference parses its own stream, so the polynomials are
 * the same (the parser is in rej.c). rho is public, so the rejection
 * branches leak nothing. Also
 * the centred binomial sampler for eta = 2, on secret bits without any
 * branch or index that depends on them.
 */
#include <immintrin.h>

#include "mlkem_poly.h"
#include "sponge_x4.h"

#define PQC_TARGET_AVX2 __attribute__((target("avx2")))

/* Three blocks (504 bytes, 336 candidates) fill a polynomial in about 99%
 * of calls: a candidate survives with probability q / 2^12 ~ 0.81, so 256
 * survivors need 315 candidates on average. */
#define MLKEM_X4_FIRST_BLOCKS 3

/* Parse what was squeezed since `done` bytes; 1 when all polys are full. */
/* Room for the kept values of a step that starts at 255. */
#define MLKEM_X4_BUF (MLKEM_N + 16)

static int parse_all(uint16_t (*buf)[MLKEM_X4_BUF],
                     unsigned filled[PQC_IMPL_WAYS], const pqc_x4_sampler *x,
                     size_t done, unsigned count)
{
    size_t len = x->blocks * KECCAK_SHAKE128_RATE;
    int full = 1;

    for (unsigned j = 0; j < count; j++) {
        filled[j] =
            pqc_avx2_rej_kem(buf[j], filled[j], x->stream[j], done, len);
        full &= filled[j] >= MLKEM_N;
    }
    return full;
}

int pqc_avx2_mlkem_sample_ntt_x4(void *out, const uint8_t rho[32],
                                 const uint16_t nonce[PQC_IMPL_WAYS],
                                 unsigned count)
{
    mlkem_poly *p = out;
    uint16_t buf[PQC_IMPL_WAYS][MLKEM_X4_BUF];
    unsigned filled[PQC_IMPL_WAYS] = {0};
    pqc_x4_sampler x;
    size_t done = 0;

    if (count == 0 || count > PQC_IMPL_WAYS) {
        return PQC_IMPL_DECLINED;
    }
    pqc_x4_start(&x, KECCAK_SHAKE128_RATE, rho, MLKEM_SYM_BYTES, nonce, count,
                 MLKEM_X4_FIRST_BLOCKS);
    while (!parse_all(buf, filled, &x, done, count)) {
        done = x.blocks * KECCAK_SHAKE128_RATE;
        if (!pqc_x4_more(&x)) {
            return PQC_IMPL_DECLINED;
        }
    }
    for (unsigned j = 0; j < count; j++) {
        memcpy(p[j].c, buf[j], sizeof(p[j].c));
    }
    return PQC_IMPL_SERVED;
}

/* SamplePolyCBD_2 (FIPS 203, Algorithm 8) of 32 bytes into 64
 * coefficients. Per byte, adding the even bits to the odd ones gives four
 * 2-bit counts: x and y of the low nibble's coefficient, then of the high
 * nibble's. Differences in [-2, 2] are widened to 16 bits in coefficient
 * order and lifted to [0, q) by a mask. */
static PQC_TARGET_AVX2 void cbd2_64(uint16_t *c, const uint8_t bytes[32])
{
    const __m256i pairs = _mm256_set1_epi8(0x55), two = _mm256_set1_epi8(3);
    __m256i w = _mm256_loadu_si256((const __m256i *)bytes);
    __m256i t =
        _mm256_add_epi8(_mm256_and_si256(w, pairs),
                        _mm256_and_si256(_mm256_srli_epi16(w, 1), pairs));
    __m256i lo =
        _mm256_sub_epi8(_mm256_and_si256(t, two),
                        _mm256_and_si256(_mm256_srli_epi16(t, 2), two));
    __m256i hi =
        _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(t, 4), two),
                        _mm256_and_si256(_mm256_srli_epi16(t, 6), two));
    /* Within each 128-bit half: coefficients of bytes 0-7, then 8-15. */
    __m256i first = _mm256_unpacklo_epi8(lo, hi);
    __m256i second = _mm256_unpackhi_epi8(lo, hi);
    __m128i parts[4] = {_mm256_castsi256_si128(first),
                        _mm256_castsi256_si128(second),
                        _mm256_extracti128_si256(first, 1),
                        _mm256_extracti128_si256(second, 1)};

    for (unsigned i = 0; i < 4; i++) {
        __m256i v = _mm256_cvtepi8_epi16(parts[i]);
        __m256i neg = _mm256_srai_epi16(v, 15);

        v = _mm256_add_epi16(v,
                             _mm256_and_si256(neg, _mm256_set1_epi16(MLKEM_Q)));
        _mm256_storeu_si256((__m256i *)&c[16 * i], v);
    }
}

PQC_TARGET_AVX2 int pqc_avx2_mlkem_cbd(void *poly, const uint8_t *bits,
                                       unsigned eta)
{
    mlkem_poly *p = poly;

    if (eta != 2) {
        return PQC_IMPL_DECLINED;
    }
    for (unsigned i = 0; i < MLKEM_N / 64; i++) {
        cbd2_64(&p->c[64 * i], bits + 32 * i);
    }
    return PQC_IMPL_SERVED;
}
