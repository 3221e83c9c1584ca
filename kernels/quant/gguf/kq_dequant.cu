/* kq_dequant.cu — dequant-to-fp16 instances of kq_kernel (kq_kernel.cuh, NT = 0): out[N][K] fp16,
 * for the large-batch path (dequant into a workspace, then a cuBLAS fp16 GEMM). Same staging and
 * decoders as the matmul kernels, so both paths see identical fp16 weights. */
#include "kernels/quant/gguf/kq_kernel.cuh"

bool kq_dequant_info(qn_qformat fmt, kq_kernel_info *out) {
#define KQ_CASE(F)                                   \
    if (fmt == QN_QFORMAT_##F) {                     \
        *out = kq_info<QN_QFORMAT_##F, 0>();         \
        return true;                                 \
    }
    KQ_FOR_EACH_FORMAT(KQ_CASE)
#undef KQ_CASE
    return false;
}
