/*
 * Batch-major ML-DSA entry points: each runs the single-operation function
 * lane by lane over records laid end to end, so a lane's result and status
 * are exactly those of the single call and one bad lane leaves the others
 * alone.
 */
#include "mldsa_internal.h"

int mldsa_keygen_batch(unsigned ps, size_t n, uint8_t *pk, uint8_t *sk,
                       const uint8_t *xi, int32_t *status)
{
    const mldsa_params *p = mldsa_params_get(ps);

    if (p == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (n == 0) {
        return PQC_OK;
    }
    if (pk == NULL || sk == NULL || xi == NULL || status == NULL) {
        return PQC_ERR_INVALID_ARG;
    }

    for (size_t i = 0; i < n; i++) {
        status[i] = mldsa_keygen(ps, pk + i * p->pk_bytes, sk + i * p->sk_bytes,
                                 xi + i * MLDSA_SEED_BYTES);
    }
    return PQC_OK;
}

int mldsa_sign_mu_batch(unsigned ps, size_t n, uint8_t *sig,
                        const void *const *expanded, const uint8_t *mu,
                        const uint8_t *rnd, int32_t *status)
{
    const mldsa_params *p = mldsa_params_get(ps);

    if (p == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (n == 0) {
        return PQC_OK;
    }
    if (sig == NULL || expanded == NULL || mu == NULL || rnd == NULL ||
        status == NULL) {
        return PQC_ERR_INVALID_ARG;
    }

    for (size_t i = 0; i < n; i++) {
        status[i] = mldsa_sign_expanded_mu(
            ps, sig + i * p->sig_bytes, expanded[i], mu + i * MLDSA_CRH_BYTES,
            rnd + i * MLDSA_SEED_BYTES);
    }
    return PQC_OK;
}

int mldsa_verify_mu_batch(unsigned ps, size_t n, const uint8_t *pk,
                          const uint8_t *mu, const uint8_t *sig,
                          int32_t *status)
{
    const mldsa_params *p = mldsa_params_get(ps);

    if (p == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (n == 0) {
        return PQC_OK;
    }
    if (pk == NULL || mu == NULL || sig == NULL || status == NULL) {
        return PQC_ERR_INVALID_ARG;
    }

    for (size_t i = 0; i < n; i++) {
        status[i] =
            mldsa_verify_mu(ps, pk + i * p->pk_bytes, mu + i * MLDSA_CRH_BYTES,
                            sig + i * p->sig_bytes, p->sig_bytes);
    }
    return PQC_OK;
}
