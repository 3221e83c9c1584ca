/* half.h — fp16/bf16 <-> f32 conversions for C code (bit patterns stored as uint16_t).
 * Exact IEEE semantics: f16->f32 and bf16->f32 are exact; f32->f16/bf16 round to nearest even. */
#ifndef QN_HALF_H
#define QN_HALF_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline float qn_u32_as_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t qn_f32_as_u32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float qn_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return qn_u32_as_f32(sign | 0x7f800000u | (mant << 13)); /* inf / nan */
    if (exp == 0) {
        if (mant == 0) return qn_u32_as_f32(sign);
        /* subnormal: normalise */
        exp = 113; /* 127 - 15 + 1 */
        while (!(mant & 0x400u)) { mant <<= 1; exp--; }
        mant &= 0x3ffu;
        return qn_u32_as_f32(sign | (exp << 23) | (mant << 13));
    }
    return qn_u32_as_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

static inline uint16_t qn_f32_to_f16(float f) {
    uint32_t x = qn_f32_as_u32(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0)); /* inf/nan */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* overflow -> inf (>= 65520) */
    if (ax < 0x38800000u) { /* subnormal or zero in f16 */
        if (ax < 0x33000000u) return sign; /* < 2^-25 rounds to 0 */
        const uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126 - e; /* 14 - (e - 127) + 13 - 1 ... */
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ax - 0x38000000u; /* rebias 127 -> 15 */
    const uint32_t rem = r & 0x1fffu;
    r >>= 13;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

static inline float qn_bf16_to_f32(uint16_t h) { return qn_u32_as_f32((uint32_t)h << 16); }

static inline uint16_t qn_f32_to_bf16(float f) {
    uint32_t x = qn_f32_as_u32(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet nan */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

#ifdef __cplusplus
}
#endif
#endif
