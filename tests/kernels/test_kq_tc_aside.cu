/* test_kq_tc_aside.cu — the A sides of the GGUF tensor-core GEMM (kernels/quant/gguf/kq_tc_aside.cuh, the code the
 * kernel runs, included here with KQ_ASIDE_HOST and host primitives) run on the CPU, lane by lane, in the kernel's
 * order of passes and steps (kq_tc_sm90a.cu: passes of 8 steps from the split's first block, then one block), for
 * every format (Q2_K, Q3_KP, Q4_K, Q5_K, Q6_KP, Q8_0P) at both depths the tiles use (WD = 8 for 128 tokens, 4 for 256;
 * Q8_0P half that). Each lane's A fragments of each step are placed back in the weight matrix by the x order (the
 * fragment slots 2t, 2t + 1, 2t + 8, 2t + 9 of rows g, g + 8 of k16 slice s are columns qn_kq_tc_x_col(16 s + slot)
 * of the step's 64), and the matrix must equal the host twin (qn_kq_tc_dequant_host) bit for bit and be written
 * exactly once over the split's columns; every load must stay within the split's blocks of the lane's two rows and
 * be aligned as the GPU's loads need (16 bytes for the heads' uint4, 8 for the code bytes; 4 for Q2_K's). Splits:
 * the whole K, one pass, a pass and a block, a block alone, from an odd block. A flipped weight byte must show as a
 * mismatch.
 * Host code only (nvcc compiles it; no GPU). The fp16 arithmetic is emulated exactly: each operation's exact
 * result (in double: products of fp16 values and small integers) rounded once to nearest even. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "harness.h"
}

#include "kernels/common/half.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/kq_tc.h"
#include "kernels/quant/gguf/q3kp.h"
#include "kernels/quant/gguf/q6kp.h"
#include "kernels/quant/gguf/q8_0p.h"

/* --- the host primitives kq_tc_aside.cuh asks for --- */

struct kq_h2 {
    uint16_t lo, hi;
};

/* the two row windows a lane may read (its rows' blocks of the split) and the loads that broke them */
static const uint8_t *g_win[2][2];
static size_t g_bad_reads;

static void host_read(const void *p, size_t n, size_t align) {
    const uint8_t *b = (const uint8_t *)p;
    bool in = false;
    for (int r = 0; r < 2; r++) in |= b >= g_win[r][0] && b + n <= g_win[r][1];
    if (!in || (uintptr_t)b % align) g_bad_reads++;
}

