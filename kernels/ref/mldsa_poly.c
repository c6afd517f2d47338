/*
 * Arithmetic mod q, the NTT and the rounding functions of ML-DSA (FIPS 204,
 * sections 7.4 and 7.5). Every function here is constant time: the only
 * branches are on loop counters and on the (public) parameter set. A
 * backend may serve the NTTs and pointwise products (kernels/dispatch.h);
 * the loops here are the reference it must match integer for integer.
 */
#include "../dispatch.h"
#include "mldsa_internal.h"

_Static_assert(256LL * (MLDSA_Q - 1) < (1LL << 31),
               "NTT^-1 sums of inputs below q fit in int32_t");
_Static_assert(2 * ((MLDSA_Q - 1) / 32) == 1023 << 9, "2 gamma2 = 1023 * 2^9");
_Static_assert(2 * ((MLDSA_Q - 1) / 88) == 93 << 11, "2 gamma2 = 93 * 2^11");

/*
 * zetas[i] = 1753^bitrev8(i) * 2^32 mod q, centred: 1753 is the primitive
 * 512-th root of unity of FIPS 204 (Appendix B), kept in Montgomery form so
 * that one mldsa_mont_reduce multiplies by the plain power. Entry 0
 * (zeta^0, which the NTT never uses) is 2^32 mod q.
 */
static const int32_t mldsa_zetas[MLDSA_N] = {
    -4186625, 25847,    -2608894, -518909,  237124,   -777960,  -876248,
    466468,   1826347,  2353451,  -359251,  -2091905, 3119733,  -2884855,
    3111497,  2680103,  2725464,  1024112,  -1079900, 3585928,  -549488,
    -1119584, 2619752,  -2108549, -2118186, -3859737, -1399561, -3277672,
    1757237,  -19422,   4010497,  280005,   2706023,  95776,    3077325,
    3530437,  -1661693, -3592148, -2537516, 3915439,  -3861115, -3043716,
    3574422,  -2867647, 3539968,  -300467,  2348700,  -539299,  -1699267,
    -1643818, 3505694,  -3821735, 3507263,  -2140649, -1600420, 3699596,
    811944,   531354,   954230,   3881043,  3900724,  -2556880, 2071892,
    -2797779, -3930395, -1528703, -3677745, -3041255, -1452451, 3475950,
    2176455,  -1585221, -1257611, 1939314,  -4083598, -1000202, -3190144,
    -3157330, -3632928, 126922,   3412210,  -983419,  2147896,  2715295,
    -2967645, -3693493, -411027,  -2477047, -671102,  -1228525, -22981,
    -1308169, -381987,  1349076,  1852771,  -1430430, -3343383, 264944,
    508951,   3097992,  44288,    -1100098, 904516,   3958618,  -3724342,
    -8578,    1653064,  -3249728, 2389356,  -210977,  759969,   -1316856,
    189548,   -3553272, 3159746,  -1851402, -2409325, -177440,  1315589,
    1341330,  1285669,  -1584928, -812732,  -1439742, -3019102, -3881060,
    -3628969, 3839961,  2091667,  3407706,  2316500,  3817976,  -3342478,
    2244091,  -2446433, -3562462, 266997,   2434439,  -1235728, 3513181,
    -3520352, -3759364, -1197226, -3193378, 900702,   1859098,  909542,
    819034,   495491,   -1613174, -43260,   -522500,  -655327,  -3122442,
    2031748,  3207046,  -3556995, -525098,  -768622,  -3595838, 342297,
    286988,   -2437823, 4108315,  3437287,  -3342277, 1735879,  203044,
    2842341,  2691481,  -2590150, 1265009,  4055324,  1247620,  2486353,
    1595974,  -3767016, 1250494,  2635921,  -3548272, -2994039, 1869119,
    1903435,  -1050970, -1333058, 1237275,  -3318210, -1430225, -451100,
    1312455,  3306115,  -1962642, -1279661, 1917081,  -2546312, -1374803,
    1500165,  777191,   2235880,  3406031,  -542412,  -2831860, -1671176,
    -1846953, -2584293, -3724270, 594136,   -3776993, -2013608, 2432395,
    2454455,  -164721,  1957272,  3369112,  185531,   -1207385, -3183426,
    162844,   1616392,  3014001,  810149,   1652634,  -3694233, -1799107,
    -3038916, 3523897,  3866901,  269760,   2213111,  -975884,  1717735,
    472078,   -426683,  1723600,  -1803090, 1910376,  -1667432, -1104333,
    -260646,  -3833893, -2939036, -2235985, -420899,  -2286327, 183443,
    -976891,  1612842,  -3545687, -554416,  3919660,  -48306,   -1362209,
    3937738,  1400424,  -846154,  1976782};

int32_t mldsa_mont_reduce(int64_t a)
{
    /* t = a q^-1 mod 2^32, so a - t q is a multiple of 2^32; with
     * |a| <= q 2^31 and |t q| <= q 2^31 the quotient lies in (-q, q). */
    int32_t t = (int32_t)(uint32_t)((uint64_t)a * MLDSA_QINV);
    return (int32_t)((a - (int64_t)t * MLDSA_Q) >> 32);
}

