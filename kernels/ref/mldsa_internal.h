/*
 * ML-DSA internals shared by the mldsa_*.c files: the parameter sets, the
 * polynomial type and the building blocks of FIPS 204 sections 7 and 8.
 * Not part of the public API (see mldsa.h).
 *
 * NOTE: the constant-time masks below rely on >> of a negative int32_t or
 * int64_t being an arithmetic shift, and on conversion to a narrower signed
 * type wrapping modulo 2^width. C11 leaves both to the implementation; GCC,
 * Clang and MSVC do exactly this.
 */
#ifndef PQC_MLDSA_INTERNAL_H
#define PQC_MLDSA_INTERNAL_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "fips202.h"
#include "mldsa.h"

/* Base constants (FIPS 204, section 4). */
#define MLDSA_N 256
#define MLDSA_Q 8380417
#define MLDSA_D 13
#define MLDSA_Q_BITS 23     /* bitlen(q - 1) */
#define MLDSA_SEED_BYTES 32 /* xi, rho, K, rnd */
#define MLDSA_CRH_BYTES 64  /* tr, mu, rho', rho'' */

/* The largest k and l of the three sets (ML-DSA-87), for stack arrays. */
#define MLDSA_K_MAX 8
#define MLDSA_L_MAX 7

/* Bytes of one polynomial packed at `bits` bits per coefficient. */
#define MLDSA_POLY_BYTES(bits) (MLDSA_N * (bits) / 8)

/* FIPS 204, Algorithms 22, 24 and 26. */
#define MLDSA_T1_BITS (MLDSA_Q_BITS - MLDSA_D)
#define MLDSA_PK_BYTES(k)                                                      \
    (MLDSA_SEED_BYTES + (k)*MLDSA_POLY_BYTES(MLDSA_T1_BITS))
#define MLDSA_SK_BYTES(k, l, eta_bits)                                         \
    (2 * MLDSA_SEED_BYTES + MLDSA_CRH_BYTES +                                  \
     ((k) + (l)) * MLDSA_POLY_BYTES(eta_bits) + (k)*MLDSA_POLY_BYTES(MLDSA_D))
#define MLDSA_SIG_BYTES(lambda, k, l, z_bits, omega)                           \
    ((lambda) / 4 + (l)*MLDSA_POLY_BYTES(z_bits) + (omega) + (k))

/* One parameter set (FIPS 204, Table 1) and the sizes derived from it. */
typedef struct {
    unsigned ps;           /* 44, 65 or 87 */
    unsigned k, l;         /* A is k x l */
    unsigned eta;          /* secret coefficients lie in [-eta, eta] */
    unsigned eta_bits;     /* bitlen(2 eta) */
    unsigned tau;          /* nonzero coefficients of the challenge c */
    unsigned beta;         /* tau * eta */
    int32_t gamma1;        /* y coefficient range, a power of two */
    unsigned z_bits;       /* 1 + bitlen(gamma1 - 1) */
    int32_t gamma2;        /* low-order rounding range, (q - 1) / 88 or 32 */
    int32_t w1_levels;     /* (q - 1) / (2 gamma2): values of HighBits */
    unsigned w1_bits;      /* bitlen(w1_levels - 1) */
    unsigned omega;        /* maximum number of hint ones */
    unsigned ctilde_bytes; /* lambda / 4 */
    size_t pk_bytes, sk_bytes, sig_bytes;
} mldsa_params;

/* The set for ps, or NULL when ps is not 44, 65 or 87. */
const mldsa_params *mldsa_params_get(unsigned ps);

typedef struct {
    int32_t c[MLDSA_N];
} mldsa_poly;

/*
 * The expanded key slot behind mldsa.h's opaque pointer: a header, then
 * k * l + l + 2 k polynomials (A-hat row-major, s1-hat, s2-hat, t0-hat),
 * A-hat in [0, q), the others in (-q, q).
 */
typedef struct {
    uint32_t ps;
    uint32_t reserved;
    uint8_t rho[MLDSA_SEED_BYTES];
    uint8_t key[MLDSA_SEED_BYTES];
    uint8_t tr[MLDSA_CRH_BYTES];
    mldsa_poly polys[];
} mldsa_xsk;

