/*
 * ML-KEM-512/768/1024 (FIPS 203), the portable reference.
 *
 * Every function takes the module rank k first: 2 (ML-KEM-512),
 * 3 (ML-KEM-768) or 4 (ML-KEM-1024); any other k is PQC_ERR_INVALID_ARG.
 * Buffers have the fixed sizes given by mlkem_ek_bytes(k) and friends; the
 * caller checks lengths before calling (a C pointer carries none).
 *
 * Functions return PQC_OK (0) or a negative PQC_ERR_* status from
 * pqc_status.h. On failure every output is zeroed, never left partial; when
 * k itself is invalid the sizes are unknown and nothing is written.
 *
 * Constant time: no branch, memory index or division depends on secret data
 * (seeds, dk, m, shared secrets, decrypted messages). Sampling the matrix
 * A-hat from the public rho branches, as FIPS 203 allows. Secret temporaries
 * are wiped before return. Inputs may not overlap outputs.
 */
#ifndef PQC_MLKEM_H
#define PQC_MLKEM_H

#include <stddef.h>
#include <stdint.h>

/* Base constants (FIPS 203, section 2.4 and Table 2). */
#define MLKEM_N 256         /* coefficients per polynomial */
#define MLKEM_Q 3329        /* the prime modulus, 13 * 2^8 + 1 */
#define MLKEM_SYM_BYTES 32  /* seeds, hashes, m and shared secrets */
#define MLKEM_SEED_BYTES 64 /* d || z, FIPS 203 section 7.1 */
#define MLKEM_SS_BYTES 32
#define MLKEM_K_MAX 4

/* Per-rank parameters (FIPS 203, Table 2). */
#define MLKEM_ETA1(k) ((k) == 2 ? 3 : 2)
#define MLKEM_ETA2(k) 2
#define MLKEM_DU(k) ((k) == 4 ? 11 : 10)
#define MLKEM_DV(k) ((k) == 4 ? 5 : 4)

/* A polynomial of 12-bit coefficients (ByteEncode_12, FIPS 203 Alg. 5). */
#define MLKEM_POLY_BYTES (12 * MLKEM_N / 8)

/* ek = ByteEncode_12(t-hat) || rho (FIPS 203, Algorithm 13, step 19). */
#define MLKEM_EK_BYTES(k) (MLKEM_POLY_BYTES * (k) + MLKEM_SYM_BYTES)

/* dk = ByteEncode_12(s-hat) || ek || H(ek) || z (Algorithm 16, step 3). */
#define MLKEM_DK_BYTES(k)                                                      \
    (MLKEM_POLY_BYTES * (k) + MLKEM_EK_BYTES(k) + 2 * MLKEM_SYM_BYTES)

/* c = c1 || c2: k polynomials at du bits, one at dv bits (Algorithm 14). */
#define MLKEM_CT_BYTES(k) (MLKEM_N / 8 * (MLKEM_DU(k) * (k) + MLKEM_DV(k)))

#define MLKEM_EK_BYTES_MAX MLKEM_EK_BYTES(MLKEM_K_MAX)
#define MLKEM_DK_BYTES_MAX MLKEM_DK_BYTES(MLKEM_K_MAX)
#define MLKEM_CT_BYTES_MAX MLKEM_CT_BYTES(MLKEM_K_MAX)

/*
 * ML-KEM.KeyGen_internal (FIPS 203, Algorithm 16).
 * seed: in, 64 bytes, d || z (the seed form of the decapsulation key).
 * ek:   out, mlkem_ek_bytes(k) bytes.
 * dk:   out, mlkem_dk_bytes(k) bytes, the expanded FIPS 203 encoding.
 * Returns PQC_OK, or PQC_ERR_INVALID_ARG for a bad k or a null pointer.
 */
int mlkem_keygen(unsigned k, uint8_t *ek, uint8_t *dk, const uint8_t seed[64]);

