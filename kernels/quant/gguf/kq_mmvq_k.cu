/* kq_mmvq_k.cu — the K-quant instances of the int8 decode kernels: __dp4a (kq_mmvq.cuh), nt = 1..8, and
 * tensor-core (kq_imma.cuh: Q4_K, Q6_K), 8 or 16 tokens; a translation unit of its own so that it compiles
 * beside kq_mmvq.cu. */
#include "kernels/quant/gguf/kq_imma.cuh"
#include "kernels/quant/gguf/kq_mmvq.cuh"

mq_kernel_fn mq_kquant_instance(qn_qformat fmt, int nt) {
    switch (fmt) {
    case QN_QFORMAT_Q2_K: return mq_instance<QN_QFORMAT_Q2_K>(nt);
    case QN_QFORMAT_Q3_K: return mq_instance<QN_QFORMAT_Q3_K>(nt);
    case QN_QFORMAT_Q4_K: return mq_instance<QN_QFORMAT_Q4_K>(nt);
    case QN_QFORMAT_Q5_K: return mq_instance<QN_QFORMAT_Q5_K>(nt);
    case QN_QFORMAT_Q6_K: return mq_instance<QN_QFORMAT_Q6_K>(nt);
    default: return nullptr;
    }
}

im_kernel_fn im_kquant_instance(qn_qformat fmt, int tiles) {
    switch (fmt) {
    case QN_QFORMAT_Q4_K: return im_instance<QN_QFORMAT_Q4_K>(tiles);
    case QN_QFORMAT_Q6_K: return im_instance<QN_QFORMAT_Q6_K>(tiles);
    default: return nullptr;
    }
}

int im_kquant_chunk(qn_qformat fmt) {
    switch (fmt) {
    case QN_QFORMAT_Q4_K: return im_fmt<QN_QFORMAT_Q4_K>::SB;
    case QN_QFORMAT_Q6_K: return im_fmt<QN_QFORMAT_Q6_K>::SB;
    default: return 0;
    }
}

size_t im_kquant_smem(qn_qformat fmt, int tiles, int ks) {
    switch (fmt) {
    case QN_QFORMAT_Q4_K: return im_smem_bytes<QN_QFORMAT_Q4_K>(tiles, ks);
    case QN_QFORMAT_Q6_K: return im_smem_bytes<QN_QFORMAT_Q6_K>(tiles, ks);
    default: return 0;
    }
}
