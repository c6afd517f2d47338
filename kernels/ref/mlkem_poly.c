/*
 * ML-KEM polynomial sampling, compression and byte encoding (FIPS 203,
 * sections 4.2.1 and 4.2.2), and coefficient-wise arithmetic.
 */
#include <string.h>

#include "../dispatch.h"
#include "fips202.h"
#include "mlkem_poly.h"

void mlkem_poly_add(mlkem_poly *r, const mlkem_poly *a, const mlkem_poly *b)
{
    for (unsigned i = 0; i < MLKEM_N; i++) {
        r->c[i] = mlkem_add_q(a->c[i], b->c[i]);
    }
}

void mlkem_poly_sub(mlkem_poly *r, const mlkem_poly *a, const mlkem_poly *b)
{
    for (unsigned i = 0; i < MLKEM_N; i++) {
        r->c[i] = mlkem_sub_q(a->c[i], b->c[i]);
    }
}

/* FIPS 203, Algorithm 7. Every 3 bytes give two 12-bit candidates; those
 * below q are kept. 168 bytes (one SHAKE128 block) hold 56 triples, so
 * squeezing whole blocks never splits one. rho is public: the branches on
 * the candidates leak nothing secret. */
void mlkem_poly_sample_ntt(mlkem_poly *p, const uint8_t rho[32], uint8_t x,
                           uint8_t y)
{
    uint8_t seed[MLKEM_SYM_BYTES + 2];
    uint8_t block[KECCAK_SHAKE128_RATE];
    keccak_state xof;
    unsigned filled = 0;

    memcpy(seed, rho, MLKEM_SYM_BYTES);
    seed[MLKEM_SYM_BYTES] = x;
    seed[MLKEM_SYM_BYTES + 1] = y;
    shake128_init(&xof);
    keccak_absorb(&xof, seed, sizeof(seed));
    keccak_finalize(&xof);

    while (filled < MLKEM_N) {
        keccak_squeeze(&xof, block, sizeof(block));
        for (unsigned b = 0; b < sizeof(block) && filled < MLKEM_N; b += 3) {
            uint16_t d1 = (uint16_t)(block[b] | ((block[b + 1] & 0x0F) << 8));
            uint16_t d2 = (uint16_t)((block[b + 1] >> 4) | (block[b + 2] << 4));

            if (d1 < MLKEM_Q) {
                p->c[filled++] = d1;
            }
            if (d2 < MLKEM_Q && filled < MLKEM_N) {
                p->c[filled++] = d2;
            }
        }
    }
}

static unsigned bit_at(const uint8_t *buf, unsigned j)
{
    return (buf[j / 8] >> (j % 8)) & 1u;
}

/* FIPS 203, Algorithm 8, read literally: coefficient i is the number of ones
 * among bits [2 eta i, 2 eta i + eta) minus that among the next eta bits.
 * The bit positions depend only on i and eta, never on the bits, so the
 * count is constant time. bits: 64 eta bytes of PRF output. */
static void cbd_from_bits(mlkem_poly *p, const uint8_t *bits, unsigned eta)
{
    const pqc_impl *impl = pqc_impl_active();

    if (impl != NULL && impl->mlkem_cbd != NULL &&
        impl->mlkem_cbd(p, bits, eta) == PQC_IMPL_SERVED) {
        return;
    }
    for (unsigned i = 0; i < MLKEM_N; i++) {
        unsigned first = 2 * eta * i;
        uint16_t x = 0, y = 0;

        for (unsigned t = 0; t < eta; t++) {
            x = (uint16_t)(x + bit_at(bits, first + t));
            y = (uint16_t)(y + bit_at(bits, first + eta + t));
        }
        p->c[i] = mlkem_sub_q(x, y);
    }
}

void mlkem_poly_sample_cbd(mlkem_poly *p, const uint8_t sigma[32],
                           uint8_t nonce, unsigned eta)
{
    uint8_t prf_in[MLKEM_SYM_BYTES + 1];
    uint8_t bits[64 * 3];

    assert(eta == 2 || eta == 3);
    memcpy(prf_in, sigma, MLKEM_SYM_BYTES);
    prf_in[MLKEM_SYM_BYTES] = nonce;
    shake256(bits, 64 * eta, prf_in, sizeof(prf_in));
    cbd_from_bits(p, bits, eta);

    mlkem_wipe(prf_in, sizeof(prf_in));
    mlkem_wipe(bits, sizeof(bits));
}

/* Up to four PRFs through the table's 4-way SHAKE256; 0 if it declined.
 * Ways past count repeat the first input and are ignored. */
