/*
 * ML-DSA key generation (FIPS 204, Algorithm 6), the message
 * representative mu, and the expansion of an encoded secret key into a key
 * slot (skDecode, Algorithm 25, plus the NTTs and ExpandA that every
 * signature would otherwise repeat).
 */
#include <stdlib.h>
#include <string.h>

#include "mldsa_internal.h"

/* Offsets of the parts of an encoded secret key (Algorithm 24). */
static size_t mldsa_sk_s1_at(void)
{
    return 2 * MLDSA_SEED_BYTES + MLDSA_CRH_BYTES;
}

static size_t mldsa_sk_s2_at(const mldsa_params *p)
{
    return mldsa_sk_s1_at() + p->l * (size_t)MLDSA_POLY_BYTES(p->eta_bits);
}

static size_t mldsa_sk_t0_at(const mldsa_params *p)
{
    return mldsa_sk_s2_at(p) + p->k * (size_t)MLDSA_POLY_BYTES(p->eta_bits);
}

/* Row i of t = NTT^-1(A-hat * NTT(s1)) + s2, in [0, q) (Algorithm 6,
 * step 5). s1_hat is NTT(s1) reduced; s2 is row i of s2. */
static void mldsa_t_row(const mldsa_params *p, mldsa_poly *t,
                        const uint8_t rho[MLDSA_SEED_BYTES],
                        const mldsa_poly *s1_hat, unsigned i,
                        const mldsa_poly *s2)
{
    mldsa_poly a;

    memset(t, 0, sizeof *t);
    for (unsigned j = 0; j < p->l; j++) {
        mldsa_sample_a(&a, rho, i, j);
        mldsa_poly_pointwise_acc(t, &a, &s1_hat[j]);
    }
    mldsa_poly_reduce(t);
    mldsa_invntt_tomont(t);
    mldsa_poly_add(t, t, s2);
    mldsa_poly_freeze(t);
}

/* Power2Round of t (Algorithm 6, step 6): t1 into pk, t0 into sk. */
static void mldsa_store_t_row(const mldsa_params *p, uint8_t *pk, uint8_t *sk,
                              unsigned i, const mldsa_poly *t)
{
    mldsa_poly t1, t0;

    for (size_t n = 0; n < MLDSA_N; n++) {
        mldsa_power2round(&t1.c[n], &t0.c[n], t->c[n]);
    }
    mldsa_pack_t1(pk + MLDSA_SEED_BYTES + i * MLDSA_POLY_BYTES(MLDSA_T1_BITS),
                  &t1);
    mldsa_pack_t0(sk + mldsa_sk_t0_at(p) + i * MLDSA_POLY_BYTES(MLDSA_D), &t0);
    mldsa_wipe(&t0, sizeof t0);
}

/* Everything after H(xi || k || l): s1 and s2 straight into sk, t row by
 * row into pk and sk, then tr = H(pk, 64) (Algorithm 6, steps 3-9). */
static void mldsa_keygen_from_seeds(const mldsa_params *p, uint8_t *pk,
                                    uint8_t *sk, const uint8_t *seeds)
{
    const uint8_t *rho = seeds;
    const uint8_t *rho_prime = seeds + MLDSA_SEED_BYTES;
    const uint8_t *key = rho_prime + MLDSA_CRH_BYTES;
    size_t eta_poly = MLDSA_POLY_BYTES(p->eta_bits);
    mldsa_poly s1_hat[MLDSA_L_MAX], s2, t;

    for (unsigned r = 0; r < p->l; r++) {
        mldsa_sample_eta(p, &s1_hat[r], rho_prime, (uint16_t)r);
        mldsa_pack_eta(p, sk + mldsa_sk_s1_at() + r * eta_poly, &s1_hat[r]);
        mldsa_ntt(&s1_hat[r]);
        mldsa_poly_reduce(&s1_hat[r]);
    }

    for (unsigned i = 0; i < p->k; i++) {
        mldsa_sample_eta(p, &s2, rho_prime, (uint16_t)(p->l + i));
        mldsa_pack_eta(p, sk + mldsa_sk_s2_at(p) + i * eta_poly, &s2);
        mldsa_t_row(p, &t, rho, s1_hat, i, &s2);
        mldsa_store_t_row(p, pk, sk, i, &t);
    }

    memcpy(pk, rho, MLDSA_SEED_BYTES);
    memcpy(sk, rho, MLDSA_SEED_BYTES);
    memcpy(sk + MLDSA_SEED_BYTES, key, MLDSA_SEED_BYTES);
    shake256(sk + 2 * MLDSA_SEED_BYTES, MLDSA_CRH_BYTES, pk, p->pk_bytes);

    mldsa_wipe(s1_hat, sizeof s1_hat);
    mldsa_wipe(&s2, sizeof s2);
    mldsa_wipe(&t, sizeof t);
}

int mldsa_keygen(unsigned ps, uint8_t *pk, uint8_t *sk, const uint8_t xi[32])
{
    const mldsa_params *p = mldsa_check_args(ps, pk, sk, xi);
    uint8_t domain[MLDSA_SEED_BYTES + 2];
    uint8_t seeds[2 * MLDSA_SEED_BYTES + MLDSA_CRH_BYTES];

    if (p == NULL) {
        size_t pk_len = mldsa_pk_bytes(ps), sk_len = mldsa_sk_bytes(ps);
        if (pk != NULL) {
            mldsa_wipe(pk, pk_len);
        }
        if (sk != NULL) {
            mldsa_wipe(sk, sk_len);
        }
        return PQC_ERR_INVALID_ARG;
    }

    /* (rho, rho', K) = H(xi || k || l, 128) (Algorithm 6, step 1). */
    memcpy(domain, xi, MLDSA_SEED_BYTES);
    domain[MLDSA_SEED_BYTES] = (uint8_t)p->k;
    domain[MLDSA_SEED_BYTES + 1] = (uint8_t)p->l;
    shake256(seeds, sizeof seeds, domain, sizeof domain);
    MLDSA_DECLASSIFY(seeds, MLDSA_SEED_BYTES); /* rho is part of pk */

    mldsa_keygen_from_seeds(p, pk, sk, seeds);
    mldsa_wipe(domain, sizeof domain);
    mldsa_wipe(seeds, sizeof seeds);
    return PQC_OK;
}

