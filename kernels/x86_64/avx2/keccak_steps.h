/*
 * The constants of Keccak-f[1600] (FIPS 202, section 3.2) in the form the
 * unrolled x86-64 permutations index them: every index into these tables
 * is a compile-time constant once the round is unrolled.
 */
#ifndef PQC_X86_64_AVX2_KECCAK_STEPS_H
#define PQC_X86_64_AVX2_KECCAK_STEPS_H

#include <stdint.h>

#define KECCAK_STEP_ROUNDS 24

/* RC[ir] of iota (FIPS 202, Algorithms 5 and 6); the test recomputes them
 * from the LFSR rc(t) and compares them with the reference's table. */
static const uint64_t keccak_rc[KECCAK_STEP_ROUNDS] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL,
    0x8000000080008000ULL, 0x000000000000808bULL, 0x0000000080000001ULL,
    0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008aULL,
    0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL,
    0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL,
    0x000000000000800aULL, 0x800000008000000aULL, 0x8000000080008081ULL,
    0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* rho offsets of lane x + 5 y (FIPS 202, Algorithm 2): (t + 1)(t + 2) / 2
 * mod 64 at step t of the walk (x, y) <- (y, 2 x + 3 y) from (1, 0). */
static const uint8_t keccak_rho[25] = {
    0,  1,  62, 28, 27, 36, 44, 6,  55, 20, 3,  10, 43,
    25, 39, 41, 45, 15, 21, 8,  18, 2,  61, 56, 14,
};

#endif
