/* test_quantize_peer.c — our weight quantizers (QN_QFORMATS[f].quantize_weight, gguf_quantize.h)
 * are BIT-EXACT with llama.cpp's ggml_quantize_chunk (no imatrix), run through ctypes on the venv's
 * libggml-base by tests/kernels/peer_quantize.py, for Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K..Q6_K on:
 *   - seeded random rows (normal at several scales, uniform, one-sided, heavy-tailed, half-grid ties);
 *   - real tensors dequantized from the default model (SmolLM2 Q4_1: embeddings, projections, norms);
 *   - adversarial rows: all zero, constants, one outlier, tiny and subnormal values, huge values,
 *     alternating signs, equal-magnitude extremes, half-empty blocks.
 * Exits 77 (skip) when the venv python or llama-cpp-python is missing.
 * QN_TEST_LABELS: cpu peer */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "kernels/quant/qformat.h"
#include "model/gguf.h"

#define ROW 2304 /* 9 super-blocks, 72 blocks of 32 */

static const qn_qformat FMTS[] = {QN_QFORMAT_Q4_0, QN_QFORMAT_Q4_1, QN_QFORMAT_Q5_0, QN_QFORMAT_Q5_1,
                                  QN_QFORMAT_Q8_0, QN_QFORMAT_Q2_K, QN_QFORMAT_Q3_K, QN_QFORMAT_Q4_K,
                                  QN_QFORMAT_Q5_K, QN_QFORMAT_Q6_K};
#define N_FMTS ((int)(sizeof FMTS / sizeof FMTS[0]))

/* A set of rows of ROW floats with a label per row, for reporting. */
typedef struct row_set {
    float *x;            /* [n_rows][ROW] */
    const char **label;  /* [n_rows] */
    int n_rows, cap;
} row_set;

static float *add_row(row_set *s, const char *label) {
    if (s->n_rows == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->x = realloc(s->x, (size_t)s->cap * ROW * sizeof(float));
        s->label = realloc(s->label, (size_t)s->cap * sizeof *s->label);
        assert_non_null(s->x);
        assert_non_null(s->label);
    }
    s->label[s->n_rows] = label;
    return s->x + (size_t)s->n_rows++ * ROW;
}

static void add_random_rows(row_set *s, qn_rng *rng) {
    for (int r = 0; r < 6; r++) qn_rng_fill_normal(rng, add_row(s, "normal(1)"), ROW, 1.0f);
    for (int r = 0; r < 6; r++) qn_rng_fill_normal(rng, add_row(s, "normal(0.02)"), ROW, 0.02f);
    for (int r = 0; r < 4; r++) {
        float *x = add_row(s, "uniform(-1,1)");
        for (int i = 0; i < ROW; i++) x[i] = qn_rng_uniform(rng, -1.0f, 1.0f);
    }
    for (int r = 0; r < 4; r++) {
        float *x = add_row(s, "uniform(0.5,1.5)"); /* one-sided: mins above zero */
        for (int i = 0; i < ROW; i++) x[i] = qn_rng_uniform(rng, 0.5f, 1.5f);
    }
    for (int r = 0; r < 4; r++) {
        float *x = add_row(s, "cubed normal"); /* heavy tails */
        for (int i = 0; i < ROW; i++) {
            const float v = qn_rng_normal(rng);
            x[i] = v * v * v;
        }
    }
    for (int r = 0; r < 4; r++) {
        float *x = add_row(s, "half-integer grid"); /* exact ties for every rounding */
        for (int i = 0; i < ROW; i++) x[i] = 0.5f * (float)((int)(qn_rng_u64(rng) % 33) - 16);
    }
}

