/*
 * ML-DSA (FIPS 204): the portable reference kernels for ML-DSA-44, -65, -87.
 *
 * Every function takes the parameter set `ps` as the number 44, 65 or 87;
 * any other value is PQC_ERR_INVALID_ARG. Keys and signatures are the byte
 * encodings of FIPS 204 section 7.2; their sizes come from mldsa_pk_bytes,
 * mldsa_sk_bytes and mldsa_sig_bytes. Randomness (xi, rnd) is the caller's:
 * these functions are deterministic in their inputs.
 *
 * Statuses are those of pqc_status.h. On any failure every output buffer is
 * zeroed, so a caller never sees a partial key or signature.
 *
 * Constant time: key generation and signing do not branch on, index by, or
 * divide secret values, with two documented exceptions that FIPS 204 allows
 * because they reveal nothing about the key: the number of signing attempts
 * (each rejection is a function of public randomness and the final
 * signature), and which bytes the rejection samplers of ExpandS and
 * SampleInBall discard (the accepted values are independent of that
 * pattern). Verification handles public data only.
 *
 * Memory: signing keeps its working state (about 34 KiB for ML-DSA-87) on
 * the stack and verification about 23 KiB; the signing calls that take an
 * encoded sk also malloc a key slot (mldsa_expanded_sk_bytes) for the
 * duration of the call. Nothing is kept between calls.
 */
#ifndef PQC_MLDSA_H
#define PQC_MLDSA_H

#include <stddef.h>
#include <stdint.h>

#include "pqc_status.h"

#if defined(__GNUC__) || defined(__clang__)
#define MLDSA_MUST_CHECK __attribute__((warn_unused_result))
#else
#define MLDSA_MUST_CHECK
#endif

/* Byte sizes of a public key, an encoded secret key and a signature for
 * `ps` (FIPS 204, Table 2); 0 when `ps` is not 44, 65 or 87. */
size_t mldsa_pk_bytes(unsigned ps);
size_t mldsa_sk_bytes(unsigned ps);
size_t mldsa_sig_bytes(unsigned ps);

/*
 * ML-DSA.KeyGen_internal (FIPS 204, Algorithm 6).
 * xi:  in, the 32-byte seed (the caller draws it from a CSPRNG).
 * pk:  out, mldsa_pk_bytes(ps) bytes.
 * sk:  out, mldsa_sk_bytes(ps) bytes.
 * Returns PQC_OK, or PQC_ERR_INVALID_ARG for a bad ps or null pointer.
 */
MLDSA_MUST_CHECK int mldsa_keygen(unsigned ps, uint8_t *pk, uint8_t *sk,
                                  const uint8_t xi[32]);

/*
 * ML-DSA.Sign_internal (FIPS 204, Algorithm 7) over a message M' that the
 * caller has already formed: no domain-separation prefix is added.
 * sig:    out, mldsa_sig_bytes(ps) bytes.
 * sk:     in, mldsa_sk_bytes(ps) bytes; its s1 and s2 coefficients must lie
 *         in [-eta, eta], else PQC_ERR_INVALID_KEY.
 * mprime: in, mlen bytes (may be null when mlen is 0).
 * rnd:    in, 32 bytes; all zero gives the deterministic variant.
 * Returns PQC_OK, PQC_ERR_INVALID_ARG, PQC_ERR_INVALID_KEY or
 * PQC_ERR_NO_MEMORY (the expanded key is allocated on the heap).
 */
MLDSA_MUST_CHECK int mldsa_sign_internal(unsigned ps, uint8_t *sig,
                                         const uint8_t *sk,
                                         const uint8_t *mprime, size_t mlen,
                                         const uint8_t rnd[32]);

/*
 * Sign_internal given mu = H(tr || M', 64) instead of M' (the "external mu"
 * interface; FIPS 204, Algorithm 7 from step 7 on). Arguments and returns
 * as mldsa_sign_internal.
 */
