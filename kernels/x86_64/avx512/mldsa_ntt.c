/*
 * ML-DSA's NTT, inverse NTT and pointwise products (FIPS 204, Algorithms
 * 41 and 42) on 512-bit vectors: sixteen 32-bit coefficients each, so a
 * polynomial is sixteen registers and, with AVX-512's 32, stays in
 * registers through all eight layers with room for the products. (With
 * AVX2's 16 registers of eight coefficients, half of it lives on the
 * stack.)
 *
 * As in the AVX2 backend, the results are the reference's integers, not
 * only its values mod q: the same butterflies in the same order with the
 * same twiddles, and the same Montgomery reduction (a - t q) / 2^32 with
 * t = a q^-1 mod 2^32. Because a - t q has a zero low half, it equals the
 * difference of the high halves of a and t q, and t is the low half of
 * x (y q^-1 mod 2^32) for a = x y, so one VPMULLD by a precomputed
 * y q^-1 gives t for a twiddle y.
 *
 * Layout: vector i holds coefficients 16 i .. 16 i + 15. Strides of 16 or
 * more pair whole vectors under one twiddle. For strides 8 to 1 the
 * polynomial is transposed as a 16 x 16 matrix, so that vector t holds
 * coefficient t of every block of 16, and those layers pair whole vectors
 * too, with a twiddle per lane.
 */
#include <immintrin.h>
#include <pthread.h>

#include "backend.h"
#include "mldsa_internal.h"

#define PQC_TARGET_AVX512 __attribute__((target("avx2,avx512f")))

/* Sixteen coefficients per vector, sixteen vectors per polynomial. */
#define MLDSA_V16 16

/* Twiddle groups in four layers of halving stride: 1 + 2 + 4 + 8. */
#define MLDSA_V16_GROUPS (MLDSA_V16 - 1)

/* Twiddles of one direction (0 forward, 1 inverse). Entry g - 1 + 128 /
 * len of wide[] is the twiddle of the g-th group of stride len >= 16;
 * entry k - 1 + 8 / len of narrow[] holds, in
 * lane b, the twiddle of the k-th group of stride len <= 8 inside block
 * b. Each comes with its product by q^-1 mod 2^32 (the _q tables). */
static struct {
    int32_t wide[2][MLDSA_V16_GROUPS], wide_q[2][MLDSA_V16_GROUPS];
    _Alignas(64) int32_t narrow[2][MLDSA_V16_GROUPS][MLDSA_V16];
    _Alignas(64) int32_t narrow_q[2][MLDSA_V16_GROUPS][MLDSA_V16];
} tw;

static pthread_once_t tw_ready = PTHREAD_ONCE_INIT;

/* The reference's twiddle of the group that starts at coefficient start
 * in the layer of stride len: zetas[128 / len + start / 2 len] forward,
 * -zetas[256 / len - 1 - start / 2 len] inverse (mldsa_ntt and
 * mldsa_invntt_tomont count through the table that way). */
static int32_t zeta_at(int inverse, unsigned len, unsigned start)
{
    unsigned group = start / (2 * len);

    return inverse ? -mldsa_zeta(256 / len - 1 - group)
                   : mldsa_zeta(128 / len + group);
}

static int32_t times_qinv(int32_t z)
{
    return (int32_t)((uint32_t)z * (uint32_t)MLDSA_QINV);
}

static void build_twiddles(void)
{
    for (int inv = 0; inv < 2; inv++) {
        for (unsigned len = 16; len <= 128; len *= 2) {
            for (unsigned g = 0; g < 128 / len; g++) {
                int32_t z = zeta_at(inv, len, 2 * len * g);

                tw.wide[inv][g - 1 + 128 / len] = z;
                tw.wide_q[inv][g - 1 + 128 / len] = times_qinv(z);
            }
        }
        for (unsigned len = 1; len <= 8; len *= 2) {
            for (unsigned k = 0; k < 8 / len; k++) {
                for (unsigned b = 0; b < MLDSA_V16; b++) {
                    int32_t z = zeta_at(inv, len, 16 * b + 2 * len * k);

                    tw.narrow[inv][k - 1 + 8 / len][b] = z;
                    tw.narrow_q[inv][k - 1 + 8 / len][b] = times_qinv(z);
                }
            }
        }
    }
}

/* mldsa_mont_reduce(a z) lane-wise, given zq = z q^-1 mod 2^32 and z_odd
 * with the odd lanes of z moved down to the even ones. VPMULDQ multiplies
 * the even lanes into 64 bits; the odd ones are shifted down first. The
 * high halves of a z and t q land in the odd lanes, so the even lanes'
 * results are moved down one lane at the end. */
