/*
 * Shared plumbing of the 4-way samplers: the seeds with their nonces, and
 * a stream buffer that grows a block at a time for all four sponges.
 */
#ifndef PQC_X86_64_AVX2_SPONGE_X4_H
#define PQC_X86_64_AVX2_SPONGE_X4_H

#include <string.h>

#include "backend.h"
#include "fips202.h"
#include "rej_avx2.h"

/* The longest seed sampled here: rho' (64 bytes) and a two-byte nonce. */
#define PQC_X4_SEED_MAX 66

/* Enough blocks of stream for any sampler here to finish in almost every
 * call; a sampler that runs short squeezes one more block for all four. */
#define PQC_X4_STREAM_BLOCKS 8

typedef struct {
    pqc_keccakx4 sponge;
    uint8_t seed[PQC_IMPL_WAYS][PQC_X4_SEED_MAX];
    uint8_t stream[PQC_IMPL_WAYS][PQC_X4_STREAM_BLOCKS * KECCAK_X4_MAX_RATE];
    uint8_t slack[PQC_REJ_SLACK]; /* the vector parsers read past a stream */
    size_t blocks;                /* squeezed so far, the same for all four */
} pqc_x4_sampler;

/* Absorb seed_len bytes of seed followed by nonce[j] (little-endian) into
 * sponge j, then squeeze `blocks` blocks. Ways past count repeat way 0, so
 * their permutations cost nothing extra and their output is ignored. */
static inline void pqc_x4_start(pqc_x4_sampler *x, unsigned rate,
                                const uint8_t *seed, size_t seed_len,
                                const uint16_t nonce[PQC_IMPL_WAYS],
                                unsigned count, size_t blocks)
{
    const uint8_t *in[PQC_IMPL_WAYS];
    uint8_t *out[PQC_IMPL_WAYS];

    for (unsigned j = 0; j < PQC_IMPL_WAYS; j++) {
        uint16_t n = nonce[j < count ? j : 0];

        memcpy(x->seed[j], seed, seed_len);
        x->seed[j][seed_len] = (uint8_t)n;
        x->seed[j][seed_len + 1] = (uint8_t)(n >> 8);
        in[j] = x->seed[j];
        out[j] = x->stream[j];
    }
    pqc_avx2_shake_x4_absorb(&x->sponge, rate, in, seed_len + 2);
    pqc_avx2_shake_x4_squeezeblocks(&x->sponge, out, blocks);
    x->blocks = blocks;
}

/* One more block for every sponge; 0 when the buffer is full (then the
 * caller declines and the reference recomputes from scratch). */
static inline int pqc_x4_more(pqc_x4_sampler *x)
{
    uint8_t *out[PQC_IMPL_WAYS];
    size_t at = x->blocks * x->sponge.rate;

    if (x->blocks == PQC_X4_STREAM_BLOCKS) {
        return 0;
    }
    for (unsigned j = 0; j < PQC_IMPL_WAYS; j++) {
        out[j] = x->stream[j] + at;
    }
    pqc_avx2_shake_x4_squeezeblocks(&x->sponge, out, 1);
    x->blocks++;
    return 1;
}

#endif