static void add_adversarial_rows(row_set *s, qn_rng *rng) {
    float *x = add_row(s, "all zero");
    memset(x, 0, ROW * sizeof(float));
    x = add_row(s, "constant 0.37");
    for (int i = 0; i < ROW; i++) x[i] = 0.37f;
    x = add_row(s, "constant -2.5");
    for (int i = 0; i < ROW; i++) x[i] = -2.5f;
    x = add_row(s, "zeros + one outlier");
    memset(x, 0, ROW * sizeof(float));
    x[777] = 100.0f;
    x = add_row(s, "small noise + outlier per block");
    qn_rng_fill_normal(rng, x, ROW, 0.01f);
    for (int i = 5; i < ROW; i += 32) x[i] = (i & 64) ? -40.0f : 40.0f;
    x = add_row(s, "tiny 1e-20");
    qn_rng_fill_normal(rng, x, ROW, 1e-20f);
    x = add_row(s, "subnormal 1e-39");
    qn_rng_fill_normal(rng, x, ROW, 1e-39f);
    x = add_row(s, "below fp16 range 1e-6");
    qn_rng_fill_normal(rng, x, ROW, 1e-6f);
    x = add_row(s, "huge 1e30");
    qn_rng_fill_normal(rng, x, ROW, 1e30f);
    x = add_row(s, "above fp16 range 7e4");
    qn_rng_fill_normal(rng, x, ROW, 7e4f);
    x = add_row(s, "alternating +-1");
    for (int i = 0; i < ROW; i++) x[i] = (i & 1) ? -1.0f : 1.0f;
    x = add_row(s, "equal-magnitude extremes");
    qn_rng_fill_normal(rng, x, ROW, 0.3f);
    for (int i = 0; i < ROW; i += 16) x[i] = 2.0f, x[i + 9] = -2.0f;
    x = add_row(s, "half-empty blocks");
    qn_rng_fill_normal(rng, x, ROW, 1.0f);
    for (int i = 0; i < ROW; i++)
        if ((i / 16) % 2) x[i] = 0.0f;
    x = add_row(s, "positive ramp");
    for (int i = 0; i < ROW; i++) x[i] = (float)(i % 256) / 255.0f;
}

/* Dequantizes the start of several tensors of the default model into rows (tensors are read as a
 * flat stream, so rows of ROW may cross a tensor's own row boundary: the values stay real). */
static int add_model_rows(row_set *s) {
    const char *path = qn_test_default_model();
    if (!path) {
        fprintf(stderr, "default model absent: real-tensor rows skipped\n");
        return 0;
    }
    qn_gguf *g = NULL;
    qn_error err = {0};
    assert_int_equal(qn_gguf_open(path, &g, &err), QN_OK);
    static const struct {
        const char *name;
        int rows;
    } pick[] = {
        {"token_embd.weight", 6},       {"blk.0.attn_q.weight", 4},    {"blk.0.attn_k.weight", 4},
        {"blk.0.attn_v.weight", 4},     {"blk.5.attn_output.weight", 4}, {"blk.12.ffn_gate.weight", 4},
        {"blk.20.ffn_up.weight", 4},    {"blk.29.ffn_down.weight", 6},
    };
    int added = 0;
    for (size_t p = 0; p < sizeof pick / sizeof pick[0]; p++) {
        const qn_gguf_tensor *t = qn_gguf_find_tensor(g, pick[p].name);
        assert_non_null(t);
        const int64_t n = (int64_t)pick[p].rows * ROW;
        const int be = QN_QFORMATS[t->fmt].block_elems;
        assert_true(n % be == 0 && n <= t->ne[0] * t->ne[1]);
        float *x = add_row(s, pick[p].name);
        for (int r = 1; r < pick[p].rows; r++) add_row(s, pick[p].name);
        QN_QFORMATS[t->fmt].dequant_ref(t->data, x, n);
        added += pick[p].rows;
    }
    /* every norm vector back to back: positive values around 1 (the affine types' one-sided case) */
    float *row = NULL;
    int fill = 0;
    for (int64_t i = 0; i < qn_gguf_n_tensors(g); i++) {
        const qn_gguf_tensor *t = qn_gguf_tensor_at(g, i);
        if (t->n_dims != 1 || t->fmt != QN_QFORMAT_F32) continue;
        for (int64_t j = 0; j < t->ne[0]; j++) {
            if (!row || fill == ROW) {
                row = add_row(s, "norm weights");
                fill = 0;
                added++;
            }
            row[fill++] = ((const float *)t->data)[j];
        }
    }
    if (row && fill < ROW) s->n_rows--, added--; /* drop the partial row */
    qn_gguf_close(g);
    return added;
}

static row_set g_rows;
static uint8_t *g_peer[N_FMTS];

static int setup(void **state) {
    (void)state;
    qn_rng rng;
    qn_rng_seed(&rng, 0x5eed9a7eu);
    add_random_rows(&g_rows, &rng);
    add_adversarial_rows(&g_rows, &rng);
    const int n_model = add_model_rows(&g_rows);
    fprintf(stderr, "%d rows of %d (%d from the default model)\n", g_rows.n_rows, ROW, n_model);

    char in_path[512], out_path[N_FMTS][512], script[1024], name[64];
    qn_test_tmp_path(in_path, sizeof in_path, "quant_peer_in.f32");
    if (qn_test_write_file(in_path, g_rows.x, (size_t)g_rows.n_rows * ROW * sizeof(float))) return -1;
    snprintf(script, sizeof script, "%s/tests/kernels/peer_quantize.py", qn_test_source_dir());
    char cmd[8192];
    int len = snprintf(cmd, sizeof cmd, "'%s' '%s'", qn_test_python(), script);
    for (int f = 0; f < N_FMTS; f++) {
        snprintf(name, sizeof name, "quant_peer_%s.bin", QN_QFORMATS[FMTS[f]].name);
        qn_test_tmp_path(out_path[f], sizeof out_path[f], name);
        len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %u:%d:%s:%s", QN_QFORMATS[FMTS[f]].ggml_type, ROW,
                        in_path, out_path[f]);
    }
    if (len >= (int)sizeof cmd || system(cmd) != 0) return -1;
    for (int f = 0; f < N_FMTS; f++) {
        size_t got = 0;
        g_peer[f] = (uint8_t *)qn_test_read_file(out_path[f], &got);
        if (!g_peer[f] || got != qn_qformat_row_bytes(FMTS[f], ROW) * (size_t)g_rows.n_rows) return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int f = 0; f < N_FMTS; f++) free(g_peer[f]);
    free(g_rows.x);
    free(g_rows.label);
    return 0;
}

