/*
 * Vectorised rejection-sampling parsers for the public matrices: ML-KEM's
 * SampleNTT (12-bit candidates, FIPS 203, Algorithm 7) and ML-DSA's
 * RejNTTPoly (23-bit candidates, FIPS 204, Algorithm 30). Each step
 * extracts 16 (or 8) candidates from 24 stream bytes, compares them with
 * q, and packs the kept ones to the front with a shuffle chosen by the
 * comparison mask, so kept values come out in stream order, exactly as the
 * scalar loops take them. The stream is public (it derives from rho), so
 * mask-indexed tables leak nothing.
 */
#ifndef PQC_X86_64_AVX2_REJ_AVX2_H
#define PQC_X86_64_AVX2_REJ_AVX2_H

#include <stddef.h>
#include <stdint.h>

/* Bytes consumed per step; 168-byte blocks hold exactly seven. */
#define PQC_REJ_STEP 24

/* Reads 32 bytes at each step's start, so the stream must have 8 readable
 * bytes past len. */
#define PQC_REJ_SLACK 8

/* Parse stream[at..len) (len - at a multiple of 24) into buf from index
 * filled on, stopping once filled >= 256; returns the new filled, which
 * may exceed 256 (buf needs 16 spare entries for kem, 8 for dsa). */
unsigned pqc_avx2_rej_kem(uint16_t *buf, unsigned filled, const uint8_t *stream,
                          size_t at, size_t len);
unsigned pqc_avx2_rej_dsa(int32_t *buf, unsigned filled, const uint8_t *stream,
                          size_t at, size_t len);

#endif