void mldsa_poly_reduce(mldsa_poly *p)
{
    for (size_t i = 0; i < MLDSA_N; i++) {
        p->c[i] = mldsa_reduce(p->c[i]);
    }
}

void mldsa_poly_freeze(mldsa_poly *p)
{
    for (size_t i = 0; i < MLDSA_N; i++) {
        p->c[i] = mldsa_freeze(p->c[i]);
    }
}

void mldsa_poly_center(mldsa_poly *p)
{
    for (size_t i = 0; i < MLDSA_N; i++) {
        int32_t r = mldsa_freeze(p->c[i]);
        p->c[i] = r - ((((MLDSA_Q - 1) / 2 - r) >> 31) & MLDSA_Q);
    }
}

static int32_t mldsa_mont_mul(int32_t a, int32_t b)
{
    return mldsa_mont_reduce((int64_t)a * b);
}

void mldsa_ntt(mldsa_poly *p)
{
    const pqc_impl *impl = pqc_impl_active();
    unsigned m = 0;

    MLDSA_ASSERT_BOUND(p, 1 << 30);
    if (impl != NULL && impl->mldsa_ntt != NULL &&
        impl->mldsa_ntt(p) == PQC_IMPL_SERVED) {
        return;
    }
    for (unsigned len = MLDSA_N / 2; len > 0; len >>= 1) {
        for (unsigned start = 0; start < MLDSA_N; start += 2 * len) {
            int32_t zeta = mldsa_zetas[++m];
            for (unsigned j = start; j < start + len; j++) {
                int32_t t = mldsa_mont_mul(zeta, p->c[j + len]);
                p->c[j + len] = p->c[j] - t;
                p->c[j] = p->c[j] + t;
            }
        }
    }
}

void mldsa_invntt_tomont(mldsa_poly *p)
{
    const pqc_impl *impl = pqc_impl_active();
    unsigned m = MLDSA_N;

    MLDSA_ASSERT_BOUND(p, MLDSA_Q);
    if (impl != NULL && impl->mldsa_invntt != NULL &&
        impl->mldsa_invntt(p) == PQC_IMPL_SERVED) {
        return;
    }
    for (unsigned len = 1; len < MLDSA_N; len <<= 1) {
        for (unsigned start = 0; start < MLDSA_N; start += 2 * len) {
            int32_t zeta = -mldsa_zetas[--m];
            for (unsigned j = start; j < start + len; j++) {
                int32_t t = p->c[j];
                p->c[j] = t + p->c[j + len];
                p->c[j + len] = mldsa_mont_mul(zeta, t - p->c[j + len]);
            }
        }
    }

    /* One Montgomery multiplication by 2^64 / 256 divides by 256 (FIPS 204,
     * Algorithm 42, step 21) and multiplies by 2^32. */
    for (size_t i = 0; i < MLDSA_N; i++) {
        p->c[i] = mldsa_mont_mul(MLDSA_INTT_SCALE, p->c[i]);
    }
}

void mldsa_poly_pointwise(mldsa_poly *out, const mldsa_poly *a,
                          const mldsa_poly *b)
{
    const pqc_impl *impl = pqc_impl_active();

    if (impl != NULL && impl->mldsa_pointwise != NULL &&
        impl->mldsa_pointwise(out, a, b, 0) == PQC_IMPL_SERVED) {
        return;
    }
    for (size_t i = 0; i < MLDSA_N; i++) {
        out->c[i] = mldsa_mont_mul(a->c[i], b->c[i]);
    }
}

void mldsa_poly_pointwise_acc(mldsa_poly *acc, const mldsa_poly *a,
                              const mldsa_poly *b)
{
    const pqc_impl *impl = pqc_impl_active();

    if (impl != NULL && impl->mldsa_pointwise != NULL &&
        impl->mldsa_pointwise(acc, a, b, 1) == PQC_IMPL_SERVED) {
        return;
    }
    for (size_t i = 0; i < MLDSA_N; i++) {
        acc->c[i] += mldsa_mont_mul(a->c[i], b->c[i]);
    }
}

void mldsa_poly_add(mldsa_poly *out, const mldsa_poly *a, const mldsa_poly *b)
{
    for (size_t i = 0; i < MLDSA_N; i++) {
        out->c[i] = a->c[i] + b->c[i];
    }
}

void mldsa_poly_sub(mldsa_poly *out, const mldsa_poly *a, const mldsa_poly *b)
{
    for (size_t i = 0; i < MLDSA_N; i++) {
        out->c[i] = a->c[i] - b->c[i];
    }
}

void mldsa_power2round(int32_t *r1, int32_t *r0, int32_t r)
{
    /* r0 must land in (-2^(d-1), 2^(d-1)], so r1 rounds r / 2^d half down:
     * r1 = floor((r + 2^(d-1) - 1) / 2^d). */
    *r1 = (r + (1 << (MLDSA_D - 1)) - 1) >> MLDSA_D;
    *r0 = r - (*r1 << MLDSA_D);
}

