/* kx8.c — the Q2_K .. Q6_K, Q4_0, Q5_0, Q5_1, Q8_0 -> ×8 row-interleaved repack and its inverse (kx8.h). */
#include "kernels/quant/gguf/kx8.h"

#include <string.h>

#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_dequant.h"

QN_STATIC_ASSERT(QN_Q50X8_BLOCK_BYTES == QN_KX8_ROWS * sizeof(qn_block_q5_0) &&
                     QN_Q51X8_BLOCK_BYTES == QN_KX8_ROWS * sizeof(qn_block_q5_1) &&
                     offsetof(qn_block_q5_0, qh) == 2 && offsetof(qn_block_q5_1, qh) == 4 &&
                     QN_Q5X8_QS_BYTE(QN_QFORMAT_Q5_0) + 128 == QN_Q50X8_BLOCK_BYTES &&
                     QN_Q5X8_QS_BYTE(QN_QFORMAT_Q5_1) + 128 == QN_Q51X8_BLOCK_BYTES,
                 "q5_x x8 blocks");
QN_STATIC_ASSERT(QN_Q40X8_BLOCK_BYTES == QN_KX8_ROWS * sizeof(qn_block_q4_0) &&
                     QN_Q80X8_BLOCK_BYTES == QN_KX8_ROWS * sizeof(qn_block_q8_0) &&
                     offsetof(qn_block_q4_0, qs) == 2 && offsetof(qn_block_q8_0, qs) == 2 &&
                     QN_Q2KX8_BLOCK_BYTES == QN_KX8_ROWS * sizeof(qn_block_q2_k) &&
                     QN_Q3KX8_BLOCK_BYTES == QN_KX8_ROWS * sizeof(qn_block_q3_k) &&
                     QN_Q4KX8_BLOCK_BYTES == QN_KX8_ROWS * sizeof(qn_block_q4_k) &&
                     QN_Q5KX8_BLOCK_BYTES == QN_KX8_ROWS * sizeof(qn_block_q5_k) &&
                     QN_Q6KX8_BLOCK_BYTES == QN_KX8_ROWS * sizeof(qn_block_q6_k),
                 "kx8 blocks");
QN_STATIC_ASSERT(sizeof(qn_block_q6_k) >= sizeof(qn_block_q5_k) && sizeof(qn_block_q6_k) >= sizeof(qn_block_q4_k) &&
                     sizeof(qn_block_q6_k) >= sizeof(qn_block_q3_k) && sizeof(qn_block_q6_k) >= sizeof(qn_block_q2_k),
                 "q6_k is the largest block");
QN_STATIC_ASSERT(offsetof(qn_block_q2_k, d) == 4 * QN_Q2KX8_D_DWORD && QN_Q3KX8_SC_DWORD == 24 && QN_Q3KX8_D_BYTE == 32 * 27,
                 "q2_kx8 / q3_kx8 sections");
QN_STATIC_ASSERT(QN_Q6KX8_SC_DWORD == 48 && QN_Q6KX8_D_BYTE == 32 * 52, "q6_kx8 sections");

qn_status qn_kx8_check_shape(qn_qformat fmt, int64_t rows, int64_t k) {
    if (!qn_kx8_block_bytes(fmt)) return QN_ERR_UNSUPPORTED;
    if (fmt == QN_QFORMAT_Q5_1 && k > 32 * (int64_t)QN_LX8_MAX_BLOCKS) return QN_ERR_SHAPE;
    return rows >= 0 && rows % QN_KX8_ROWS == 0 && k > 0 && k % QN_QFORMATS[fmt].block_elems == 0 ? QN_OK : QN_ERR_SHAPE;
}

/* byte i (< 4) of dword [j][r] of a group block */
#define GB(grp, j, r, i) ((grp)[32 * (j) + 4 * (r) + (i)])

/* one row's block <-> its place r in a group block (to_group: blk -> grp, else grp -> blk); Q2_K, Q4_K, Q5_K: the
 * block's dwords as they are */
static void move_dwords(uint8_t *grp, uint8_t *blk, int n_dwords, int r, bool to_group) {
    for (int j = 0; j < n_dwords; j++) {
        uint8_t *g = &GB(grp, j, r, 0), *b = blk + 4 * j;
        memcpy(to_group ? g : b, to_group ? b : g, 4);
    }
}

