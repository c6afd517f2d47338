/*
 * ML-DSA signing (FIPS 204, Algorithms 2 and 7) from a key slot.
 *
 * Constant time: each rejection check of Algorithm 7 (the z and r0 halves
 * of step 23, then step 27) is computed as an arithmetic mask over all
 * coefficients, and only its outcome is declassified: the attempt stops at
 * the first check that fails. So timing shows how many attempts were made
 * and which check rejected each, and ctilde, which is declassified once
 * hashed. Neither says anything about the key: ctilde is a random-oracle
 * output, and a rejected candidate is discarded whatever made it fail
 * (CRYSTALS-Dilithium round 3 specification, section 5.5). The rejected
 * candidates themselves (y, z, w, c) never leave this file and are wiped.
 */
#include <stdlib.h>
#include <string.h>

#include "mldsa_internal.h"

/*
 * FIPS 204 (Appendix C) lets an implementation bound the attempts, at no
 * fewer than 814; a genuine key needs that many with negligible
 * probability. The bound matters for crafted secret keys (say, a t0 that
 * makes every hint vector too heavy), which would otherwise loop for ever.
 */
#define MLDSA_MAX_ATTEMPTS 814

/* The secret state of one signature, wiped before returning. */
typedef struct {
    mldsa_poly y[MLDSA_L_MAX]; /* y, then z = y + c s1 */
    mldsa_poly y_hat[MLDSA_L_MAX];
    mldsa_poly w[MLDSA_K_MAX]; /* w, then w - c s2, in [0, q) */
    mldsa_poly h[MLDSA_K_MAX]; /* w1, then the hint */
    mldsa_poly c_hat;
    mldsa_poly tmp;
    uint8_t w1_packed[MLDSA_K_MAX * MLDSA_POLY_BYTES(6)];
    uint8_t ctilde[MLDSA_CRH_BYTES];
    uint8_t rho2[MLDSA_CRH_BYTES]; /* rho'' */
} mldsa_sign_work;

/* c * v for a key polynomial v_hat (reduced NTT form), back in (-q, q). */
static void mldsa_times_c(mldsa_poly *out, const mldsa_poly *c_hat,
                          const mldsa_poly *v_hat)
{
    mldsa_poly_pointwise(out, c_hat, v_hat);
    mldsa_invntt_tomont(out);
}

/* Steps 11-13 of Algorithm 7: y, w = NTT^-1(A-hat NTT(y)) in [0, q), and
 * w1 = HighBits(w) packed for the challenge hash. */
static void mldsa_commit(const mldsa_params *p, const mldsa_xsk *x,
                         mldsa_sign_work *s, unsigned kappa)
{
    mldsa_sample_mask_n(p, s->y, s->rho2, (uint16_t)kappa, p->l);
    for (unsigned r = 0; r < p->l; r++) {
        s->y_hat[r] = s->y[r];
        mldsa_ntt(&s->y_hat[r]);
    }

    for (unsigned i = 0; i < p->k; i++) {
        const mldsa_poly *a_row = &x->polys[i * p->l];
        memset(&s->w[i], 0, sizeof s->w[i]);
        for (unsigned j = 0; j < p->l; j++) {
            mldsa_poly_pointwise_acc(&s->w[i], &a_row[j], &s->y_hat[j]);
        }
        mldsa_poly_reduce(&s->w[i]);
        mldsa_invntt_tomont(&s->w[i]);
        mldsa_poly_freeze(&s->w[i]);
        mldsa_poly_highbits(p, &s->h[i], &s->w[i]);
        mldsa_pack_w1(p, s->w1_packed + i * MLDSA_POLY_BYTES(p->w1_bits),
                      &s->h[i]);
    }
}

/* Steps 15-17: ctilde = H(mu || w1Encode(w1)) and c-hat = NTT(c). */
static void mldsa_challenge(const mldsa_params *p, mldsa_sign_work *s,
                            const uint8_t mu[MLDSA_CRH_BYTES])
{
    keccak_state st;

    shake256_init(&st);
    keccak_absorb(&st, mu, MLDSA_CRH_BYTES);
    keccak_absorb(&st, s->w1_packed, p->k * MLDSA_POLY_BYTES(p->w1_bits));
    keccak_finalize(&st);
    keccak_squeeze(&st, s->ctilde, p->ctilde_bytes);
    mldsa_wipe(&st, sizeof st);
    MLDSA_DECLASSIFY(s->ctilde, p->ctilde_bytes);

    mldsa_sample_in_ball(p, &s->c_hat, s->ctilde);
    mldsa_ntt(&s->c_hat);
    mldsa_poly_reduce(&s->c_hat);
}

/* Steps 18, 20 and the z half of 23: z = y + c s1, centred; all ones when
 * ||z|| >= gamma1 - beta. */
