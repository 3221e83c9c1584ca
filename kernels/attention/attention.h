/* attention.h — attention over a paged KV cache (CPU path; CUDA twins in paged_*.cu).
 * KV layout, per layer: k_cache, v_cache: [n_blocks * block_size][n_kv_heads][head_dim] fp16 bits;
 * token position p of a sequence lives in slot block_table[p / block_size] * block_size + p % block_size.
 * GQA: query head h reads kv head h / (n_heads / n_kv_heads). */
#ifndef QN_ATTENTION_H
#define QN_ATTENTION_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Tokens of one sequence a CPU attention call takes at once (attn_paged's n_q): their K/V rows are
 * converted from fp16 once for all of them and the heads of their GQA group. */
#define QN_ATTN_CPU_TILE 4

typedef struct qn_attn_cpu_args {
    const float *q;              /* [n_q][q_stride]: query token i's [n_heads][head_dim] at q + i * q_stride */
    const uint16_t *k_cache;     /* [n_slots][n_kv_heads][head_dim] fp16 */
    const uint16_t *v_cache;     /* [n_slots][n_kv_heads][head_dim] fp16 */
    const int32_t *block_table;  /* [ceil((n_ctx + n_q - 1) / block_size)] block ids of this sequence */
    int32_t n_ctx;               /* keys visible to the first query: positions [0, n_ctx) */
    int32_t n_q;                 /* query tokens at consecutive positions (0 counts as 1): query i sees n_ctx + i keys */
    int64_t q_stride, out_stride; /* floats from one query token's q / out to the next's */
    int32_t block_size;
    int32_t n_heads, n_kv_heads, head_dim;
    float scale;                 /* usually 1/sqrt(head_dim) */
    float *out;                  /* [n_q][out_stride]: query token i's [n_heads][head_dim] at out + i * out_stride */
    float *scratch;              /* qn_attn_cpu_scratch_floats(n_heads / n_kv_heads, head_dim, n_ctx + n_q - 1) floats */
    int32_t lanes;               /* partial sums per dot product; 1 = sequential (see attention_cpu.c) */
    int32_t softmax_lanes;       /* keys per partial sum of the softmax normaliser */
    bool pairwise_tree;          /* final 4 partials reduced (0+1)+(2+3) instead of (0+2)+(1+3) */
} qn_attn_cpu_args;

/* Keys whose V rows the AVX2 kernel converts at a time (a multiple of every lane count, 64) */
#define QN_ATTN_V_KEYS 256

/* Scratch floats an attention call needs for a GQA group of `group` heads of head_dim over at most max_ctx keys:
 * the scores of QN_ATTN_CPU_TILE tokens × min(group, 8) heads, a block of QN_ATTN_V_KEYS V rows, and the V lane
 * rows (up to 64 lanes) of every query of the tile, plus alignment. */
static inline int64_t qn_attn_cpu_scratch_floats(int32_t group, int32_t head_dim, int32_t max_ctx) {
    const int64_t nq = (int64_t)QN_ATTN_CPU_TILE * (group < 8 ? group : 8);
    return nq * max_ctx + 8 + (int64_t)QN_ATTN_V_KEYS * head_dim + nq * head_dim * 64;
}

/* Attention of n_q query tokens for heads [h_begin, h_end): qn_cpu_kernels.attn_paged (per ISA). Every
 * output is bit-identical to the same token computed alone (n_q = 1). */
typedef void (*qn_attn_paged_fn)(const qn_attn_cpu_args *a, int h_begin, int h_end);

/* Writes one token's k/v rows ([n_kv_heads][head_dim] f32) into slot `slot` as fp16. */
void qn_kv_write_cpu(uint16_t *k_cache, uint16_t *v_cache, int64_t slot, const float *k, const float *v,
                     int n_kv_heads, int head_dim);

#ifdef __cplusplus
}
#endif
#endif
