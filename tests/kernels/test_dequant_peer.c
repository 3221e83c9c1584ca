/* test_dequant_peer.c — our reference dequantizers are BIT-EXACT with gguf-py's numpy
 * dequantizers (gguf.quants.dequantize) on random blocks of every type. Random bytes, with every
 * scale field a random finite fp16 bit pattern (subnormals included); F32/F16/BF16 data random
 * finite bit patterns. Runs tests/kernels/peer_dequant.py once for all types; skips without QN_PYTHON.
 * QN_TEST_LABELS: cpu peer */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant/qformat.h"
#include "ref/ref_quant_gguf.h"

#define QN_PEER_ROWS 3

static int64_t peer_row_elems(qn_qformat f) { /* a few blocks per row, odd where the block is 1 */
    const int be = QN_QFORMATS[f].block_elems;
    return be == 1 ? 1001 : be == 32 ? 32 * 41 : 256 * 11;
}

static void test_dequant_bit_exact_with_gguf_py(void **state) {
    (void)state;
    const char *py = qn_test_python();
    if (!py) {
        fprintf(stderr, "QN_PYTHON absent: skipping the gguf-py peer check\n");
        skip();
    }
    char script[1024];
    snprintf(script, sizeof script, "%s/tests/kernels/peer_dequant.py", qn_test_source_dir());

    qn_rng rng;
    qn_rng_seed(&rng, 0x9e11d3a7u);
    char cmd[16384];
    int len = snprintf(cmd, sizeof cmd, "'%s' '%s'", py, script);
    void *blocks[QN_QFORMAT_COUNT];
    char out_path[QN_QFORMAT_COUNT][512];
    for (int f = 0; f < QN_QFORMAT_COUNT; f++) {
        const int64_t n = peer_row_elems((qn_qformat)f) * QN_PEER_ROWS;
        const size_t bytes = qn_qformat_row_bytes((qn_qformat)f, n);
        blocks[f] = malloc(bytes);
        qn_ref_gguf_random_blocks(&rng, (qn_qformat)f, blocks[f], n, 1);
        char in_path[512], name[64];
        snprintf(name, sizeof name, "peer_%s.in", QN_QFORMATS[f].name);
        qn_test_tmp_path(in_path, sizeof in_path, name);
        snprintf(name, sizeof name, "peer_%s.out", QN_QFORMATS[f].name);
        qn_test_tmp_path(out_path[f], sizeof out_path[f], name);
        assert_int_equal(qn_test_write_file(in_path, blocks[f], bytes), 0);
        len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %u:%d:%s:%s", QN_QFORMATS[f].ggml_type, QN_PEER_ROWS,
                        in_path, out_path[f]);
        assert_true(len < (int)sizeof cmd);
    }
    assert_int_equal(system(cmd), 0);

    int failures = 0;
    for (int f = 0; f < QN_QFORMAT_COUNT; f++) {
        const int64_t n = peer_row_elems((qn_qformat)f) * QN_PEER_ROWS;
        size_t got_len = 0;
        float *peer = (float *)qn_test_read_file(out_path[f], &got_len);
        assert_non_null(peer);
        assert_int_equal(got_len, (size_t)n * sizeof(float));
        float *ours = malloc((size_t)n * sizeof(float));
        QN_QFORMATS[f].dequant_ref(blocks[f], ours, n);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) {
            uint32_t a, b;
            memcpy(&a, &ours[i], 4);
            memcpy(&b, &peer[i], 4);
            if (a != b && bad++ < 5)
                fprintf(stderr, "  %s[%lld]: ours %.9g (0x%08x) gguf-py %.9g (0x%08x)\n", QN_QFORMATS[f].name,
                        (long long)i, ours[i], a, peer[i], b);
        }
        fprintf(stderr, "%-5s %6lld elems: %s\n", QN_QFORMATS[f].name, (long long)n,
                bad ? "MISMATCH" : "bit-exact");
        failures += bad != 0;
        free(ours);
        free(peer);
        free(blocks[f]);
    }
    assert_int_equal(failures, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_dequant_bit_exact_with_gguf_py)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
