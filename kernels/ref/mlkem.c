/*
 * ML-KEM (FIPS 203): K-PKE (section 5), the internal KEM algorithms
 * (section 6), the input checks (section 7) and batch entry points.
 */
#include "mlkem.h"

#include <string.h>

#include "../dispatch.h"
#include "fips202.h"
#include "mlkem_poly.h"
#include "pqc_status.h"

/* The sizes derived from n, q and k must be the published ones (FIPS 203,
 * Table 3). */
_Static_assert(MLKEM_POLY_BYTES == 384, "ByteEncode_12 of one polynomial");
_Static_assert(MLKEM_EK_BYTES(2) == 800, "ML-KEM-512 ek");
_Static_assert(MLKEM_EK_BYTES(3) == 1184, "ML-KEM-768 ek");
_Static_assert(MLKEM_EK_BYTES(4) == 1568, "ML-KEM-1024 ek");
_Static_assert(MLKEM_DK_BYTES(2) == 1632, "ML-KEM-512 dk");
_Static_assert(MLKEM_DK_BYTES(3) == 2400, "ML-KEM-768 dk");
_Static_assert(MLKEM_DK_BYTES(4) == 3168, "ML-KEM-1024 dk");
_Static_assert(MLKEM_CT_BYTES(2) == 768, "ML-KEM-512 ct");
_Static_assert(MLKEM_CT_BYTES(3) == 1088, "ML-KEM-768 ct");
_Static_assert(MLKEM_CT_BYTES(4) == 1568, "ML-KEM-1024 ct");

/* One parameter set of FIPS 203, Table 2, with its byte sizes. */
typedef struct {
    unsigned k, eta1, eta2, du, dv;
    size_t ek_bytes, dk_bytes, ct_bytes;
} mlkem_params;

#define MLKEM_PARAMS(k)                                                        \
    {                                                                          \
        (k), MLKEM_ETA1(k), MLKEM_ETA2(k), MLKEM_DU(k), MLKEM_DV(k),           \
            MLKEM_EK_BYTES(k), MLKEM_DK_BYTES(k), MLKEM_CT_BYTES(k)            \
    }

static const mlkem_params mlkem_param_sets[] = {
    MLKEM_PARAMS(2),
    MLKEM_PARAMS(3),
    MLKEM_PARAMS(4),
};

static const mlkem_params *params_for(unsigned k)
{
    if (k < 2 || k > MLKEM_K_MAX) {
        return NULL;
    }
    return &mlkem_param_sets[k - 2];
}

size_t mlkem_ek_bytes(unsigned k)
{
    const mlkem_params *ps = params_for(k);

    return ps ? ps->ek_bytes : 0;
}

size_t mlkem_dk_bytes(unsigned k)
{
    const mlkem_params *ps = params_for(k);

    return ps ? ps->dk_bytes : 0;
}

size_t mlkem_ct_bytes(unsigned k)
{
    const mlkem_params *ps = params_for(k);

    return ps ? ps->ct_bytes : 0;
}

/* Offsets into the expanded dk = dk_PKE || ek || H(ek) || z. */
static size_t dk_ek_offset(const mlkem_params *ps)
{
    return MLKEM_POLY_BYTES * ps->k;
}

static size_t dk_hash_offset(const mlkem_params *ps)
{
    return dk_ek_offset(ps) + ps->ek_bytes;
}

static size_t dk_z_offset(const mlkem_params *ps)
{
    return dk_hash_offset(ps) + MLKEM_SYM_BYTES;
}

/* ---- K-PKE (FIPS 203, section 5) ---- */

/* out[i] = sum_j A-hat[i][j] x v[j] in the NTT domain, where A-hat[i][j] =
 * SampleNTT(rho || j || i) (Algorithm 13, step 6); with transposed set, the
 * product is with A-hat^T as in Algorithm 14, step 19. Entries are sampled
 * a group at a time (four sponges at once where the backend can) and used
 * at once, instead of holding the k x k matrix. */
