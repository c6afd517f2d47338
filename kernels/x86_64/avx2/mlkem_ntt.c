/*
 * ML-KEM's NTT and inverse NTT (FIPS 203, Algorithms 9 and 10) on AVX2,
 * sixteen 16-bit coefficients per vector.
 *
 * Arithmetic is signed Montgomery multiplication modulo q = 3329 with R =
 * 2^16: for a twiddle zeta the tables hold z = zeta R mod q and z' = z
 * q^-1 mod 2^16, and montmul(a, z) = hi(a z) - hi(lo(a z') q) is
 * congruent to a zeta, with |result| < q whenever |a| < 2^15. Values stay
 * signed and unreduced between layers (bounds below) and are brought back
 * to the reference's canonical [0, q) at the end, so the output is the
 * reference's byte for byte: both are the unique canonical NTT.
 *
 * Layout: the polynomial is 16 vectors of 16 coefficients, vector b
 * holding coefficients 16 b .. 16 b + 15. Layers with a stride of 16 or
 * more pair whole vectors and share one twiddle per vector. For the last
 * three layers (strides 8, 4, 2) the 16 x 16 matrix is transposed, so
 * that vector t holds coefficient t of every block: those layers then pair
 * whole vectors too, with a different twiddle in each lane.
 */
#include <immintrin.h>
#include <pthread.h>

#include "backend.h"
#include "mlkem_poly.h"

#define PQC_TARGET_AVX2 __attribute__((target("avx2")))

/* q^-1 mod 2^16 (3329 * 62209 = 1 mod 2^16), as a signed 16-bit value. */
#define MLKEM_AVX2_QINV (-3327)

/* round(2^26 / q): Barrett estimate of x / q as (x * 20159) >> 26. */
#define MLKEM_AVX2_BARRETT 20159

/* A twiddle in Montgomery form: z = zeta 2^16 mod q (centred) and z q^-1
 * mod 2^16. */
typedef struct {
    int16_t z, zq;
} mont_twiddle;

/* Per-vector twiddles of the wide layers, indexed like mlkem_zetas. */
static mont_twiddle wide[128];

/* Per-lane twiddles of the three narrow layers: lane b of entry [layer][g]
 * is the twiddle of block b for group g of that layer (see narrow_index). */
static struct {
    _Alignas(32) int16_t z[16];
    _Alignas(32) int16_t zq[16];
} fwd_narrow[3][4], inv_narrow[3][4];

/* 128^-1 mod q in Montgomery form, for the final scaling of the inverse
 * (Algorithm 10, step 14). */
static mont_twiddle inv128;

/* gamma_i (mlkem_gammas) in Montgomery form in the odd 16-bit lanes of
 * vector v for i = 8 v .. 8 v + 7, the lanes of a1 and b1; even lanes 0. */
static struct {
    _Alignas(32) int16_t z[MLKEM_N];
    _Alignas(32) int16_t zq[MLKEM_N];
} gammas;

/* 2^32 mod q in Montgomery form: montmul by it multiplies by 2^16. */
static mont_twiddle r_squared;

static pthread_once_t tables_ready = PTHREAD_ONCE_INIT;

static mont_twiddle to_mont(uint32_t zeta)
{
    int32_t z = (int32_t)((zeta << 16) % MLKEM_Q);
    mont_twiddle t;

    z = z > MLKEM_Q / 2 ? z - MLKEM_Q : z;
    t.z = (int16_t)z;
    t.zq = (int16_t)(uint16_t)((uint32_t)z * (uint32_t)MLKEM_AVX2_QINV);
    return t;
}

/* The forward twiddle of coefficient 16 b + t at stride len: the group
 * starting at s = p - p mod 2 len uses mlkem_zetas[128 / len + s / 2 len]
 * (Algorithm 9's counter); the inverse walks the table backwards. */
