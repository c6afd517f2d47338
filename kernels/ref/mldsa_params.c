/*
 * ML-DSA parameter sets (FIPS 204, Table 1) and their sizes (Table 2).
 *
 * The sizes are derived from the base constants by the formulas of
 * mldsa_internal.h; the static assertions below tie each derivation to the
 * published byte counts, so a wrong formula fails the build.
 */
#include <string.h>

#include "mldsa_internal.h"

/* Per-set constants of Table 1; beta = tau * eta and the bit widths follow. */
#define MLDSA44_K 4
#define MLDSA44_L 4
#define MLDSA44_ETA_BITS 3 /* bitlen(2 * 2) */
#define MLDSA44_Z_BITS 18  /* 1 + bitlen(2^17 - 1) */
#define MLDSA44_OMEGA 80
#define MLDSA44_LAMBDA 128

#define MLDSA65_K 6
#define MLDSA65_L 5
#define MLDSA65_ETA_BITS 4 /* bitlen(2 * 4) */
#define MLDSA65_Z_BITS 20  /* 1 + bitlen(2^19 - 1) */
#define MLDSA65_OMEGA 55
#define MLDSA65_LAMBDA 192

#define MLDSA87_K 8
#define MLDSA87_L 7
#define MLDSA87_ETA_BITS 3
#define MLDSA87_Z_BITS 20
#define MLDSA87_OMEGA 75
#define MLDSA87_LAMBDA 256

#define MLDSA44_PK MLDSA_PK_BYTES(MLDSA44_K)
#define MLDSA65_PK MLDSA_PK_BYTES(MLDSA65_K)
#define MLDSA87_PK MLDSA_PK_BYTES(MLDSA87_K)
#define MLDSA44_SK MLDSA_SK_BYTES(MLDSA44_K, MLDSA44_L, MLDSA44_ETA_BITS)
#define MLDSA65_SK MLDSA_SK_BYTES(MLDSA65_K, MLDSA65_L, MLDSA65_ETA_BITS)
#define MLDSA87_SK MLDSA_SK_BYTES(MLDSA87_K, MLDSA87_L, MLDSA87_ETA_BITS)
#define MLDSA44_SIG                                                            \
    MLDSA_SIG_BYTES(MLDSA44_LAMBDA, MLDSA44_K, MLDSA44_L, MLDSA44_Z_BITS,      \
                    MLDSA44_OMEGA)
#define MLDSA65_SIG                                                            \
    MLDSA_SIG_BYTES(MLDSA65_LAMBDA, MLDSA65_K, MLDSA65_L, MLDSA65_Z_BITS,      \
                    MLDSA65_OMEGA)
#define MLDSA87_SIG                                                            \
    MLDSA_SIG_BYTES(MLDSA87_LAMBDA, MLDSA87_K, MLDSA87_L, MLDSA87_Z_BITS,      \
                    MLDSA87_OMEGA)

_Static_assert(MLDSA44_PK == 1312, "ML-DSA-44 public key size");
_Static_assert(MLDSA65_PK == 1952, "ML-DSA-65 public key size");
_Static_assert(MLDSA87_PK == 2592, "ML-DSA-87 public key size");
_Static_assert(MLDSA44_SK == 2560, "ML-DSA-44 secret key size");
_Static_assert(MLDSA65_SK == 4032, "ML-DSA-65 secret key size");
_Static_assert(MLDSA87_SK == 4896, "ML-DSA-87 secret key size");
_Static_assert(MLDSA44_SIG == 2420, "ML-DSA-44 signature size");
_Static_assert(MLDSA65_SIG == 3309, "ML-DSA-65 signature size");
_Static_assert(MLDSA87_SIG == 4627, "ML-DSA-87 signature size");
_Static_assert(MLDSA87_K == MLDSA_K_MAX && MLDSA87_L == MLDSA_L_MAX,
               "stack arrays are sized for ML-DSA-87");
_Static_assert(
    (MLDSA_Q - 1) / 88 * 88 == MLDSA_Q - 1 &&
        (MLDSA_Q - 1) / 32 * 32 == MLDSA_Q - 1,
    "gamma2 divides q - 1 exactly, so w1_levels is 88 / 2 or 32 / 2");
_Static_assert((1u << MLDSA_Q_BITS) > MLDSA_Q - 1 &&
                   (1u << (MLDSA_Q_BITS - 1)) <= MLDSA_Q - 1,
               "MLDSA_Q_BITS is bitlen(q - 1)");