/*
 * ML-KEM.Encaps_internal (FIPS 203, Algorithm 17), after the encapsulation
 * key check of section 7.2.
 * ek: in, mlkem_ek_bytes(k) bytes; public.
 * m:  in, 32 bytes of fresh randomness (the caller draws it).
 * ct: out, mlkem_ct_bytes(k) bytes.  ss: out, 32 bytes, the shared secret.
 * Returns PQC_OK; PQC_ERR_INVALID_KEY when an encoded coefficient of t-hat
 * is not below q; PQC_ERR_INVALID_ARG for a bad k or a null pointer.
 */
int mlkem_encaps(unsigned k, uint8_t *ct, uint8_t ss[32], const uint8_t *ek,
                 const uint8_t m[32]);

/*
 * ML-KEM.Decaps_internal (FIPS 203, Algorithm 18), after the decapsulation
 * key check of section 7.3. A ciphertext that fails re-encryption is not an
 * error: ss is then the implicit-rejection key J(z || ct).
 * ct: in, mlkem_ct_bytes(k) bytes.  dk: in, mlkem_dk_bytes(k) bytes.
 * ss: out, 32 bytes.
 * Returns PQC_OK; PQC_ERR_INVALID_KEY when the H(ek) stored in dk does not
 * match the stored ek; PQC_ERR_INVALID_ARG for a bad k or a null pointer.
 */
int mlkem_decaps(unsigned k, uint8_t ss[32], const uint8_t *ct,
                 const uint8_t *dk);

/*
 * Decapsulation with the 64-byte seed form of the key: expands dk with
 * Algorithm 16, then runs Algorithm 18 (the hash check holds by
 * construction). The expanded key lives only on the stack and is wiped.
 * seed: in, 64 bytes, d || z.  ct, ss: as for mlkem_decaps.
 * Returns PQC_OK or PQC_ERR_INVALID_ARG.
 */
int mlkem_decaps_seed(unsigned k, uint8_t ss[32], const uint8_t *ct,
                      const uint8_t seed[64]);

/*
 * Encapsulation key check, modulus part (FIPS 203, section 7.2, step 2):
 * every 12-bit value of ByteDecode_12(ek[0 : 384k]) is below q.
 * Returns PQC_OK, PQC_ERR_INVALID_KEY or PQC_ERR_INVALID_ARG.
 */
int mlkem_check_ek(unsigned k, const uint8_t *ek);

/*
 * Decapsulation key check, hash part (FIPS 203, section 7.3, step 3):
 * H(dk[384k : 768k + 32]) == dk[768k + 32 : 768k + 64].
 * Returns PQC_OK, PQC_ERR_INVALID_KEY or PQC_ERR_INVALID_ARG.
 */
int mlkem_check_dk(unsigned k, const uint8_t *dk);

/*
 * Batch-major forms: n records laid end to end in each buffer (record i of
 * ek starts at ek + i * mlkem_ek_bytes(k), of seeds at seeds + 64 i, and so
 * on). status (out, n entries) gets lane i's status, as the single call
 * would return it; a failed lane's outputs are zeroed and other lanes are
 * unaffected. The call returns PQC_OK unless the whole call is invalid:
 * PQC_ERR_INVALID_ARG for a bad k, a null pointer while n > 0, or an n whose
 * buffers would not fit in size_t; nothing is written then. With n == 0 the
 * pointers are not read and may be null.
 */
int mlkem_keygen_batch(unsigned k, size_t n, uint8_t *ek, uint8_t *dk,
                       const uint8_t *seeds, int32_t *status);
int mlkem_encaps_batch(unsigned k, size_t n, uint8_t *ct, uint8_t *ss,
                       const uint8_t *ek, const uint8_t *m, int32_t *status);
int mlkem_decaps_batch(unsigned k, size_t n, uint8_t *ss, const uint8_t *ct,
                       const uint8_t *dk, int32_t *status);

/* Buffer sizes in bytes for rank k (FIPS 203, Table 3); 0 for a bad k. */
size_t mlkem_ek_bytes(unsigned k);
size_t mlkem_dk_bytes(unsigned k);
size_t mlkem_ct_bytes(unsigned k);

#endif
