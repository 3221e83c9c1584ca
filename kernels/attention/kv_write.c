/* kv_write.c — KV-cache writes for the CPU path (kernels/attention/attention.h): f32 rows to fp16
 * slots, round to nearest even. */
#include "kernels/attention/attention.h"
#include "kernels/common/half.h"

void qn_kv_write_cpu(uint16_t *k_cache, uint16_t *v_cache, int64_t slot, const float *k, const float *v,
                     int n_kv_heads, int head_dim) {
    const int64_t n = (int64_t)n_kv_heads * head_dim;
    uint16_t *kd = k_cache + slot * n, *vd = v_cache + slot * n;
    for (int64_t i = 0; i < n; i++) {
        kd[i] = qn_f32_to_f16(k[i]);
        vd[i] = qn_f32_to_f16(v[i]);
    }
}
