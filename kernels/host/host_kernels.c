/*
 * Host device runtime: the kernel table and the lanes of a launch.
 *
 * The host runs the portable reference kernels (kernels/ref) on its worker
 * threads, one block of lanes per call through their batch-major entry
 * points, so each lane's bytes and status are those of the single call.
 */
#include "host_internal.h"

#include <string.h>

#include "mldsa.h"
#include "mlkem.h"

/* Record sizes fixed by the standards (FIPS 203 section 7, FIPS 204). */
#define SEED_KEM 64 /* d || z */
#define COINS_KEM 32
#define SS_KEM 32
#define XI_DSA 32
#define MU_DSA 64
#define RND_DSA 32
#define SLOT_ID 4 /* uint32_t */

static int set_layout(size_t *sizes, unsigned *n_in, unsigned *n_out,
                      unsigned ins, unsigned outs, const size_t *list)
{
    memset(sizes, 0, PQC_DEV_MAX_ARGS * sizeof(size_t));
    memcpy(sizes, list, (ins + outs) * sizeof(size_t));
    *n_in = ins;
    *n_out = outs;
    return PQC_OK;
}

static int mlkem_layout(int kernel, unsigned k, size_t *s, unsigned *n_in,
                        unsigned *n_out)
{
    size_t ek = mlkem_ek_bytes(k), dk = mlkem_dk_bytes(k);
    size_t ct = mlkem_ct_bytes(k);

    if (ek == 0) {
        return PQC_ERR_INVALID_ARG;
    }
    switch (kernel) {
    case PQC_DEV_KERNEL_MLKEM_KEYGEN:
        return set_layout(s, n_in, n_out, 1, 2, (size_t[]){SEED_KEM, ek, dk});
    case PQC_DEV_KERNEL_MLKEM_ENCAPS:
        return set_layout(s, n_in, n_out, 2, 2,
                          (size_t[]){ek, COINS_KEM, ct, SS_KEM});
    case PQC_DEV_KERNEL_MLKEM_DECAPS:
        return set_layout(s, n_in, n_out, 2, 1, (size_t[]){ct, dk, SS_KEM});
    default:
        return set_layout(s, n_in, n_out, 2, 1,
                          (size_t[]){ct, SEED_KEM, SS_KEM});
    }
}

static int mldsa_layout(int kernel, unsigned ps, size_t *s, unsigned *n_in,
                        unsigned *n_out)
{
    size_t pk = mldsa_pk_bytes(ps), sk = mldsa_sk_bytes(ps);
    size_t sig = mldsa_sig_bytes(ps);

    if (pk == 0) {
        return PQC_ERR_INVALID_ARG;
    }
    switch (kernel) {
    case PQC_DEV_KERNEL_MLDSA_KEYGEN:
        return set_layout(s, n_in, n_out, 1, 2, (size_t[]){XI_DSA, pk, sk});
    case PQC_DEV_KERNEL_MLDSA_SIGN_MU:
        return set_layout(s, n_in, n_out, 3, 1,
                          (size_t[]){SLOT_ID, MU_DSA, RND_DSA, sig});
    default:
        return set_layout(s, n_in, n_out, 3, 0, (size_t[]){pk, MU_DSA, sig});
    }
}

