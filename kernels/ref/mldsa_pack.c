/*
 * Byte encodings of ML-DSA (FIPS 204, section 7.2): keys, signatures and
 * w1. Every polynomial is a little-endian bit stream of fixed-width fields
 * (SimpleBitPack and BitPack, Algorithms 16 and 17), so one field packer
 * serves them all. Packing and unpacking touch every coefficient the same
 * way whatever its value, so they are constant time; only the hint
 * encoding, which is public, branches on data.
 */
#include <string.h>

#include "mldsa_internal.h"

/*
 * Fields go eight at a time: eight fields of `bits` bits fill exactly
 * `bits` bytes, so every group starts on a byte boundary and the bit
 * position inside a group is the same for every group. With `bits` a
 * constant (see the switches below) the compiler resolves those positions
 * and the loops become straight-line shifts and masks.
 */
#define MLDSA_GROUP 8

/*
 * Pack one group, field k = base + sign * c[k] in `bits` bits (bits <= 24):
 * sign = 1, base = 0 is SimpleBitPack; sign = -1, base = b is BitPack(w, a,
 * b), which stores b - w (Algorithm 17). Writes `bits` bytes.
 */
static inline __attribute__((always_inline)) void
mldsa_pack_group(uint8_t *out, const int32_t *c, unsigned bits, int32_t base,
                 int32_t sign)
{
    uint64_t acc = 0;
    unsigned held = 0;

#pragma GCC unroll 8
    for (unsigned k = 0; k < MLDSA_GROUP; k++) {
        uint32_t field = (uint32_t)(base + sign * c[k]);
        acc |= (uint64_t)(field & ((1u << bits) - 1)) << held;
        held += bits;
#pragma GCC unroll 4
        while (held >= 8) {
            *out++ = (uint8_t)acc;
            acc >>= 8;
            held -= 8;
        }
    }
}

/* The inverse: c[k] = sign * (field - base), so BitUnpack (Algorithm 19)
 * gives b - field and SimpleBitUnpack (Algorithm 18) the field itself. */
static inline __attribute__((always_inline)) void
mldsa_unpack_group(int32_t *c, const uint8_t *in, unsigned bits, int32_t base,
                   int32_t sign)
{
    uint64_t acc = 0;
    unsigned held = 0;

#pragma GCC unroll 8
    for (unsigned k = 0; k < MLDSA_GROUP; k++) {
#pragma GCC unroll 4
        while (held < bits) {
            acc |= (uint64_t)*in++ << held;
            held += 8;
        }
        int32_t field = (int32_t)(acc & ((1u << bits) - 1));
        c[k] = sign * (field - base);
        acc >>= bits;
        held -= bits;
    }
}

static inline __attribute__((always_inline)) void
mldsa_pack_width(uint8_t *out, const mldsa_poly *a, unsigned bits, int32_t base,
                 int32_t sign)
{
    for (size_t i = 0; i < MLDSA_N; i += MLDSA_GROUP) {
        mldsa_pack_group(out + i / MLDSA_GROUP * bits, &a->c[i], bits, base,
                         sign);
    }
}

static inline __attribute__((always_inline)) void
mldsa_unpack_width(mldsa_poly *a, const uint8_t *in, unsigned bits,
                   int32_t base, int32_t sign)
{
    for (size_t i = 0; i < MLDSA_N; i += MLDSA_GROUP) {
        mldsa_unpack_group(&a->c[i], in + i / MLDSA_GROUP * bits, bits, base,
                           sign);
    }
}

/* Every field width FIPS 204 packs: eta (3, 4), w1 (4, 6), t1 (10), t0 (13)
 * and z (18, 20). */
#define MLDSA_WIDTHS(X) X(3) X(4) X(6) X(10) X(13) X(18) X(20)

/* Pack c[i] as base + sign * c[i] in `bits` bits, each width FIPS 204 uses
 * with its own constant (see above). Writes 32 * bits bytes. */