static unsigned narrow_index(unsigned len, unsigned b, unsigned t, int inv)
{
    unsigned group = (16 * b + t) / (2 * len);

    return inv ? 256 / len - 1 - group : 128 / len + group;
}

static void fill_narrow(unsigned layer, unsigned len, int inv)
{
    for (unsigned g = 0; g < 8 / len; g++) {
        for (unsigned b = 0; b < 16; b++) {
            unsigned i = narrow_index(len, b, 2 * len * g, inv);
            mont_twiddle t = to_mont(mlkem_zetas[i]);

            if (inv) {
                inv_narrow[layer][g].z[b] = t.z;
                inv_narrow[layer][g].zq[b] = t.zq;
            } else {
                fwd_narrow[layer][g].z[b] = t.z;
                fwd_narrow[layer][g].zq[b] = t.zq;
            }
        }
    }
}

/* The tables derive from mlkem_zetas at first use (no second copy of the
 * FIPS 203 constants to drift out of step). */
static void build_tables(void)
{
    for (unsigned i = 0; i < 128; i++) {
        wide[i] = to_mont(mlkem_zetas[i]);
    }
    for (unsigned layer = 0; layer < 3; layer++) {
        fill_narrow(layer, 8u >> layer, 0);
        fill_narrow(layer, 8u >> layer, 1);
    }
    inv128 = to_mont(MLKEM_INV128);
    r_squared = to_mont((1u << 16) % MLKEM_Q);
    for (unsigned i = 0; i < MLKEM_N / 2; i++) {
        mont_twiddle g = to_mont(mlkem_gammas[i]);

        gammas.z[2 * i + 1] = g.z;
        gammas.zq[2 * i + 1] = g.zq;
    }
}

static inline PQC_TARGET_AVX2 __m256i montmul(__m256i a, __m256i z, __m256i zq)
{
    __m256i hi = _mm256_mulhi_epi16(a, z);
    __m256i m = _mm256_mullo_epi16(a, zq);

    m = _mm256_mulhi_epi16(m, _mm256_set1_epi16(MLKEM_Q));
    return _mm256_sub_epi16(hi, m);
}

/* a - round(a / q) q, in (-q, q) for any 16-bit a. */
static inline PQC_TARGET_AVX2 __m256i barrett(__m256i a)
{
    __m256i t = _mm256_mulhi_epi16(a, _mm256_set1_epi16(MLKEM_AVX2_BARRETT));

    t = _mm256_srai_epi16(_mm256_add_epi16(t, _mm256_set1_epi16(1 << 9)), 10);
    return _mm256_sub_epi16(a,
                            _mm256_mullo_epi16(t, _mm256_set1_epi16(MLKEM_Q)));
}

/* (-q, q) to the canonical [0, q): add q where negative, by mask. */
static inline PQC_TARGET_AVX2 __m256i canonical(__m256i a)
{
    __m256i neg = _mm256_srai_epi16(a, 15);

    return _mm256_add_epi16(a,
                            _mm256_and_si256(neg, _mm256_set1_epi16(MLKEM_Q)));
}

/* 8 x 8 transposes inside each 128-bit half of x[0..8). */
static inline PQC_TARGET_AVX2 void transpose8(__m256i x[8])
{
    __m256i p[8], q[8];

    for (unsigned i = 0; i < 4; i++) {
        p[2 * i] = _mm256_unpacklo_epi16(x[2 * i], x[2 * i + 1]);
        p[2 * i + 1] = _mm256_unpackhi_epi16(x[2 * i], x[2 * i + 1]);
    }
    for (unsigned h = 0; h < 8; h += 4) {
        q[h] = _mm256_unpacklo_epi32(p[h], p[h + 2]);
        q[h + 1] = _mm256_unpackhi_epi32(p[h], p[h + 2]);
        q[h + 2] = _mm256_unpacklo_epi32(p[h + 1], p[h + 3]);
        q[h + 3] = _mm256_unpackhi_epi32(p[h + 1], p[h + 3]);
    }
    for (unsigned i = 0; i < 4; i++) {
        x[2 * i] = _mm256_unpacklo_epi64(q[i], q[i + 4]);
        x[2 * i + 1] = _mm256_unpackhi_epi64(q[i], q[i + 4]);
    }
}