static uint32_t mldsa_make_z(const mldsa_params *p, const mldsa_xsk *x,
                             mldsa_sign_work *s)
{
    const mldsa_poly *s1_hat = &x->polys[mldsa_xsk_s1_at(p)];
    uint32_t reject = 0;

    for (unsigned r = 0; r < p->l; r++) {
        mldsa_times_c(&s->tmp, &s->c_hat, &s1_hat[r]);
        mldsa_poly_add(&s->y[r], &s->y[r], &s->tmp);
        mldsa_poly_center(&s->y[r]);
        reject |= mldsa_poly_exceeds(&s->y[r], p->gamma1 - (int32_t)p->beta);
    }
    return reject;
}

/* Steps 19, 21 and the r0 half of 23: w <- w - c s2 in [0, q); all ones
 * when ||LowBits(w - c s2)|| >= gamma2 - beta. */
static uint32_t mldsa_subtract_cs2(const mldsa_params *p, const mldsa_xsk *x,
                                   mldsa_sign_work *s)
{
    const mldsa_poly *s2_hat = &x->polys[mldsa_xsk_s2_at(p)];
    uint32_t reject = 0;

    for (unsigned i = 0; i < p->k; i++) {
        mldsa_times_c(&s->tmp, &s->c_hat, &s2_hat[i]);
        mldsa_poly_sub(&s->w[i], &s->w[i], &s->tmp);
        mldsa_poly_freeze(&s->w[i]);
        mldsa_poly_lowbits(p, &s->tmp, &s->w[i]);
        reject |= mldsa_poly_exceeds(&s->tmp, p->gamma2 - (int32_t)p->beta);
    }
    return reject;
}

/* Steps 25-27: h = MakeHint(-c t0, w - c s2 + c t0); all ones when
 * ||c t0|| >= gamma2 or h has more than omega ones. */
static uint32_t mldsa_make_hints(const mldsa_params *p, const mldsa_xsk *x,
                                 mldsa_sign_work *s)
{
    const mldsa_poly *t0_hat = &x->polys[mldsa_xsk_t0_at(p)];
    mldsa_poly *with_ct0 = &s->y_hat[0]; /* y-hat is spent by now */
    uint32_t reject = 0;
    unsigned ones = 0;

    for (unsigned i = 0; i < p->k; i++) {
        mldsa_times_c(&s->tmp, &s->c_hat, &t0_hat[i]);
        mldsa_poly_center(&s->tmp);
        reject |= mldsa_poly_exceeds(&s->tmp, p->gamma2);
        mldsa_poly_add(with_ct0, &s->w[i], &s->tmp);
        mldsa_poly_freeze(with_ct0);
        ones += mldsa_poly_make_hint(p, &s->h[i], with_ct0, &s->w[i]);
    }
    return reject | (uint32_t)((int32_t)(p->omega - ones) >> 31);
}

/* Declassify one check's outcome (see the top of this file): 1 to reject. */
static int mldsa_rejected(uint32_t mask)
{
    MLDSA_DECLASSIFY(&mask, sizeof mask);
    return mask != 0;
}

/* One pass of the loop of Algorithm 7 (steps 10-32) with counter kappa.
 * Returns 1 and writes sig when the candidate is accepted, else 0. The
 * checks run cheapest first, and each later one needs the earlier ones'
 * work. */
static int mldsa_attempt(const mldsa_params *p, uint8_t *sig,
                         const mldsa_xsk *x, mldsa_sign_work *s,
                         const uint8_t mu[MLDSA_CRH_BYTES], unsigned kappa)
{
    mldsa_commit(p, x, s, kappa);
    mldsa_challenge(p, s, mu);
    if (mldsa_rejected(mldsa_make_z(p, x, s)) ||
        mldsa_rejected(mldsa_subtract_cs2(p, x, s)) ||
        mldsa_rejected(mldsa_make_hints(p, x, s))) {
        return 0;
    }

    /* Accepted: the hints are now part of the public signature. */
    MLDSA_DECLASSIFY(s->h, p->k * sizeof s->h[0]);

    /* sigEncode (Algorithm 26): ctilde || z || hints. */
    size_t z_poly = MLDSA_POLY_BYTES(p->z_bits);
    memcpy(sig, s->ctilde, p->ctilde_bytes);
    for (unsigned r = 0; r < p->l; r++) {
        mldsa_pack_z(p, sig + p->ctilde_bytes + r * z_poly, &s->y[r]);
    }
    mldsa_hint_pack(p, sig + p->ctilde_bytes + p->l * z_poly, s->h);
    return 1;
}

/* Algorithm 7 from step 7, for a checked slot. */
static int mldsa_sign_slot(const mldsa_params *p, uint8_t *sig,
                           const mldsa_xsk *x,
                           const uint8_t mu[MLDSA_CRH_BYTES],
                           const uint8_t rnd[MLDSA_SEED_BYTES])
{
    mldsa_sign_work s;
    keccak_state st;
    int done = 0;

    /* rho'' = H(K || rnd || mu, 64) (step 7). */
    shake256_init(&st);
    keccak_absorb(&st, x->key, MLDSA_SEED_BYTES);
    keccak_absorb(&st, rnd, MLDSA_SEED_BYTES);
    keccak_absorb(&st, mu, MLDSA_CRH_BYTES);
    keccak_finalize(&st);
    keccak_squeeze(&st, s.rho2, MLDSA_CRH_BYTES);
    mldsa_wipe(&st, sizeof st);

    for (unsigned n = 0; n < MLDSA_MAX_ATTEMPTS && !done; n++) {
        done = mldsa_attempt(p, sig, x, &s, mu, n * p->l);
    }

    mldsa_wipe(&s, sizeof s);
    if (!done) {
        memset(sig, 0, p->sig_bytes);
        return PQC_ERR_INVALID_KEY;
    }
    return PQC_OK;
}

