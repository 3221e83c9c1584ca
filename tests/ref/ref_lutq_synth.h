/* ref_lutq_synth.h — random lutq weights (kernels/quant/lutq.h) shaped like the repacks of HF GPTQ/AWQ/bnb
 * checkpoints, for the GPU block-format tests (test_quant_lutq_gpu.c on the CPU, test_gpu_quant_lutq.c). */
#ifndef QN_REF_LUTQ_SYNTH_H
#define QN_REF_LUTQ_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "harness.h"
#include "kernels/quant/lutq.h"

typedef struct qn_ref_lutq_synth {
    int code_bits;        /* 4 or 8 (lutq storage) */
    int value_bits;       /* 2, 3, 4 or 8: range of codes and zeros (GPTQ 2/3-bit keep 4-bit codes) */
    int group;            /* columns per group; 0 = per-channel (one group) */
    bool act;             /* random act-order permutation of the columns */
    int table;            /* 0 identity + integer zero (GPTQ/AWQ), 1 NF4, 2 FP4 (bnb: no zero) */
    qn_lutq_round round;  /* the peer's dtype; identity scales are fp16 (F16) or bf16 (BF16) values */
} qn_ref_lutq_synth;

/* A random K x N weight for s in a new buffer (returned; the caller frees it) described by *w. Groups are
 * contiguous runs of `group` kernel columns (the last may be short), as gptq_to_lutq leaves act-order
 * weights after sorting by g_idx; scales in ±[1e-4, 0.05] (identity; a quarter negative) or absmax in
 * [4e-3, 2] (tables). */
void *qn_ref_lutq_synth_make(const qn_ref_lutq_synth *s, int64_t K, int64_t N, qn_rng *rng, qn_lutq_weight *w);

#endif
