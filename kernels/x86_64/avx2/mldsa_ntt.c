/*
 * ML-DSA's NTT, inverse NTT and pointwise products (FIPS 204, Algorithms
 * 41 and 42) on AVX2, eight 32-bit coefficients per vector.
 *
 * Unlike ML-KEM's, the reference keeps these values unreduced and signed,
 * so the vector code reproduces its arithmetic exactly rather than just
 * modulo q: the same butterflies in the same order with the same twiddles,
 * and the same Montgomery reduction (a - t q) / 2^32 with t = a q^-1 mod
 * 2^32. Every output integer is the reference's.
 *
 * Layout: vector i holds coefficients 8 i .. 8 i + 7. Strides of 8 or more
 * pair whole vectors with one twiddle each. For strides 4, 2 and 1 each
 * group of eight vectors (64 coefficients) is transposed as an 8 x 8
 * matrix, so vector t of a group holds coefficient t of its eight blocks,
 * and those layers pair whole vectors too, with a twiddle per lane.
 */
#include <immintrin.h>
#include <pthread.h>

#include "backend.h"
#include "mldsa_internal.h"

#define PQC_TARGET_AVX2 __attribute__((target("avx2")))

/* Lane r of fwd[layer][g][k] is the forward twiddle of block 8 g + r for
 * the k-th butterfly group inside a block at stride 4 >> layer; inv the
 * same for the inverse (negated, as the reference uses them). */
static struct {
    _Alignas(32) int32_t fwd[3][4][4][8];
    _Alignas(32) int32_t inv[3][4][4][8];
} narrow;

/* The twiddle of each whole-vector group: wide_fwd[v] and wide_inv[v] for
 * the group starting at vector v of the layer of stride len is
 * fwd_zeta(len, 8 v) and inv_zeta(len, 8 v), indexed [log2(len / 8)][v]. */
static int32_t wide_fwd[5][32], wide_inv[5][32];

static pthread_once_t tables_ready = PTHREAD_ONCE_INIT;

/* The reference's counters: the group starting at s of stride len uses
 * zetas[128 / len + s / 2 len] forward and -zetas[256 / len - 1 - s / 2
 * len] inverse (mldsa_ntt, mldsa_invntt_tomont). */
static int32_t fwd_zeta(unsigned len, unsigned start)
{
    return mldsa_zeta(128 / len + start / (2 * len));
}

static int32_t inv_zeta(unsigned len, unsigned start)
{
    return -mldsa_zeta(256 / len - 1 - start / (2 * len));
}

static void build_tables(void)
{
    for (unsigned lg = 0; lg < 5; lg++) {
        for (unsigned v = 0; v < 32; v++) {
            wide_fwd[lg][v] = fwd_zeta(8u << lg, 8 * v);
            wide_inv[lg][v] = inv_zeta(8u << lg, 8 * v);
        }
    }
    for (unsigned layer = 0; layer < 3; layer++) {
        unsigned len = 4u >> layer;

        for (unsigned g = 0; g < 4; g++) {
            for (unsigned k = 0; k < 4 / len; k++) {
                for (unsigned r = 0; r < 8; r++) {
                    unsigned start = 8 * (8 * g + r) + 2 * len * k;

                    narrow.fwd[layer][g][k][r] = fwd_zeta(len, start);
                    narrow.inv[layer][g][k][r] = inv_zeta(len, start);
                }
            }
        }
    }
}

/* mldsa_mont_reduce(a * b) lane-wise. _mm256_mul_epi32 multiplies the
 * even 32-bit lanes into 64 bits; the odd ones are shifted down first. In
 * each 64-bit product p, t = p q^-1 mod 2^32 and (p - t q) has zero low
 * half, so its high half is the reduced value. */
static inline PQC_TARGET_AVX2 __m256i montmul(__m256i a, __m256i b)
{
    const __m256i qinv = _mm256_set1_epi32(MLDSA_QINV);
    const __m256i q = _mm256_set1_epi32(MLDSA_Q);
    __m256i even = _mm256_mul_epi32(a, b);
    __m256i odd =
        _mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(b, 32));
    __m256i te = _mm256_mul_epi32(_mm256_mul_epi32(even, qinv), q);
    __m256i to = _mm256_mul_epi32(_mm256_mul_epi32(odd, qinv), q);

    even = _mm256_srli_epi64(_mm256_sub_epi64(even, te), 32);
    odd = _mm256_sub_epi64(odd, to);
    return _mm256_blend_epi32(even, odd, 0xAA);
}