static void mldsa_pack_fields(uint8_t *out, const mldsa_poly *a, unsigned bits,
                              int32_t base, int32_t sign)
{
#define MLDSA_PACK_CASE(w)                                                     \
    case w:                                                                    \
        mldsa_pack_width(out, a, w, base, sign);                               \
        return;

    switch (bits) {
        MLDSA_WIDTHS(MLDSA_PACK_CASE)
    }
#undef MLDSA_PACK_CASE
    mldsa_pack_width(out, a, bits, base, sign);
}

/* The inverse of mldsa_pack_fields. */
static void mldsa_unpack_fields(mldsa_poly *a, const uint8_t *in, unsigned bits,
                                int32_t base, int32_t sign)
{
#define MLDSA_UNPACK_CASE(w)                                                   \
    case w:                                                                    \
        mldsa_unpack_width(a, in, w, base, sign);                              \
        return;

    switch (bits) {
        MLDSA_WIDTHS(MLDSA_UNPACK_CASE)
    }
#undef MLDSA_UNPACK_CASE
    mldsa_unpack_width(a, in, bits, base, sign);
}

void mldsa_pack_t1(uint8_t *out, const mldsa_poly *t1)
{
    mldsa_pack_fields(out, t1, MLDSA_T1_BITS, 0, 1);
}

void mldsa_unpack_t1(mldsa_poly *t1, const uint8_t *in)
{
    mldsa_unpack_fields(t1, in, MLDSA_T1_BITS, 0, 1);
}

void mldsa_pack_eta(const mldsa_params *p, uint8_t *out, const mldsa_poly *a)
{
    mldsa_pack_fields(out, a, p->eta_bits, (int32_t)p->eta, -1);
}

void mldsa_unpack_eta(const mldsa_params *p, mldsa_poly *a, const uint8_t *in)
{
    mldsa_unpack_fields(a, in, p->eta_bits, (int32_t)p->eta, -1);
}

void mldsa_pack_t0(uint8_t *out, const mldsa_poly *a)
{
    mldsa_pack_fields(out, a, MLDSA_D, 1 << (MLDSA_D - 1), -1);
}

void mldsa_unpack_t0(mldsa_poly *a, const uint8_t *in)
{
    mldsa_unpack_fields(a, in, MLDSA_D, 1 << (MLDSA_D - 1), -1);
}

void mldsa_pack_w1(const mldsa_params *p, uint8_t *out, const mldsa_poly *w1)
{
    mldsa_pack_fields(out, w1, p->w1_bits, 0, 1);
}

void mldsa_pack_z(const mldsa_params *p, uint8_t *out, const mldsa_poly *z)
{
    mldsa_pack_fields(out, z, p->z_bits, p->gamma1, -1);
}

void mldsa_unpack_z(const mldsa_params *p, mldsa_poly *z, const uint8_t *in)
{
    mldsa_unpack_fields(z, in, p->z_bits, p->gamma1, -1);
}

void mldsa_hint_pack(const mldsa_params *p, uint8_t *out, const mldsa_poly *h)
{
    unsigned at = 0;

    memset(out, 0, p->omega + p->k);
    for (unsigned i = 0; i < p->k; i++) {
        for (unsigned j = 0; j < MLDSA_N; j++) {
            if (h[i].c[j] != 0) {
                assert(at < p->omega);
                out[at++] = (uint8_t)j;
            }
        }
        out[p->omega + i] = (uint8_t)at;
    }
}

int mldsa_hint_unpack(const mldsa_params *p, mldsa_poly *h, const uint8_t *in)
{
    unsigned at = 0;

    /* Algorithm 21: the running counts may not fall or pass omega, indices
     * rise strictly within a polynomial, and unused slots are zero, so that
     * every hint vector has exactly one encoding (strong unforgeability). */
    for (unsigned i = 0; i < p->k; i++) {
        unsigned end = in[p->omega + i];
        unsigned first = at;

        memset(&h[i], 0, sizeof h[i]);
        if (end < at || end > p->omega) {
            return -1;
        }
        for (; at < end; at++) {
            if (at > first && in[at - 1] >= in[at]) {
                return -1;
            }
            h[i].c[in[at]] = 1;
        }
    }

    for (; at < p->omega; at++) {
        if (in[at] != 0) {
            return -1;
        }
    }
    return 0;
}