/* the 32 bytes e[0..31] <-> the 8 dwords [d0 + i][r] (i < 8) of a group block */
static void move_stream(uint8_t *grp, int d0, int r, uint8_t e[32], bool to_group) {
    for (int i = 0; i < 8; i++) {
        uint8_t *g = &GB(grp, d0 + i, r, 0);
        memcpy(to_group ? g : e + 4 * i, to_group ? e + 4 * i : g, 4);
    }
}

static void move_q6_k(uint8_t *grp, qn_block_q6_k *blk, int r, bool to_group) {
    for (int h = 0; h < 2; h++) {
        uint8_t e[3][32]; /* stream c's bytes l < 32 (whole arrays per h: the loops vectorize) */
        const uint8_t *ql0 = &blk->ql[64 * h], *ql1 = &blk->ql[64 * h + 32], *qh = &blk->qh[32 * h];
        if (to_group) {
            for (int l = 0; l < 32; l++) {
                const int q3 = (ql1[l] >> 4) | (qh[l] >> 6 & 3) << 4;
                e[0][l] = (uint8_t)((ql0[l] & 15) | (qh[l] & 3) << 4 | (q3 & 3) << 6);
                e[1][l] = (uint8_t)((ql1[l] & 15) | (qh[l] >> 2 & 3) << 4 | (q3 >> 2 & 3) << 6);
                e[2][l] = (uint8_t)((ql0[l] >> 4) | (qh[l] >> 4 & 3) << 4 | (q3 >> 4) << 6);
            }
            for (int c = 0; c < 3; c++) move_stream(grp, 24 * h + 8 * c, r, e[c], true);
        } else {
            for (int c = 0; c < 3; c++) move_stream(grp, 24 * h + 8 * c, r, e[c], false);
            for (int l = 0; l < 32; l++) {
                const int q[4] = {e[0][l] & 63, e[1][l] & 63, e[2][l] & 63,
                                  (e[0][l] >> 6) | (e[1][l] >> 6) << 2 | (e[2][l] >> 6) << 4};
                blk->ql[64 * h + l] = (uint8_t)((q[0] & 15) | (q[2] & 15) << 4);
                blk->ql[64 * h + 32 + l] = (uint8_t)((q[1] & 15) | (q[3] & 15) << 4);
                blk->qh[32 * h + l] = (uint8_t)((q[0] >> 4) | (q[1] >> 4) << 2 | (q[2] >> 4) << 4 | (q[3] >> 4) << 6);
            }
        }
    }
    for (int j = 0; j < 4; j++) {
        uint8_t *g = &GB(grp, QN_Q6KX8_SC_DWORD + j, r, 0), *b = (uint8_t *)blk->scales + 4 * j;
        memcpy(to_group ? g : b, to_group ? b : g, 4);
    }
    uint8_t *g = grp + QN_Q6KX8_D_BYTE + 2 * r;
    memcpy(to_group ? g : (uint8_t *)&blk->d, to_group ? (uint8_t *)&blk->d : g, 2);
}

/* Q3_K: code c_i(l) = lo + 4·hbit (0..7) of element 32i + l (i = 4h + j: qs byte 32h + l bits 2j, 2j+1; hmask byte l
 * bit 4h + j), three streams of bytes e0..e2 per l (kx8.h) */