static int sample_cbd_x4(const pqc_impl *impl, mlkem_poly *p,
                         const uint8_t sigma[32], uint8_t nonce, unsigned count,
                         unsigned eta)
{
    uint8_t prf_in[PQC_IMPL_WAYS][MLKEM_SYM_BYTES + 1];
    uint8_t bits[PQC_IMPL_WAYS][64 * 3];
    const uint8_t *in[PQC_IMPL_WAYS];
    uint8_t *out[PQC_IMPL_WAYS];
    int served;

    for (unsigned j = 0; j < PQC_IMPL_WAYS; j++) {
        memcpy(prf_in[j], sigma, MLKEM_SYM_BYTES);
        prf_in[j][MLKEM_SYM_BYTES] = (uint8_t)(nonce + (j < count ? j : 0));
        in[j] = prf_in[j];
        out[j] = bits[j];
    }
    served = impl->shake_x4(KECCAK_SHAKE256_RATE, out, 64 * eta, in,
                            sizeof(prf_in[0])) == PQC_IMPL_SERVED;
    for (unsigned j = 0; served && j < count; j++) {
        cbd_from_bits(&p[j], bits[j], eta);
    }

    mlkem_wipe(prf_in, sizeof(prf_in));
    mlkem_wipe(bits, sizeof(bits));
    return served;
}

void mlkem_poly_sample_cbd_n(mlkem_poly *p, const uint8_t sigma[32],
                             uint8_t nonce, unsigned count, unsigned eta)
{
    const pqc_impl *impl = pqc_impl_active();

    for (unsigned done = 0; done < count; done += PQC_IMPL_WAYS) {
        unsigned ways =
            count - done < PQC_IMPL_WAYS ? count - done : PQC_IMPL_WAYS;
        uint8_t first = (uint8_t)(nonce + done);

        if (impl != NULL && impl->shake_x4 != NULL &&
            sample_cbd_x4(impl, &p[done], sigma, first, ways, eta)) {
            continue;
        }
        for (unsigned j = 0; j < ways; j++) {
            mlkem_poly_sample_cbd(&p[done + j], sigma, (uint8_t)(first + j),
                                  eta);
        }
    }
}

void mlkem_poly_sample_ntt_n(mlkem_poly *p, const uint8_t rho[32],
                             const uint16_t *nonce, unsigned count)
{
    const pqc_impl *impl = pqc_impl_active();

    for (unsigned done = 0; done < count; done += PQC_IMPL_WAYS) {
        unsigned ways =
            count - done < PQC_IMPL_WAYS ? count - done : PQC_IMPL_WAYS;

        if (impl != NULL && impl->mlkem_sample_ntt_x4 != NULL &&
            impl->mlkem_sample_ntt_x4(&p[done], rho, &nonce[done], ways) ==
                PQC_IMPL_SERVED) {
            continue;
        }
        for (unsigned j = 0; j < ways; j++) {
            uint16_t n = nonce[done + j];

            mlkem_poly_sample_ntt(&p[done + j], rho, (uint8_t)n,
                                  (uint8_t)(n >> 8));
        }
    }
}

/*
 * ByteEncode_d and ByteDecode_d (FIPS 203, Algorithms 5 and 6): bit j of
 * value i is bit d i + j of the bytes, least significant first. Values go
 * eight at a time, as eight d-bit values fill exactly d bytes; with d a
 * constant (the switches below, one case per width FIPS 203 uses) the
 * compiler resolves every shift. The loop shape depends on d only.
 */
#define MLKEM_GROUP 8

static inline __attribute__((always_inline)) void
pack_width(uint8_t *out, const uint16_t v[MLKEM_N], unsigned d)
{
    for (unsigned i = 0; i < MLKEM_N; i += MLKEM_GROUP) {
        uint64_t acc = 0;
        unsigned held = 0;

#pragma GCC unroll 8
        for (unsigned k = 0; k < MLKEM_GROUP; k++) {
            acc |= (uint64_t)v[i + k] << held;
            held += d;
#pragma GCC unroll 4
            while (held >= 8) {
                *out++ = (uint8_t)acc;
                acc >>= 8;
                held -= 8;
            }
        }
    }
}

/* Without the final mod q of ByteDecode_12. */
static inline __attribute__((always_inline)) void
unpack_width(uint16_t v[MLKEM_N], const uint8_t *in, unsigned d)
{
    for (unsigned i = 0; i < MLKEM_N; i += MLKEM_GROUP) {
        uint64_t acc = 0;
        unsigned held = 0;

#pragma GCC unroll 8
        for (unsigned k = 0; k < MLKEM_GROUP; k++) {
#pragma GCC unroll 4
            while (held < d) {
                acc |= (uint64_t)*in++ << held;
                held += 8;
            }
            v[i + k] = (uint16_t)(acc & ((1u << d) - 1));
            acc >>= d;
            held -= d;
        }
    }
}

/* Every d FIPS 203 encodes: Compress_1 of the message, d_v (4, 5), d_u
 * (10, 11) and the 12 of whole coefficients. */
