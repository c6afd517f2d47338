/*
 * ML-DSA key generation (FIPS 204, Algorithm 6), the message
 * representative mu, and the expansion of an encoded secret key into a key
 * slot (skDecode, Algorithm 25, plus the NTTs and ExpandA that every
 * signature would otherwise repeat).
 */
#include <stdlib.h>
#include <string.h>

#include "../dispatch.h"
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

/* t[i] = sum_j A-hat[i][j] NTT(s1)[j] for every row (Algorithm 6, step
 * 5, before NTT^-1), s1_hat reduced. The entries are taken in row-major
 * order a group at a time, four sponges at once where the backend can, so
 * that groups run on across rows instead of ending each row part-empty. */
static void mldsa_a_times_s1(const mldsa_params *p, mldsa_poly *t,
                             const uint8_t rho[MLDSA_SEED_BYTES],
                             const mldsa_poly *s1_hat)
{
    mldsa_poly a[PQC_IMPL_WAYS];
    uint16_t nonce[PQC_IMPL_WAYS];
    unsigned entries = p->k * p->l;

    memset(t, 0, p->k * sizeof *t);
    for (unsigned at = 0; at < entries; at += PQC_IMPL_WAYS) {
        unsigned count =
            entries - at < PQC_IMPL_WAYS ? entries - at : PQC_IMPL_WAYS;

        for (unsigned e = 0; e < count; e++) {
            unsigned i = (at + e) / p->l, j = (at + e) % p->l;

            nonce[e] = (uint16_t)(j | i << 8);
        }
        mldsa_sample_a_n(a, rho, nonce, count);
        for (unsigned e = 0; e < count; e++) {
            unsigned i = (at + e) / p->l, j = (at + e) % p->l;

            mldsa_poly_pointwise_acc(&t[i], &a[e], &s1_hat[j]);
        }
    }
}

/* Row i of t = NTT^-1(A-hat * NTT(s1)) + s2, in [0, q) (Algorithm 6,
 * step 5), from its product t = row i of mldsa_a_times_s1; s2 is row i of
 * s2. */
static void mldsa_t_row(mldsa_poly *t, const mldsa_poly *s2)
{
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
    mldsa_poly s[MLDSA_L_MAX + MLDSA_K_MAX], t[MLDSA_K_MAX];
    mldsa_poly *s1_hat = s, *s2 = s + p->l;

    /* ExpandS (Algorithm 33): s1 takes nonces 0..l-1 and s2 l..l+k-1,
     * one run sampled together. */
    mldsa_sample_eta_n(p, s, rho_prime, 0, p->l + p->k);
    for (unsigned r = 0; r < p->l; r++) {
        mldsa_pack_eta(p, sk + mldsa_sk_s1_at() + r * eta_poly, &s1_hat[r]);
        mldsa_ntt(&s1_hat[r]);
        mldsa_poly_reduce(&s1_hat[r]);
    }

    mldsa_a_times_s1(p, t, rho, s1_hat);
    for (unsigned i = 0; i < p->k; i++) {
        mldsa_pack_eta(p, sk + mldsa_sk_s2_at(p) + i * eta_poly, &s2[i]);
        mldsa_t_row(&t[i], &s2[i]);
        mldsa_store_t_row(p, pk, sk, i, &t[i]);
    }

    memcpy(pk, rho, MLDSA_SEED_BYTES);
    memcpy(sk, rho, MLDSA_SEED_BYTES);
    memcpy(sk + MLDSA_SEED_BYTES, key, MLDSA_SEED_BYTES);
    shake256(sk + 2 * MLDSA_SEED_BYTES, MLDSA_CRH_BYTES, pk, p->pk_bytes);

    mldsa_wipe(s, sizeof s);
    mldsa_wipe(t, sizeof t);
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
    uint16_t nonce[MLDSA_K_MAX * MLDSA_L_MAX];

    for (unsigned r = 0; r < p->k; r++) {
        for (unsigned s = 0; s < p->l; s++) {
            nonce[r * p->l + s] = (uint16_t)(s | r << 8);
        }
    }
    mldsa_sample_a_n(x->polys, x->rho, nonce, p->k * p->l);

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