/* Where each part of an expanded slot starts in its polys[] array. */
static inline size_t mldsa_xsk_s1_at(const mldsa_params *p)
{
    return (size_t)p->k * p->l;
}

static inline size_t mldsa_xsk_s2_at(const mldsa_params *p)
{
    return mldsa_xsk_s1_at(p) + p->l;
}

static inline size_t mldsa_xsk_t0_at(const mldsa_params *p)
{
    return mldsa_xsk_s2_at(p) + p->k;
}

static inline size_t mldsa_xsk_poly_count(const mldsa_params *p)
{
    return mldsa_xsk_t0_at(p) + p->k;
}

/*
 * Constant-time testing: built with -DMLDSA_CT_TESTING, a harness marks the
 * secret inputs as undefined memory for valgrind's memcheck, which reports
 * every branch and memory index that depends on them. MLDSA_DECLASSIFY
 * marks what may be branched on although it is computed from secrets: rho,
 * the accept/reject decisions of the samplers and of the signing loop, and
 * an accepted signature. Memcheck does not see variable-time instructions
 * such as division; the code avoids those by construction.
 */
#ifdef MLDSA_CT_TESTING
#include <valgrind/memcheck.h>
#define MLDSA_DECLASSIFY(p, len) VALGRIND_MAKE_MEM_DEFINED((p), (len))
#else
#define MLDSA_DECLASSIFY(p, len) ((void)0)
#endif

/*
 * Magic constants, each with the formula it comes from; mldsa_constant
 * (mldsa.h) hands them to the tests, which recompute them.
 */
#define MLDSA_QINV 58728449    /* q^-1 mod 2^32 */
#define MLDSA_MONT (-4186625)  /* 2^32 mod q, centred */
#define MLDSA_INTT_SCALE 41978 /* 2^64 / 256 mod q (= 2^56 mod q) */

/*
 * Division by small constants as a multiply and shift: with
 * m = ceil(2^s / d) and error e = m d - 2^s, floor(x m / 2^s) = floor(x / d)
 * for every x < 2^s / e.
 *   floor(x / 1023) for x < 2^15: m = ceil(2^25 / 1023) = 32801, e = 991.
 *   floor(x / 93) for x < 2^13: m = ceil(2^20 / 93) = 11276, e = 92.
 *   floor(x / 5) for x < 2^6: m = ceil(2^10 / 5) = 205, e = 1.
 */
#define MLDSA_DIV1023_MUL 32801
#define MLDSA_DIV93_MUL 11276
#define MLDSA_DIV5_MUL 205

/* Zero n bytes at p in a way the compiler does not remove. */
void mldsa_wipe(void *p, size_t n);

/*
 * Debug builds check coefficient bounds with this (|c| < bound for every
 * coefficient); it branches on the values, so a debug build is not
 * constant time. Release builds (NDEBUG) compile it away.
 */
#ifdef NDEBUG
#define MLDSA_ASSERT_BOUND(p, bound) ((void)0)
#else
#define MLDSA_ASSERT_BOUND(p, bound) assert(mldsa_poly_within((p), (bound)))
#endif
int mldsa_poly_within(const mldsa_poly *p, int32_t bound);

/* --- Arithmetic mod q (mldsa_poly.c) --- */

/* a * 2^-32 mod q for |a| <= q * 2^31; the result is in (-q, q). */
int32_t mldsa_mont_reduce(int64_t a);

/* a mod q with |result| <= 6283009 < q, for a <= 2^31 - 2^22 - 1. Inline,
 * so that the loops over a polynomial that use it vectorise. */
static inline int32_t mldsa_reduce(int32_t a)
{
    /* q = 2^23 - 2^13 + 1, so subtracting round(a / 2^23) q leaves at most
     * 2^22 + 255 (2^13 - 1) = 6283009 in magnitude. */
    int32_t t = (a + (1 << 22)) >> 23;
    return a - t * MLDSA_Q;
}

/* a mod q in [0, q), for a <= 2^31 - 2^22 - 1. */
static inline int32_t mldsa_freeze(int32_t a)
{
    int32_t r = mldsa_reduce(a);
    return r + ((r >> 31) & MLDSA_Q);
}

/* Every coefficient through mldsa_reduce or mldsa_freeze. */
void mldsa_poly_reduce(mldsa_poly *p);
void mldsa_poly_freeze(mldsa_poly *p);

