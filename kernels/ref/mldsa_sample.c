/*
 * The samplers of ML-DSA (FIPS 204, section 7.3), all driven by SHAKE.
 *
 * NOTE: RejBoundedPoly rejects some bytes of its SHAKE stream, and how
 * many it reads shows in its running time. That reveals only which stream
 * bytes were discarded: an accepted value is uniform over its range
 * whatever the discarded bytes were, so the timing says nothing about the
 * coefficients, which are computed without secret branches or indices.
 * SampleInBall works on public input only (its ctilde is public in
 * verification and in signing, see mldsa_sign.c) and branches freely.
 */
#include <string.h>

#include "../dispatch.h"
#include "mldsa_internal.h"

void mldsa_sample_a(mldsa_poly *a, const uint8_t rho[MLDSA_SEED_BYTES],
                    unsigned r, unsigned s)
{
    uint8_t seed[MLDSA_SEED_BYTES + 2];
    uint8_t block[KECCAK_SHAKE128_RATE];
    keccak_state st;
    size_t j = 0;

    memcpy(seed, rho, MLDSA_SEED_BYTES);
    seed[MLDSA_SEED_BYTES] = (uint8_t)s;
    seed[MLDSA_SEED_BYTES + 1] = (uint8_t)r;
    shake128_init(&st);
    keccak_absorb(&st, seed, sizeof seed);
    keccak_finalize(&st);

    /* CoeffFromThreeBytes (Algorithm 14): 23 bits, kept when below q. A
     * rate of 168 bytes is whole triples, so none straddles two blocks. */
    while (j < MLDSA_N) {
        keccak_squeeze(&st, block, sizeof block);
        for (size_t i = 0; i < sizeof block && j < MLDSA_N; i += 3) {
            uint32_t v = (uint32_t)block[i] | (uint32_t)block[i + 1] << 8 |
                         (uint32_t)(block[i + 2] & 0x7f) << 16;
            if (v < MLDSA_Q) {
                a->c[j++] = (int32_t)v;
            }
        }
    }
}

/* CoeffFromHalfByte (Algorithm 15) for an accepted nibble b. */
static int32_t mldsa_eta_from_nibble(unsigned eta, uint32_t b)
{
    if (eta == 2) {
        uint32_t quot = (b * MLDSA_DIV5_MUL) >> 10;
        return 2 - (int32_t)(b - 5 * quot);
    }
    return 4 - (int32_t)b;
}

void mldsa_sample_eta(const mldsa_params *p, mldsa_poly *a,
                      const uint8_t rho[MLDSA_CRH_BYTES], uint16_t nonce)
{
    uint8_t seed[MLDSA_CRH_BYTES + 2];
    uint8_t block[KECCAK_SHAKE256_RATE];
    /* eta = 2 keeps nibbles below 15 (15 = 3 * 5, so b mod 5 is uniform);
     * eta = 4 keeps those below 9. */
    uint32_t limit = p->eta == 2 ? 15 : 9;
    keccak_state st;
    size_t j = 0;

    memcpy(seed, rho, MLDSA_CRH_BYTES);
    seed[MLDSA_CRH_BYTES] = (uint8_t)nonce;
    seed[MLDSA_CRH_BYTES + 1] = (uint8_t)(nonce >> 8);
    shake256_init(&st);
    keccak_absorb(&st, seed, sizeof seed);
    keccak_finalize(&st);

    while (j < MLDSA_N) {
        keccak_squeeze(&st, block, sizeof block);
        for (size_t i = 0; i < 2 * sizeof block && j < MLDSA_N; i++) {
            uint32_t nibble = (uint32_t)(block[i / 2] >> (4 * (i % 2))) & 15;
            int keep = nibble < limit;
            MLDSA_DECLASSIFY(&keep, sizeof keep);
            if (keep) {
                a->c[j++] = mldsa_eta_from_nibble(p->eta, nibble);
            }
        }
    }

    mldsa_wipe(seed, sizeof seed);
    mldsa_wipe(block, sizeof block);
    mldsa_wipe(&st, sizeof st);
}

void mldsa_sample_mask(const mldsa_params *p, mldsa_poly *y,
                       const uint8_t rho[MLDSA_CRH_BYTES], uint16_t nonce)
{
    uint8_t seed[MLDSA_CRH_BYTES + 2];
    uint8_t packed[MLDSA_POLY_BYTES(20)];

    memcpy(seed, rho, MLDSA_CRH_BYTES);
    seed[MLDSA_CRH_BYTES] = (uint8_t)nonce;
    seed[MLDSA_CRH_BYTES + 1] = (uint8_t)(nonce >> 8);
    shake256(packed, MLDSA_POLY_BYTES(p->z_bits), seed, sizeof seed);
    mldsa_unpack_z(p, y, packed);

    mldsa_wipe(seed, sizeof seed);
    mldsa_wipe(packed, sizeof packed);
}

/* How many of the count - done polynomials left go in the next group. */
static unsigned mldsa_group(unsigned done, unsigned count)
{
    return count - done < PQC_IMPL_WAYS ? count - done : PQC_IMPL_WAYS;
}

