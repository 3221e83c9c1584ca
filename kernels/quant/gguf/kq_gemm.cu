/* kq_gemm.cu — mid-size batch instances of kq_kernel (kq_kernel.cuh): 4 or 8 tensor-core token
 * tiles (n <= 32, n <= 64 per launch; the launcher walks larger n in chunks of 64). The dequant is
 * fused into the tile loads: weights go from global memory to shared memory to fp16 fragments,
 * never to an fp16 copy in global memory. */
#include "kernels/quant/gguf/kq_kernel.cuh"

bool kq_gemm_info(qn_qformat fmt, int nt, kq_kernel_info *out) {
#define KQ_CASE(F)                                                              \
    if (fmt == QN_QFORMAT_##F) {                                                \
        *out = nt == 4 ? kq_info<QN_QFORMAT_##F, 4>() : kq_info<QN_QFORMAT_##F, 8>(); \
        return nt == 4 || nt == 8;                                              \
    }
    KQ_FOR_EACH_FORMAT(KQ_CASE)
#undef KQ_CASE
    return false;
}