/* The 16 x 16 matrix of 16-bit values in v, transposed in place: two
 * half-wise 8 x 8 transposes, then the halves swapped across. */
static inline PQC_TARGET_AVX2 void transpose16(__m256i v[16])
{
    transpose8(v);
    transpose8(v + 8);
    for (unsigned t = 0; t < 8; t++) {
        __m256i lo = _mm256_permute2x128_si256(v[t], v[t + 8], 0x20);
        __m256i hi = _mm256_permute2x128_si256(v[t], v[t + 8], 0x31);

        v[t] = lo;
        v[t + 8] = hi;
    }
}

/* Cooley-Tukey: (a, b) <- (a + zeta b, a - zeta b). */
static inline PQC_TARGET_AVX2 void ct(__m256i *a, __m256i *b, __m256i z,
                                      __m256i zq)
{
    __m256i t = montmul(*b, z, zq);

    *b = _mm256_sub_epi16(*a, t);
    *a = _mm256_add_epi16(*a, t);
}

/* Gentleman-Sande: (a, b) <- (a + b, zeta (b - a)), as Algorithm 10. */
static inline PQC_TARGET_AVX2 void gs(__m256i *a, __m256i *b, __m256i z,
                                      __m256i zq)
{
    __m256i d = _mm256_sub_epi16(*b, *a);

    *a = _mm256_add_epi16(*a, *b);
    *b = montmul(d, z, zq);
}

static PQC_TARGET_AVX2 void load16(__m256i v[16], const mlkem_poly *p)
{
    for (unsigned b = 0; b < 16; b++) {
        v[b] = _mm256_loadu_si256((const __m256i *)&p->c[16 * b]);
    }
}

static PQC_TARGET_AVX2 void store16(mlkem_poly *p, const __m256i v[16])
{
    for (unsigned b = 0; b < 16; b++) {
        _mm256_storeu_si256((__m256i *)&p->c[16 * b], v[b]);
    }
}

/* Strides 128 .. 16 between vectors b and b + len / 16. Each layer adds
 * less than q to the bound: canonical input stays below 5 q. */
static PQC_TARGET_AVX2 void ntt_wide(__m256i v[16])
{
    for (unsigned len = 128; len >= 16; len /= 2) {
        unsigned step = len / 16;

        for (unsigned b = 0; b < 16; b += 2 * step) {
            mont_twiddle w = wide[128 / len + 16 * b / (2 * len)];
            __m256i z = _mm256_set1_epi16(w.z);
            __m256i zq = _mm256_set1_epi16(w.zq);

            for (unsigned i = b; i < b + step; i++) {
                ct(&v[i], &v[i + step], z, zq);
            }
        }
    }
}

/* Strides 8, 4, 2 on the transposed matrix (vector t = coefficient t of
 * every block); the bound grows to below 8 q < 2^15. */
static PQC_TARGET_AVX2 void ntt_narrow(__m256i w[16])
{
    for (unsigned layer = 0; layer < 3; layer++) {
        unsigned len = 8u >> layer;

        for (unsigned t = 0; t < 16; t += 2 * len) {
            unsigned g = t / (2 * len);
            __m256i z =
                _mm256_load_si256((const __m256i *)fwd_narrow[layer][g].z);
            __m256i zq =
                _mm256_load_si256((const __m256i *)fwd_narrow[layer][g].zq);

            for (unsigned i = t; i < t + len; i++) {
                ct(&w[i], &w[i + len], z, zq);
            }
        }
    }
}