static inline PQC_TARGET_AVX512 __m512i montmul(__m512i a, __m512i z,
                                                __m512i z_odd, __m512i zq)
{
    const __m512i q = _mm512_set1_epi32(MLDSA_Q);
    __m512i t = _mm512_mullo_epi32(a, zq);
    __m512i a_odd = _mm512_srli_epi64(a, 32);
    __m512i t_odd = _mm512_srli_epi64(t, 32);
    __m512i even =
        _mm512_sub_epi32(_mm512_mul_epi32(a, z), _mm512_mul_epi32(t, q));
    __m512i odd = _mm512_sub_epi32(_mm512_mul_epi32(a_odd, z_odd),
                                   _mm512_mul_epi32(t_odd, q));

    /* Even lanes take lane i + 1 of even (VPSHUFD 1, 1, 3, 3 = 0xF5). */
    return _mm512_mask_shuffle_epi32(odd, 0x5555, even, (_MM_PERM_ENUM)0xF5);
}

/* One twiddle for a whole layer group, in every lane. */
static inline PQC_TARGET_AVX512 __m512i mul_wide(__m512i a, int inv,
                                                 unsigned at)
{
    __m512i z = _mm512_set1_epi32(tw.wide[inv][at]);

    return montmul(a, z, z, _mm512_set1_epi32(tw.wide_q[inv][at]));
}

/* A twiddle per lane (block), for the transposed layers. */
static inline PQC_TARGET_AVX512 __m512i mul_narrow(__m512i a, int inv,
                                                   unsigned at)
{
    __m512i z = _mm512_load_si512(tw.narrow[inv][at]);
    __m512i zq = _mm512_load_si512(tw.narrow_q[inv][at]);

    return montmul(a, z, _mm512_srli_epi64(z, 32), zq);
}

/* 16 x 16 transpose of the 32-bit values of v (its own inverse). First
 * 4 x 4 transposes inside the 128-bit chunks of each four rows g .. g + 3
 * (chunk k of c[g + j] is then column 4 k + j of those rows), then a 4 x
 * 4 transpose of the chunks: VSHUFI32X4 takes two chunks from each
 * operand, (0, 1) or (2, 3) of two rows (0x44, 0xEE), then the even or
 * the odd ones of those (0x88, 0xDD). */
static inline PQC_TARGET_AVX512 void transpose16(__m512i v[MLDSA_V16])
{
    __m512i c[MLDSA_V16];

#pragma GCC unroll 4
    for (unsigned g = 0; g < MLDSA_V16; g += 4) {
        __m512i lo01 = _mm512_unpacklo_epi32(v[g], v[g + 1]);
        __m512i hi01 = _mm512_unpackhi_epi32(v[g], v[g + 1]);
        __m512i lo23 = _mm512_unpacklo_epi32(v[g + 2], v[g + 3]);
        __m512i hi23 = _mm512_unpackhi_epi32(v[g + 2], v[g + 3]);

        c[g] = _mm512_unpacklo_epi64(lo01, lo23);
        c[g + 1] = _mm512_unpackhi_epi64(lo01, lo23);
        c[g + 2] = _mm512_unpacklo_epi64(hi01, hi23);
        c[g + 3] = _mm512_unpackhi_epi64(hi01, hi23);
    }
#pragma GCC unroll 4
    for (unsigned j = 0; j < 4; j++) {
        __m512i p = _mm512_shuffle_i32x4(c[j], c[4 + j], 0x44);
        __m512i q = _mm512_shuffle_i32x4(c[j], c[4 + j], 0xEE);
        __m512i r = _mm512_shuffle_i32x4(c[8 + j], c[12 + j], 0x44);
        __m512i s = _mm512_shuffle_i32x4(c[8 + j], c[12 + j], 0xEE);

        v[j] = _mm512_shuffle_i32x4(p, r, 0x88);
        v[4 + j] = _mm512_shuffle_i32x4(p, r, 0xDD);
        v[8 + j] = _mm512_shuffle_i32x4(q, s, 0x88);
        v[12 + j] = _mm512_shuffle_i32x4(q, s, 0xDD);
    }
}

static inline PQC_TARGET_AVX512 void load16(__m512i v[MLDSA_V16],
                                            const void *poly)
{
    const mldsa_poly *p = poly;

#pragma GCC unroll 16
    for (unsigned i = 0; i < MLDSA_V16; i++) {
        v[i] = _mm512_loadu_si512(&p->c[MLDSA_V16 * i]);
    }
}

static inline PQC_TARGET_AVX512 void store16(void *poly,
                                             const __m512i v[MLDSA_V16])
{
    mldsa_poly *p = poly;

#pragma GCC unroll 16
    for (unsigned i = 0; i < MLDSA_V16; i++) {
        _mm512_storeu_si512(&p->c[MLDSA_V16 * i], v[i]);
    }
}

