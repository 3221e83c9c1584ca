/* lq4m.c — host side of LQ4M (lq4m.h): which weights take it, the repack (once, at load) and the host twin. */
#include "kernels/quant/lq4m.h"

#include <stdio.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/lutq_gpu.h"

bool qn_lq4m_takes(const qn_lutq_weight *w, char *why, size_t why_cap) {
    char tmp[8];
    if (!why) why = tmp, why_cap = sizeof tmp;
    if (!w->lut_identity || w->code_bits != 4) {
        snprintf(why, why_cap, "not 4-bit integer codes");
        return false;
    }
    if (w->n % QN_LQ4M_ROWS) {
        snprintf(why, why_cap, "N = %lld is not a multiple of 16", (long long)w->n);
        return false;
    }
    if (w->k % QN_LQ4M_COLS) {
        snprintf(why, why_cap, "K = %lld is not a multiple of 128", (long long)w->k);
        return false;
    }
    for (int64_t g = 0; g < w->n_groups; g++)
        if (w->gstart[g] % QN_LQ4M_COLS) {
            snprintf(why, why_cap, "group %lld starts at kernel column %d, not on a 128-column chunk", (long long)g,
                     w->gstart[g]);
            return false;
        }
    return true;
}

/* the group of kernel column j (gstart ascending) */
static int64_t group_of(const qn_lutq_weight *w, int64_t j) {
    int64_t lo = 0, hi = w->n_groups - 1;
    while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (w->gstart[mid] <= j) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

qn_status qn_lq4m_repack_rows(const qn_lutq_weight *w, int64_t r0, int64_t r1, void *out) {
    if (r0 < 0 || r1 < r0 || r1 > w->n || r0 % QN_LQ4M_ROWS || (r1 % QN_LQ4M_ROWS && r1 != w->n))
        return QN_ERR_INVALID_ARG;
    if (!qn_lq4m_takes(w, NULL, 0)) return QN_ERR_UNSUPPORTED;
    const int64_t nc = w->k / QN_LQ4M_COLS;
    uint8_t *o = out;
    for (int64_t s = r0 / QN_LQ4M_ROWS; s < r1 / QN_LQ4M_ROWS; s++)
        for (int64_t c = 0; c < nc; c++, o += QN_LQ4M_CHUNK_BYTES) {
            const int64_t rb = s * QN_LQ4M_ROWS, cb = c * QN_LQ4M_COLS, g = group_of(w, cb);
            uint32_t words[256];
            for (int h = 0; h < 2; h++)
                for (int lane = 0; lane < 32; lane++)
                    for (int i = 0; i < 4; i++) {
                        const int gg = lane / 4, t = lane % 4, p = 2 * h + i / 2, j = i % 2;
                        const int64_t k0 = cb + 32 * p + 8 * t + 4 * j;
                        /* nibble e: row gg + 8 (e & 1), column k_m with m = (e >> 1 & 1) * 2 + (e >> 2) */
                        uint32_t v = 0;
                        for (int e = 0; e < 8; e++) {
                            const int64_t r = rb + gg + 8 * (e & 1), k = k0 + 2 * ((e >> 1) & 1) + (e >> 2);
                            v |= qn_lutq_code(w, r, k) << (4 * e);
                        }
                        words[(h * 32 + lane) * 4 + i] = v;
                    }
            memcpy(o, words, sizeof words);
            for (int r = 0; r < QN_LQ4M_ROWS; r++) {
                const int64_t i = (rb + r) * w->n_groups + g;
                const uint32_t d = qn_f32_to_f16(w->scale[i]);
                const uint32_t zb = 0x6400u + (uint32_t)(w->zero ? (int)w->zero[i] : 0);
                const uint32_t sc = d | zb << 16;
                memcpy(o + 1024 + 4 * r, &sc, 4);
            }
        }
    return QN_OK;
}

void qn_lq4m_dequant_host(const void *chunks, int64_t n, int64_t k, uint16_t *out) {
    const int64_t nc = k / QN_LQ4M_COLS;
    const uint8_t *ch = chunks;
    for (int64_t s = 0; s < n / QN_LQ4M_ROWS; s++)
        for (int64_t c = 0; c < nc; c++, ch += QN_LQ4M_CHUNK_BYTES) {
            float d[16];
            int z[16];
            for (int r = 0; r < 16; r++) {
                uint32_t sc;
                memcpy(&sc, ch + 1024 + 4 * r, 4);
                d[r] = qn_f16_to_f32((uint16_t)(sc & 0xFFFF));
                z[r] = (int)(sc >> 16) - 0x6400;
            }
            for (int w = 0; w < 256; w++) {
                uint32_t v;
                memcpy(&v, ch + 4 * w, 4);
                const int i = w % 4, lane = (w / 4) % 32, h = w / 128;
                const int gg = lane / 4, t = lane % 4, p = 2 * h + i / 2, j = i % 2;
                const int64_t k0 = c * QN_LQ4M_COLS + 32 * p + 8 * t + 4 * j;
                for (int e = 0; e < 8; e++) {
                    const int r = gg + 8 * (e & 1);
                    const int64_t kk = k0 + 2 * ((e >> 1) & 1) + (e >> 2);
                    const int q = (int)(v >> (4 * e)) & 15;
                    out[(s * QN_LQ4M_ROWS + r) * k + kk] = qn_f32_to_f16(d[r] * (float)(q - z[r])); /* one rounding */
                }
            }
        }
}