static const mldsa_params mldsa_sets[] = {
    {
        .ps = 44,
        .k = MLDSA44_K,
        .l = MLDSA44_L,
        .eta = 2,
        .eta_bits = MLDSA44_ETA_BITS,
        .tau = 39,
        .beta = 39 * 2,
        .gamma1 = 1 << 17,
        .z_bits = MLDSA44_Z_BITS,
        .gamma2 = (MLDSA_Q - 1) / 88,
        .w1_levels = 44,
        .w1_bits = 6, /* bitlen(44 - 1) */
        .omega = MLDSA44_OMEGA,
        .ctilde_bytes = MLDSA44_LAMBDA / 4,
        .pk_bytes = MLDSA44_PK,
        .sk_bytes = MLDSA44_SK,
        .sig_bytes = MLDSA44_SIG,
    },
    {
        .ps = 65,
        .k = MLDSA65_K,
        .l = MLDSA65_L,
        .eta = 4,
        .eta_bits = MLDSA65_ETA_BITS,
        .tau = 49,
        .beta = 49 * 4,
        .gamma1 = 1 << 19,
        .z_bits = MLDSA65_Z_BITS,
        .gamma2 = (MLDSA_Q - 1) / 32,
        .w1_levels = 16,
        .w1_bits = 4, /* bitlen(16 - 1) */
        .omega = MLDSA65_OMEGA,
        .ctilde_bytes = MLDSA65_LAMBDA / 4,
        .pk_bytes = MLDSA65_PK,
        .sk_bytes = MLDSA65_SK,
        .sig_bytes = MLDSA65_SIG,
    },
    {
        .ps = 87,
        .k = MLDSA87_K,
        .l = MLDSA87_L,
        .eta = 2,
        .eta_bits = MLDSA87_ETA_BITS,
        .tau = 60,
        .beta = 60 * 2,
        .gamma1 = 1 << 19,
        .z_bits = MLDSA87_Z_BITS,
        .gamma2 = (MLDSA_Q - 1) / 32,
        .w1_levels = 16,
        .w1_bits = 4,
        .omega = MLDSA87_OMEGA,
        .ctilde_bytes = MLDSA87_LAMBDA / 4,
        .pk_bytes = MLDSA87_PK,
        .sk_bytes = MLDSA87_SK,
        .sig_bytes = MLDSA87_SIG,
    },
};

const mldsa_params *mldsa_params_get(unsigned ps)
{
    for (size_t i = 0; i < sizeof mldsa_sets / sizeof mldsa_sets[0]; i++) {
        if (mldsa_sets[i].ps == ps) {
            return &mldsa_sets[i];
        }
    }
    return NULL;
}

size_t mldsa_pk_bytes(unsigned ps)
{
    const mldsa_params *p = mldsa_params_get(ps);
    return p ? p->pk_bytes : 0;
}

size_t mldsa_sk_bytes(unsigned ps)
{
    const mldsa_params *p = mldsa_params_get(ps);
    return p ? p->sk_bytes : 0;
}

size_t mldsa_sig_bytes(unsigned ps)
{
    const mldsa_params *p = mldsa_params_get(ps);
    return p ? p->sig_bytes : 0;
}

size_t mldsa_expanded_sk_bytes(unsigned ps)
{
    const mldsa_params *p = mldsa_params_get(ps);
    if (p == NULL) {
        return 0;
    }
    return sizeof(mldsa_xsk) + mldsa_xsk_poly_count(p) * sizeof(mldsa_poly);
}

void mldsa_wipe(void *p, size_t n)
{
    if (n == 0) {
        return;
    }
    memset(p, 0, n);
#if defined(__GNUC__) || defined(__clang__)
    /* An opaque use of the memory after the memset, so the compiler cannot
     * treat the stores as dead. */
    __asm__ __volatile__("" : : "r"(p) : "memory");
#else
    volatile uint8_t *v = p;
    for (size_t i = 0; i < n; i++) {
        v[i] = 0;
    }
#endif
}

int64_t mldsa_constant(unsigned id)
{
    switch (id) {
    case MLDSA_CONST_QINV:
        return MLDSA_QINV;
    case MLDSA_CONST_MONT:
        return MLDSA_MONT;
    case MLDSA_CONST_INTT_SCALE:
        return MLDSA_INTT_SCALE;
    case MLDSA_CONST_DIV93_MUL:
        return MLDSA_DIV93_MUL;
    case MLDSA_CONST_DIV1023_MUL:
        return MLDSA_DIV1023_MUL;
    case MLDSA_CONST_DIV5_MUL:
        return MLDSA_DIV5_MUL;
    default:
        return 0;
    }
}

int mldsa_poly_within(const mldsa_poly *p, int32_t bound)
{
    for (size_t i = 0; i < MLDSA_N; i++) {
        if (p->c[i] <= -bound || p->c[i] >= bound) {
            return 0;
        }
    }
    return 1;
}

const mldsa_params *mldsa_check_args(unsigned ps, const void *a, const void *b,
                                     const void *c)
{
    if (a == NULL || b == NULL || c == NULL) {
        return NULL;
    }
    return mldsa_params_get(ps);
}
