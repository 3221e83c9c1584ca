/* kq_gemv.cu — decode-path instances of kq_kernel (kq_kernel.cuh): n = 1..16 tokens, one tensor-core
 * token tile (n <= 8) or two (n <= 16). Each dequantized weight is used for every token, so n = 16
 * costs about what n = 1 does while the weights stream at memory bandwidth. */
#include "kernels/quant/gguf/kq_kernel.cuh"

bool kq_gemv_info(qn_qformat fmt, int nt, kq_kernel_info *out) {
#define KQ_CASE(F)                                                              \
    if (fmt == QN_QFORMAT_##F) {                                                \
        *out = nt == 1 ? kq_info<QN_QFORMAT_##F, 1>() : kq_info<QN_QFORMAT_##F, 2>(); \
        return nt == 1 || nt == 2;                                              \
    }
    KQ_FOR_EACH_FORMAT(KQ_CASE)
#undef KQ_CASE
    return false;
}
