/*
 * The number-theoretic transform of ML-KEM (FIPS 203, section 4.3).
 *
 * q = 3329 has a primitive 256th root of unity, zeta = 17, but no 512th,
 * so the NTT splits X^256 + 1 into 128 quadratics X^2 - gamma_i and stops
 * there; products in the NTT domain are then 128 small products modulo
 * those quadratics. Twiddle factors are kept in plain (not Montgomery) form
 * so that the tables read exactly as in FIPS 203, Appendix A.
 *
 * A backend may serve either transform (kernels/dispatch.h); the loops
 * below are the reference it must match.
 */
#include "../dispatch.h"
#include "mlkem_poly.h"

/* mlkem_zetas[i] = 17^BitRev7(i) mod 3329 (FIPS 203, Appendix A). */
const uint16_t mlkem_zetas[128] = {
    1,    1729, 2580, 3289, 2642, 630,  1897, 848,  1062, 1919, 193,  797,
    2786, 3260, 569,  1746, 296,  2447, 1339, 1476, 3046, 56,   2240, 1333,
    1426, 2094, 535,  2882, 2393, 2879, 1974, 821,  289,  331,  3253, 1756,
    1197, 2304, 2277, 2055, 650,  1977, 2513, 632,  2865, 33,   1320, 1915,
    2319, 1435, 807,  452,  1438, 2868, 1534, 2402, 2647, 2617, 1481, 648,
    2474, 3110, 1227, 910,  17,   2761, 583,  2649, 1637, 723,  2288, 1100,
    1409, 2662, 3281, 233,  756,  2156, 3015, 3050, 1703, 1651, 2789, 1789,
    1847, 952,  1461, 2687, 939,  2308, 2437, 2388, 733,  2337, 268,  641,
    1584, 2298, 2037, 3220, 375,  2549, 2090, 1645, 1063, 319,  2773, 757,
    2099, 561,  2466, 2594, 2804, 1092, 403,  1026, 1143, 2150, 2775, 886,
    1722, 1212, 1874, 1029, 2110, 2935, 885,  2154,
};

/* mlkem_gammas[i] = 17^(2 BitRev7(i) + 1) mod 3329 (FIPS 203, Appendix A);
 * entries 2j and 2j + 1 are mlkem_zetas[64 + j] and its negation. */
const uint16_t mlkem_gammas[128] = {
    17,   3312, 2761, 568,  583,  2746, 2649, 680,  1637, 1692, 723,  2606,
    2288, 1041, 1100, 2229, 1409, 1920, 2662, 667,  3281, 48,   233,  3096,
    756,  2573, 2156, 1173, 3015, 314,  3050, 279,  1703, 1626, 1651, 1678,
    2789, 540,  1789, 1540, 1847, 1482, 952,  2377, 1461, 1868, 2687, 642,
    939,  2390, 2308, 1021, 2437, 892,  2388, 941,  733,  2596, 2337, 992,
    268,  3061, 641,  2688, 1584, 1745, 2298, 1031, 2037, 1292, 3220, 109,
    375,  2954, 2549, 780,  2090, 1239, 1645, 1684, 1063, 2266, 319,  3010,
    2773, 556,  757,  2572, 2099, 1230, 561,  2768, 2466, 863,  2594, 735,
    2804, 525,  1092, 2237, 403,  2926, 1026, 2303, 1143, 2186, 2150, 1179,
    2775, 554,  886,  2443, 1722, 1607, 1212, 2117, 1874, 1455, 1029, 2300,
    2110, 1219, 2935, 394,  885,  2444, 2154, 1175,
};

/* FIPS 203, Algorithm 9: seven layers of Cooley-Tukey butterflies, the
 * block length halving from 128 to 2, twiddles taken in table order. */
void mlkem_poly_ntt(mlkem_poly *p)
{
    const pqc_impl *impl = pqc_impl_active();
    unsigned next = 1;

    MLKEM_ASSERT_CANONICAL(p);
    if (impl != NULL && impl->mlkem_ntt != NULL &&
        impl->mlkem_ntt(p) == PQC_IMPL_SERVED) {
        return;
    }
    for (unsigned len = 128; len >= 2; len /= 2) {
        for (unsigned start = 0; start < MLKEM_N; start += 2 * len) {
            uint16_t zeta = mlkem_zetas[next++];

            for (unsigned j = start; j < start + len; j++) {
                uint16_t t = mlkem_mul_q(zeta, p->c[j + len]);
                p->c[j + len] = mlkem_sub_q(p->c[j], t);
                p->c[j] = mlkem_add_q(p->c[j], t);
            }
        }
    }
}

/* FIPS 203, Algorithm 10: Gentleman-Sande butterflies undo the layers in
 * reverse, walking the table backwards; the seven halvings are undone at
 * the end by one multiplication by 128^-1. */
void mlkem_poly_invntt(mlkem_poly *p)
{
    const pqc_impl *impl = pqc_impl_active();
    unsigned next = 127;

    MLKEM_ASSERT_CANONICAL(p);
    if (impl != NULL && impl->mlkem_invntt != NULL &&
        impl->mlkem_invntt(p) == PQC_IMPL_SERVED) {
        return;
    }
    for (unsigned len = 2; len <= 128; len *= 2) {
        for (unsigned start = 0; start < MLKEM_N; start += 2 * len) {
            uint16_t zeta = mlkem_zetas[next--];

            for (unsigned j = start; j < start + len; j++) {
                uint16_t t = p->c[j];
                p->c[j] = mlkem_add_q(t, p->c[j + len]);
                p->c[j + len] =
                    mlkem_mul_q(zeta, mlkem_sub_q(p->c[j + len], t));
            }
        }
    }

    for (unsigned i = 0; i < MLKEM_N; i++) {
        p->c[i] = mlkem_mul_q(p->c[i], MLKEM_INV128);
    }
}

/* FIPS 203, Algorithms 11 and 12: (a0 + a1 X)(b0 + b1 X) mod X^2 - gamma.
 * Each 32-bit sum below stays under 3 q^2 < 2^25 before one reduction. */
void mlkem_poly_basemul_acc(mlkem_poly *acc, const mlkem_poly *a,
                            const mlkem_poly *b)
{
    const pqc_impl *impl = pqc_impl_active();

    MLKEM_ASSERT_CANONICAL(acc);
    MLKEM_ASSERT_CANONICAL(a);
    MLKEM_ASSERT_CANONICAL(b);
    if (impl != NULL && impl->mlkem_basemul_acc != NULL &&
        impl->mlkem_basemul_acc(acc, a, b) == PQC_IMPL_SERVED) {
        return;
    }
    for (unsigned i = 0; i < MLKEM_N / 2; i++) {
        uint32_t a0 = a->c[2 * i], a1 = a->c[2 * i + 1];
        uint32_t b0 = b->c[2 * i], b1 = b->c[2 * i + 1];
        uint32_t a1b1 = mlkem_mul_q((uint16_t)a1, (uint16_t)b1);

        uint32_t even = acc->c[2 * i] + a0 * b0 + a1b1 * mlkem_gammas[i];
        uint32_t odd = acc->c[2 * i + 1] + a0 * b1 + a1 * b0;
        acc->c[2 * i] = mlkem_mod_q(even);
        acc->c[2 * i + 1] = mlkem_mod_q(odd);
    }
}
