/* lutq_gpu.c — host side of the GPU form of GPTQ/AWQ/bnb weights (lutq_gpu.h): which device format a
 * lutq weight takes, the repack into its blocks (once, at load) and the host twin of the device decode. */
#include "kernels/quant/lutq_gpu.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/lq4m.h"
#include "kernels/quant/nf4/nf4_format.h"

#define FP16_MAX 65504.0f

/* --- format choice --- */

/* The FP4 table the device decodes with: bitsandbytes' get_4bit_type("fp4") as checkpoints store it, whose
 * code 8 is +0 (QN_BNB4_FP4_MAP has -0 there). lutq_decode.cuh holds the same literals. */
static const float LQ_FP4_MAP[16] = {0.0f,  0.005208333333f,  0.66666667f,  1.0f,  0.33333333f,  0.5f,  0.16666667f,  0.25f,
                                     0.0f, -0.005208333333f, -0.66666667f, -1.0f, -0.33333333f, -0.5f, -0.16666667f, -0.25f};

/* bit for bit, except that +0 and -0 match (the sign of a zero weight does not change a product sum) */
static bool same_table(const float *lut, const float *map) {
    for (int i = 0; i < 16; i++)
        if (memcmp(&lut[i], &map[i], sizeof(float)) != 0 && !(lut[i] == 0.0f && map[i] == 0.0f)) return false;
    return true;
}

const float *qn_lutq_gpu_map(qn_qformat f) {
    return f == QN_QFORMAT_LNF4 || f == QN_QFORMAT_LNF4M   ? QN_BNB4_NF4_MAP
           : f == QN_QFORMAT_LFP4 || f == QN_QFORMAT_LFP4M ? LQ_FP4_MAP
                                                           : NULL;
}

static bool exact_f16(float s) { return isfinite(s) && qn_f16_to_f32(qn_f32_to_f16(s)) == s; }

qn_status qn_lutq_gpu_format(const qn_lutq_weight *w, qn_qformat *fmt, char *why, size_t why_cap) {
    if (w->k % QN_LUTQ_GPU_BLOCK) {
        snprintf(why, why_cap, "K = %lld is not a multiple of 32", (long long)w->k);
        return QN_ERR_UNSUPPORTED;
    }
    for (int64_t g = 0; g < w->n_groups; g++)
        if (w->gstart[g] % QN_LUTQ_GPU_BLOCK) {
            snprintf(why, why_cap, "group %lld starts at kernel column %d, not on a 32-column block (irregular g_idx)",
                     (long long)g, w->gstart[g]);
            return QN_ERR_UNSUPPORTED;
        }
    qn_qformat f;
    if (w->lut_identity) {
        f = w->code_bits == 8 ? QN_QFORMAT_LQ8 : QN_QFORMAT_LQ4;
    } else if (w->code_bits == 4 && !w->zero && same_table(w->lut, QN_BNB4_NF4_MAP)) {
        f = QN_QFORMAT_LNF4;
    } else if (w->code_bits == 4 && !w->zero && same_table(w->lut, LQ_FP4_MAP)) {
        f = QN_QFORMAT_LFP4;
    } else {
        snprintf(why, why_cap, "code table is neither identity nor bitsandbytes' NF4/FP4");
        return QN_ERR_UNSUPPORTED;
    }
    const float qmax = (float)((1 << w->code_bits) - 1);
    for (int64_t i = 0; i < w->n * w->n_groups; i++) {
        const float s = w->scale[i];
        if (f == QN_QFORMAT_LQ4 || f == QN_QFORMAT_LQ8) {
            const float z = w->zero ? w->zero[i] : 0.0f;
            if (!exact_f16(s)) {
                snprintf(why, why_cap, "scale %g (row %lld) is not exact in fp16", s, (long long)(i / w->n_groups));
                return QN_ERR_UNSUPPORTED;
            }
            if (!(z >= 0.0f && z <= qmax && z == floorf(z))) {
                snprintf(why, why_cap, "zero point %g (row %lld) is not an integer in [0, %g]", z,
                         (long long)(i / w->n_groups), qmax);
                return QN_ERR_UNSUPPORTED;
            }
            if (fabsf(s) * fmaxf(z, qmax - z) > FP16_MAX) {
                snprintf(why, why_cap, "scale %g (row %lld) overflows fp16", s, (long long)(i / w->n_groups));
                return QN_ERR_UNSUPPORTED;
            }
        } else if (!(isfinite(s) && fabsf(s) <= FP16_MAX)) { /* |map| <= 1 */
            snprintf(why, why_cap, "absmax %g (row %lld) overflows fp16", s, (long long)(i / w->n_groups));
            return QN_ERR_UNSUPPORTED;
        }
    }
    *fmt = f;
    return QN_OK;
}