MLDSA_MUST_CHECK int mldsa_sign_mu(unsigned ps, uint8_t *sig, const uint8_t *sk,
                                   const uint8_t mu[64], const uint8_t rnd[32]);

/*
 * Pure ML-DSA.Sign (FIPS 204, Algorithm 2): signs
 * M' = 0x00 || ctxlen || ctx || msg. ctx may be null when ctxlen is 0; a
 * context over 255 bytes is PQC_ERR_INVALID_CONTEXT. Otherwise as
 * mldsa_sign_internal.
 */
MLDSA_MUST_CHECK int mldsa_sign(unsigned ps, uint8_t *sig, const uint8_t *sk,
                                const uint8_t *msg, size_t mlen,
                                const uint8_t *ctx, size_t ctxlen,
                                const uint8_t rnd[32]);

/*
 * ML-DSA.Verify_internal (FIPS 204, Algorithm 8) over a caller-formed M'.
 * pk:  in, mldsa_pk_bytes(ps) bytes.
 * sig: in, siglen bytes; any length but mldsa_sig_bytes(ps) is refused.
 * Returns PQC_OK for a valid signature, PQC_ERR_INVALID_SIGNATURE for an
 * invalid one (wrong length, malformed hint encoding, ||z|| too large,
 * challenge mismatch), PQC_ERR_INVALID_ARG for a bad ps or null pointer.
 */
MLDSA_MUST_CHECK int mldsa_verify_internal(unsigned ps, const uint8_t *pk,
                                           const uint8_t *mprime, size_t mlen,
                                           const uint8_t *sig, size_t siglen);

/* Verify_internal given mu = H(H(pk, 64) || M', 64). As above. */
MLDSA_MUST_CHECK int mldsa_verify_mu(unsigned ps, const uint8_t *pk,
                                     const uint8_t mu[64], const uint8_t *sig,
                                     size_t siglen);

/*
 * Pure ML-DSA.Verify (FIPS 204, Algorithm 3) of msg under context ctx.
 * A context over 255 bytes is PQC_ERR_INVALID_CONTEXT; otherwise as
 * mldsa_verify_internal.
 */
MLDSA_MUST_CHECK int mldsa_verify(unsigned ps, const uint8_t *pk,
                                  const uint8_t *msg, size_t mlen,
                                  const uint8_t *ctx, size_t ctxlen,
                                  const uint8_t *sig, size_t siglen);

/*
 * tr = H(pk, 64) (FIPS 204, Algorithm 6 step 9 and Algorithm 8 step 6), the
 * first half of what the host hashes to form mu for the batch interface.
 * tr: out, 64 bytes. pk: in, mldsa_pk_bytes(ps) bytes.
 * Returns PQC_OK or PQC_ERR_INVALID_ARG (tr zeroed).
 */
MLDSA_MUST_CHECK int mldsa_tr_from_pk(unsigned ps, uint8_t tr[64],
                                      const uint8_t *pk);

/*
 * mu = H(tr || M', 64) (FIPS 204, Algorithm 7 step 6). tr: in, 64 bytes;
 * mprime: in, mlen bytes (may be null when mlen is 0); mu: out, 64 bytes.
 * Independent of the parameter set.
 */
void mldsa_compute_mu(uint8_t mu[64], const uint8_t tr[64],
                      const uint8_t *mprime, size_t mlen);

/*
 * Key slots. An expanded signing key holds what every signature needs and
 * would otherwise be recomputed from sk: A-hat (ExpandA, FIPS 204
 * Algorithm 32), NTT(s1), NTT(s2), NTT(t0), and rho, K, tr. It is opaque
 * and holds secrets: the caller zeroes it when done.
 *
 * mldsa_expanded_sk_bytes: the slot size for ps (0 for a bad ps). A slot
 * must be aligned for int32_t (malloc and cffi's new are).
 *
 * mldsa_expand_sk: sk in (mldsa_sk_bytes(ps) bytes), expanded out. An s1 or
 * s2 coefficient outside [-eta, eta] is PQC_ERR_INVALID_KEY (skDecode,
 * FIPS 204 Algorithm 25, accepts only such keys); the slot is then zeroed.
 *
 * mldsa_sign_expanded_mu: as mldsa_sign_mu with a slot expanded for the
 * same ps; a slot of another parameter set, or a zeroed one, is
 * PQC_ERR_INVALID_KEY.
 */