static inline PQC_TARGET_AVX512 __m512i mul_twiddle(__m512i a, int narrow,
                                                    int inv, unsigned at)
{
    return narrow ? mul_narrow(a, inv, at) : mul_wide(a, inv, at);
}

/* The reference's butterflies on vectors x and y: Cooley-Tukey forward,
 * Gentleman-Sande inverse (its twiddles already negated). */
static inline PQC_TARGET_AVX512 void butterfly(__m512i *x, __m512i *y,
                                               int narrow, int inv, unsigned at)
{
    if (inv) {
        __m512i d = _mm512_sub_epi32(*x, *y);

        *x = _mm512_add_epi32(*x, *y);
        *y = mul_twiddle(d, narrow, 1, at);
    } else {
        __m512i t = mul_twiddle(*y, narrow, 0, at);

        *y = _mm512_sub_epi32(*x, t);
        *x = _mm512_add_epi32(*x, t);
    }
}

/* The layer whose eight butterflies pair vectors step apart: stride 16
 * step in the original layout (narrow = 0), or stride step in the
 * transposed one (narrow = 1). Butterfly n is in group n / step, whose
 * twiddle is entry n / step - 1 + 8 / step. */
static inline PQC_TARGET_AVX512 void layer(__m512i v[MLDSA_V16], unsigned step,
                                           int narrow, int inv)
{
#pragma GCC unroll 8
    for (unsigned n = 0; n < MLDSA_V16 / 2; n++) {
        unsigned j = 2 * step * (n / step) + n % step;

        butterfly(&v[j], &v[j + step], narrow, inv, n / step + 8 / step - 1);
    }
}

/* Four layers, widest stride first forward (Algorithm 41) and last
 * inverse (Algorithm 42). Written out so that every step is a constant,
 * every index into v is one and v stays in registers. */
static inline PQC_TARGET_AVX512 void four_layers(__m512i v[MLDSA_V16],
                                                 int narrow, int inv)
{
    if (inv) {
        layer(v, 1, narrow, 1);
        layer(v, 2, narrow, 1);
        layer(v, 4, narrow, 1);
        layer(v, 8, narrow, 1);
    } else {
        layer(v, 8, narrow, 0);
        layer(v, 4, narrow, 0);
        layer(v, 2, narrow, 0);
        layer(v, 1, narrow, 0);
    }
}

PQC_TARGET_AVX512 int pqc_avx512_mldsa_ntt(void *poly)
{
    __m512i v[MLDSA_V16];

    pthread_once(&tw_ready, build_twiddles);
    load16(v, poly);
    four_layers(v, 0, 0);
    transpose16(v);
    four_layers(v, 1, 0);
    transpose16(v);
    store16(poly, v);
    return PQC_IMPL_SERVED;
}

/* FIPS 204, Algorithm 42, then the reference's one Montgomery
 * multiplication by MLDSA_INTT_SCALE (2^64 / 256 mod q) per coefficient:
 * a separate pass, since folding it into the last layer would change the
 * integers though not their values mod q. */
PQC_TARGET_AVX512 int pqc_avx512_mldsa_invntt(void *poly)
{
    const int32_t scale = MLDSA_INTT_SCALE;
    const __m512i s = _mm512_set1_epi32(scale);
    const __m512i sq = _mm512_set1_epi32(times_qinv(scale));
    __m512i v[MLDSA_V16];

    pthread_once(&tw_ready, build_twiddles);
    load16(v, poly);
    transpose16(v);
    four_layers(v, 1, 1);
    transpose16(v);
    four_layers(v, 0, 1);
#pragma GCC unroll 16
    for (unsigned i = 0; i < MLDSA_V16; i++) {
        v[i] = montmul(v[i], s, s, sq);
    }
    store16(poly, v);
    return PQC_IMPL_SERVED;
}

PQC_TARGET_AVX512 int pqc_avx512_mldsa_pointwise(void *out, const void *a,
                                                 const void *b, int accumulate)
{
    const __m512i qinv = _mm512_set1_epi32(MLDSA_QINV);
    mldsa_poly *r = out;
    const mldsa_poly *x = a, *y = b;

    for (unsigned i = 0; i < MLDSA_N; i += MLDSA_V16) {
        __m512i u = _mm512_loadu_si512(&x->c[i]);
        __m512i w = _mm512_loadu_si512(&y->c[i]);
        __m512i p = montmul(u, w, _mm512_srli_epi64(w, 32),
                            _mm512_mullo_epi32(w, qinv));

        if (accumulate) {
            p = _mm512_add_epi32(p, _mm512_loadu_si512(&r->c[i]));
        }
        _mm512_storeu_si512(&r->c[i], p);
    }
    return PQC_IMPL_SERVED;
}
