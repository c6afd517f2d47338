/*
 * The x86-64 AVX2 backend: what it covers, as the entries of the dispatch
 * table (kernels/dispatch.h) it fills. Each entry has the contract written
 * there; these are the AVX2 implementations, valid only once the probe
 * found AVX2, BMI1, BMI2 and POPCNT.
 *
 * Covered: wiping scratch memory; the scalar Keccak-f[1600] under every
 * SHA3/SHAKE call; the 4-way Keccak-f[1600]; 4-way SHAKE for equal-length
 * inputs (ML-KEM's CBD PRFs, ML-DSA's ExpandMask); the 4-way rejection
 * samplers of ML-KEM's matrix and of ML-DSA's ExpandA and ExpandS (the
 * sponges and samplers run the table's 4-way permutation, which the
 * avx512 backend replaces); ML-KEM's NTT, inverse NTT, base-case products
 * and CBD sampler for eta = 2; ML-DSA's NTT, inverse NTT, pointwise products
 * and Decompose. Everything else runs the reference.
 */
#ifndef PQC_X86_64_AVX2_BACKEND_H
#define PQC_X86_64_AVX2_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "../../dispatch.h"
#include "keccak.h"

/* memset at full width, kept by an opaque use of the memory after it. */
void pqc_avx2_wipe(void *p, size_t len);

int pqc_avx2_impl_shake_x4(unsigned rate, uint8_t *const out[PQC_IMPL_WAYS],
                           size_t outlen,
                           const uint8_t *const in[PQC_IMPL_WAYS],
                           size_t inlen);

int pqc_avx2_mlkem_sample_ntt_x4(void *out, const uint8_t rho[32],
                                 const uint16_t nonce[PQC_IMPL_WAYS],
                                 unsigned count);

int pqc_avx2_mldsa_sample_a_x4(void *out, const uint8_t rho[32],
                               const uint16_t nonce[PQC_IMPL_WAYS],
                               unsigned count);

int pqc_avx2_mldsa_sample_eta_x4(void *out, unsigned eta, const uint8_t rho[64],
                                 const uint16_t nonce[PQC_IMPL_WAYS],
                                 unsigned count);

/* NTT and NTT^-1 of one mlkem_poly in place (FIPS 203, Algorithms 9 and
 * 10); canonical coefficients in and out, as mlkem_poly_ntt. */
int pqc_avx2_mlkem_ntt(void *poly);
int pqc_avx2_mlkem_invntt(void *poly);

/* acc += a x b in ML-KEM's NTT domain (as mlkem_poly_basemul_acc), and
 * SamplePolyCBD_eta of 64 eta bytes (eta = 2 only; 3 declines); canonical
 * coefficients out. */
int pqc_avx2_mlkem_basemul_acc(void *acc, const void *a, const void *b);
int pqc_avx2_mlkem_cbd(void *poly, const uint8_t *bits, unsigned eta);

/* ByteEncode_12 and ByteDecode_12 with the modulus check, as
 * mlkem_poly_encode12 and mlkem_poly_decode12. */
int pqc_avx2_mlkem_encode12(uint8_t *out, const void *poly);
int pqc_avx2_mlkem_decode12(void *poly, const uint8_t *in, uint32_t *bad);

/* ML-DSA's NTT, NTT^-1 (times 2^32) and pointwise Montgomery products of
 * mldsa_poly, with the reference's exact integers (mldsa_ntt,
 * mldsa_invntt_tomont, mldsa_poly_pointwise and _acc). */
int pqc_avx2_mldsa_ntt(void *poly);
int pqc_avx2_mldsa_invntt(void *poly);
int pqc_avx2_mldsa_pointwise(void *out, const void *a, const void *b,
                             int accumulate);

/* Decompose of 256 values in [0, q): r1 and r0 as mldsa_decompose (either
 * may be NULL); declines a gamma2 other than (q - 1) / 32 or / 88. */
int pqc_avx2_mldsa_decompose(int32_t gamma2, int32_t *r1, int32_t *r0,
                             const int32_t *r);

#endif