static void matrix_mul_ntt(mlkem_poly *out, const uint8_t rho[32],
                           const mlkem_poly *v, unsigned k, int transposed)
{
    mlkem_poly entries[PQC_IMPL_WAYS];
    uint16_t nonce[PQC_IMPL_WAYS];

    memset(out, 0, k * sizeof(out[0]));
    for (unsigned at = 0; at < k * k; at += PQC_IMPL_WAYS) {
        unsigned count =
            k * k - at < PQC_IMPL_WAYS ? k * k - at : PQC_IMPL_WAYS;

        for (unsigned e = 0; e < count; e++) {
            unsigned i = (at + e) / k, j = (at + e) % k;
            unsigned row = transposed ? j : i, col = transposed ? i : j;

            nonce[e] = (uint16_t)(col | row << 8);
        }
        mlkem_poly_sample_ntt_n(entries, rho, nonce, count);
        for (unsigned e = 0; e < count; e++) {
            unsigned i = (at + e) / k, j = (at + e) % k;

            mlkem_poly_basemul_acc(&out[i], &entries[e], &v[j]);
        }
    }
}

/* out = sum_i a[i] x b[i] in the NTT domain. */
static void inner_product_ntt(mlkem_poly *out, const mlkem_poly *a,
                              const mlkem_poly *b, unsigned k)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < k; i++) {
        mlkem_poly_basemul_acc(out, &a[i], &b[i]);
    }
}

/* K-PKE.KeyGen (FIPS 203, Algorithm 13). ek: out, ek_bytes; dk_pke: out,
 * 384 k bytes (s-hat); d: in, 32 bytes. */
static void kpke_keygen(const mlkem_params *ps, uint8_t *ek, uint8_t *dk_pke,
                        const uint8_t d[32])
{
    struct {
        uint8_t g_in[MLKEM_SYM_BYTES + 1];
        uint8_t rho_sigma[2 * MLKEM_SYM_BYTES];
        mlkem_poly s_e[2 * MLKEM_K_MAX], t[MLKEM_K_MAX];
    } w;
    const uint8_t *rho = w.rho_sigma;
    const uint8_t *sigma = w.rho_sigma + MLKEM_SYM_BYTES;
    unsigned k = ps->k;
    mlkem_poly *s = w.s_e, *e = w.s_e + k;

    /* Step 1: G(d || k), the rank byte separating the parameter sets. */
    memcpy(w.g_in, d, MLKEM_SYM_BYTES);
    w.g_in[MLKEM_SYM_BYTES] = (uint8_t)k;
    sha3_512(w.rho_sigma, w.g_in, sizeof(w.g_in));
    MLKEM_DECLASSIFY(w.rho_sigma, MLKEM_SYM_BYTES); /* rho is part of ek */

    /* Steps 8 to 15: s takes nonces 0..k-1, e takes k..2k-1, so the 2k
     * polynomials are one run of nonces. */
    mlkem_poly_sample_cbd_n(w.s_e, sigma, 0, 2 * k, ps->eta1);
    for (unsigned i = 0; i < 2 * k; i++) {
        mlkem_poly_ntt(&w.s_e[i]);
    }

    /* Steps 18 to 20: t-hat = A-hat s-hat + e-hat. */
    matrix_mul_ntt(w.t, rho, s, k, 0);
    for (unsigned i = 0; i < k; i++) {
        mlkem_poly_add(&w.t[i], &w.t[i], &e[i]);
        mlkem_poly_encode12(ek + MLKEM_POLY_BYTES * i, &w.t[i]);
        mlkem_poly_encode12(dk_pke + MLKEM_POLY_BYTES * i, &s[i]);
    }
    memcpy(ek + MLKEM_POLY_BYTES * k, rho, MLKEM_SYM_BYTES);
    MLKEM_DECLASSIFY(ek, ps->ek_bytes);

    mlkem_wipe(&w, sizeof(w));
}