static inline PQC_TARGET_AVX2 void ct(__m256i *a, __m256i *b, __m256i z)
{
    __m256i t = montmul(z, *b);

    *b = _mm256_sub_epi32(*a, t);
    *a = _mm256_add_epi32(*a, t);
}

static inline PQC_TARGET_AVX2 void gs(__m256i *a, __m256i *b, __m256i z)
{
    __m256i t = *a;

    *a = _mm256_add_epi32(t, *b);
    *b = montmul(z, _mm256_sub_epi32(t, *b));
}

/* 8 x 8 transpose of the 32-bit values in x[0..8). */
static inline PQC_TARGET_AVX2 void transpose8x32(__m256i x[8])
{
    __m256i a[8], b[8];

    for (unsigned i = 0; i < 8; i += 2) {
        a[i] = _mm256_unpacklo_epi32(x[i], x[i + 1]);
        a[i + 1] = _mm256_unpackhi_epi32(x[i], x[i + 1]);
    }
    for (unsigned h = 0; h < 8; h += 4) {
        b[h] = _mm256_unpacklo_epi64(a[h], a[h + 2]);
        b[h + 1] = _mm256_unpackhi_epi64(a[h], a[h + 2]);
        b[h + 2] = _mm256_unpacklo_epi64(a[h + 1], a[h + 3]);
        b[h + 3] = _mm256_unpackhi_epi64(a[h + 1], a[h + 3]);
    }
    for (unsigned t = 0; t < 4; t++) {
        x[t] = _mm256_permute2x128_si256(b[t], b[t + 4], 0x20);
        x[t + 4] = _mm256_permute2x128_si256(b[t], b[t + 4], 0x31);
    }
}

static PQC_TARGET_AVX2 void load32(__m256i v[32], const mldsa_poly *p)
{
    for (unsigned i = 0; i < 32; i++) {
        v[i] = _mm256_loadu_si256((const __m256i *)&p->c[8 * i]);
    }
}

static PQC_TARGET_AVX2 void store32(mldsa_poly *p, const __m256i v[32])
{
    for (unsigned i = 0; i < 32; i++) {
        _mm256_storeu_si256((__m256i *)&p->c[8 * i], v[i]);
    }
}

static PQC_TARGET_AVX2 void transpose_groups(__m256i v[32])
{
    for (unsigned g = 0; g < 4; g++) {
        transpose8x32(v + 8 * g);
    }
}

/* One stride-len layer (len = 8 << lg) between vectors i and i + len / 8. */
static PQC_TARGET_AVX2 void wide_layer(__m256i v[32], unsigned lg, int inv)
{
    unsigned step = 1u << lg;

    for (unsigned i = 0; i < 32; i += 2 * step) {
        __m256i z = _mm256_set1_epi32(inv ? wide_inv[lg][i] : wide_fwd[lg][i]);

        for (unsigned j = i; j < i + step; j++) {
            if (inv) {
                gs(&v[j], &v[j + step], z);
            } else {
                ct(&v[j], &v[j + step], z);
            }
        }
    }
}

/* One stride-len layer (len <= 4) on the transposed groups. */
static PQC_TARGET_AVX2 void narrow_layer(__m256i v[32], unsigned layer, int inv)
{
    unsigned len = 4u >> layer;

    for (unsigned g = 0; g < 4; g++) {
        __m256i *w = v + 8 * g;

        for (unsigned t = 0; t < 8; t += 2 * len) {
            const int32_t *zs = inv ? narrow.inv[layer][g][t / (2 * len)]
                                    : narrow.fwd[layer][g][t / (2 * len)];
            __m256i z = _mm256_load_si256((const __m256i *)zs);

            for (unsigned j = t; j < t + len; j++) {
                if (inv) {
                    gs(&w[j], &w[j + len], z);
                } else {
                    ct(&w[j], &w[j + len], z);
                }
            }
        }
    }
}

