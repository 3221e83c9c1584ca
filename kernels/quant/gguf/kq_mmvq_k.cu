/* kq_mmvq_k.cu — the K-quant instances of the int8 decode kernel (kq_mmvq.cuh), nt = 1..8; a
 * translation unit of its own so that it compiles beside kq_mmvq.cu. */
#include "kernels/quant/gguf/kq_mmvq.cuh"

mq_kernel_fn mq_kquant_instance(qn_qformat fmt, int nt, bool staged, bool xs, int *smem) {
    switch (fmt) {
    case QN_QFORMAT_Q2_K: return mq_instance<QN_QFORMAT_Q2_K>(nt, staged, xs, smem);
    case QN_QFORMAT_Q3_K: return mq_instance<QN_QFORMAT_Q3_K>(nt, staged, xs, smem);
    case QN_QFORMAT_Q3_KP: return mq_instance<QN_QFORMAT_Q3_KP>(nt, staged, xs, smem);
    case QN_QFORMAT_Q4_K: return mq_instance<QN_QFORMAT_Q4_K>(nt, staged, xs, smem);
    case QN_QFORMAT_Q5_K: return mq_instance<QN_QFORMAT_Q5_K>(nt, staged, xs, smem);
    case QN_QFORMAT_Q6_K: return mq_instance<QN_QFORMAT_Q6_K>(nt, staged, xs, smem);
    case QN_QFORMAT_Q6_KP: return mq_instance<QN_QFORMAT_Q6_KP>(nt, staged, xs, smem);
    default: return nullptr;
    }
}