static void check_format(int f) {
    const qn_qformat fmt = FMTS[f];
    const qn_qformat_traits *t = &QN_QFORMATS[fmt];
    assert_non_null(t->quantize_weight);
    const size_t rb = qn_qformat_row_bytes(fmt, ROW);
    uint8_t *ours = malloc(rb);
    int bad_rows = 0;
    for (int r = 0; r < g_rows.n_rows; r++) {
        memset(ours, 0xA5, rb); /* poison: every byte must be written */
        t->quantize_weight(g_rows.x + (size_t)r * ROW, ours, ROW);
        const uint8_t *peer = g_peer[f] + (size_t)r * rb;
        if (!memcmp(ours, peer, rb)) continue;
        size_t b = 0;
        while (ours[b] == peer[b]) b++;
        if (bad_rows++ < 5)
            fprintf(stderr, "  %s row %d (%s): first differing byte %zu (block %zu, offset %zu): ours 0x%02x ggml 0x%02x\n",
                    t->name, r, g_rows.label[r], b, b / (size_t)t->block_bytes, b % (size_t)t->block_bytes, ours[b],
                    peer[b]);
    }
    fprintf(stderr, "%-5s %3d rows: %s\n", t->name, g_rows.n_rows, bad_rows ? "MISMATCH" : "bit-exact");
    free(ours);
    assert_int_equal(bad_rows, 0);
}

/* One cmocka test per format, so a failure names it. */
#define QN_FMT_TEST(i)                                                                                                 \
    static void test_fmt_##i(void **state) {                                                                          \
        (void)state;                                                                                                   \
        check_format(i);                                                                                               \
    }
QN_FMT_TEST(0)
QN_FMT_TEST(1)
QN_FMT_TEST(2)
QN_FMT_TEST(3)
QN_FMT_TEST(4)
QN_FMT_TEST(5)
QN_FMT_TEST(6)
QN_FMT_TEST(7)
QN_FMT_TEST(8)
QN_FMT_TEST(9)

/* Row-range calls give the same bytes as one call over all rows (no state kept between rows). */
static void test_rows_independent(void **state) {
    (void)state;
    for (int f = 0; f < N_FMTS; f++) {
        const size_t rb = qn_qformat_row_bytes(FMTS[f], ROW);
        const int n = g_rows.n_rows < 8 ? g_rows.n_rows : 8;
        uint8_t *all = malloc(rb * (size_t)n), *one = malloc(rb);
        QN_QFORMATS[FMTS[f]].quantize_weight(g_rows.x, all, (int64_t)n * ROW);
        for (int r = 0; r < n; r++) {
            QN_QFORMATS[FMTS[f]].quantize_weight(g_rows.x + (size_t)r * ROW, one, ROW);
            assert_memory_equal(all + (size_t)r * rb, one, rb);
        }
        free(all);
        free(one);
    }
}

int main(void) {
    const char *py = qn_test_python();
    if (!py) {
        fprintf(stderr, "QN_PYTHON absent: skipping the llama.cpp quantizer peer check\n");
        return 77;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/kernels/peer_quantize.py' --check", py, qn_test_source_dir());
    const int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        fprintf(stderr, "llama-cpp-python not usable: skipping the llama.cpp quantizer peer check\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmt_0), cmocka_unit_test(test_fmt_1), cmocka_unit_test(test_fmt_2),
        cmocka_unit_test(test_fmt_3), cmocka_unit_test(test_fmt_4), cmocka_unit_test(test_fmt_5),
        cmocka_unit_test(test_fmt_6), cmocka_unit_test(test_fmt_7), cmocka_unit_test(test_fmt_8),
        cmocka_unit_test(test_fmt_9), cmocka_unit_test(test_rows_independent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
