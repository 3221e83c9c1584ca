/* gguf_blocks.h — the one definition of every ggml block layout Quern reads (docs/formats.md §2).
 * Shared by the CPU kernels, the CUDA kernels, the loader and the tests. fp16 fields are uint16_t
 * bit patterns; every struct has a size check. Blocks are packed back to back with no padding,
 * so a block's address is only 2-byte aligned (Q8_K: 4). */
#ifndef QN_GGUF_BLOCKS_H
#define QN_GGUF_BLOCKS_H

#include <assert.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#define QN_STATIC_ASSERT static_assert
#else
#define QN_STATIC_ASSERT _Static_assert
#endif

#define QN_QK4_0 32
#define QN_QK4_1 32
#define QN_QK5_0 32
#define QN_QK5_1 32
#define QN_QK8_0 32
#define QN_QK8_1 32
#define QN_QK_K 256
#define QN_K_SCALE_SIZE 12

typedef struct qn_block_q4_0 {
    uint16_t d;                /* f16 scale */
    uint8_t qs[QN_QK4_0 / 2];  /* nibbles: element j in lo(qs[j]), element j+16 in hi(qs[j]) */
} qn_block_q4_0;
QN_STATIC_ASSERT(sizeof(qn_block_q4_0) == 18, "q4_0 block size");

typedef struct qn_block_q4_1 {
    uint16_t d;                /* f16 scale */
    uint16_t m;                /* f16 min */
    uint8_t qs[QN_QK4_1 / 2];
} qn_block_q4_1;
QN_STATIC_ASSERT(sizeof(qn_block_q4_1) == 20, "q4_1 block size");

typedef struct qn_block_q5_0 {
    uint16_t d;
    uint8_t qh[4];             /* u32 LE: bit e = fifth bit of element e (byte array: 2-byte aligned) */
    uint8_t qs[QN_QK5_0 / 2];
} qn_block_q5_0;
QN_STATIC_ASSERT(sizeof(qn_block_q5_0) == 22, "q5_0 block size");

typedef struct qn_block_q5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[QN_QK5_1 / 2];
} qn_block_q5_1;
QN_STATIC_ASSERT(sizeof(qn_block_q5_1) == 24, "q5_1 block size");

typedef struct qn_block_q8_0 {
    uint16_t d;
    int8_t qs[QN_QK8_0];
} qn_block_q8_0;
QN_STATIC_ASSERT(sizeof(qn_block_q8_0) == 34, "q8_0 block size");

typedef struct qn_block_q8_1 {
    uint16_t d;                /* f16 scale */
    uint16_t s;                /* f16 d * sum(qs) */
    int8_t qs[QN_QK8_1];
} qn_block_q8_1;
QN_STATIC_ASSERT(sizeof(qn_block_q8_1) == 36, "q8_1 block size");

typedef struct qn_block_q2_k {
    uint8_t scales[QN_QK_K / 16]; /* lo nibble scale, hi nibble min, per 16-elem sub-block */
    uint8_t qs[QN_QK_K / 4];      /* 2-bit codes */
    uint16_t d;                   /* f16 super-scale for scales */
    uint16_t dmin;                /* f16 super-scale for mins */
} qn_block_q2_k;
QN_STATIC_ASSERT(sizeof(qn_block_q2_k) == 84, "q2_k block size");

typedef struct qn_block_q3_k {
    uint8_t hmask[QN_QK_K / 8];   /* high bit; set = no -4 offset */
    uint8_t qs[QN_QK_K / 4];      /* low 2 bits */
    uint8_t scales[12];           /* 16 x 6-bit scales, packed */
    uint16_t d;
} qn_block_q3_k;
QN_STATIC_ASSERT(sizeof(qn_block_q3_k) == 110, "q3_k block size");

typedef struct qn_block_q4_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[QN_K_SCALE_SIZE]; /* 8 x (6-bit scale, 6-bit min), packed */
    uint8_t qs[QN_QK_K / 2];
} qn_block_q4_k;
QN_STATIC_ASSERT(sizeof(qn_block_q4_k) == 144, "q4_k block size");

typedef struct qn_block_q5_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[QN_K_SCALE_SIZE];
    uint8_t qh[QN_QK_K / 8];
    uint8_t qs[QN_QK_K / 2];
} qn_block_q5_k;
QN_STATIC_ASSERT(sizeof(qn_block_q5_k) == 176, "q5_k block size");

typedef struct qn_block_q6_k {
    uint8_t ql[QN_QK_K / 2];     /* low 4 bits */
    uint8_t qh[QN_QK_K / 4];     /* high 2 bits */
    int8_t scales[QN_QK_K / 16]; /* 8-bit signed sub-block scales */
    uint16_t d;
} qn_block_q6_k;
QN_STATIC_ASSERT(sizeof(qn_block_q6_k) == 210, "q6_k block size");

typedef struct qn_block_q8_k {
    float d;                      /* f32 scale (activations only) */
    int8_t qs[QN_QK_K];
    int16_t bsums[QN_QK_K / 16];  /* sum of each 16 qs */
} qn_block_q8_k;
QN_STATIC_ASSERT(sizeof(qn_block_q8_k) == 292, "q8_k block size");

#ifdef __cplusplus
}
#endif
#endif
