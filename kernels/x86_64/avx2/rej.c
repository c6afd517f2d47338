/*
 * The vectorised rejection parsers (see rej_avx2.h).
 */
#include "rej_avx2.h"

#include <immintrin.h>
#include <pthread.h>

#include "mldsa_internal.h"
#include "mlkem_poly.h"

#define PQC_TARGET_AVX2 __attribute__((target("avx2,popcnt")))

/* For each 8-bit keep mask: kem[m] is a byte shuffle moving the kept
 * 16-bit values of a 128-bit half to its front, in order; dsa[m] the same
 * for 32-bit values as lane indices. Built from the masks at first use. */
static struct {
    _Alignas(16) uint8_t kem[256][16];
    _Alignas(16) uint8_t dsa[256][8];
} pack;

static pthread_once_t pack_ready = PTHREAD_ONCE_INIT;

static void build_pack(void)
{
    for (unsigned m = 0; m < 256; m++) {
        unsigned n = 0;

        for (unsigned i = 0; i < 8; i++) {
            if (m >> i & 1) {
                pack.kem[m][2 * n] = (uint8_t)(2 * i);
                pack.kem[m][2 * n + 1] = (uint8_t)(2 * i + 1);
                pack.dsa[m][n] = (uint8_t)i;
                n++;
            }
        }
        for (unsigned rest = n; rest < 8; rest++) {
            pack.kem[m][2 * rest] = 0x80; /* shuffle writes a zero */
            pack.kem[m][2 * rest + 1] = 0x80;
            pack.dsa[m][rest] = 0;
        }
    }
}

/* 24 bytes at p as 16 candidates: bytes 0-11 in the low half, 12-23 in
 * the high, then each 3-byte group b0 b1 b2 to (b0 | b1 << 8) & 0xFFF
 * and (b1 | b2 << 8) >> 4 (FIPS 203, Algorithm 7, steps 5-6). */
static inline PQC_TARGET_AVX2 __m256i kem_candidates(const uint8_t *p)
{
    const __m256i halves = _mm256_setr_epi32(0, 1, 2, 3, 3, 4, 5, 6);
    const __m256i spread =
        _mm256_setr_epi8(0, 1, 1, 2, 3, 4, 4, 5, 6, 7, 7, 8, 9, 10, 10, 11, 0,
                         1, 1, 2, 3, 4, 4, 5, 6, 7, 7, 8, 9, 10, 10, 11);
    __m256i v = _mm256_loadu_si256((const __m256i *)p);

    v = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(v, halves), spread);
    return _mm256_blend_epi16(_mm256_and_si256(v, _mm256_set1_epi16(0xFFF)),
                              _mm256_srli_epi16(v, 4), 0xAA);
}

PQC_TARGET_AVX2 unsigned pqc_avx2_rej_kem(uint16_t *buf, unsigned filled,
                                          const uint8_t *stream, size_t at,
                                          size_t len)
{
    const __m256i q = _mm256_set1_epi16(MLKEM_Q);

    pthread_once(&pack_ready, build_pack);
    for (size_t b = at; b < len && filled < MLKEM_N; b += PQC_REJ_STEP) {
        __m256i v = kem_candidates(stream + b);
        __m256i keep = _mm256_cmpgt_epi16(q, v);
        unsigned bits = (unsigned)_mm256_movemask_epi8(
            _mm256_packs_epi16(keep, _mm256_setzero_si256()));
        unsigned lo = bits & 0xFF, hi = (bits >> 16) & 0xFF;
        __m128i first =
            _mm_shuffle_epi8(_mm256_castsi256_si128(v),
                             _mm_load_si128((const __m128i *)pack.kem[lo]));
        __m128i second =
            _mm_shuffle_epi8(_mm256_extracti128_si256(v, 1),
                             _mm_load_si128((const __m128i *)pack.kem[hi]));

        _mm_storeu_si128((__m128i *)&buf[filled], first);
        filled += (unsigned)_mm_popcnt_u32(lo);
        _mm_storeu_si128((__m128i *)&buf[filled], second);
        filled += (unsigned)_mm_popcnt_u32(hi);
    }
    return filled;
}

/* 24 bytes at p as 8 candidates b0 | b1 << 8 | (b2 & 0x7F) << 16 (FIPS
 * 204, Algorithm 14). */
static inline PQC_TARGET_AVX2 __m256i dsa_candidates(const uint8_t *p)
{
    const __m256i halves = _mm256_setr_epi32(0, 1, 2, 3, 3, 4, 5, 6);
    const __m256i spread =
        _mm256_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1,
                         0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
    __m256i v = _mm256_loadu_si256((const __m256i *)p);

    v = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(v, halves), spread);
    return _mm256_and_si256(v, _mm256_set1_epi32(0x7FFFFF));
}

PQC_TARGET_AVX2 unsigned pqc_avx2_rej_dsa(int32_t *buf, unsigned filled,
                                          const uint8_t *stream, size_t at,
                                          size_t len)
{
    const __m256i q = _mm256_set1_epi32(MLDSA_Q);

    pthread_once(&pack_ready, build_pack);
    for (size_t b = at; b < len && filled < MLDSA_N; b += PQC_REJ_STEP) {
        __m256i v = dsa_candidates(stream + b);
        unsigned m = (unsigned)_mm256_movemask_ps(
            _mm256_castsi256_ps(_mm256_cmpgt_epi32(q, v)));
        __m256i idx =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)pack.dsa[m]));

        _mm256_storeu_si256((__m256i *)&buf[filled],
                            _mm256_permutevar8x32_epi32(v, idx));
        filled += (unsigned)_mm_popcnt_u32(m);
    }
    return filled;
}