static void move_q3_k(uint8_t *grp, qn_block_q3_k *blk, int r, bool to_group) {
    uint8_t e[3][32]; /* stream c's bytes l < 32 */
    if (to_group) {
        for (int l = 0; l < 32; l++) {
            int q[8];
            for (int i = 0; i < 8; i++)
                q[i] = (blk->qs[32 * (i / 4) + l] >> (2 * (i % 4)) & 3) | (blk->hmask[l] >> i & 1) << 2;
            e[0][l] = (uint8_t)(q[0] | q[1] << 3 | (q[6] & 3) << 6);
            e[1][l] = (uint8_t)(q[2] | q[3] << 3 | (q[7] & 3) << 6);
            e[2][l] = (uint8_t)(q[4] | q[5] << 3 | (q[6] >> 2) << 6 | (q[7] >> 2) << 7);
        }
        for (int c = 0; c < 3; c++) move_stream(grp, 8 * c, r, e[c], true);
    } else {
        for (int c = 0; c < 3; c++) move_stream(grp, 8 * c, r, e[c], false);
        for (int l = 0; l < 32; l++) {
            int q[8];
            q[0] = e[0][l] & 7, q[1] = e[0][l] >> 3 & 7, q[2] = e[1][l] & 7, q[3] = e[1][l] >> 3 & 7;
            q[4] = e[2][l] & 7, q[5] = e[2][l] >> 3 & 7;
            q[6] = (e[0][l] >> 6) | (e[2][l] >> 6 & 1) << 2, q[7] = (e[1][l] >> 6) | (e[2][l] >> 7) << 2;
            blk->hmask[l] = 0;
            for (int i = 0; i < 8; i++) blk->hmask[l] |= (uint8_t)((q[i] >> 2) << i);
            for (int h = 0; h < 2; h++)
                blk->qs[32 * h + l] = (uint8_t)((q[4 * h] & 3) | (q[4 * h + 1] & 3) << 2 | (q[4 * h + 2] & 3) << 4 |
                                                (q[4 * h + 3] & 3) << 6);
        }
    }
    for (int j = 0; j < 3; j++) {
        uint8_t *g = &GB(grp, QN_Q3KX8_SC_DWORD + j, r, 0), *b = blk->scales + 4 * j;
        memcpy(to_group ? g : b, to_group ? b : g, 4);
    }
    uint8_t *g = grp + QN_Q3KX8_D_BYTE + 2 * r;
    memcpy(to_group ? g : (uint8_t *)&blk->d, to_group ? (uint8_t *)&blk->d : g, 2);
}

/* Q4_0, Q8_0: d to the header, the qs dwords (from block byte 2) to the code rows */
static void move_legacy(uint8_t *grp, uint8_t *blk, int n_dwords, int r, bool to_group) {
    uint8_t *g = grp + 2 * r;
    memcpy(to_group ? g : blk, to_group ? blk : g, 2);
    for (int j = 0; j < n_dwords; j++) {
        g = grp + QN_LX8_QS_BYTE + 32 * j + 4 * r;
        memcpy(to_group ? g : blk + 2 + 4 * j, to_group ? blk + 2 + 4 * j : g, 4);
    }
}

/* The 4×4 bit transpose of each 16-bit half (bit 4j + c <-> bit 4c + j): its own inverse */
static uint32_t transpose4x4_halves(uint32_t x) {
    uint32_t t = (x ^ x >> 3) & 0x0a0a0a0au;
    x ^= t ^ t << 3;
    t = (x ^ x >> 6) & 0x00cc00ccu;
    return x ^ t ^ t << 6;
}

/* qh (bit e: element e's fifth bit) <-> H (kx8.h: byte c, bit j = element 4j + c; bit 4 + j = element 16 + 4j + c).
 * After the transpose nibble c of half h holds elements 16h + 4j + c at bit j; H byte c = nibble c | nibble c' << 4. */
static uint32_t q5_qh_to_h(uint32_t qh) {
    const uint32_t t = transpose4x4_halves(qh);
    uint32_t h = 0;
    for (int c = 0; c < 4; c++) h |= ((t >> 4 * c & 15) | (t >> (16 + 4 * c) & 15) << 4) << 8 * c;
    return h;
}
static uint32_t q5_h_to_qh(uint32_t h) {
    uint32_t t = 0;
    for (int c = 0; c < 4; c++) t |= (h >> 8 * c & 15) << 4 * c | (h >> (8 * c + 4) & 15) << (16 + 4 * c);
    return transpose4x4_halves(t);
}

/* Q5_0, Q5_1: d (and m) to the header, qh regrouped to the H row, the qs dwords to the code rows */
static void move_q5(qn_qformat fmt, uint8_t *grp, uint8_t *blk, int r, bool to_group) {
    const int hb = fmt == QN_QFORMAT_Q5_1 ? 4 : 2; /* qh's byte in the block: after d (and m) */
    uint8_t *g = grp + 2 * r;
    memcpy(to_group ? g : blk, to_group ? blk : g, 2);
    if (fmt == QN_QFORMAT_Q5_1) {
        g = grp + QN_Q51X8_M_BYTE + 2 * r;
        memcpy(to_group ? g : blk + 2, to_group ? blk + 2 : g, 2);
    }
    g = grp + QN_Q5X8_H_BYTE(fmt) + 4 * r;
    const uint32_t v = to_group ? q5_qh_to_h(qn_gguf_le32(blk + hb)) : q5_h_to_qh(qn_gguf_le32(g));
    const uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    memcpy(to_group ? g : blk + hb, le, 4);
    for (int j = 0; j < 4; j++) {
        g = grp + QN_Q5X8_QS_BYTE(fmt) + 32 * j + 4 * r;
        memcpy(to_group ? g : blk + hb + 4 + 4 * j, to_group ? blk + hb + 4 + 4 * j : g, 4);
    }
}