/* K-PKE.Encrypt (FIPS 203, Algorithm 14). ct: out, ct_bytes; ek: in,
 * ek_bytes, already past the modulus check; m, r: in, 32 bytes each. */
static void kpke_encrypt(const mlkem_params *ps, uint8_t *ct, const uint8_t *ek,
                         const uint8_t m[32], const uint8_t r[32])
{
    struct {
        mlkem_poly t[MLKEM_K_MAX], y[MLKEM_K_MAX], u[MLKEM_K_MAX];
        mlkem_poly e[MLKEM_K_MAX + 1]; /* e1, then e2 */
        mlkem_poly v, mu;
    } w;
    const uint8_t *rho = ek + MLKEM_POLY_BYTES * ps->k;
    unsigned k = ps->k;
    size_t c1_poly_bytes = MLKEM_N / 8 * ps->du;

    /* Rows past k are never read; clearing them keeps the compiler, which
     * cannot see that k >= 1, from reporting them as uninitialized. */
    memset(&w, 0, sizeof(w));

    /* Steps 2 to 17: nonces 0..k-1 for y, k..2k-1 for e1, 2k for e2. */
    mlkem_poly_sample_cbd_n(w.y, r, 0, k, ps->eta1);
    mlkem_poly_sample_cbd_n(w.e, r, (uint8_t)k, k + 1, ps->eta2);
    for (unsigned i = 0; i < k; i++) {
        (void)mlkem_poly_decode12(&w.t[i], ek + MLKEM_POLY_BYTES * i);
        mlkem_poly_ntt(&w.y[i]);
    }

    /* Steps 19 and 22: u = NTT^-1(A-hat^T y-hat) + e1, then c1. */
    matrix_mul_ntt(w.u, rho, w.y, k, 1);
    for (unsigned i = 0; i < k; i++) {
        mlkem_poly_invntt(&w.u[i]);
        mlkem_poly_add(&w.u[i], &w.u[i], &w.e[i]);
        mlkem_poly_compress_encode(ct + c1_poly_bytes * i, &w.u[i], ps->du);
    }

    /* Steps 20, 21 and 23: v = NTT^-1(t-hat^T y-hat) + e2 + mu, then c2. */
    inner_product_ntt(&w.v, w.t, w.y, k);
    mlkem_poly_invntt(&w.v);
    mlkem_poly_add(&w.v, &w.v, &w.e[k]);
    mlkem_poly_decode_decompress(&w.mu, m, 1);
    mlkem_poly_add(&w.v, &w.v, &w.mu);
    mlkem_poly_compress_encode(ct + c1_poly_bytes * k, &w.v, ps->dv);

    mlkem_wipe(&w, sizeof(w));
}

/* K-PKE.Decrypt (FIPS 203, Algorithm 15). m: out, 32 bytes; dk_pke: in,
 * 384 k bytes; ct: in, ct_bytes. */
static void kpke_decrypt(const mlkem_params *ps, uint8_t m[32],
                         const uint8_t *dk_pke, const uint8_t *ct)
{
    struct {
        mlkem_poly s[MLKEM_K_MAX], u[MLKEM_K_MAX];
        mlkem_poly v, noisy_m;
    } w;
    unsigned k = ps->k;
    size_t c1_poly_bytes = MLKEM_N / 8 * ps->du;

    for (unsigned i = 0; i < k; i++) {
        mlkem_poly_decode_decompress(&w.u[i], ct + c1_poly_bytes * i, ps->du);
        mlkem_poly_ntt(&w.u[i]);
        (void)mlkem_poly_decode12(&w.s[i], dk_pke + MLKEM_POLY_BYTES * i);
    }
    mlkem_poly_decode_decompress(&w.v, ct + c1_poly_bytes * k, ps->dv);

    /* Steps 6 and 7: w = v' - NTT^-1(s-hat^T NTT(u')), m = its top bits. */
    inner_product_ntt(&w.noisy_m, w.s, w.u, k);
    mlkem_poly_invntt(&w.noisy_m);
    mlkem_poly_sub(&w.noisy_m, &w.v, &w.noisy_m);
    mlkem_poly_compress_encode(m, &w.noisy_m, 1);

    mlkem_wipe(&w, sizeof(w));
}

