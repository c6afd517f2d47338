/*
 * The x86-64 AVX-512 backend: the entries of the dispatch table
 * (kernels/dispatch.h) it fills beyond the AVX2 backend's, whose table it
 * takes for everything else. Each entry has the contract written there;
 * these are valid only once the probe found AVX-512F, VL and BW besides
 * everything the AVX2 backend needs.
 *
 * Covered: Keccak-f[1600] on four states, under every 4-way SHAKE and
 * sampler (ML-KEM's matrix and CBD PRFs, ML-DSA's ExpandA, ExpandS and
 * ExpandMask), which the AVX2 sponge code runs through the table; the
 * Keccak-f[1600] of every other SHA3 and SHAKE call; ML-DSA's NTT, inverse
 * NTT and pointwise products on 512-bit vectors. Everything else is the
 * AVX2 backend's or the reference's.
 *
 * On AMD Zen 4 the 512-bit operations are split into two 256-bit halves,
 * so what AVX-512 brings there is its instructions (three-input logic,
 * rotates) and 32 vector registers more than its width.
 */
#ifndef PQC_X86_64_AVX512_BACKEND_H
#define PQC_X86_64_AVX512_BACKEND_H

#include <stdint.h>

#include "../../dispatch.h"

/* Keccak-f[1600] (FIPS 202, Algorithm 7) on the four interleaved states
 * of s, in and out, in the layout of the table's keccak_f1600_x4; and on
 * one state, in and out. */
void pqc_avx512_keccak_f1600_x4(uint64_t s[4 * 25]);
void pqc_avx512_keccak_f1600(uint64_t s[25]);

/* ML-DSA's NTT, NTT^-1 (times 2^32) and pointwise Montgomery products of
 * mldsa_poly, with the reference's exact integers (mldsa_ntt,
 * mldsa_invntt_tomont, mldsa_poly_pointwise and _acc); the bounds on the
 * inputs are the reference's. */
int pqc_avx512_mldsa_ntt(void *poly);
int pqc_avx512_mldsa_invntt(void *poly);
int pqc_avx512_mldsa_pointwise(void *out, const void *a, const void *b,
                               int accumulate);

#endif