size_t qn_lutq_gpu_bytes(const qn_lutq_weight *w, qn_qformat fmt) {
    return (size_t)w->n * qn_qformat_row_bytes(fmt, w->k);
}

/* --- repack --- */

qn_status qn_lutq_gpu_repack(const qn_lutq_weight *w, qn_qformat fmt, void *out) {
    return qn_lutq_gpu_repack_rows(w, fmt, 0, w->n, out);
}

qn_status qn_lutq_gpu_repack_rows(const qn_lutq_weight *w, qn_qformat fmt, int64_t r0, int64_t r1, void *out) {
    if (qn_lq4m_is_format(fmt)) return qn_lq4m_repack_rows(w, fmt, r0, r1, out);
    if (!qn_lutq_gpu_is_format(fmt) || w->k % QN_LUTQ_GPU_BLOCK || r0 < 0 || r1 < r0 || r1 > w->n)
        return QN_ERR_INVALID_ARG;
    const int64_t nb = w->k / QN_LUTQ_GPU_BLOCK;
    const size_t bb = qn_lutq_gpu_block_bytes(fmt);
    for (int64_t r = r0; r < r1; r++) {
        int64_t g = 0;
        for (int64_t b = 0; b < nb; b++) {
            const int64_t j0 = b * QN_LUTQ_GPU_BLOCK;
            while (g + 1 < w->n_groups && w->gstart[g + 1] <= j0) g++;
            if (w->gstart[g] > j0 || w->gstart[g + 1] < j0 + QN_LUTQ_GPU_BLOCK) return QN_ERR_UNSUPPORTED;
            const float s = w->scale[r * w->n_groups + g];
            uint8_t *blk = (uint8_t *)out + (size_t)((r - r0) * nb + b) * bb;
            if (fmt == QN_QFORMAT_LQ4 || fmt == QN_QFORMAT_LQ8) {
                const uint16_t d = qn_f32_to_f16(s);
                const uint16_t zb = (uint16_t)(0x6400 + (w->zero ? (int)w->zero[r * w->n_groups + g] : 0));
                memcpy(blk, &d, 2);
                memcpy(blk + 2, &zb, 2);
                uint8_t *qs = blk + 4;
                if (fmt == QN_QFORMAT_LQ8)
                    for (int i = 0; i < 32; i++) qs[i] = (uint8_t)qn_lutq_code(w, r, j0 + i);
                else
                    for (int i = 0; i < 16; i++)
                        qs[i] = (uint8_t)(qn_lutq_code(w, r, j0 + i) | qn_lutq_code(w, r, j0 + 16 + i) << 4);
            } else {
                memcpy(blk, &s, 4);
                for (int i = 0; i < 16; i++)
                    blk[4 + i] = (uint8_t)(qn_lutq_code(w, r, j0 + 2 * i) | qn_lutq_code(w, r, j0 + 2 * i + 1) << 4);
            }
        }
    }
    return QN_OK;
}

/* --- host twin --- */

void qn_lutq_gpu_dequant_host(qn_qformat fmt, const void *blocks, int64_t n, int64_t k, uint16_t *out) {
    if (qn_lq4m_is_format(fmt)) {
        qn_lq4m_dequant_host(fmt, blocks, n, k, out);
        return;
    }
    const int64_t nb = n * (k / QN_LUTQ_GPU_BLOCK);
    const size_t bb = qn_lutq_gpu_block_bytes(fmt);
    const float *map = fmt == QN_QFORMAT_LFP4 ? LQ_FP4_MAP : QN_BNB4_NF4_MAP;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = (const uint8_t *)blocks + (size_t)b * bb;
        uint16_t *o = out + b * QN_LUTQ_GPU_BLOCK; /* rows are whole blocks: [n][k] is one run of blocks */
        if (fmt == QN_QFORMAT_LQ4 || fmt == QN_QFORMAT_LQ8) {
            uint16_t d, zb;
            memcpy(&d, blk, 2);
            memcpy(&zb, blk + 2, 2);
            const float df = qn_f16_to_f32(d);
            const int z = (int)zb - 0x6400;
            for (int i = 0; i < 32; i++) {
                const int q = fmt == QN_QFORMAT_LQ8 ? blk[4 + i] : (blk[4 + (i & 15)] >> (i >> 4 << 2)) & 15;
                o[i] = qn_f32_to_f16(df * (float)(q - z)); /* exact in f32, one rounding */
            }
        } else {
            float a;
            memcpy(&a, blk, 4);
            for (int i = 0; i < 32; i++) o[i] = qn_f32_to_f16(a * map[(blk[4 + i / 2] >> ((i & 1) * 4)) & 15]);
        }
    }
}
