/* lq4m.c — host side of the M forms (lq4m.h): which weights take them, the repack (once, at load), the host twin. */
#include "kernels/quant/lq4m.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/lutq_gpu.h"

#define F16_MIN_NORMAL 6.103515625e-05f /* 2^-14 */

bool qn_lq4m_takes(const qn_lutq_weight *w, qn_qformat fmt, char *why, size_t why_cap) {
    char tmp[8];
    if (!why) why = tmp, why_cap = sizeof tmp;
    qn_qformat base;
    if (!qn_lq4m_is_format(fmt)) {
        snprintf(why, why_cap, "%s is not an M form", qn_lutq_gpu_format_name(fmt));
        return false;
    }
    if (qn_lutq_gpu_format(w, &base, why, why_cap) != QN_OK) return false;
    if (qn_lq4m_form_of(base) != fmt) {
        snprintf(why, why_cap, "the weight's blocks are %s, not the source of %s", qn_lutq_gpu_format_name(base),
                 qn_lutq_gpu_format_name(fmt));
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
    const bool lut = qn_lq4m_is_lut(fmt);
    const int unit = lut ? QN_LQ4M_COLS / 2 : QN_LQ4M_COLS;
    for (int64_t g = 0; g < w->n_groups; g++)
        if (w->gstart[g] % unit) {
            snprintf(why, why_cap, "group %lld starts at kernel column %d, not on a multiple of %d", (long long)g,
                     w->gstart[g], unit);
            return false;
        }
    if (lut && w->perm) {
        snprintf(why, why_cap, "a table format with an act-order perm");
        return false;
    }
    if (lut)
        for (int64_t i = 0; i < w->n * w->n_groups; i++) {
            const float a = fabsf(w->scale[i]);
            if (a != 0.0f && a < F16_MIN_NORMAL) {
                snprintf(why, why_cap, "absmax %g (row %lld) is below fp16's normal range", w->scale[i],
                         (long long)(i / w->n_groups));
                return false;
            }
        }
    return true;
}

void qn_lq4m_map16(qn_qformat fmt, uint16_t map16[16]) {
    const float *map = qn_lq4m_is_lut(fmt) ? qn_lutq_gpu_map(fmt) : NULL;
    for (int i = 0; i < 16; i++) map16[i] = map ? qn_f32_to_f16(map[i]) : 0;
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

/* Nibble e of a code word (lq4m.h): its row offset (0 or 8) and k slot m (k_m). LQ4M: nibble e is register
 * e % 4's element e / 4; the table formats: nibble e is register e / 2's element e % 2. Register r: row 8 (r & 1),
 * slots 2 (r >> 1) + element. */
static void nibble_slot(bool lut, int e, int *row8, int *m) {
    const int reg = lut ? e / 2 : e % 4, el = lut ? e % 2 : e / 4;
    *row8 = 8 * (reg & 1);
    *m = 2 * (reg >> 1) + el;
}

qn_status qn_lq4m_repack_rows(const qn_lutq_weight *w, qn_qformat fmt, int64_t r0, int64_t r1, void *out) {
    if (r0 < 0 || r1 < r0 || r1 > w->n || r0 % QN_LQ4M_ROWS || (r1 % QN_LQ4M_ROWS && r1 != w->n))
        return QN_ERR_INVALID_ARG;
    if (!qn_lq4m_takes(w, fmt, NULL, 0)) return QN_ERR_UNSUPPORTED;
    const bool lut = qn_lq4m_is_lut(fmt);
    const int64_t nc = w->k / QN_LQ4M_COLS;
    uint8_t *o = out;
    for (int64_t s = r0 / QN_LQ4M_ROWS; s < r1 / QN_LQ4M_ROWS; s++)
        for (int64_t c = 0; c < nc; c++, o += QN_LQ4M_CHUNK_BYTES) {
            const int64_t rb = s * QN_LQ4M_ROWS, cb = c * QN_LQ4M_COLS;
            uint32_t words[256];
            for (int h = 0; h < 2; h++)
                for (int lane = 0; lane < 32; lane++)
                    for (int i = 0; i < 4; i++) {
                        const int gg = lane / 4, t = lane % 4, p = 2 * h + i / 2, j = i % 2;
                        const int64_t k0 = cb + 32 * p + 8 * t + 4 * j;
                        uint32_t v = 0;
                        for (int e = 0; e < 8; e++) {
                            int row8, m;
                            nibble_slot(lut, e, &row8, &m);
                            v |= qn_lutq_code(w, rb + gg + row8, k0 + m) << (4 * e);
                        }
                        words[(h * 32 + lane) * 4 + i] = v;
                    }
            memcpy(o, words, sizeof words);
            for (int r = 0; r < QN_LQ4M_ROWS; r++) {
                uint32_t sc;
                if (lut) { /* absmax of columns 0..63, 64..127 */
                    const float *a = w->scale + (rb + r) * w->n_groups;
                    sc = (uint32_t)qn_f32_to_f16(a[group_of(w, cb)]) |
                         (uint32_t)qn_f32_to_f16(a[group_of(w, cb + QN_LQ4M_COLS / 2)]) << 16;
                } else {
                    const int64_t i = (rb + r) * w->n_groups + group_of(w, cb);
                    const uint32_t d = qn_f32_to_f16(w->scale[i]);
                    const uint32_t zb = 0x6400u + (uint32_t)(w->zero ? (int)w->zero[i] : 0);
                    sc = d | zb << 16;
                }
                memcpy(o + 1024 + 4 * r, &sc, 4);
            }
        }
    return QN_OK;
}

void qn_lq4m_dequant_host(qn_qformat fmt, const void *chunks, int64_t n, int64_t k, uint16_t *out) {
    const bool lut = qn_lq4m_is_lut(fmt);
    uint16_t map16[16];
    qn_lq4m_map16(fmt, map16);
    const int64_t nc = k / QN_LQ4M_COLS;
    const uint8_t *ch = chunks;
    for (int64_t s = 0; s < n / QN_LQ4M_ROWS; s++)
        for (int64_t c = 0; c < nc; c++, ch += QN_LQ4M_CHUNK_BYTES) {
            float d[16][2]; /* LQ4M: d; table formats: the absmax of each 64-column half */
            int z[16];
            for (int r = 0; r < 16; r++) {
                uint32_t sc;
                memcpy(&sc, ch + 1024 + 4 * r, 4);
                d[r][0] = qn_f16_to_f32((uint16_t)(sc & 0xFFFF));
                d[r][1] = lut ? qn_f16_to_f32((uint16_t)(sc >> 16)) : d[r][0];
                z[r] = lut ? 0 : (int)(sc >> 16) - 0x6400;
            }
            for (int w = 0; w < 256; w++) {
                uint32_t v;
                memcpy(&v, ch + 4 * w, 4);
                const int i = w % 4, lane = (w / 4) % 32, h = w / 128;
                const int gg = lane / 4, t = lane % 4, p = 2 * h + i / 2, j = i % 2;
                const int64_t k0 = c * QN_LQ4M_COLS + 32 * p + 8 * t + 4 * j;
                for (int e = 0; e < 8; e++) {
                    int row8, m;
                    nibble_slot(lut, e, &row8, &m);
                    const int r = gg + row8, q = (int)(v >> (4 * e)) & 15;
                    /* one rounding of an exact f32 product: LQ4M d (q - z); tables fp16(map) fp16(absmax) */
                    const float val = lut ? qn_f16_to_f32(map16[q]) * d[r][p >= 2] : d[r][0] * (float)(q - z[r]);
                    out[(s * QN_LQ4M_ROWS + r) * k + k0 + m] = qn_f32_to_f16(val);
                }
            }
        }
}