PQC_TARGET_AVX2 int pqc_avx2_mldsa_ntt(void *poly)
{
    __m256i v[32];

    pthread_once(&tables_ready, build_tables);
    load32(v, poly);
    for (unsigned lg = 5; lg-- > 0;) {
        wide_layer(v, lg, 0);
    }
    transpose_groups(v);
    for (unsigned layer = 0; layer < 3; layer++) {
        narrow_layer(v, layer, 0);
    }
    transpose_groups(v);
    store32(poly, v);
    return PQC_IMPL_SERVED;
}

PQC_TARGET_AVX2 int pqc_avx2_mldsa_invntt(void *poly)
{
    __m256i v[32];
    __m256i scale = _mm256_set1_epi32(MLDSA_INTT_SCALE);

    pthread_once(&tables_ready, build_tables);
    load32(v, poly);
    transpose_groups(v);
    for (unsigned layer = 3; layer-- > 0;) {
        narrow_layer(v, layer, 1);
    }
    transpose_groups(v);
    for (unsigned lg = 0; lg < 5; lg++) {
        wide_layer(v, lg, 1);
    }
    for (unsigned i = 0; i < 32; i++) {
        v[i] = montmul(scale, v[i]);
    }
    store32(poly, v);
    return PQC_IMPL_SERVED;
}

PQC_TARGET_AVX2 int pqc_avx2_mldsa_pointwise(void *out, const void *a,
                                             const void *b, int accumulate)
{
    mldsa_poly *r = out;
    const mldsa_poly *x = a, *y = b;

    for (unsigned i = 0; i < MLDSA_N; i += 8) {
        __m256i p = montmul(_mm256_loadu_si256((const __m256i *)&x->c[i]),
                            _mm256_loadu_si256((const __m256i *)&y->c[i]));

        if (accumulate) {
            p = _mm256_add_epi32(p,
                                 _mm256_loadu_si256((const __m256i *)&r->c[i]));
        }
        _mm256_storeu_si256((__m256i *)&r->c[i], p);
    }
    return PQC_IMPL_SERVED;
}

/* Decompose (FIPS 204, Algorithm 36) of 256 values in [0, q), lane-wise
 * as mldsa_decompose: x = r + gamma2 - 1; hi = floor(x / 2 gamma2) by the
 * power of two shifted out and a multiply and shift for the odd part
 * (MLDSA_DIV1023_MUL or MLDSA_DIV93_MUL, exact for these x); the top
 * value wraps to r1 = 0 and r0 - 1. Products stay below 2^31. */
PQC_TARGET_AVX2 int pqc_avx2_mldsa_decompose(int32_t gamma2, int32_t *r1,
                                             int32_t *r0, const int32_t *r)
{
    int wide = gamma2 == (MLDSA_Q - 1) / 32;
    const __m256i mul =
        _mm256_set1_epi32(wide ? MLDSA_DIV1023_MUL : MLDSA_DIV93_MUL);
    const __m256i g = _mm256_set1_epi32(gamma2 - 1);
    const __m256i two_g = _mm256_set1_epi32(2 * gamma2);
    const __m256i top1 = _mm256_set1_epi32((MLDSA_Q - 1) / (2 * gamma2) - 1);
    const __m256i one = _mm256_set1_epi32(1);

    if (gamma2 != (MLDSA_Q - 1) / 32 && gamma2 != (MLDSA_Q - 1) / 88) {
        return PQC_IMPL_DECLINED;
    }
    for (unsigned i = 0; i < MLDSA_N; i += 8) {
        __m256i a = _mm256_loadu_si256((const __m256i *)&r[i]);
        __m256i x = _mm256_add_epi32(a, g);
        __m256i hi =
            wide ? _mm256_srli_epi32(
                       _mm256_mullo_epi32(_mm256_srli_epi32(x, 9), mul), 25)
                 : _mm256_srli_epi32(
                       _mm256_mullo_epi32(_mm256_srli_epi32(x, 11), mul), 20);
        __m256i wrap = _mm256_srai_epi32(_mm256_sub_epi32(top1, hi), 31);

        if (r0 != NULL) {
            __m256i lo = _mm256_sub_epi32(a, _mm256_mullo_epi32(hi, two_g));

            lo = _mm256_sub_epi32(lo, _mm256_and_si256(wrap, one));
            _mm256_storeu_si256((__m256i *)&r0[i], lo);
        }
        if (r1 != NULL) {
            _mm256_storeu_si256((__m256i *)&r1[i],
                                _mm256_andnot_si256(wrap, hi));
        }
    }
    return PQC_IMPL_SERVED;
}