/* Every coefficient to a mod+- q, in [-(q - 1) / 2, (q - 1) / 2]; input as
 * mldsa_freeze. */
void mldsa_poly_center(mldsa_poly *p);

/*
 * NTT (FIPS 204, Algorithm 41), in place. Input |c| < 2^30; each of the
 * eight layers adds less than q, so the output is below 2^30 + 8q.
 */
void mldsa_ntt(mldsa_poly *p);

/*
 * NTT^-1 (FIPS 204, Algorithm 42) times 2^32, in place, so that it undoes
 * the 2^-32 of mldsa_poly_pointwise. Input |c| < q: the additions of the
 * eight layers reach at most 256 (q - 1) < 2^31. Output |c| < q.
 */
void mldsa_invntt_tomont(mldsa_poly *p);

/* out = a * b * 2^-32 coefficient-wise; |a| < q, |b| < 2^31; |out| < q. */
void mldsa_poly_pointwise(mldsa_poly *out, const mldsa_poly *a,
                          const mldsa_poly *b);

/* acc += a * b * 2^-32 coefficient-wise; bounds as mldsa_poly_pointwise. */
void mldsa_poly_pointwise_acc(mldsa_poly *acc, const mldsa_poly *a,
                              const mldsa_poly *b);

/* Coefficient-wise sums and differences; the caller keeps them in range. */
void mldsa_poly_add(mldsa_poly *out, const mldsa_poly *a, const mldsa_poly *b);
void mldsa_poly_sub(mldsa_poly *out, const mldsa_poly *a, const mldsa_poly *b);

/* --- Rounding (FIPS 204, section 7.4), all constant time --- */

/* Power2Round (Algorithm 35): r in [0, q) -> r1, r0 with r = r1 2^d + r0. */
void mldsa_power2round(int32_t *r1, int32_t *r0, int32_t r);

/* Decompose (Algorithm 36) for r in [0, q); r0 is centred. */
void mldsa_decompose(const mldsa_params *p, int32_t *r1, int32_t *r0,
                     int32_t r);

/* LowBits of every coefficient (in [0, q)) of a, into r0. */
void mldsa_poly_lowbits(const mldsa_params *p, mldsa_poly *r0,
                        const mldsa_poly *a);

/* HighBits of every coefficient (in [0, q)) of a. */
void mldsa_poly_highbits(const mldsa_params *p, mldsa_poly *r1,
                         const mldsa_poly *a);

/*
 * h = MakeHint(z, r) (Algorithm 39) coefficient-wise, given r and r + z as
 * values in [0, q): 1 where their high bits differ. Returns the number of
 * ones.
 */
unsigned mldsa_poly_make_hint(const mldsa_params *p, mldsa_poly *h,
                              const mldsa_poly *r, const mldsa_poly *rz);

/* UseHint (Algorithm 40) coefficient-wise; a in [0, q), h in {0, 1}. */
void mldsa_poly_use_hint(const mldsa_params *p, mldsa_poly *r1,
                         const mldsa_poly *a, const mldsa_poly *h);

/*
 * All ones (0xFFFFFFFF) if some coefficient has |c| >= bound, else 0,
 * without branching on the coefficients. |c| < 2^31 and 0 < bound <= q.
 */
uint32_t mldsa_poly_exceeds(const mldsa_poly *a, int32_t bound);

/* --- Sampling (FIPS 204, section 7.3; mldsa_sample.c) --- */

/* A-hat[r][s] = RejNTTPoly(rho || s || r) (Algorithms 30 and 32); [0, q). */
void mldsa_sample_a(mldsa_poly *a, const uint8_t rho[MLDSA_SEED_BYTES],
                    unsigned r, unsigned s);

/* RejBoundedPoly(rho' || nonce) (Algorithm 31), the body of ExpandS
 * (Algorithm 33): coefficients in [-eta, eta]. */
void mldsa_sample_eta(const mldsa_params *p, mldsa_poly *a,
                      const uint8_t rho[MLDSA_CRH_BYTES], uint16_t nonce);

/* One polynomial of ExpandMask (Algorithm 34), nonce = kappa + r:
 * coefficients in [-gamma1 + 1, gamma1]. */
void mldsa_sample_mask(const mldsa_params *p, mldsa_poly *y,
                       const uint8_t rho[MLDSA_CRH_BYTES], uint16_t nonce);