PQC_TARGET_AVX2 int pqc_avx2_mlkem_ntt(void *poly)
{
    __m256i v[16];

    pthread_once(&tables_ready, build_tables);
    load16(v, poly);
    ntt_wide(v);
    transpose16(v);
    ntt_narrow(v);
    transpose16(v);
    for (unsigned b = 0; b < 16; b++) {
        v[b] = canonical(barrett(v[b]));
    }
    store16(poly, v);
    return PQC_IMPL_SERVED;
}

/* Strides 2, 4, 8 of the inverse on the transposed matrix. Sums double
 * the bound each layer (q, 2 q, 4 q, 8 q), differences go through montmul
 * (below q); 8 q < 2^15, then everything is Barrett-reduced. */
static PQC_TARGET_AVX2 void invntt_narrow(__m256i w[16])
{
    for (unsigned layer = 3; layer-- > 0;) {
        unsigned len = 8u >> layer;

        for (unsigned t = 0; t < 16; t += 2 * len) {
            unsigned g = t / (2 * len);
            __m256i z =
                _mm256_load_si256((const __m256i *)inv_narrow[layer][g].z);
            __m256i zq =
                _mm256_load_si256((const __m256i *)inv_narrow[layer][g].zq);

            for (unsigned i = t; i < t + len; i++) {
                gs(&w[i], &w[i + len], z, zq);
            }
        }
    }
    for (unsigned t = 0; t < 16; t++) {
        w[t] = barrett(w[t]);
    }
}

/* Strides 16 .. 128, Barrett-reducing everything after stride 64 so that
 * the bound (q / 2 after a reduction, doubling per layer) stays below
 * 2^15. */
static PQC_TARGET_AVX2 void invntt_wide(__m256i v[16])
{
    for (unsigned len = 16; len <= 128; len *= 2) {
        unsigned step = len / 16;

        for (unsigned b = 0; b < 16; b += 2 * step) {
            mont_twiddle w = wide[256 / len - 1 - 16 * b / (2 * len)];
            __m256i z = _mm256_set1_epi16(w.z);
            __m256i zq = _mm256_set1_epi16(w.zq);

            for (unsigned i = b; i < b + step; i++) {
                gs(&v[i], &v[i + step], z, zq);
            }
        }
        if (len == 64) {
            for (unsigned b = 0; b < 16; b++) {
                v[b] = barrett(v[b]);
            }
        }
    }
}

PQC_TARGET_AVX2 int pqc_avx2_mlkem_invntt(void *poly)
{
    __m256i v[16];
    __m256i f, fq;

    pthread_once(&tables_ready, build_tables);
    load16(v, poly);
    transpose16(v);
    invntt_narrow(v);
    transpose16(v);
    invntt_wide(v);

    f = _mm256_set1_epi16(inv128.z);
    fq = _mm256_set1_epi16(inv128.zq);
    for (unsigned b = 0; b < 16; b++) {
        v[b] = canonical(montmul(v[b], f, fq));
    }
    store16(poly, v);
    return PQC_IMPL_SERVED;
}

/* x 2^-16 mod q for 32-bit lanes |x| < 2^30, in (-q, q): Montgomery
 * reduction with m = x q^-1 mod 2^16 taken signed. */
static inline PQC_TARGET_AVX2 __m256i montred32(__m256i x)
{
    __m256i m = _mm256_mullo_epi32(x, _mm256_set1_epi32(MLKEM_AVX2_QINV));

    m = _mm256_srai_epi32(_mm256_slli_epi32(m, 16), 16);
    m = _mm256_mullo_epi32(m, _mm256_set1_epi32(MLKEM_Q));
    return _mm256_srai_epi32(_mm256_sub_epi32(x, m), 16);
}

/* acc += a x b for 8 pairs (FIPS 203, Algorithm 12) in canonical form.
 * With b1' = b1 gamma mod q (|b1'| < q), madd gives a0 b0 + a1 b1' and, on
 * b's swapped pairs, a0 b1 + a1 b0: 32-bit sums below 2 q^2 + q. Both are
 * reduced by montred32 (a factor 2^-16) and montmul by 2^32 mod q (2^16
 * back), then lifted to [0, q): the same residues as the reference. */