void mldsa_decompose(const mldsa_params *p, int32_t *r1, int32_t *r0, int32_t r)
{
    /* r0 = r mod+- 2 gamma2 lies in (-gamma2, gamma2], so
     * r1 = floor((r + gamma2 - 1) / (2 gamma2)), with x < 2^24 for r < q.
     * 2 gamma2 is 1023 * 2^9 or 93 * 2^11: shift the power of two out, then
     * divide by the odd part with a multiply and shift (MLDSA_DIV*_MUL). */
    uint32_t x = (uint32_t)(r + p->gamma2 - 1);
    int32_t top = p->w1_levels;
    int32_t hi;
    if (p->gamma2 == (MLDSA_Q - 1) / 32) {
        hi = (int32_t)(((x >> 9) * MLDSA_DIV1023_MUL) >> 25);
    } else {
        hi = (int32_t)(((x >> 11) * MLDSA_DIV93_MUL) >> 20);
    }

    /* hi reaches top = (q - 1) / (2 gamma2) only when r > q - 1 - gamma2;
     * Algorithm 36 step 3 then returns r1 = 0 and r0 - 1. */
    int32_t wrap = (top - 1 - hi) >> 31;
    *r0 = r - hi * 2 * p->gamma2 - (wrap & 1);
    *r1 = hi & ~wrap;
}

void mldsa_poly_highbits(const mldsa_params *p, mldsa_poly *r1,
                         const mldsa_poly *a)
{
    const pqc_impl *impl = pqc_impl_active();
    int32_t lo;

    if (impl != NULL && impl->mldsa_decompose != NULL &&
        impl->mldsa_decompose(p->gamma2, r1->c, NULL, a->c) ==
            PQC_IMPL_SERVED) {
        return;
    }
    for (size_t i = 0; i < MLDSA_N; i++) {
        mldsa_decompose(p, &r1->c[i], &lo, a->c[i]);
    }
}

unsigned mldsa_poly_make_hint(const mldsa_params *p, mldsa_poly *h,
                              const mldsa_poly *r, const mldsa_poly *rz)
{
    mldsa_poly a1, b1;
    unsigned ones = 0;

    mldsa_poly_highbits(p, &a1, r);
    mldsa_poly_highbits(p, &b1, rz);
    for (size_t i = 0; i < MLDSA_N; i++) {
        /* (x | -x) has its top bit set exactly when x != 0. */
        uint32_t diff = (uint32_t)(a1.c[i] ^ b1.c[i]);
        h->c[i] = (int32_t)((diff | (0u - diff)) >> 31);
        ones += (unsigned)h->c[i];
    }
    return ones;
}

void mldsa_poly_lowbits(const mldsa_params *p, mldsa_poly *r0,
                        const mldsa_poly *a)
{
    const pqc_impl *impl = pqc_impl_active();
    int32_t hi;

    if (impl != NULL && impl->mldsa_decompose != NULL &&
        impl->mldsa_decompose(p->gamma2, NULL, r0->c, a->c) ==
            PQC_IMPL_SERVED) {
        return;
    }
    for (size_t i = 0; i < MLDSA_N; i++) {
        mldsa_decompose(p, &hi, &r0->c[i], a->c[i]);
    }
}

void mldsa_poly_use_hint(const mldsa_params *p, mldsa_poly *r1,
                         const mldsa_poly *a, const mldsa_poly *h)
{
    int32_t top = p->w1_levels;
    int32_t hi, lo;

    for (size_t i = 0; i < MLDSA_N; i++) {
        mldsa_decompose(p, &hi, &lo, a->c[i]);

        /* Algorithm 40: with a hint, step r1 up when r0 > 0, else down,
         * modulo top; the sum stays within [-1, top]. */
        int32_t step = 1 | ((lo - 1) >> 31);
        int32_t v = hi + (step & -h->c[i]);
        v += (v >> 31) & top;
        v -= ((top - 1 - v) >> 31) & top;
        r1->c[i] = v;
    }
}

uint32_t mldsa_poly_exceeds(const mldsa_poly *a, int32_t bound)
{
    uint32_t over = 0;

    for (size_t i = 0; i < MLDSA_N; i++) {
        int32_t sign = a->c[i] >> 31;
        int32_t mag = (a->c[i] ^ sign) - sign;
        over |= (uint32_t)((bound - 1 - mag) >> 31);
    }
    return over;
}

int32_t mldsa_zeta(unsigned i)
{
    return i < MLDSA_N ? mldsa_zetas[i] : 0;
}

int mldsa_decompose_many(unsigned ps, int32_t *r1, int32_t *r0,
                         const int32_t *r, size_t n)
{
    const mldsa_params *p = mldsa_params_get(ps);
    if (p == NULL || (n > 0 && (r1 == NULL || r0 == NULL || r == NULL))) {
        return PQC_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < n; i++) {
        if (r[i] < 0 || r[i] >= MLDSA_Q) {
            return PQC_ERR_INVALID_ARG;
        }
        mldsa_decompose(p, &r1[i], &r0[i], r[i]);
    }
    return PQC_OK;
}
