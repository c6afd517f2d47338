/*
 * ML-KEM polynomials: arithmetic mod q, the NTT, sampling and encoding
 * (FIPS 203, sections 4.2 and 4.3). Internal to the ML-KEM kernels.
 *
 * Representation: every coefficient is kept canonical, in [0, q), between
 * any two calls. That costs a conditional subtraction per operation but
 * leaves one bound to reason about; debug builds (no NDEBUG) assert it at
 * the entry of the functions below.
 */
#ifndef PQC_MLKEM_POLY_H
#define PQC_MLKEM_POLY_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "mlkem.h"

/* floor(2^32 / q): the Barrett multiplier of mlkem_mod_q. */
#define MLKEM_BARRETT_M 1290167u
#define MLKEM_BARRETT_SHIFT 32

/* 128^-1 mod q: the final scaling of NTT^-1 (FIPS 203, Alg. 10, step 14). */
#define MLKEM_INV128 3303u

/* round(q / 2) = 1665 is Decompress_1(1); floor(q / 2) = 1664 is the
 * rounding offset of Compress_d (see mlkem_poly_compress_encode). */
#define MLKEM_HALF_Q 1664u

typedef struct {
    uint16_t c[MLKEM_N];
} mlkem_poly;

/* zeta^BitRev7(i) mod q for zeta = 17, i = 0..127 (FIPS 203, Appendix A). */
extern const uint16_t mlkem_zetas[128];

/* zeta^(2 BitRev7(i) + 1) mod q, i = 0..127: the moduli X^2 - gamma_i of
 * the base-case products (FIPS 203, Algorithm 11 and Appendix A). */
extern const uint16_t mlkem_gammas[128];

/* All ones if x < 2^31 is below y < 2^31, else 0; no branch. */
static inline uint32_t mlkem_mask_lt(uint32_t x, uint32_t y)
{
    return 0u - ((x - y) >> 31);
}

/* r mod q for r in [0, 2q): one masked subtraction. */
static inline uint16_t mlkem_csub_q(uint32_t r)
{
    uint32_t d = r - MLKEM_Q;

    return (uint16_t)(d + (MLKEM_Q & (0u - (d >> 31))));
}

/* floor(x / q) for any 32-bit x, without a division instruction (whose
 * timing may depend on x). The Barrett estimate floor(x M / 2^32) is
 * floor(x / q) or one less, since x (2^32 / q - M) / 2^32 < 1; the
 * remainder test fixes it. */
static inline uint32_t mlkem_div_q(uint32_t x)
{
    uint64_t wide = (uint64_t)x * MLKEM_BARRETT_M;
    uint32_t quot = (uint32_t)(wide >> MLKEM_BARRETT_SHIFT);
    uint32_t rem = x - quot * MLKEM_Q;

    return quot + 1 - (uint32_t)(mlkem_mask_lt(rem, MLKEM_Q) & 1);
}

/* x mod q in [0, q) for any 32-bit x. */
static inline uint16_t mlkem_mod_q(uint32_t x)
{
    uint64_t wide = (uint64_t)x * MLKEM_BARRETT_M;
    uint32_t quot = (uint32_t)(wide >> MLKEM_BARRETT_SHIFT);

    return mlkem_csub_q(x - quot * MLKEM_Q);
}

/* Products, sums and differences of canonical values, canonical again. */
static inline uint16_t mlkem_mul_q(uint16_t a, uint16_t b)
{
    return mlkem_mod_q((uint32_t)a * b);
}

static inline uint16_t mlkem_add_q(uint16_t a, uint16_t b)
{
    return mlkem_csub_q((uint32_t)a + b);
}

static inline uint16_t mlkem_sub_q(uint16_t a, uint16_t b)
{
    return mlkem_csub_q((uint32_t)a + MLKEM_Q - b);
}

/* Debug-only bound check; it branches, so release builds define NDEBUG. */
static inline int mlkem_poly_is_canonical(const mlkem_poly *p)
{
    uint16_t worst = 0;

    for (size_t i = 0; i < MLKEM_N; i++) {
        worst = p->c[i] > worst ? p->c[i] : worst;
    }
    return worst < MLKEM_Q;
}

#define MLKEM_ASSERT_CANONICAL(p) assert(mlkem_poly_is_canonical(p))