/* ---- Input checks (FIPS 203, section 7) ---- */

/* Nonzero when some coefficient of t-hat is encoded as a value >= q. */
static uint32_t ek_out_of_range(const mlkem_params *ps, const uint8_t *ek)
{
    mlkem_poly t;
    uint32_t bad = 0;

    for (unsigned i = 0; i < ps->k; i++) {
        bad |= mlkem_poly_decode12(&t, ek + MLKEM_POLY_BYTES * i);
    }
    return bad;
}

/* Nonzero when H(ek) stored in dk differs from the hash of the stored ek.
 * The bytes are compared without an early exit; the verdict itself is
 * public (it becomes the return status). */
static uint32_t dk_hash_differs(const mlkem_params *ps, const uint8_t *dk)
{
    uint8_t h[MLKEM_SYM_BYTES];
    const uint8_t *stored = dk + dk_hash_offset(ps);
    uint32_t diff = 0;

    sha3_256(h, dk + dk_ek_offset(ps), ps->ek_bytes);
    for (size_t i = 0; i < sizeof(h); i++) {
        diff |= (uint32_t)(h[i] ^ stored[i]);
    }
    return diff;
}

int mlkem_check_ek(unsigned k, const uint8_t *ek)
{
    const mlkem_params *ps = params_for(k);

    if (ps == NULL || ek == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    return ek_out_of_range(ps, ek) ? PQC_ERR_INVALID_KEY : PQC_OK;
}

int mlkem_check_dk(unsigned k, const uint8_t *dk)
{
    const mlkem_params *ps = params_for(k);

    if (ps == NULL || dk == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    return dk_hash_differs(ps, dk) ? PQC_ERR_INVALID_KEY : PQC_OK;
}

/* ---- ML-KEM (FIPS 203, section 6) ---- */

static void zero_if_present(void *p, size_t len)
{
    if (p != NULL) {
        memset(p, 0, len);
    }
}

int mlkem_keygen(unsigned k, uint8_t *ek, uint8_t *dk, const uint8_t seed[64])
{
    const mlkem_params *ps = params_for(k);

    if (ps == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (ek == NULL || dk == NULL || seed == NULL) {
        zero_if_present(ek, ps->ek_bytes);
        zero_if_present(dk, ps->dk_bytes);
        return PQC_ERR_INVALID_ARG;
    }

    /* Algorithm 16: dk = dk_PKE || ek || H(ek) || z. */
    kpke_keygen(ps, ek, dk, seed);
    memcpy(dk + dk_ek_offset(ps), ek, ps->ek_bytes);
    sha3_256(dk + dk_hash_offset(ps), ek, ps->ek_bytes);
    memcpy(dk + dk_z_offset(ps), seed + MLKEM_SYM_BYTES, MLKEM_SYM_BYTES);
    return PQC_OK;
}

int mlkem_encaps(unsigned k, uint8_t *ct, uint8_t ss[32], const uint8_t *ek,
                 const uint8_t m[32])
{
    const mlkem_params *ps = params_for(k);
    uint8_t g_in[2 * MLKEM_SYM_BYTES], k_r[2 * MLKEM_SYM_BYTES];

    if (ps == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (ct == NULL || ss == NULL || ek == NULL || m == NULL) {
        zero_if_present(ct, ps->ct_bytes);
        zero_if_present(ss, MLKEM_SS_BYTES);
        return PQC_ERR_INVALID_ARG;
    }
    if (ek_out_of_range(ps, ek)) {
        memset(ct, 0, ps->ct_bytes);
        memset(ss, 0, MLKEM_SS_BYTES);
        return PQC_ERR_INVALID_KEY;
    }

    /* Algorithm 17: (K, r) = G(m || H(ek)), c = K-PKE.Encrypt(ek, m, r). */
    memcpy(g_in, m, MLKEM_SYM_BYTES);
    sha3_256(g_in + MLKEM_SYM_BYTES, ek, ps->ek_bytes);
    sha3_512(k_r, g_in, sizeof(g_in));
    kpke_encrypt(ps, ct, ek, m, k_r + MLKEM_SYM_BYTES);
    memcpy(ss, k_r, MLKEM_SS_BYTES);

    mlkem_wipe(g_in, sizeof(g_in));
    mlkem_wipe(k_r, sizeof(k_r));
    return PQC_OK;
}

/* All ones when the len bytes at a and b differ anywhere, else zero. The
 * OR of all differences is folded to one bit arithmetically, and passes
 * through a volatile so the compiler cannot turn the later masked select
 * back into a branch on it. */
static uint8_t differ_mask(const uint8_t *a, const uint8_t *b, size_t len)
{
    uint32_t diff = 0;
    volatile uint32_t differs;

    for (size_t i = 0; i < len; i++) {
        diff |= (uint32_t)(a[i] ^ b[i]);
    }
    differs = (0u - diff) >> 31;
    return (uint8_t)(0u - differs);
}

/* K-bar = J(z || c) = SHAKE256(z || c, 256) (FIPS 203, Algorithm 18,
 * step 8), absorbed in two parts to avoid copying c. */
static void rejection_key(uint8_t out[32], const uint8_t z[32],
                          const uint8_t *ct, size_t ct_bytes)
{
    keccak_state j;

    shake256_init(&j);
    keccak_absorb(&j, z, MLKEM_SYM_BYTES);
    keccak_absorb(&j, ct, ct_bytes);
    keccak_finalize(&j);
    keccak_squeeze(&j, out, MLKEM_SS_BYTES);
    mlkem_wipe(&j, sizeof(j));
}

/* Algorithm 18 once dk has passed the hash check. */
static void decaps_checked(const mlkem_params *ps, uint8_t ss[32],
                           const uint8_t *ct, const uint8_t *dk)
{
    struct {
        uint8_t m_h[2 * MLKEM_SYM_BYTES]; /* m' || h */
        uint8_t k_r[2 * MLKEM_SYM_BYTES]; /* K' || r' */
        uint8_t k_bar[MLKEM_SS_BYTES];
        uint8_t ct_again[MLKEM_CT_BYTES_MAX];
    } w;
    uint8_t reject;

    kpke_decrypt(ps, w.m_h, dk, ct);
    memcpy(w.m_h + MLKEM_SYM_BYTES, dk + dk_hash_offset(ps), MLKEM_SYM_BYTES);
    sha3_512(w.k_r, w.m_h, sizeof(w.m_h));
    rejection_key(w.k_bar, dk + dk_z_offset(ps), ct, ps->ct_bytes);
    kpke_encrypt(ps, w.ct_again, dk + dk_ek_offset(ps), w.m_h,
                 w.k_r + MLKEM_SYM_BYTES);

    /* Steps 10 to 12, by mask: whether re-encryption matched must not
     * show in timing, or decryption failures become an oracle. The whole
     * ciphertext is compared, not a prefix. */
    reject = differ_mask(ct, w.ct_again, ps->ct_bytes);
    for (size_t i = 0; i < MLKEM_SS_BYTES; i++) {
        ss[i] = w.k_r[i] ^ (reject & (w.k_r[i] ^ w.k_bar[i]));
    }

    mlkem_wipe(&w, sizeof(w));
}

int mlkem_decaps(unsigned k, uint8_t ss[32], const uint8_t *ct,
                 const uint8_t *dk)
{
    const mlkem_params *ps = params_for(k);

    if (ps == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (ss == NULL || ct == NULL || dk == NULL) {
        zero_if_present(ss, MLKEM_SS_BYTES);
        return PQC_ERR_INVALID_ARG;
    }
    if (dk_hash_differs(ps, dk)) {
        memset(ss, 0, MLKEM_SS_BYTES);
        return PQC_ERR_INVALID_KEY;
    }

    decaps_checked(ps, ss, ct, dk);
    return PQC_OK;
}

int mlkem_decaps_seed(unsigned k, uint8_t ss[32], const uint8_t *ct,
                      const uint8_t seed[64])
{
    const mlkem_params *ps = params_for(k);
    uint8_t ek[MLKEM_EK_BYTES_MAX], dk[MLKEM_DK_BYTES_MAX];

    if (ps == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (ss == NULL || ct == NULL || seed == NULL) {
        zero_if_present(ss, MLKEM_SS_BYTES);
        return PQC_ERR_INVALID_ARG;
    }

    (void)mlkem_keygen(k, ek, dk, seed);
    decaps_checked(ps, ss, ct, dk);

    mlkem_wipe(dk, sizeof(dk));
    return PQC_OK;
}

/* ---- Batch entry points ---- */

/* Whether n records of each size fit in size_t, so that record offsets
 * cannot wrap around. */
static int batch_fits(size_t n, size_t size_a, size_t size_b)
{
    size_t largest = size_a > size_b ? size_a : size_b;

    return n <= SIZE_MAX / largest;
}

int mlkem_keygen_batch(unsigned k, size_t n, uint8_t *ek, uint8_t *dk,
                       const uint8_t *seeds, int32_t *status)
{
    const mlkem_params *ps = params_for(k);

    if (ps == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (n == 0) {
        return PQC_OK;
    }
    if (ek == NULL || dk == NULL || seeds == NULL || status == NULL ||
        !batch_fits(n, ps->dk_bytes, MLKEM_SEED_BYTES)) {
        return PQC_ERR_INVALID_ARG;
    }

    for (size_t i = 0; i < n; i++) {
        status[i] =
            mlkem_keygen(k, ek + i * ps->ek_bytes, dk + i * ps->dk_bytes,
                         seeds + i * MLKEM_SEED_BYTES);
    }
    return PQC_OK;
}

int mlkem_encaps_batch(unsigned k, size_t n, uint8_t *ct, uint8_t *ss,
                       const uint8_t *ek, const uint8_t *m, int32_t *status)
{
    const mlkem_params *ps = params_for(k);

    if (ps == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (n == 0) {
        return PQC_OK;
    }
    if (ct == NULL || ss == NULL || ek == NULL || m == NULL || status == NULL ||
        !batch_fits(n, ps->ek_bytes, ps->ct_bytes)) {
        return PQC_ERR_INVALID_ARG;
    }

    for (size_t i = 0; i < n; i++) {
        status[i] =
            mlkem_encaps(k, ct + i * ps->ct_bytes, ss + i * MLKEM_SS_BYTES,
                         ek + i * ps->ek_bytes, m + i * MLKEM_SYM_BYTES);
    }
    return PQC_OK;
}

int mlkem_decaps_batch(unsigned k, size_t n, uint8_t *ss, const uint8_t *ct,
                       const uint8_t *dk, int32_t *status)
{
    const mlkem_params *ps = params_for(k);

    if (ps == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (n == 0) {
        return PQC_OK;
    }
    if (ss == NULL || ct == NULL || dk == NULL || status == NULL ||
        !batch_fits(n, ps->dk_bytes, ps->ct_bytes)) {
        return PQC_ERR_INVALID_ARG;
    }

    for (size_t i = 0; i < n; i++) {
        status[i] = mlkem_decaps(k, ss + i * MLKEM_SS_BYTES,
                                 ct + i * ps->ct_bytes, dk + i * ps->dk_bytes);
    }
    return PQC_OK;
}