void mldsa_sample_a_n(mldsa_poly *a, const uint8_t rho[MLDSA_SEED_BYTES],
                      const uint16_t *nonce, unsigned count)
{
    const pqc_impl *impl = pqc_impl_active();

    for (unsigned done = 0; done < count; done += PQC_IMPL_WAYS) {
        unsigned ways = mldsa_group(done, count);

        if (impl != NULL && impl->mldsa_sample_a_x4 != NULL &&
            impl->mldsa_sample_a_x4(&a[done], rho, &nonce[done], ways) ==
                PQC_IMPL_SERVED) {
            continue;
        }
        for (unsigned j = 0; j < ways; j++) {
            uint16_t n = nonce[done + j];

            mldsa_sample_a(&a[done + j], rho, n >> 8, n & 255);
        }
    }
}

void mldsa_sample_eta_n(const mldsa_params *p, mldsa_poly *a,
                        const uint8_t rho[MLDSA_CRH_BYTES], uint16_t nonce,
                        unsigned count)
{
    const pqc_impl *impl = pqc_impl_active();

    for (unsigned done = 0; done < count; done += PQC_IMPL_WAYS) {
        unsigned ways = mldsa_group(done, count);
        uint16_t n[PQC_IMPL_WAYS];

        for (unsigned j = 0; j < PQC_IMPL_WAYS; j++) {
            n[j] = (uint16_t)(nonce + done + j);
        }
        if (impl != NULL && impl->mldsa_sample_eta_x4 != NULL &&
            impl->mldsa_sample_eta_x4(&a[done], p->eta, rho, n, ways) ==
                PQC_IMPL_SERVED) {
            continue;
        }
        for (unsigned j = 0; j < ways; j++) {
            mldsa_sample_eta(p, &a[done + j], rho, n[j]);
        }
    }
}

/* Up to four ExpandMask polynomials through the 4-way SHAKE256; 0 if the
 * table declined. Ways past count repeat the first seed and are ignored. */
static int mldsa_sample_mask_x4(const pqc_impl *impl, const mldsa_params *p,
                                mldsa_poly *y,
                                const uint8_t rho[MLDSA_CRH_BYTES],
                                uint16_t nonce, unsigned count)
{
    uint8_t seed[PQC_IMPL_WAYS][MLDSA_CRH_BYTES + 2];
    uint8_t packed[PQC_IMPL_WAYS][MLDSA_POLY_BYTES(20)];
    const uint8_t *in[PQC_IMPL_WAYS];
    uint8_t *out[PQC_IMPL_WAYS];
    int served;

    for (unsigned j = 0; j < PQC_IMPL_WAYS; j++) {
        uint16_t n = (uint16_t)(nonce + (j < count ? j : 0));

        memcpy(seed[j], rho, MLDSA_CRH_BYTES);
        seed[j][MLDSA_CRH_BYTES] = (uint8_t)n;
        seed[j][MLDSA_CRH_BYTES + 1] = (uint8_t)(n >> 8);
        in[j] = seed[j];
        out[j] = packed[j];
    }
    served =
        impl->shake_x4(KECCAK_SHAKE256_RATE, out, MLDSA_POLY_BYTES(p->z_bits),
                       in, sizeof seed[0]) == PQC_IMPL_SERVED;
    for (unsigned j = 0; served && j < count; j++) {
        mldsa_unpack_z(p, &y[j], packed[j]);
    }

    mldsa_wipe(seed, sizeof seed);
    mldsa_wipe(packed, sizeof packed);
    return served;
}

void mldsa_sample_mask_n(const mldsa_params *p, mldsa_poly *y,
                         const uint8_t rho[MLDSA_CRH_BYTES], uint16_t nonce,
                         unsigned count)
{
    const pqc_impl *impl = pqc_impl_active();

    for (unsigned done = 0; done < count; done += PQC_IMPL_WAYS) {
        unsigned ways = mldsa_group(done, count);
        uint16_t first = (uint16_t)(nonce + done);

        if (impl != NULL && impl->shake_x4 != NULL &&
            mldsa_sample_mask_x4(impl, p, &y[done], rho, first, ways)) {
            continue;
        }
        for (unsigned j = 0; j < ways; j++) {
            mldsa_sample_mask(p, &y[done + j], rho, (uint16_t)(first + j));
        }
    }
}

void mldsa_sample_in_ball(const mldsa_params *p, mldsa_poly *c,
                          const uint8_t *ctilde)
{
    uint8_t block[KECCAK_SHAKE256_RATE];
    uint64_t signs = 0;
    size_t at = 8;
    keccak_state st;

    memset(c, 0, sizeof *c);
    shake256_init(&st);
    keccak_absorb(&st, ctilde, p->ctilde_bytes);
    keccak_finalize(&st);
    keccak_squeeze(&st, block, sizeof block);

    /* The first 8 bytes are the tau sign bits, least significant first. */
    for (size_t b = 0; b < 8; b++) {
        signs |= (uint64_t)block[b] << (8 * b);
    }

    for (unsigned i = MLDSA_N - p->tau; i < MLDSA_N; i++) {
        unsigned j;
        do {
            if (at == sizeof block) {
                keccak_squeeze(&st, block, sizeof block);
                at = 0;
            }
            j = block[at++];
        } while (j > i);

        /* Steps 9-10; c[i] is still 0 here. */
        c->c[i] = c->c[j];
        c->c[j] = 1 - 2 * (int32_t)(signs & 1);
        signs >>= 1;
    }

    mldsa_wipe(block, sizeof block);
    mldsa_wipe(&st, sizeof st);
}