static inline PQC_TARGET_AVX2 __m256i basemul8(__m256i acc, __m256i a,
                                               __m256i b, unsigned v)
{
    const __m256i swap =
        _mm256_set_epi8(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2,
                        13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2);
    const __m256i low16 = _mm256_set1_epi32(0xFFFF);
    __m256i g = _mm256_load_si256((const __m256i *)&gammas.z[16 * v]);
    __m256i gq = _mm256_load_si256((const __m256i *)&gammas.zq[16 * v]);
    __m256i b1g = _mm256_blend_epi16(b, montmul(b, g, gq), 0xAA);
    __m256i even = _mm256_madd_epi16(a, b1g);
    __m256i odd = _mm256_madd_epi16(a, _mm256_shuffle_epi8(b, swap));

    even = _mm256_add_epi32(even, _mm256_and_si256(acc, low16));
    odd = _mm256_add_epi32(odd, _mm256_srli_epi32(acc, 16));
    even = montred32(even);
    odd = montred32(odd);

    __m256i r = _mm256_or_si256(_mm256_and_si256(even, low16),
                                _mm256_slli_epi32(odd, 16));
    r = montmul(r, _mm256_set1_epi16(r_squared.z),
                _mm256_set1_epi16(r_squared.zq));
    return canonical(r);
}

PQC_TARGET_AVX2 int pqc_avx2_mlkem_basemul_acc(void *acc, const void *a,
                                               const void *b)
{
    mlkem_poly *r = acc;
    const mlkem_poly *x = a, *y = b;

    pthread_once(&tables_ready, build_tables);
    for (unsigned v = 0; v < MLKEM_N / 16; v++) {
        __m256i s = _mm256_loadu_si256((const __m256i *)&r->c[16 * v]);
        __m256i p = _mm256_loadu_si256((const __m256i *)&x->c[16 * v]);
        __m256i q = _mm256_loadu_si256((const __m256i *)&y->c[16 * v]);

        _mm256_storeu_si256((__m256i *)&r->c[16 * v], basemul8(s, p, q, v));
    }
    return PQC_IMPL_SERVED;
}

/* ByteEncode_12 (FIPS 203, Algorithm 5) two coefficients (24 bits) at a
 * time: c0 | c1 << 12 as three little-endian bytes. */
int pqc_avx2_mlkem_encode12(uint8_t *out, const void *poly)
{
    const mlkem_poly *p = poly;

    for (unsigned i = 0; i < MLKEM_N; i += 2) {
        uint32_t pair = (uint32_t)p->c[i] | (uint32_t)p->c[i + 1] << 12;

        out[0] = (uint8_t)pair;
        out[1] = (uint8_t)(pair >> 8);
        out[2] = (uint8_t)(pair >> 16);
        out += 3;
    }
    return PQC_IMPL_SERVED;
}

/* ByteDecode_12 (Algorithm 6) three bytes at a time, with the modulus
 * check of section 7.2 folded into *bad (all ones once any value is q or
 * more, as mlkem_poly_decode12 reports) and each value reduced by one
 * masked subtraction. */
int pqc_avx2_mlkem_decode12(void *poly, const uint8_t *in, uint32_t *bad)
{
    mlkem_poly *p = poly;
    uint32_t out_of_range = 0;

    for (unsigned i = 0; i < MLKEM_N; i += 2) {
        uint32_t pair =
            (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16;
        uint32_t d0 = pair & 0xFFF, d1 = pair >> 12;

        out_of_range |=
            ~mlkem_mask_lt(d0, MLKEM_Q) | ~mlkem_mask_lt(d1, MLKEM_Q);
        p->c[i] = mlkem_csub_q(d0);
        p->c[i + 1] = mlkem_csub_q(d1);
        in += 3;
    }
    *bad = out_of_range;
    return PQC_IMPL_SERVED;
}
