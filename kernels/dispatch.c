/*
 * The run-time choice of kernel implementation (see dispatch.h).
 */
#include "dispatch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifdef PQC_BACKEND_AVX2
#include "x86_64/avx2/backend.h"
#endif
#ifdef PQC_BACKEND_AVX512
#include "x86_64/avx512/backend.h"
#endif

/* The implementations in order of preference, lowest first; an
 * environment cap or a missing CPU feature moves the choice down. */
typedef enum { LEVEL_REF, LEVEL_AVX2, LEVEL_AVX512 } impl_level;

/* The reference: every entry declined. */
static const pqc_impl impl_ref = {.name = "ref"};

#ifdef PQC_BACKEND_AVX2
/* The AVX2 entries that the avx512 table takes unchanged. */
#define PQC_AVX2_SHARED_ENTRIES                                                \
    .wipe = pqc_avx2_wipe, .shake_x4 = pqc_avx2_impl_shake_x4,                 \
    .mlkem_sample_ntt_x4 = pqc_avx2_mlkem_sample_ntt_x4,                       \
    .mldsa_sample_a_x4 = pqc_avx2_mldsa_sample_a_x4,                           \
    .mldsa_sample_eta_x4 = pqc_avx2_mldsa_sample_eta_x4,                       \
    .mlkem_ntt = pqc_avx2_mlkem_ntt, .mlkem_invntt = pqc_avx2_mlkem_invntt,    \
    .mlkem_basemul_acc = pqc_avx2_mlkem_basemul_acc,                           \
    .mlkem_cbd = pqc_avx2_mlkem_cbd,                                           \
    .mlkem_encode12 = pqc_avx2_mlkem_encode12,                                 \
    .mlkem_decode12 = pqc_avx2_mlkem_decode12,                                 \
    .mldsa_decompose = pqc_avx2_mldsa_decompose

static const pqc_impl impl_avx2 = {
    .name = "avx2",
    PQC_AVX2_SHARED_ENTRIES,
    .keccak_f1600 = pqc_avx2_keccak_f1600,
    .keccak_f1600_x4 = pqc_avx2_keccak_f1600_x4,
    .mldsa_ntt = pqc_avx2_mldsa_ntt,
    .mldsa_invntt = pqc_avx2_mldsa_invntt,
    .mldsa_pointwise = pqc_avx2_mldsa_pointwise,
};

/* AVX2 (with the OS saving the YMM registers, which the builtin checks)
 * for the vectors; BMI1 and BMI2 for the scalar permutation, POPCNT for
 * the rejection parsers. Every CPU with AVX2 so far has all three. */
static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") &&
           __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt");
}
#endif

#if defined(PQC_BACKEND_AVX2) && defined(PQC_BACKEND_AVX512)
static const pqc_impl impl_avx512 = {
    .name = "avx512",
    PQC_AVX2_SHARED_ENTRIES,
    .keccak_f1600 = pqc_avx512_keccak_f1600,
    .keccak_f1600_x4 = pqc_avx512_keccak_f1600_x4,
    .mldsa_ntt = pqc_avx512_mldsa_ntt,
    .mldsa_invntt = pqc_avx512_mldsa_invntt,
    .mldsa_pointwise = pqc_avx512_mldsa_pointwise,
};

/* The backend runs on top of the AVX2 one, so it needs all of that too.
 * The builtin reports AVX-512 features only when XCR0 shows the OS saves
 * the mask and ZMM registers. F is the instruction set (ML-DSA's NTTs on
 * ZMM), VL its 256-bit forms (the 4-way Keccak), BW the byte and word
 * forms, which every AVX-512 CPU so far pairs with VL. */
static int cpu_has_avx512(void)
{
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw");
}
#endif

/* PQC_KERNEL_IMPL as a cap (dispatch.h): only "ref" and "avx2" lower it. */
static impl_level allowed_level(void)
{
    const char *want = getenv("PQC_KERNEL_IMPL");

    if (want != NULL && strcmp(want, "ref") == 0) {
        return LEVEL_REF;
    }
    if (want != NULL && strcmp(want, "avx2") == 0) {
        return LEVEL_AVX2;
    }
    return LEVEL_AVX512;
}

static const pqc_impl *chosen = &impl_ref;
static pthread_once_t probed = PTHREAD_ONCE_INIT;

static void probe(void)
{
    impl_level cap = allowed_level();

    (void)cap; /* unused in a build without native backends */
#if defined(PQC_BACKEND_AVX2) && defined(PQC_BACKEND_AVX512)
    if (cap >= LEVEL_AVX512 && cpu_has_avx512()) {
        chosen = &impl_avx512;
        return;
    }
#endif
#ifdef PQC_BACKEND_AVX2
    if (cap >= LEVEL_AVX2 && cpu_has_avx2()) {
        chosen = &impl_avx2;
    }
#endif
}

const pqc_impl *pqc_impl_get(void)
{
    pthread_once(&probed, probe);
    return chosen;
}

const char *pqc_impl_name(void)
{
    return pqc_impl_get()->name;
}
