/*
 * The kernel dispatch table: which implementation of each hot operation
 * runs, chosen once per process.
 *
 * Two stages, as the layout of kernels/ says: the build decides which
 * backends exist (bindings/build.py compiles kernels/x86_64/avx2 and
 * kernels/x86_64/avx512 on x86-64 and defines PQC_BACKEND_AVX2 and
 * PQC_BACKEND_AVX512), and one probe at first use picks among them by
 * CPUID. The portable reference in kernels/ref is always compiled and is
 * the default; a backend declares what it covers by the entries it fills.
 * An entry left NULL, or one that returns PQC_IMPL_DECLINED, means the
 * reference runs instead: fallback is a return value. Every entry must
 * give byte-identical results to the reference, and is as constant-time
 * as the reference it replaces.
 *
 * The backends, best first: "avx512" (AVX-512F, VL and BW, with the OS
 * saving the ZMM and mask registers, plus all that avx2 needs) takes the
 * avx2 table and replaces the entries it does better; "avx2" (AVX2, BMI1,
 * BMI2, POPCNT); "ref".
 *
 * The environment variable PQC_KERNEL_IMPL, read once by the probe, caps
 * the choice: "ref" forces the reference; "avx2" allows at most AVX2, so
 * it forces AVX2 on a CPU with AVX-512; "avx512", "auto", unset or any
 * other value take the best the CPU supports. A name the CPU cannot run
 * falls to the best one below it.
 */
#ifndef PQC_DISPATCH_H
#define PQC_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

/* What an entry returns when it served the call, and when it did not (the
 * caller then runs the reference, which overwrites anything the entry
 * wrote). */
#define PQC_IMPL_SERVED 0
#define PQC_IMPL_DECLINED 1

/* The most sponges one multi-way entry runs at once. */
#define PQC_IMPL_WAYS 4

typedef struct pqc_impl {
    const char *name; /* "ref", "avx2" or "avx512" */

    /* Zero len bytes at p in a way the compiler keeps (secret scratch). */
    void (*wipe)(void *p, size_t len);

    /* Keccak-f[1600] on one state, in and out (FIPS 202, Algorithm 7). */
    void (*keccak_f1600)(uint64_t s[25]);

    /* Keccak-f[1600] on four states at once, in and out: s[4 i + j] is
     * lane i of state j. The native 4-way sponges and samplers
     * (x86_64/avx2/keccak4x.c) run whichever permutation this names, so a
     * backend with a faster permutation reuses them whole. Only native
     * backends fill it; the reference never calls it. */
    void (*keccak_f1600_x4)(uint64_t s[4 * 25]);

    /* out[j] = SHAKE(in[j], outlen bytes) for j < PQC_IMPL_WAYS, every
     * input inlen bytes; rate 168 is SHAKE128, 136 SHAKE256. */
    int (*shake_x4)(unsigned rate, uint8_t *const out[PQC_IMPL_WAYS],
                    size_t outlen, const uint8_t *const in[PQC_IMPL_WAYS],
                    size_t inlen);

    /* Rejection samplers of public matrices: for i < count <= 4, poly i
     * of out (an array of mlkem_poly or mldsa_poly) = SampleNTT (FIPS 203,
     * Algorithm 7) or RejNTTPoly (FIPS 204, Algorithm 30) of SHAKE128(rho
     * || nonce[i] as two bytes, little-endian). */
    int (*mlkem_sample_ntt_x4)(void *out, const uint8_t rho[32],
                               const uint16_t nonce[PQC_IMPL_WAYS],
                               unsigned count);
    int (*mldsa_sample_a_x4)(void *out, const uint8_t rho[32],
                             const uint16_t nonce[PQC_IMPL_WAYS],
                             unsigned count);

    /* RejBoundedPoly (FIPS 204, Algorithm 31) for i < count <= 4: poly i
     * of out (mldsa_poly) from SHAKE256(rho' || nonce[i], little-endian),
     * with eta 2 or 4. */
    int (*mldsa_sample_eta_x4)(void *out, unsigned eta, const uint8_t rho[64],
                               const uint16_t nonce[PQC_IMPL_WAYS],
                               unsigned count);

    /* ML-KEM's NTT and NTT^-1 of one mlkem_poly in place (FIPS 203,
     * Algorithms 9 and 10): canonical coefficients in and out. */
    int (*mlkem_ntt)(void *poly);
    int (*mlkem_invntt)(void *poly);

    /* acc += a x b in ML-KEM's NTT domain (FIPS 203, Algorithm 11) and
     * SamplePolyCBD_eta of 64 eta bytes (Algorithm 8), mlkem_poly in and
     * out, canonical. */
    int (*mlkem_basemul_acc)(void *acc, const void *a, const void *b);
    int (*mlkem_cbd)(void *poly, const uint8_t *bits, unsigned eta);

    /* ByteEncode_12 and ByteDecode_12 (FIPS 203, Algorithms 5 and 6) of
     * an mlkem_poly, 384 bytes; decode reduces mod q and sets *bad to all
     * ones when some value was q or more (section 7.2), else 0. */
    int (*mlkem_encode12)(uint8_t *out, const void *poly);
    int (*mlkem_decode12)(void *poly, const uint8_t *in, uint32_t *bad);

    /* ML-DSA's NTT, NTT^-1 times 2^32, and out (+)= a b 2^-32 of
     * mldsa_poly (FIPS 204, Algorithms 41 and 42), giving exactly the
     * reference's integers, not only the same values mod q. out may alias
     * a or b. */
    int (*mldsa_ntt)(void *poly);
    int (*mldsa_invntt)(void *poly);
    int (*mldsa_pointwise)(void *out, const void *a, const void *b,
                           int accumulate);

    /* Decompose (FIPS 204, Algorithm 36) of 256 values r in [0, q) for the
     * given gamma2: high parts into r1, low parts into r0 (either may be
     * NULL), the integers of the reference's mldsa_decompose. */
    int (*mldsa_decompose)(int32_t gamma2, int32_t *r1, int32_t *r0,
                           const int32_t *r);
} pqc_impl;

/* The table chosen for this process; probes on the first call (thread
 * safe). Never NULL when dispatch.c is linked.
 *
 * The declaration is weak so that builds of the reference alone (the
 * kernel tests, the valgrind constant-time harnesses) link without
 * dispatch.c: there the address is null and pqc_impl_active() answers
 * NULL, which every caller treats as "reference". */
const pqc_impl *pqc_impl_get(void) __attribute__((weak));

/* The name of the chosen implementation: "ref", "avx2" or "avx512". */
const char *pqc_impl_name(void) __attribute__((weak));

static inline const pqc_impl *pqc_impl_active(void)
{
    return pqc_impl_get != NULL ? pqc_impl_get() : NULL;
}

#endif
