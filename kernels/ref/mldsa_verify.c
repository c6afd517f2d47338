/*
 * ML-DSA verification (FIPS 204, Algorithms 3 and 8). Everything here is
 * public (key, message, signature), so it may branch on data; it still
 * reuses the constant-time arithmetic of signing.
 */
#include <string.h>

#include "mldsa_internal.h"

/* The decoded signature and the work space of one verification. */
typedef struct {
    mldsa_poly z_hat[MLDSA_L_MAX]; /* z, then NTT(z) */
    mldsa_poly a_row[MLDSA_L_MAX]; /* one row of A-hat */
    mldsa_poly h[MLDSA_K_MAX];
    mldsa_poly c_hat;
    mldsa_poly w;
    mldsa_poly tmp;
    uint8_t w1_packed[MLDSA_K_MAX * MLDSA_POLY_BYTES(6)];
} mldsa_verify_work;

/* sigDecode (Algorithm 27) and the norm bound of Algorithm 8, step 13:
 * 0 when the hints decode and ||z|| < gamma1 - beta, else -1. */
static int mldsa_decode_sig(const mldsa_params *p, mldsa_verify_work *v,
                            const uint8_t *sig)
{
    const uint8_t *z_at = sig + p->ctilde_bytes;
    size_t z_poly = MLDSA_POLY_BYTES(p->z_bits);
    uint32_t over = 0;

    if (mldsa_hint_unpack(p, v->h, z_at + p->l * z_poly) != 0) {
        return -1;
    }
    for (unsigned r = 0; r < p->l; r++) {
        mldsa_unpack_z(p, &v->z_hat[r], z_at + r * z_poly);
        over |= mldsa_poly_exceeds(&v->z_hat[r], p->gamma1 - (int32_t)p->beta);
    }
    return over == 0 ? 0 : -1;
}

/* Row i of w'_approx = NTT^-1(A-hat NTT(z) - NTT(c) NTT(t1 2^d)), in
 * [0, q) (Algorithm 8, step 9). */
static void mldsa_w_approx_row(const mldsa_params *p, mldsa_verify_work *v,
                               const uint8_t *pk, unsigned i)
{
    uint16_t nonce[MLDSA_L_MAX];

    for (unsigned j = 0; j < p->l; j++) {
        nonce[j] = (uint16_t)(j | i << 8);
    }
    mldsa_sample_a_n(v->a_row, pk, nonce, p->l);

    memset(&v->w, 0, sizeof v->w);
    for (unsigned j = 0; j < p->l; j++) {
        mldsa_poly_pointwise_acc(&v->w, &v->a_row[j], &v->z_hat[j]);
    }

    mldsa_unpack_t1(&v->tmp, pk + MLDSA_SEED_BYTES +
                                 i * MLDSA_POLY_BYTES(MLDSA_T1_BITS));
    for (size_t n = 0; n < MLDSA_N; n++) {
        v->tmp.c[n] <<= MLDSA_D;
    }
    mldsa_ntt(&v->tmp);
    mldsa_poly_pointwise(&v->tmp, &v->c_hat, &v->tmp);
    mldsa_poly_sub(&v->w, &v->w, &v->tmp);

    mldsa_poly_reduce(&v->w);
    mldsa_invntt_tomont(&v->w);
    mldsa_poly_freeze(&v->w);
}