/* The three samplers above for `count` polynomials a[0..count), through
 * the dispatch table (kernels/dispatch.h), four at a time where a backend
 * has a 4-way sponge; byte-identical to calling them in a loop.
 * sample_a_n: a[i] = A-hat[r][s] for nonce[i] = s + 256 r (the seed's two
 * bytes, little-endian). eta_n and mask_n: nonces nonce + i. */
void mldsa_sample_a_n(mldsa_poly *a, const uint8_t rho[MLDSA_SEED_BYTES],
                      const uint16_t *nonce, unsigned count);
void mldsa_sample_eta_n(const mldsa_params *p, mldsa_poly *a,
                        const uint8_t rho[MLDSA_CRH_BYTES], uint16_t nonce,
                        unsigned count);
void mldsa_sample_mask_n(const mldsa_params *p, mldsa_poly *y,
                         const uint8_t rho[MLDSA_CRH_BYTES], uint16_t nonce,
                         unsigned count);

/* c = SampleInBall(ctilde) (Algorithm 29): tau coefficients of +-1. Not
 * constant time: ctilde must be public, as it is in verification (part of
 * the signature) and in signing once hashed (see mldsa_sign.c). */
void mldsa_sample_in_ball(const mldsa_params *p, mldsa_poly *c,
                          const uint8_t *ctilde);

/* --- Encodings (FIPS 204, section 7.2; mldsa_pack.c) --- */

/* One polynomial of t1 within pkEncode / pkDecode (Algorithms 22, 23):
 * 10-bit coefficients in [0, 2^10), 320 bytes. */
void mldsa_pack_t1(uint8_t *out, const mldsa_poly *t1);
void mldsa_unpack_t1(mldsa_poly *t1, const uint8_t *in);

/* One packed polynomial of s1 or s2 (eta_bits each, coefficients in
 * [-eta, eta]) and of t0 (d bits, in [-2^12 + 1, 2^12]). Unpacking s1/s2
 * yields eta - v for any bit pattern v, so it can leave [-eta, eta]. */
void mldsa_pack_eta(const mldsa_params *p, uint8_t *out, const mldsa_poly *a);
void mldsa_unpack_eta(const mldsa_params *p, mldsa_poly *a, const uint8_t *in);
void mldsa_pack_t0(uint8_t *out, const mldsa_poly *a);
void mldsa_unpack_t0(mldsa_poly *a, const uint8_t *in);

/* One polynomial of w1Encode (Algorithm 28): 32 * w1_bits bytes. */
void mldsa_pack_w1(const mldsa_params *p, uint8_t *out, const mldsa_poly *w1);

/* One polynomial of z within sigEncode / sigDecode (Algorithms 26, 27),
 * coefficients in [-gamma1 + 1, gamma1]. */
void mldsa_pack_z(const mldsa_params *p, uint8_t *out, const mldsa_poly *z);
void mldsa_unpack_z(const mldsa_params *p, mldsa_poly *z, const uint8_t *in);

/* HintBitPack (Algorithm 20): out gets omega + k bytes; h (k polynomials)
 * has at most omega ones in total. */
void mldsa_hint_pack(const mldsa_params *p, uint8_t *out, const mldsa_poly *h);

/* HintBitUnpack (Algorithm 21) into k polynomials: 0 on success, -1 for
 * any encoding the standard rejects. The input is public. */
int mldsa_hint_unpack(const mldsa_params *p, mldsa_poly *h, const uint8_t *in);

/* --- Shared steps --- */

/* Check ps and that no pointer is null: NULL or the parameter set. */
const mldsa_params *mldsa_check_args(unsigned ps, const void *a, const void *b,
                                     const void *c);

/* A message of mlen bytes at msg is acceptable: msg is null only if mlen
 * is 0. */
static inline int mldsa_msg_ok(const uint8_t *msg, size_t mlen)
{
    return msg != NULL || mlen == 0;
}

/* mu = H(tr || prefix || msg, 64), prefix being the header of M'. */
void mldsa_mu_with_prefix(uint8_t mu[MLDSA_CRH_BYTES],
                          const uint8_t tr[MLDSA_CRH_BYTES],
                          const uint8_t *prefix, size_t prefix_len,
                          const uint8_t *msg, size_t mlen);

#endif