int mldsa_tr_from_pk(unsigned ps, uint8_t tr[64], const uint8_t *pk)
{
    const mldsa_params *p = mldsa_check_args(ps, tr, pk, pk);

    if (p == NULL) {
        if (tr != NULL) {
            memset(tr, 0, MLDSA_CRH_BYTES);
        }
        return PQC_ERR_INVALID_ARG;
    }
    shake256(tr, MLDSA_CRH_BYTES, pk, p->pk_bytes);
    return PQC_OK;
}

void mldsa_mu_with_prefix(uint8_t mu[MLDSA_CRH_BYTES],
                          const uint8_t tr[MLDSA_CRH_BYTES],
                          const uint8_t *prefix, size_t prefix_len,
                          const uint8_t *msg, size_t mlen)
{
    keccak_state st;

    shake256_init(&st);
    keccak_absorb(&st, tr, MLDSA_CRH_BYTES);
    if (prefix_len > 0) {
        keccak_absorb(&st, prefix, prefix_len);
    }
    if (mlen > 0) {
        keccak_absorb(&st, msg, mlen);
    }
    keccak_finalize(&st);
    keccak_squeeze(&st, mu, MLDSA_CRH_BYTES);
}

void mldsa_compute_mu(uint8_t mu[64], const uint8_t tr[64],
                      const uint8_t *mprime, size_t mlen)
{
    mldsa_mu_with_prefix(mu, tr, NULL, 0, mprime, mlen);
}

/* Decode, range-check and NTT one s1 or s2 polynomial into the slot.
 * Returns all ones when a coefficient lies outside [-eta, eta]. */
static uint32_t mldsa_expand_eta(const mldsa_params *p, mldsa_poly *out,
                                 const uint8_t *in)
{
    mldsa_unpack_eta(p, out, in);
    uint32_t bad = mldsa_poly_exceeds(out, (int32_t)p->eta + 1);
    mldsa_ntt(out);
    mldsa_poly_reduce(out);
    return bad;
}

/* Fill the slot from a well-sized sk; all ones if s1 or s2 is out of
 * range. Every polynomial is processed whatever the outcome, so the time
 * does not depend on which coefficient was bad. */
static uint32_t mldsa_fill_slot(const mldsa_params *p, mldsa_xsk *x,
                                const uint8_t *sk)
{
    size_t eta_poly = MLDSA_POLY_BYTES(p->eta_bits);
    uint32_t bad = 0;

    memcpy(x->rho, sk, MLDSA_SEED_BYTES);
    memcpy(x->key, sk + MLDSA_SEED_BYTES, MLDSA_SEED_BYTES);
    memcpy(x->tr, sk + 2 * MLDSA_SEED_BYTES, MLDSA_CRH_BYTES);
    MLDSA_DECLASSIFY(x->rho, MLDSA_SEED_BYTES); /* rho is part of pk */
    for (unsigned r = 0; r < p->k; r++) {
        for (unsigned s = 0; s < p->l; s++) {
            mldsa_sample_a(&x->polys[r * p->l + s], x->rho, r, s);
        }
    }

    mldsa_poly *s1 = &x->polys[mldsa_xsk_s1_at(p)];
    for (unsigned r = 0; r < p->l; r++) {
        bad |=
            mldsa_expand_eta(p, &s1[r], sk + mldsa_sk_s1_at() + r * eta_poly);
    }
    mldsa_poly *s2 = &x->polys[mldsa_xsk_s2_at(p)];
    mldsa_poly *t0 = &x->polys[mldsa_xsk_t0_at(p)];
    for (unsigned i = 0; i < p->k; i++) {
        bad |=
            mldsa_expand_eta(p, &s2[i], sk + mldsa_sk_s2_at(p) + i * eta_poly);
        mldsa_unpack_t0(&t0[i],
                        sk + mldsa_sk_t0_at(p) + i * MLDSA_POLY_BYTES(MLDSA_D));
        mldsa_ntt(&t0[i]);
        mldsa_poly_reduce(&t0[i]);
    }
    return bad;
}

int mldsa_expand_sk(unsigned ps, void *expanded, const uint8_t *sk)
{
    const mldsa_params *p = mldsa_check_args(ps, expanded, sk, sk);
    mldsa_xsk *x = expanded;

    if (p == NULL) {
        if (expanded != NULL && mldsa_expanded_sk_bytes(ps) > 0) {
            mldsa_wipe(expanded, mldsa_expanded_sk_bytes(ps));
        }
        return PQC_ERR_INVALID_ARG;
    }

    x->ps = ps;
    x->reserved = 0;
    uint32_t bad = mldsa_fill_slot(p, x, sk);
    MLDSA_DECLASSIFY(&bad, sizeof bad); /* only validity is revealed */
    if (bad != 0) {
        mldsa_wipe(expanded, mldsa_expanded_sk_bytes(ps));
        return PQC_ERR_INVALID_KEY;
    }
    return PQC_OK;
}