/* Constant-time testing. Built with -DMLKEM_CT_TESTING, a harness marks the
 * secret inputs as undefined memory for valgrind's memcheck, which then
 * reports every branch and memory index that depends on them. Values that
 * FIPS 203 makes public although they are computed from secrets (rho, ek)
 * are declared defined again here. Memcheck does not see variable-time
 * instructions such as division; the code avoids those by construction. */
#ifdef MLKEM_CT_TESTING
#include <valgrind/memcheck.h>
#define MLKEM_DECLASSIFY(p, len) VALGRIND_MAKE_MEM_DEFINED((p), (len))
#else
#define MLKEM_DECLASSIFY(p, len) ((void)0)
#endif

/* NTT and NTT^-1 in place (FIPS 203, Algorithms 9 and 10). In and out:
 * canonical coefficients. */
void mlkem_poly_ntt(mlkem_poly *p);
void mlkem_poly_invntt(mlkem_poly *p);

/* acc += a x b in the NTT domain (FIPS 203, Algorithms 11 and 12). All
 * three canonical; acc may not alias a or b. */
void mlkem_poly_basemul_acc(mlkem_poly *acc, const mlkem_poly *a,
                            const mlkem_poly *b);

/* r = a + b and r = a - b mod q; r may alias a or b. */
void mlkem_poly_add(mlkem_poly *r, const mlkem_poly *a, const mlkem_poly *b);
void mlkem_poly_sub(mlkem_poly *r, const mlkem_poly *a, const mlkem_poly *b);

/* SampleNTT(rho || x || y) (FIPS 203, Algorithm 7): rejection sampling from
 * SHAKE128 on public input, so it may branch. Out: canonical. */
void mlkem_poly_sample_ntt(mlkem_poly *p, const uint8_t rho[32], uint8_t x,
                           uint8_t y);

/* SamplePolyCBD_eta(PRF_eta(sigma, nonce)) (FIPS 203, Algorithm 8 and
 * section 4.1), eta in {2, 3}. Secret: constant time. Out: canonical. */
void mlkem_poly_sample_cbd(mlkem_poly *p, const uint8_t sigma[32],
                           uint8_t nonce, unsigned eta);

/* The same samplers for `count` polynomials p[0..count), through the
 * dispatch table (kernels/dispatch.h), four at a time where a backend has
 * a 4-way sponge; byte-identical to calling the ones above in a loop.
 * sample_ntt_n: p[i] = SampleNTT(rho || nonce[i] as two bytes,
 * little-endian), i.e. x = nonce[i] & 255 and y = nonce[i] >> 8.
 * sample_cbd_n: p[i] from PRF_eta(sigma, nonce + i). */
void mlkem_poly_sample_ntt_n(mlkem_poly *p, const uint8_t rho[32],
                             const uint16_t *nonce, unsigned count);
void mlkem_poly_sample_cbd_n(mlkem_poly *p, const uint8_t sigma[32],
                             uint8_t nonce, unsigned count, unsigned eta);

/* out = ByteEncode_d(Compress_d(p)), 32 d bytes, 1 <= d <= 11 (FIPS 203,
 * Algorithm 5 and section 4.2.1). In: canonical. */
void mlkem_poly_compress_encode(uint8_t *out, const mlkem_poly *p, unsigned d);

/* p = Decompress_d(ByteDecode_d(in)), 32 d bytes, 1 <= d <= 11 (FIPS 203,
 * Algorithm 6 and section 4.2.1). Out: canonical. */
void mlkem_poly_decode_decompress(mlkem_poly *p, const uint8_t *in, unsigned d);

/* out = ByteEncode_12(p), MLKEM_POLY_BYTES bytes. In: canonical. */
void mlkem_poly_encode12(uint8_t *out, const mlkem_poly *p);

/* p = ByteDecode_12(in) mod q. Returns nonzero when some 12-bit value was
 * not below q, i.e. the encoding is not canonical (the section 7.2 modulus
 * check); computed without branches, as dk's s-hat goes through here. */
uint32_t mlkem_poly_decode12(mlkem_poly *p, const uint8_t *in);

/* Overwrite len bytes at p with zeros in a way the compiler keeps. */
void mlkem_wipe(void *p, size_t len);

#endif
