/*
 * The constants of Keccak-f[1600] (FIPS 202, section 3.2), shared by the
 * reference permutation (fips202.c) and the native ones (kernels/x86_64).
 * They are static tables in a header so that, in a permutation whose
 * rounds are unrolled, every index is a compile-time constant and the
 * values become immediates (the vector rotates need them so).
 */
#ifndef PQC_KECCAK_CONSTANTS_H
#define PQC_KECCAK_CONSTANTS_H

#include <stdint.h>

#define KECCAK_ROUNDS 24

/* Round constants RC[i] for iota (FIPS 202, Algorithms 5 and 6): bit 2^j - 1
 * of RC[i] is rc(j + 7 i) for j = 0..6, where rc(t) is the output of the
 * LFSR x^8 + x^6 + x^5 + x^4 + 1 after t steps. */
static const uint64_t keccak_round_constants[KECCAK_ROUNDS] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL,
    0x8000000080008000ULL, 0x000000000000808bULL, 0x0000000080000001ULL,
    0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008aULL,
    0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL,
    0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL,
    0x000000000000800aULL, 0x800000008000000aULL, 0x8000000080008081ULL,
    0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* Rotation offsets of rho, indexed x + 5 y (FIPS 202, Algorithm 2): walking
 * (x, y) from (1, 0) by (x, y) <- (y, 2x + 3y mod 5), step t = 0..23 gets
 * (t + 1)(t + 2) / 2 mod 64; lane (0, 0) is not rotated. */
static const uint8_t keccak_rho_offsets[25] = {
    0,  1,  62, 28, 27, 36, 44, 6,  55, 20, 3,  10, 43,
    25, 39, 41, 45, 15, 21, 8,  18, 2,  61, 56, 14,
};

#endif