size_t mldsa_expanded_sk_bytes(unsigned ps);
MLDSA_MUST_CHECK int mldsa_expand_sk(unsigned ps, void *expanded,
                                     const uint8_t *sk);
MLDSA_MUST_CHECK int mldsa_sign_expanded_mu(unsigned ps, uint8_t *sig,
                                            const void *expanded,
                                            const uint8_t mu[64],
                                            const uint8_t rnd[32]);

/*
 * Batch-major entry points: n records of fixed size lie end to end in each
 * buffer (n public keys, then n secret keys, ...). status is out, n
 * entries: each lane's status as the single call would return it; a failed
 * lane's outputs are zeroed and the other lanes are unaffected. The return
 * is PQC_OK when the batch ran (look at status), PQC_ERR_INVALID_ARG for a
 * bad ps or a null buffer with n > 0 (then nothing is written).
 *
 * mldsa_keygen_batch: xi in (n * 32), pk and sk out.
 * mldsa_sign_mu_batch: expanded in (n pointers to key slots, which may
 * repeat), mu in (n * 64), rnd in (n * 32), sig out (n * sig bytes).
 * mldsa_verify_mu_batch: pk, mu (n * 64) and sig (n * sig bytes) in.
 */
MLDSA_MUST_CHECK int mldsa_keygen_batch(unsigned ps, size_t n, uint8_t *pk,
                                        uint8_t *sk, const uint8_t *xi,
                                        int32_t *status);
MLDSA_MUST_CHECK int mldsa_sign_mu_batch(unsigned ps, size_t n, uint8_t *sig,
                                         const void *const *expanded,
                                         const uint8_t *mu, const uint8_t *rnd,
                                         int32_t *status);
MLDSA_MUST_CHECK int mldsa_verify_mu_batch(unsigned ps, size_t n,
                                           const uint8_t *pk, const uint8_t *mu,
                                           const uint8_t *sig, int32_t *status);

/*
 * Test hooks, so that tests recompute every magic constant from its
 * formula and check the rounding functions exhaustively.
 *
 * mldsa_zeta(i): entry i (0..255) of the NTT twiddle table,
 *   1753^bitrev8(i) * 2^32 mod q, centred in (-q/2, q/2].
 * mldsa_constant(id): one of the MLDSA_CONST_* values below; 0 otherwise.
 * mldsa_decompose_many: for the first n entries of r (each in [0, q)),
 *   Decompose (FIPS 204, Algorithm 36) with the gamma2 of ps into r1, r0.
 *   Returns PQC_OK or PQC_ERR_INVALID_ARG.
 */
#define MLDSA_CONST_QINV 0        /* q^-1 mod 2^32 */
#define MLDSA_CONST_MONT 1        /* 2^32 mod q, centred */
#define MLDSA_CONST_INTT_SCALE 2  /* 2^64 / 256 mod q */
#define MLDSA_CONST_DIV93_MUL 3   /* ceil(2^20 / 93) */
#define MLDSA_CONST_DIV1023_MUL 4 /* ceil(2^25 / 1023) */
#define MLDSA_CONST_DIV5_MUL 5    /* ceil(2^10 / 5) */
int32_t mldsa_zeta(unsigned i);
int64_t mldsa_constant(unsigned id);
MLDSA_MUST_CHECK int mldsa_decompose_many(unsigned ps, int32_t *r1, int32_t *r0,
                                          const int32_t *r, size_t n);

#endif