#define MLKEM_WIDTHS(X) X(1) X(4) X(5) X(10) X(11) X(12)

/* Values must be below 2^d. */
static void pack_bits(uint8_t *out, const uint16_t v[MLKEM_N], unsigned d)
{
#define MLKEM_PACK_CASE(w)                                                     \
    case w:                                                                    \
        pack_width(out, v, w);                                                 \
        return;

    switch (d) {
        MLKEM_WIDTHS(MLKEM_PACK_CASE)
    }
#undef MLKEM_PACK_CASE
    pack_width(out, v, d);
}

static void unpack_bits(uint16_t v[MLKEM_N], const uint8_t *in, unsigned d)
{
#define MLKEM_UNPACK_CASE(w)                                                   \
    case w:                                                                    \
        unpack_width(v, in, w);                                                \
        return;

    switch (d) {
        MLKEM_WIDTHS(MLKEM_UNPACK_CASE)
    }
#undef MLKEM_UNPACK_CASE
    unpack_width(v, in, d);
}

/* Compress_d(x) = round(2^d x / q) mod 2^d = floor((2^d x + 1664) / q) mod
 * 2^d for odd q (FIPS 203, equation 4.7), then ByteEncode_d. The division
 * is mlkem_div_q's multiply and shift, since x may be secret (the decrypted
 * message, u and v of a re-encryption). */
static inline __attribute__((always_inline)) void
compress_width(uint8_t *out, const mlkem_poly *p, unsigned d)
{
    uint16_t v[MLKEM_N];

    for (unsigned i = 0; i < MLKEM_N; i++) {
        uint32_t scaled = ((uint32_t)p->c[i] << d) + MLKEM_HALF_Q;
        v[i] = (uint16_t)(mlkem_div_q(scaled) & ((1u << d) - 1));
    }
    pack_width(out, v, d);
    mlkem_wipe(v, sizeof(v));
}

void mlkem_poly_compress_encode(uint8_t *out, const mlkem_poly *p, unsigned d)
{
    assert(d >= 1 && d <= 11);
    MLKEM_ASSERT_CANONICAL(p);
#define MLKEM_COMPRESS_CASE(w)                                                 \
    case w:                                                                    \
        compress_width(out, p, w);                                             \
        return;

    switch (d) {
        MLKEM_WIDTHS(MLKEM_COMPRESS_CASE)
    }
#undef MLKEM_COMPRESS_CASE
    compress_width(out, p, d);
}

/* Decompress_d(y) = round(q y / 2^d) = floor((q y + 2^(d-1)) / 2^d)
 * (FIPS 203, equation 4.8); always below q. */
void mlkem_poly_decode_decompress(mlkem_poly *p, const uint8_t *in, unsigned d)
{
    assert(d >= 1 && d <= 11);
    unpack_bits(p->c, in, d);
    for (unsigned i = 0; i < MLKEM_N; i++) {
        uint32_t y = p->c[i];
        p->c[i] = (uint16_t)((y * MLKEM_Q + (1u << (d - 1))) >> d);
    }
}

void mlkem_poly_encode12(uint8_t *out, const mlkem_poly *p)
{
    const pqc_impl *impl = pqc_impl_active();

    MLKEM_ASSERT_CANONICAL(p);
    if (impl != NULL && impl->mlkem_encode12 != NULL &&
        impl->mlkem_encode12(out, p) == PQC_IMPL_SERVED) {
        return;
    }
    pack_bits(out, p->c, 12);
}

/* A 12-bit value is below 2^12 < 2q, so one masked subtraction reduces it;
 * the out-of-range flags are OR-ed together rather than tested one by one. */
uint32_t mlkem_poly_decode12(mlkem_poly *p, const uint8_t *in)
{
    const pqc_impl *impl = pqc_impl_active();
    uint32_t out_of_range = 0;

    if (impl != NULL && impl->mlkem_decode12 != NULL &&
        impl->mlkem_decode12(p, in, &out_of_range) == PQC_IMPL_SERVED) {
        return out_of_range;
    }

    unpack_bits(p->c, in, 12);
    for (unsigned i = 0; i < MLKEM_N; i++) {
        out_of_range |= ~mlkem_mask_lt(p->c[i], MLKEM_Q);
        p->c[i] = mlkem_csub_q(p->c[i]);
    }
    return out_of_range;
}

void mlkem_wipe(void *p, size_t len)
{
    const pqc_impl *impl = pqc_impl_active();

    if (impl != NULL && impl->wipe != NULL) {
        impl->wipe(p, len);
        return;
    }
    volatile uint8_t *bytes = (volatile uint8_t *)p;

    for (size_t i = 0; i < len; i++) {
        bytes[i] = 0;
    }
}
