/*
 * Keccak-f[1600] for x86-64 with AVX2 (and BMI1/BMI2 for the scalar
 * permutation): one state at a time, and four states at once in the lanes
 * of 256-bit vectors, with SHAKE sponges over the four.
 *
 * Every function here is compiled for its target by attribute, not by a
 * global -mavx2, so the module loads on any x86-64 CPU; only call them
 * after the run-time probe (kernels/dispatch.c) found the features. Like
 * the reference, nothing branches on or indexes by data: the timing
 * depends on the lengths alone.
 */
#ifndef PQC_X86_64_AVX2_KECCAK_H
#define PQC_X86_64_AVX2_KECCAK_H

#include <stddef.h>
#include <stdint.h>

/* Four sponges stepping together. s[4 i + j] is lane i (lane (x, y) at
 * i = x + 5 y, as in fips202.h) of sponge j, so that one 256-bit load
 * gathers lane i of all four. */
/* The largest rate of the sponges here (SHAKE128's). */
#define KECCAK_X4_MAX_RATE 168

/* A 4-way permutation on s, in and out. */
typedef void (*pqc_keccakx4_permutation)(uint64_t s[4 * 25]);

typedef struct {
    _Alignas(32) uint64_t s[4 * 25];
    unsigned rate; /* bytes per block */
    /* The permutation this sponge runs, taken from the dispatch table when
     * it starts (kernels/dispatch.h, keccak_f1600_x4): AVX-512's when the
     * probe picked that backend, else the AVX2 one below. */
    pqc_keccakx4_permutation permute;
} pqc_keccakx4;

/* Keccak-f[1600] (FIPS 202, Algorithm 7) on one state, in and out. */
void pqc_avx2_keccak_f1600(uint64_t s[25]);

/* Keccak-f[1600] on the four interleaved states of s, in and out. */
void pqc_avx2_keccak_f1600_x4(uint64_t s[4 * 25]);

/* Start four SHAKE sponges (rate 168 for SHAKE128, 136 for SHAKE256),
 * absorb in[j] (len bytes each, the same len for all four) into sponge j
 * and pad. The first squeeze then begins with a permutation. */
void pqc_avx2_shake_x4_absorb(pqc_keccakx4 *st, unsigned rate,
                              const uint8_t *const in[4], size_t len);

/* Squeeze nblocks whole blocks (nblocks * rate bytes) from each sponge:
 * out[j] receives those of sponge j. */
void pqc_avx2_shake_x4_squeezeblocks(pqc_keccakx4 *st, uint8_t *const out[4],
                                     size_t nblocks);

/* One-shot: out[j] = SHAKE(in[j], outlen bytes) for j = 0..3, with equal
 * input and output lengths. */
void pqc_avx2_shake_x4(unsigned rate, uint8_t *const out[4], size_t outlen,
                       const uint8_t *const in[4], size_t inlen);

#endif