/* Algorithm 8 from step 2, with mu given and sig of the right length. */
static int mldsa_verify_core(const mldsa_params *p, const uint8_t *pk,
                             const uint8_t mu[MLDSA_CRH_BYTES],
                             const uint8_t *sig)
{
    mldsa_verify_work v;
    uint8_t ctilde[MLDSA_CRH_BYTES];
    size_t w1_poly = MLDSA_POLY_BYTES(p->w1_bits);
    keccak_state st;

    if (mldsa_decode_sig(p, &v, sig) != 0) {
        return PQC_ERR_INVALID_SIGNATURE;
    }
    for (unsigned r = 0; r < p->l; r++) {
        mldsa_ntt(&v.z_hat[r]);
    }
    mldsa_sample_in_ball(p, &v.c_hat, sig);
    mldsa_ntt(&v.c_hat);
    mldsa_poly_reduce(&v.c_hat);

    for (unsigned i = 0; i < p->k; i++) {
        mldsa_w_approx_row(p, &v, pk, i);
        mldsa_poly_use_hint(p, &v.tmp, &v.w, &v.h[i]);
        mldsa_pack_w1(p, v.w1_packed + i * w1_poly, &v.tmp);
    }

    /* ctilde' = H(mu || w1Encode(w1'), lambda / 4) (steps 10-12). */
    shake256_init(&st);
    keccak_absorb(&st, mu, MLDSA_CRH_BYTES);
    keccak_absorb(&st, v.w1_packed, p->k * w1_poly);
    keccak_finalize(&st);
    keccak_squeeze(&st, ctilde, p->ctilde_bytes);

    if (memcmp(ctilde, sig, p->ctilde_bytes) != 0) {
        return PQC_ERR_INVALID_SIGNATURE;
    }
    return PQC_OK;
}

int mldsa_verify_mu(unsigned ps, const uint8_t *pk, const uint8_t mu[64],
                    const uint8_t *sig, size_t siglen)
{
    const mldsa_params *p = mldsa_check_args(ps, pk, mu, sig);

    if (p == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (siglen != p->sig_bytes) {
        return PQC_ERR_INVALID_SIGNATURE;
    }
    return mldsa_verify_core(p, pk, mu, sig);
}

/* Verify over M' = prefix || msg, with tr = H(pk, 64). */
static int mldsa_verify_prefixed(unsigned ps, const uint8_t *pk,
                                 const uint8_t *prefix, size_t prefix_len,
                                 const uint8_t *msg, size_t mlen,
                                 const uint8_t *sig, size_t siglen)
{
    const mldsa_params *p = mldsa_check_args(ps, pk, sig, sig);
    uint8_t tr[MLDSA_CRH_BYTES];
    uint8_t mu[MLDSA_CRH_BYTES];

    if (p == NULL || !mldsa_msg_ok(msg, mlen)) {
        return PQC_ERR_INVALID_ARG;
    }
    if (siglen != p->sig_bytes) {
        return PQC_ERR_INVALID_SIGNATURE;
    }
    shake256(tr, MLDSA_CRH_BYTES, pk, p->pk_bytes);
    mldsa_mu_with_prefix(mu, tr, prefix, prefix_len, msg, mlen);
    return mldsa_verify_core(p, pk, mu, sig);
}

int mldsa_verify_internal(unsigned ps, const uint8_t *pk, const uint8_t *mprime,
                          size_t mlen, const uint8_t *sig, size_t siglen)
{
    return mldsa_verify_prefixed(ps, pk, NULL, 0, mprime, mlen, sig, siglen);
}

int mldsa_verify(unsigned ps, const uint8_t *pk, const uint8_t *msg,
                 size_t mlen, const uint8_t *ctx, size_t ctxlen,
                 const uint8_t *sig, size_t siglen)
{
    uint8_t prefix[2 + 255];

    if (ctxlen > 255) {
        return PQC_ERR_INVALID_CONTEXT;
    }
    if (ctx == NULL && ctxlen > 0) {
        return PQC_ERR_INVALID_ARG;
    }

    /* M' = 0 || |ctx| || ctx || M (Algorithm 3, step 5). */
    prefix[0] = 0;
    prefix[1] = (uint8_t)ctxlen;
    if (ctxlen > 0) {
        memcpy(prefix + 2, ctx, ctxlen);
    }
    return mldsa_verify_prefixed(ps, pk, prefix, 2 + ctxlen, msg, mlen, sig,
                                 siglen);
}
