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

/* The reference: every entry declined. */
static const pqc_impl impl_ref = {.name = "ref"};

#ifdef PQC_BACKEND_AVX2
static const pqc_impl impl_avx2 = {
    .name = "avx2",
    .wipe = pqc_avx2_wipe,
    .keccak_f1600 = pqc_avx2_keccak_f1600,
    .shake_x4 = pqc_avx2_impl_shake_x4,
    .mlkem_sample_ntt_x4 = pqc_avx2_mlkem_sample_ntt_x4,
    .mldsa_sample_a_x4 = pqc_avx2_mldsa_sample_a_x4,
    .mldsa_sample_eta_x4 = pqc_avx2_mldsa_sample_eta_x4,
    .mlkem_ntt = pqc_avx2_mlkem_ntt,
    .mlkem_invntt = pqc_avx2_mlkem_invntt,
    .mlkem_basemul_acc = pqc_avx2_mlkem_basemul_acc,
    .mlkem_cbd = pqc_avx2_mlkem_cbd,
    .mlkem_encode12 = pqc_avx2_mlkem_encode12,
    .mlkem_decode12 = pqc_avx2_mlkem_decode12,
    .mldsa_ntt = pqc_avx2_mldsa_ntt,
    .mldsa_invntt = pqc_avx2_mldsa_invntt,
    .mldsa_pointwise = pqc_avx2_mldsa_pointwise,
    .mldsa_decompose = pqc_avx2_mldsa_decompose,
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

static const pqc_impl *chosen = &impl_ref;
static pthread_once_t probed = PTHREAD_ONCE_INIT;

static void probe(void)
{
    const char *want = getenv("PQC_KERNEL_IMPL");

    if (want != NULL && strcmp(want, "ref") == 0) {
        return;
    }
#ifdef PQC_BACKEND_AVX2
    if (cpu_has_avx2()) {
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
