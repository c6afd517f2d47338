/*
 * Keccak-f[1600], SHA3 and SHAKE (FIPS 202), the portable reference.
 *
 * Every ML-KEM and ML-DSA hash (H, J, G, PRF, XOF, and FIPS 204's H and G)
 * is one of these sponges. Inputs and outputs are byte strings; nothing here
 * branches on or indexes by data, so the functions are constant time in
 * their inputs (the lengths are public).
 */
#ifndef PQC_FIPS202_H
#define PQC_FIPS202_H

#include <stddef.h>
#include <stdint.h>

#define KECCAK_SHAKE128_RATE 168
#define KECCAK_SHAKE256_RATE 136
#define KECCAK_SHA3_256_RATE 136
#define KECCAK_SHA3_512_RATE 72

/* An incremental sponge: absorb any number of times, finalize once, then
 * squeeze any number of times. */
typedef struct {
    uint64_t s[25]; /* the 1600-bit state, lane (x, y) at s[x + 5 y] */
    unsigned pos;   /* bytes absorbed into / squeezed from this block */
    unsigned rate;  /* block size in bytes */
    uint8_t dsbyte; /* domain bits and first pad bit (FIPS 202, B.2) */
    uint8_t squeezing;
} keccak_state;

/* Keccak-f[1600] permutation, 24 rounds (FIPS 202, Algorithm 7). */
void keccak_f1600(uint64_t s[25]);

/* Start a SHAKE128 or SHAKE256 sponge. */
void shake128_init(keccak_state *st);
void shake256_init(keccak_state *st);

/* Absorb len bytes of in. Must not be called after keccak_finalize. */
void keccak_absorb(keccak_state *st, const uint8_t *in, size_t len);

/* Pad the last block and switch the sponge to squeezing. */
void keccak_finalize(keccak_state *st);

/* Squeeze len bytes into out. May be called repeatedly after finalize. */
void keccak_squeeze(keccak_state *st, uint8_t *out, size_t len);

/* One-shot helpers. */
void sha3_256(uint8_t out[32], const uint8_t *in, size_t len);
void sha3_512(uint8_t out[64], const uint8_t *in, size_t len);
void shake128(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen);
void shake256(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen);

#endif
