/* quant_group_cuda.cu — qn_quant_matmul_group_cuda (quant.h): several weights of one format on the same
 * activations in one launch of the int8 decode kernel (kq_mmvq_matmul_group). */
#include <stdint.h>

#include "kernels/quant/gguf/kq_mmvq.h"
#include "kernels/quant/lutq_gpu.h"
#include "kernels/quant/quant.h"

static bool group_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

qn_status qn_quant_matmul_group_cuda(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const qn_quant_mat *mats, int n_mat,
                                     int64_t K, const void *x, int64_t n, void *workspace, size_t ws_bytes,
                                     void *stream, const qn_quant_matmul_opts *opts) {
    if (!ctx || !mats || n_mat < 1 || n_mat > QN_QUANT_MAX_GROUP || !x) return QN_ERR_INVALID_ARG;
    if (n < 0) return QN_ERR_SHAPE;
    if (opts && opts->path != QN_QUANT_PATH_AUTO) return QN_ERR_UNSUPPORTED;
    const int split = opts ? opts->split : 0;
    if (split != 0 && split != 1 && split != 2 && split != 4) return QN_ERR_INVALID_ARG;
    const bool lutq = qn_lutq_gpu_is_format(fmt);
    const bool int8_path = lutq ? qn_lutq_use_decode(fmt, ctx->sm, n)
                                : qn_quant_select_path(fmt, ctx->sm, n) == QN_QUANT_PATH_MMVQ;
    if (!int8_path) return QN_ERR_UNSUPPORTED;
    kq_mmvq_mat m[QN_QUANT_MAX_GROUP];
    for (int i = 0; i < n_mat; i++) {
        const qn_status st = qn_quant_check_shape(fmt, mats[i].N, K);
        if (st != QN_OK) return st;
        if (mats[i].N > 0 && (!mats[i].w || !mats[i].y || !group_aligned16(mats[i].w))) return QN_ERR_INVALID_ARG;
        m[i].w = mats[i].w, m[i].N = mats[i].N, m[i].y = mats[i].y;
    }
    if (n == 0) return QN_OK;
    if (!group_aligned16(x)) return QN_ERR_INVALID_ARG;
    const void *xk = x; /* LNF4/LFP4: the kernel takes x in fp16 as it is */
    if (!kq_mmvq_takes_f16_x(fmt)) {
        qn_quant_q8_x q8; /* where the single calls keep them (quant.h) */
        if (!qn_quant_q8_x_in_workspace(workspace, ws_bytes, n, K, &q8)) return QN_ERR_UNSUPPORTED;
        if (!(opts && opts->x_ready)) {
            const qn_status st = kq_mmvq_quantize_x_perm(x, NULL, n, K, q8.qs, ctx->sm >= 90, stream);
            if (st != QN_OK) return st;
        }
        xk = q8.qs;
    }
    return kq_mmvq_matmul_group(fmt, m, n_mat, K, xk, n, ctx->n_sm, split, opts ? opts->mmvq_stage : 0,
                                ctx->sm >= 90, stream);
}
