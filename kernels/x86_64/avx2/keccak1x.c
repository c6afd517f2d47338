/*
 * Keccak-f[1600] on one state, arranged for a 64-bit x86 core.
 *
 * The reference (kernels/ref/fips202.c) loops over the step mappings with
 * indices computed at run time; here every index is a constant after full
 * unrolling, and each round goes from one state array to another a row of
 * the output at a time: theta's five column sums first, then for each
 * output row the five lanes that rho and pi bring there, then chi on
 * them. Only a dozen values are live at once, which suits 16 registers
 * far better than holding all 25 lanes twice. BMI1 gives chi's and-not in
 * one instruction and BMI2 a rotate that does not touch the flags. The
 * result is bit-identical to the reference (tests/test_kernels_avx2.py).
 */
#include "keccak.h"

#include <string.h>

#include "keccak_constants.h"

#define PQC_TARGET_1X __attribute__((target("bmi,bmi2")))

static inline uint64_t rotl1x(uint64_t v, unsigned n)
{
    return (v << n) | (v >> ((64 - n) & 63));
}

/* One round, a into e (FIPS 202, section 3.3). Output lane (x, y) comes
 * through pi from input lane (x + 3 y mod 5, x), rotated by that lane's
 * rho offset after theta. */
static inline PQC_TARGET_1X void round1x(const uint64_t a[25], uint64_t e[25],
                                         uint64_t rc)
{
    uint64_t c[5], d[5];

#pragma GCC unroll 5
    for (unsigned x = 0; x < 5; x++) {
        c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
    }
#pragma GCC unroll 5
    for (unsigned x = 0; x < 5; x++) {
        d[x] = c[(x + 4) % 5] ^ rotl1x(c[(x + 1) % 5], 1);
    }

#pragma GCC unroll 5
    for (unsigned y = 0; y < 5; y++) {
        uint64_t b[5];

#pragma GCC unroll 5
        for (unsigned x = 0; x < 5; x++) {
            unsigned src = (x + 3 * y) % 5 + 5 * x;

            b[x] = rotl1x(a[src] ^ d[src % 5], keccak_rho_offsets[src]);
        }
#pragma GCC unroll 5
        for (unsigned x = 0; x < 5; x++) {
            e[x + 5 * y] = b[x] ^ (~b[(x + 1) % 5] & b[(x + 2) % 5]);
        }
    }
    e[0] ^= rc;
}

/* Rounds alternate between s and e, so an even count ends in s. */
PQC_TARGET_1X void pqc_avx2_keccak_f1600(uint64_t s[25])
{
    uint64_t e[25];

    for (unsigned r = 0; r < KECCAK_ROUNDS; r += 2) {
        round1x(s, e, keccak_round_constants[r]);
        round1x(e, s, keccak_round_constants[r + 1]);
    }
}
