/*
 * ML-DSA's ExpandA and ExpandS samplers four polynomials at a time (FIPS
 * 204, Algorithms 30 and 31), and the plain 4-way SHAKE entry that
 * ExpandMask and ML-KEM's PRFs use. Each stream is parsed exactly as the
 * reference parses its own (ExpandA's parser is in rej.c), so the
 * polynomials are the same.
 *
 * NOTE: as in the reference (kernels/ref/mldsa_sample.c), how much of an
 * ExpandS stream is read shows in the running time; that reveals only
 * which nibbles were rejected, not the accepted coefficients.
 */
#include "mldsa_internal.h"
#include "sponge_x4.h"

/* ExpandA: a 3-byte candidate survives with probability q / 2^23 > 0.99,
 * so 256 of them take just over 768 bytes: five SHAKE128 blocks. */
#define MLDSA_X4_A_BLOCKS 5

/* ExpandS: eta = 2 keeps 15 nibbles in 16 (about 137 bytes for 256),
 * eta = 4 keeps 9 in 16 (about 228 bytes): two SHAKE256 blocks. */
#define MLDSA_X4_ETA_BLOCKS 2

/* Room for the kept values of a step that starts at 255 (rej_avx2.h). */
#define MLDSA_X4_BUF (MLDSA_N + 8)

/* CoeffFromHalfByte (Algorithm 15) for a nibble b < 15 (eta = 2) or b < 9
 * (eta = 4): eta - (b mod 5) for eta = 2, computed as b - 5 floor(b 205 /
 * 2^10) (exact for b < 64), and eta - b for eta = 4. No division and no
 * data-dependent index; rejected nibbles give a value that is dropped. */
static int32_t eta_from_nibble(unsigned eta, uint32_t b)
{
    if (eta == 2) {
        uint32_t quot = (b * MLDSA_DIV5_MUL) >> 10;
        return 2 - (int32_t)(b - 5 * quot);
    }
    return 4 - (int32_t)b;
}

/* RejBoundedPoly's loop (Algorithm 31) over stream[at..len), low nibble
 * of each byte first. Every nibble's value is written at buf[filled] and
 * the count advances by the verdict, without a branch; only the count
 * steers the loop, and the reference declassifies the verdicts too. */
static unsigned parse_eta(int32_t buf[MLDSA_X4_BUF], unsigned eta,
                          unsigned filled, const uint8_t *stream, size_t at,
                          size_t len)
{
    uint32_t limit = eta == 2 ? 15 : 9;

    for (size_t i = 2 * at; i < 2 * len && filled < MLDSA_N; i++) {
        uint32_t nibble = (uint32_t)(stream[i / 2] >> (4 * (i % 2))) & 15;

        buf[filled] = eta_from_nibble(eta, nibble);
        filled += (nibble - limit) >> 31;
        MLDSA_DECLASSIFY(&filled, sizeof filled);
    }
    return filled;
}

/* Which sampler a 4-way run feeds. */
typedef enum { SAMPLE_A, SAMPLE_ETA } sample_kind;

static int parse_all(int32_t (*buf)[MLDSA_X4_BUF], sample_kind kind,
                     unsigned eta, unsigned filled[PQC_IMPL_WAYS],
                     const pqc_x4_sampler *x, size_t done, unsigned count)
{
    size_t len = x->blocks * x->sponge.rate;
    int full = 1;

    for (unsigned j = 0; j < count; j++) {
        const uint8_t *s = x->stream[j];

        filled[j] = kind == SAMPLE_A
                        ? pqc_avx2_rej_dsa(buf[j], filled[j], s, done, len)
                        : parse_eta(buf[j], eta, filled[j], s, done, len);
        full &= filled[j] >= MLDSA_N;
    }
    return full;
}

static int sample_x4(mldsa_poly *a, sample_kind kind, unsigned eta,
                     pqc_x4_sampler *x, unsigned count)
{
    int32_t buf[PQC_IMPL_WAYS][MLDSA_X4_BUF];
    unsigned filled[PQC_IMPL_WAYS] = {0};
    size_t done = 0;
    int served = PQC_IMPL_SERVED;

    while (!parse_all(buf, kind, eta, filled, x, done, count)) {
        done = x->blocks * x->sponge.rate;
        if (!pqc_x4_more(x)) {
            served = PQC_IMPL_DECLINED;
            break;
        }
    }
    for (unsigned j = 0; served == PQC_IMPL_SERVED && j < count; j++) {
        memcpy(a[j].c, buf[j], sizeof(a[j].c));
    }
    if (kind == SAMPLE_ETA) {
        pqc_avx2_wipe(buf, sizeof buf);
    }
    return served;
}

int pqc_avx2_mldsa_sample_a_x4(void *out, const uint8_t rho[32],
                               const uint16_t nonce[PQC_IMPL_WAYS],
                               unsigned count)
{
    pqc_x4_sampler x;

    if (count == 0 || count > PQC_IMPL_WAYS) {
        return PQC_IMPL_DECLINED;
    }
    pqc_x4_start(&x, KECCAK_SHAKE128_RATE, rho, MLDSA_SEED_BYTES, nonce, count,
                 MLDSA_X4_A_BLOCKS);
    return sample_x4(out, SAMPLE_A, 0, &x, count);
}

int pqc_avx2_mldsa_sample_eta_x4(void *out, unsigned eta, const uint8_t rho[64],
                                 const uint16_t nonce[PQC_IMPL_WAYS],
                                 unsigned count)
{
    pqc_x4_sampler x;
    int served;

    if (count == 0 || count > PQC_IMPL_WAYS || (eta != 2 && eta != 4)) {
        return PQC_IMPL_DECLINED;
    }
    pqc_x4_start(&x, KECCAK_SHAKE256_RATE, rho, MLDSA_CRH_BYTES, nonce, count,
                 MLDSA_X4_ETA_BLOCKS);
    served = sample_x4(out, SAMPLE_ETA, eta, &x, count);
    pqc_avx2_wipe(&x, sizeof x);
    return served;
}

int pqc_avx2_impl_shake_x4(unsigned rate, uint8_t *const out[PQC_IMPL_WAYS],
                           size_t outlen,
                           const uint8_t *const in[PQC_IMPL_WAYS], size_t inlen)
{
    if (rate != KECCAK_SHAKE128_RATE && rate != KECCAK_SHAKE256_RATE) {
        return PQC_IMPL_DECLINED;
    }
    pqc_avx2_shake_x4(rate, out, outlen, in, inlen);
    return PQC_IMPL_SERVED;
}