int pqc_dev_kernel_layout(int kernel, unsigned param, size_t *sizes,
                          unsigned *n_in, unsigned *n_out)
{
    if (sizes == NULL || n_in == NULL || n_out == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (kernel >= PQC_DEV_KERNEL_MLKEM_KEYGEN &&
        kernel <= PQC_DEV_KERNEL_MLKEM_DECAPS_SEED) {
        return mlkem_layout(kernel, param, sizes, n_in, n_out);
    }
    if (kernel >= PQC_DEV_KERNEL_MLDSA_KEYGEN &&
        kernel <= PQC_DEV_KERNEL_MLDSA_VERIFY_MU) {
        return mldsa_layout(kernel, param, sizes, n_in, n_out);
    }
    return PQC_ERR_INVALID_ARG;
}

/* ---- Lanes --------------------------------------------------------- */

/* Every lane of the block fails with rc; its outputs are zeroed. */
static void fail_lanes(const pqc_host_cmd *cmd, size_t first, size_t count,
                       int rc)
{
    for (unsigned a = cmd->n_in; a < cmd->n_in + cmd->n_out; a++) {
        memset(cmd->arg[a] + first * cmd->rec[a], 0, count * cmd->rec[a]);
    }
    for (size_t i = 0; i < count; i++) {
        cmd->status[first + i] = rc;
    }
}

static int decaps_seed_lanes(unsigned k, size_t count, uint8_t *const *arg,
                             int32_t *status)
{
    size_t ct_bytes = mlkem_ct_bytes(k);

    for (size_t i = 0; i < count; i++) {
        status[i] =
            mlkem_decaps_seed(k, arg[2] + i * SS_KEM, arg[0] + i * ct_bytes,
                              arg[1] + i * SEED_KEM);
    }
    return PQC_OK;
}

/*
 * Signing lanes name key slots. The block pins its slots for as long as it
 * signs (so a concurrent pqc_dev_key_free cannot wipe a key in use); a lane
 * whose slot is not loaded for ps gets PQC_ERR_INVALID_KEY, as
 * mldsa_sign_expanded_mu gives for a slot of another parameter set.
 */
static int sign_lanes(pqc_dev *dev, unsigned ps, size_t count,
                      uint8_t *const *arg, int32_t *status)
{
    const void *keys[PQC_HOST_BLOCK_MAX];
    uint32_t ids[PQC_HOST_BLOCK_MAX];
    size_t sig_bytes = mldsa_sig_bytes(ps);

    pthread_mutex_lock(&dev->lock);
    for (size_t i = 0; i < count; i++) {
        memcpy(&ids[i], arg[0] + i * SLOT_ID, SLOT_ID);
        keys[i] = pqc_host_slot_acquire(dev, ids[i], ps);
    }
    pthread_mutex_unlock(&dev->lock);

    for (size_t i = 0; i < count; i++) {
        uint8_t *sig = arg[3] + i * sig_bytes;

        status[i] = PQC_ERR_INVALID_KEY;
        memset(sig, 0, sig_bytes);
        if (keys[i] != NULL) {
            status[i] = mldsa_sign_expanded_mu(
                ps, sig, keys[i], arg[1] + i * MU_DSA, arg[2] + i * RND_DSA);
        }
    }

    pthread_mutex_lock(&dev->lock);
    for (size_t i = 0; i < count; i++) {
        if (keys[i] != NULL) {
            pqc_host_slot_release(dev, ids[i]);
        }
    }
    pthread_mutex_unlock(&dev->lock);
    return PQC_OK;
}

static int dispatch(pqc_dev *dev, int kernel, unsigned p, size_t count,
                    uint8_t *const *arg, int32_t *st)
{
    switch (kernel) {
    case PQC_DEV_KERNEL_MLKEM_KEYGEN:
        return mlkem_keygen_batch(p, count, arg[1], arg[2], arg[0], st);
    case PQC_DEV_KERNEL_MLKEM_ENCAPS:
        return mlkem_encaps_batch(p, count, arg[2], arg[3], arg[0], arg[1], st);
    case PQC_DEV_KERNEL_MLKEM_DECAPS:
        return mlkem_decaps_batch(p, count, arg[2], arg[0], arg[1], st);
    case PQC_DEV_KERNEL_MLKEM_DECAPS_SEED:
        return decaps_seed_lanes(p, count, arg, st);
    case PQC_DEV_KERNEL_MLDSA_KEYGEN:
        return mldsa_keygen_batch(p, count, arg[1], arg[2], arg[0], st);
    case PQC_DEV_KERNEL_MLDSA_SIGN_MU:
        return sign_lanes(dev, p, count, arg, st);
    case PQC_DEV_KERNEL_MLDSA_VERIFY_MU:
        return mldsa_verify_mu_batch(p, count, arg[0], arg[1], arg[2], st);
    default:
        return PQC_ERR_INVALID_ARG;
    }
}

void pqc_host_run_lanes(pqc_dev *dev, const pqc_host_cmd *cmd, size_t first,
                        size_t last)
{
    uint8_t *arg[PQC_DEV_MAX_ARGS] = {NULL};
    size_t count = last - first;
    int rc;

    if (count == 0) {
        return;
    }
    if (cmd->fail) {
        fail_lanes(cmd, first, count, PQC_ERR_DEVICE);
        return;
    }

    for (unsigned a = 0; a < cmd->n_in + cmd->n_out; a++) {
        arg[a] = cmd->arg[a] + first * cmd->rec[a];
    }
    rc =
        dispatch(dev, cmd->kernel, cmd->param, count, arg, cmd->status + first);
    if (rc != PQC_OK) {
        fail_lanes(cmd, first, count, rc);
    }
}