int mldsa_sign_expanded_mu(unsigned ps, uint8_t *sig, const void *expanded,
                           const uint8_t mu[64], const uint8_t rnd[32])
{
    const mldsa_params *p = mldsa_check_args(ps, expanded, mu, rnd);
    const mldsa_xsk *x = expanded;

    if (sig == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (p == NULL) {
        memset(sig, 0, mldsa_sig_bytes(ps));
        return PQC_ERR_INVALID_ARG;
    }
    if (x->ps != ps) {
        memset(sig, 0, p->sig_bytes);
        return PQC_ERR_INVALID_KEY;
    }
    return mldsa_sign_slot(p, sig, x, mu, rnd);
}

/* Expand sk into a heap slot, sign mu with it, wipe and free it. */
static int mldsa_sign_with_sk(const mldsa_params *p, uint8_t *sig,
                              const uint8_t *sk,
                              const uint8_t mu[MLDSA_CRH_BYTES],
                              const uint8_t rnd[MLDSA_SEED_BYTES])
{
    size_t slot_bytes = mldsa_expanded_sk_bytes(p->ps);
    void *slot = malloc(slot_bytes);
    int rc;

    if (slot == NULL) {
        memset(sig, 0, p->sig_bytes);
        return PQC_ERR_NO_MEMORY;
    }
    rc = mldsa_expand_sk(p->ps, slot, sk);
    if (rc == PQC_OK) {
        rc = mldsa_sign_slot(p, sig, slot, mu, rnd);
    } else {
        memset(sig, 0, p->sig_bytes);
    }
    mldsa_wipe(slot, slot_bytes);
    free(slot);
    return rc;
}

int mldsa_sign_mu(unsigned ps, uint8_t *sig, const uint8_t *sk,
                  const uint8_t mu[64], const uint8_t rnd[32])
{
    const mldsa_params *p = mldsa_check_args(ps, sk, mu, rnd);

    if (sig == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (p == NULL) {
        memset(sig, 0, mldsa_sig_bytes(ps));
        return PQC_ERR_INVALID_ARG;
    }
    return mldsa_sign_with_sk(p, sig, sk, mu, rnd);
}

/* Sign M' = prefix || msg: mu = H(tr || M', 64) with tr read from sk. */
static int mldsa_sign_prefixed(unsigned ps, uint8_t *sig, const uint8_t *sk,
                               const uint8_t *prefix, size_t prefix_len,
                               const uint8_t *msg, size_t mlen,
                               const uint8_t rnd[32])
{
    const mldsa_params *p = mldsa_check_args(ps, sk, rnd, rnd);
    uint8_t mu[MLDSA_CRH_BYTES];
    int rc;

    if (sig == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (p == NULL || !mldsa_msg_ok(msg, mlen)) {
        memset(sig, 0, mldsa_sig_bytes(ps));
        return PQC_ERR_INVALID_ARG;
    }
    mldsa_mu_with_prefix(mu, sk + 2 * MLDSA_SEED_BYTES, prefix, prefix_len, msg,
                         mlen);
    rc = mldsa_sign_with_sk(p, sig, sk, mu, rnd);
    mldsa_wipe(mu, sizeof mu);
    return rc;
}

int mldsa_sign_internal(unsigned ps, uint8_t *sig, const uint8_t *sk,
                        const uint8_t *mprime, size_t mlen,
                        const uint8_t rnd[32])
{
    return mldsa_sign_prefixed(ps, sig, sk, NULL, 0, mprime, mlen, rnd);
}

int mldsa_sign(unsigned ps, uint8_t *sig, const uint8_t *sk, const uint8_t *msg,
               size_t mlen, const uint8_t *ctx, size_t ctxlen,
               const uint8_t rnd[32])
{
    uint8_t prefix[2 + 255];

    if (ctxlen > 255 || (ctx == NULL && ctxlen > 0)) {
        if (sig != NULL) {
            memset(sig, 0, mldsa_sig_bytes(ps));
        }
        return ctxlen > 255 ? PQC_ERR_INVALID_CONTEXT : PQC_ERR_INVALID_ARG;
    }

    /* M' = IntegerToBytes(0, 1) || IntegerToBytes(|ctx|, 1) || ctx || M
     * (Algorithm 2, step 10). */
    prefix[0] = 0;
    prefix[1] = (uint8_t)ctxlen;
    if (ctxlen > 0) {
        memcpy(prefix + 2, ctx, ctxlen);
    }
    return mldsa_sign_prefixed(ps, sig, sk, prefix, 2 + ctxlen, msg, mlen, rnd);
}