static uint4 kq_ldg(const uint4 *p) {
    host_read(p, 16, 16);
    uint4 v;
    memcpy(&v, p, 16);
    return v;
}
static uint32_t kq_ldg(const uint32_t *p) {
    host_read(p, 4, 4);
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint32_t kq_host_ld4(const uint8_t *p) {
    host_read(p, 4, 4);
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint2 kq_host_ld8(const uint8_t *p) {
    host_read(p, 8, 8);
    uint2 v;
    memcpy(&v, p, 8);
    return v;
}
/* __byte_perm: byte n of the result is byte (s >> 4 n) & 7 of {b, a} (a bytes 0..3) */
static uint32_t kq_perm(uint32_t a, uint32_t b, uint32_t s) {
    const uint64_t v = (uint64_t)b << 32 | a;
    uint32_t r = 0;
    for (int n = 0; n < 4; n++) r |= (uint32_t)(v >> 8 * ((s >> 4 * n) & 7) & 0xff) << 8 * n;
    return r;
}

/* v rounded once to fp16 bits, to nearest even */
static uint16_t f64_to_f16(double v) {
    const double a = fabs(v);
    int e;
    (void)frexp(a, &e);
    const double quantum = ldexp(1.0, (e - 1 >= -14 ? e - 1 : -14) - 10);
    const double r = nearbyint(a / quantum) * quantum;
    return qn_f32_to_f16((float)(signbit(v) ? -r : r));
}
static double h(uint16_t b) { return qn_f16_to_f32(b); }
static kq_h2 kq_hmul2(kq_h2 a, kq_h2 b) { return {f64_to_f16(h(a.lo) * h(b.lo)), f64_to_f16(h(a.hi) * h(b.hi))}; }
static kq_h2 kq_hsub2(kq_h2 a, kq_h2 b) { return {f64_to_f16(h(a.lo) - h(b.lo)), f64_to_f16(h(a.hi) - h(b.hi))}; }
static kq_h2 kq_hfma2(kq_h2 a, kq_h2 b, kq_h2 c) {
    return {f64_to_f16(h(a.lo) * h(b.lo) + h(c.lo)), f64_to_f16(h(a.hi) * h(b.hi) + h(c.hi))};
}
static kq_h2 kq_low2(kq_h2 a) { return {a.lo, a.lo}; }
static kq_h2 kq_high2(kq_h2 a) { return {a.hi, a.hi}; }
static kq_h2 kq_bits_h2(uint32_t u) { return {(uint16_t)(u & 0xffff), (uint16_t)(u >> 16)}; }
static uint32_t kq_h2_bits(kq_h2 x) { return (uint32_t)x.lo | (uint32_t)x.hi << 16; }
static uint32_t kq_nib_h2(uint32_t v) { return (v & 0x000F000Fu) | 0x64006400u; }

#define KQ_ASIDE_HOST 1
#define KQ_FN inline
#include "kernels/quant/gguf/kq_tc_aside.cuh"

/* --- the kernel's walk over a split, one lane at a time --- */

/* the matrix the fragments give back: W [16][K] fp16 bits of the strip's rows, and how often each was written */
struct back {
    uint16_t *w;
    uint8_t *seen;
    int64_t K;
};

/* lane (g, t)'s fragments a of CTA step i (of the split from step k0) into the matrix */
static void put(back &b, const uint32_t (&a)[4][4], int g, int t, int64_t step) {
    for (int s = 0; s < 4; s++)
        for (int r = 0; r < 4; r++) {
            const int row = g + 8 * (r & 1), slot = 2 * t + 8 * (r >> 1);
            for (int half = 0; half < 2; half++) {
                const int64_t e = (int64_t)row * b.K + step * 64 + qn_kq_tc_x_col(16 * s + slot + half);
                b.w[e] = (uint16_t)(a[s][r] >> 16 * half);
                b.seen[e]++;
            }
        }
}

/* steps R .. E - 1 of the pass from local step i0 (pg, ph: the rows at the pass's first block) */
template <class A, int R, int E>
static void steps(A &as, const uint8_t *pg, const uint8_t *ph, int i0, int L, int k0, int g, int t, back &b) {
    if constexpr (R < E) {
        uint32_t a[4][4];
        as.template step<R>(a, pg, ph, t, i0 + R, L);
        put(b, a, g, t, k0 + i0 + R);
        steps<A, R + 1, E>(as, pg, ph, i0, L, k0, g, t, b);
    }
}

/* the strip's 16 rows w (rows of rb bytes), steps k0 .. k0 + L - 1 (multiples of 4), every lane as the kernel runs it */
template <class A>
static void walk(const uint8_t *w, int64_t rb, int k0, int L, back &b) {
    for (int g = 0; g < 8; g++)
        for (int t = 0; t < 4; t++) {
            const uint8_t *rg = w + (size_t)g * rb, *rh = rg + 8 * rb;
            const size_t lo = (size_t)(k0 / KQ_STEPS) * A::BYTES, hi = (size_t)((k0 + L) / KQ_STEPS) * A::BYTES;
            g_win[0][0] = rg + lo, g_win[0][1] = rg + hi, g_win[1][0] = rh + lo, g_win[1][1] = rh + hi;
            A as;
            as.init(rg + lo, rh + lo, L, t);
            int i = 0;
            for (; i + 8 <= L; i += 8) { /* TC_U = 8 steps a pass */
                const size_t off = (size_t)((k0 + i) / KQ_STEPS) * A::BYTES;
                steps<A, 0, 8>(as, rg + off, rh + off, i, L, k0, g, t, b);
            }
            if (i < L) {
                const size_t off = (size_t)((k0 + i) / KQ_STEPS) * A::BYTES;
                steps<A, 0, KQ_STEPS>(as, rg + off, rh + off, i, L, k0, g, t, b);
            }
        }
}

/* 16 rows of K columns in fmt's blocks, random: fp16 scales spread over 2^-14 .. 2^-2, the rest random bytes */
static uint8_t *make_rows(qn_qformat fmt, int64_t K, uint64_t seed, int64_t *rb) {
    const int64_t rows = 16, nb = rows * K / QN_QK_K;
    qn_rng r;
    qn_rng_seed(&r, seed);
    const auto scale = [&r]() {
        return qn_f32_to_f16(ldexpf(qn_rng_uniform(&r, 1.f, 2.f), -2 - (int)(qn_rng_u64(&r) % 13)));
    };
    uint8_t *out = NULL;
    if (fmt == QN_QFORMAT_Q4_K || fmt == QN_QFORMAT_Q5_K || fmt == QN_QFORMAT_Q2_K) {
        const size_t bs = fmt == QN_QFORMAT_Q4_K ? sizeof(qn_block_q4_k)
                          : fmt == QN_QFORMAT_Q5_K ? sizeof(qn_block_q5_k)
                                                   : sizeof(qn_block_q2_k);
        const size_t doff = fmt == QN_QFORMAT_Q2_K ? offsetof(qn_block_q2_k, d) : 0; /* d, dmin */
        out = (uint8_t *)aligned_alloc(256, (size_t)nb * bs);
        assert_non_null(out);
        qn_rng_fill_bytes(&r, out, (size_t)nb * bs);
        for (int64_t i = 0; i < nb; i++) { /* d, dmin (every fourth block without mins) */
            const uint16_t d[2] = {scale(), (uint16_t)(i % 4 == 3 ? 0 : scale())};
            memcpy(out + (size_t)i * bs + doff, d, 4);
        }
        *rb = K / QN_QK_K * (int64_t)bs;
    } else { /* the uploaded forms: random source blocks (their fp16 d set), repacked */
        const bool q3 = fmt == QN_QFORMAT_Q3_KP, q6 = fmt == QN_QFORMAT_Q6_KP;
        const size_t sb = q3 ? sizeof(qn_block_q3_k) : q6 ? sizeof(qn_block_q6_k) : sizeof(qn_block_q8_0);
        const size_t doff = q3 ? offsetof(qn_block_q3_k, d) : q6 ? offsetof(qn_block_q6_k, d) : offsetof(qn_block_q8_0, d);
        const int64_t ns = rows * K / (q3 || q6 ? QN_QK_K : 32); /* source blocks */
        const int64_t bb = q3 ? QN_Q3KP_BLOCK_BYTES : q6 ? QN_Q6KP_BLOCK_BYTES : QN_Q8_0P_BLOCK_BYTES;
        uint8_t *src = (uint8_t *)malloc(sb * (size_t)ns);
        out = (uint8_t *)aligned_alloc(256, (size_t)(nb * bb));
        assert_true(src && out);
        qn_rng_fill_bytes(&r, src, sb * (size_t)ns);
        for (int64_t i = 0; i < ns; i++) {
            const uint16_t d = scale();
            memcpy(src + (size_t)i * sb + doff, &d, 2);
        }
        assert_int_equal(q3 ? qn_q3kp_repack(src, out, rows, K)
                         : q6 ? qn_q6kp_repack(src, out, rows, K)
                              : qn_q8_0p_repack(src, out, rows, K),
                         QN_OK);
        free(src);
        *rb = K / QN_QK_K * bb;
    }
    return out;
}

/* every split of K = 1280 (20 steps: 5 blocks) and of K = 4096 listed, against the twin; returns the mismatches
 * (and fails on coverage and reads) */
template <class A>
static size_t check_format(qn_qformat fmt, const char *name, uint64_t seed, bool flip) {
    const int splits[][3] = {{1280, 0, 20}, {1280, 0, 8}, {1280, 4, 12}, {1280, 8, 12}, {1280, 16, 4},
                             {1280, 12, 4}, {4096, 0, 64}, {4096, 32, 32}, {4096, 20, 36}};
    size_t mism = 0;
    for (size_t si = 0; si < sizeof splits / sizeof splits[0]; si++) {
        const int64_t K = splits[si][0];
        const int k0 = splits[si][1], L = splits[si][2];
        int64_t rb;
        uint8_t *w = make_rows(fmt, K, seed + si, &rb);
        uint16_t *tw = (uint16_t *)malloc(2 * (size_t)(16 * K));
        back b = {(uint16_t *)malloc(2 * (size_t)(16 * K)), (uint8_t *)calloc((size_t)(16 * K), 1), K};
        assert_true(tw && b.w && b.seen);
        assert_int_equal(qn_kq_tc_dequant_host(fmt, w, 16, K, tw), QN_OK);
        if (flip) w[(size_t)rb * 5 + (size_t)(k0 / KQ_STEPS) * A::BYTES + A::BYTES - 3] ^= 0x10; /* row 5, a code byte */
        g_bad_reads = 0;
        walk<A>(w, rb, k0, L, b);
        if (g_bad_reads) fail_msg("%s K=%lld k0=%d L=%d: %zu loads outside the split's blocks or misaligned", name,
                                  (long long)K, k0, L, g_bad_reads);
        size_t first = 0;
        for (int64_t row = 0; row < 16; row++)
            for (int64_t c = 0; c < K; c++) {
                const int64_t e = row * K + c;
                const bool in = c >= (int64_t)k0 * 64 && c < (int64_t)(k0 + L) * 64;
                if (b.seen[e] != (in ? 1 : 0))
                    fail_msg("%s K=%lld k0=%d L=%d: weight (%lld, %lld) written %d times", name, (long long)K, k0, L,
                             (long long)row, (long long)c, b.seen[e]);
                if (in && b.w[e] != tw[e] && mism++ == 0) first = (size_t)e;
            }
        if (mism && !flip)
            fail_msg("%s K=%lld k0=%d L=%d: %zu weights differ from the twin, first (%zu, %zu): %#06x against %#06x",
                     name, (long long)K, k0, L, mism, first / (size_t)K, first % (size_t)K, b.w[first], tw[first]);
        free(w), free(tw), free(b.w), free(b.seen);
    }
    return mism;
}

static void test_q4k(void **state) {
    (void)state;
    check_format<a_q4k<8>>(QN_QFORMAT_Q4_K, "q4_K WD 8", 100, false);
    check_format<a_q4k<4>>(QN_QFORMAT_Q4_K, "q4_K WD 4", 200, false);
}
static void test_q5k(void **state) {
    (void)state;
    check_format<a_q4k<8, true>>(QN_QFORMAT_Q5_K, "q5_K WD 8", 300, false);
    check_format<a_q4k<4, true>>(QN_QFORMAT_Q5_K, "q5_K WD 4", 400, false);
}
static void test_q6kp(void **state) {
    (void)state;
    check_format<a_q6k<8>>(QN_QFORMAT_Q6_KP, "q6_KP WD 8", 500, false);
    check_format<a_q6k<4>>(QN_QFORMAT_Q6_KP, "q6_KP WD 4", 600, false);
}
static void test_q3kp(void **state) {
    (void)state;
    check_format<a_q3k<8>>(QN_QFORMAT_Q3_KP, "q3_KP WD 8", 650, false);
    check_format<a_q3k<4>>(QN_QFORMAT_Q3_KP, "q3_KP WD 4", 660, false);
}
static void test_q2k(void **state) {
    (void)state;
    check_format<a_q2k<8>>(QN_QFORMAT_Q2_K, "q2_K WD 8", 670, false);
    check_format<a_q2k<4>>(QN_QFORMAT_Q2_K, "q2_K WD 4", 680, false);
}
static void test_q8_0p(void **state) {
    (void)state;
    check_format<a_q8<4>>(QN_QFORMAT_Q8_0P, "q8_0P WD 4", 700, false);
    check_format<a_q8<2>>(QN_QFORMAT_Q8_0P, "q8_0P WD 2", 800, false);
}

/* the check itself: a weight byte flipped after the twin was taken shows in every split */
static void test_flip_is_seen(void **state) {
    (void)state;
    assert_true(check_format<a_q4k<4>>(QN_QFORMAT_Q4_K, "q4_K flipped", 900, true) > 0); /* (S may be 0) */
    assert_true(check_format<a_q8<2>>(QN_QFORMAT_Q8_0P, "q8_0P flipped", 910, true) >= 9);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q4k),   cmocka_unit_test(test_q5k),  cmocka_unit_test(test_q6kp),
        cmocka_unit_test(test_q3kp),  cmocka_unit_test(test_q2k),   cmocka_unit_test(test_q8_0p),
        cmocka_unit_test(test_flip_is_seen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