static void move_row(qn_qformat fmt, uint8_t *grp, uint8_t *blk, int r, bool to_group) {
    if (fmt == QN_QFORMAT_Q5_0 || fmt == QN_QFORMAT_Q5_1) {
        move_q5(fmt, grp, blk, r, to_group);
    } else if (fmt == QN_QFORMAT_Q4_0 || fmt == QN_QFORMAT_Q8_0) {
        move_legacy(grp, blk, (int)(qn_kx8_block_bytes(fmt) / QN_KX8_ROWS - 2) / 4, r, to_group);
    } else if (fmt == QN_QFORMAT_Q6_K) {
        move_q6_k(grp, (qn_block_q6_k *)blk, r, to_group);
    } else if (fmt == QN_QFORMAT_Q3_K) {
        move_q3_k(grp, (qn_block_q3_k *)blk, r, to_group);
    } else {
        move_dwords(grp, blk, (int)(qn_kx8_block_bytes(fmt) / QN_KX8_ROWS / 4), r, to_group);
    }
}

qn_status qn_kx8_repack(qn_qformat fmt, const void *src, void *dst, int64_t rows, int64_t k, int64_t g_begin,
                        int64_t g_end) {
    const qn_status st = qn_kx8_check_shape(fmt, rows, k);
    if (st != QN_OK) return st;
    if (g_begin < 0 || g_end < g_begin || g_end > rows / QN_KX8_ROWS) return QN_ERR_SHAPE;
    if (g_end > g_begin && (!src || !dst)) return QN_ERR_INVALID_ARG;
    const size_t bb = qn_kx8_block_bytes(fmt) / QN_KX8_ROWS; /* one row's block */
    const int64_t nb = k / QN_QFORMATS[fmt].block_elems;
    const bool dwords = fmt == QN_QFORMAT_Q2_K || fmt == QN_QFORMAT_Q4_K || fmt == QN_QFORMAT_Q5_K; /* a plain transpose */
    for (int64_t g = g_begin; g < g_end; g++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *s0 = (const uint8_t *)src + ((size_t)(g * QN_KX8_ROWS) * (size_t)nb + (size_t)b) * bb;
            uint8_t *d = (uint8_t *)dst + (size_t)(g * nb + b) * QN_KX8_ROWS * bb;
            const size_t rs = (size_t)nb * bb; /* source row stride */
            if (dwords) { /* the group block written in order: dword j of rows 0..7 */
                for (size_t j = 0; j < bb / 4; j++)
                    for (int r = 0; r < QN_KX8_ROWS; r++) memcpy(d + 32 * j + 4 * (size_t)r, s0 + (size_t)r * rs + 4 * j, 4);
                continue;
            }
            for (int r = 0; r < QN_KX8_ROWS; r++) { /* a copy: move_row's pointer is not const */
                _Alignas(8) uint8_t blk[sizeof(qn_block_q6_k)]; /* the largest */
                memcpy(blk, s0 + (size_t)r * rs, bb);
                move_row(fmt, d, blk, r, true);
            }
        }
    return QN_OK;
}

qn_status qn_kx8_unpack_row(qn_qformat fmt, const void *src, void *dst, int64_t rows, int64_t k, int64_t r) {
    const qn_status st = qn_kx8_check_shape(fmt, rows, k);
    if (st != QN_OK) return st;
    if (r < 0 || r >= rows) return QN_ERR_SHAPE;
    if (!src || !dst) return QN_ERR_INVALID_ARG;
    const size_t gbytes = qn_kx8_block_bytes(fmt), bb = gbytes / QN_KX8_ROWS;
    const int64_t nb = k / QN_QFORMATS[fmt].block_elems, g = r / QN_KX8_ROWS;
    for (int64_t b = 0; b < nb; b++) { /* a copy: move_row's pointer is not const */
        _Alignas(8) uint8_t grp[QN_Q6KX8_BLOCK_BYTES];
        memcpy(grp, (const uint8_t *)src + (size_t)(g * nb + b) * gbytes, gbytes);
        move_row(fmt, grp, (uint8_t *)dst + (size_t)b * bb, (int)(r % QN_KX8_ROWS), false);
    }
    return QN_OK;
}
