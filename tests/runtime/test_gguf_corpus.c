/* test_gguf_corpus.c — replays the fuzz seed corpus (tests/fuzz/corpus_gguf/) and byte-flipped
 * variants of it through qn_gguf_open_memory, so CI exercises the fuzz target's paths without
 * libFuzzer. Every input must either parse or fail with a message naming the label. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/model_config.h"
#include "model/gguf.h"

/* Opens buf[len]; on success touches every view. Returns the status. */
static qn_status replay(const uint8_t *buf, size_t len) {
    uint8_t *copy = malloc(len ? len : 1); /* exact size, so ASan sees over-reads */
    assert_non_null(copy);
    memcpy(copy, buf, len);
    qn_gguf *g = NULL;
    qn_error e = {0};
    const qn_status st = qn_gguf_open_memory(copy, len, "corpus.gguf", &g, &e);
    if (st == QN_OK) {
        uint64_t sum = 0;
        for (int64_t i = 0; i < qn_gguf_n_kv(g); i++) {
            if (qn_gguf_arr_type(g, i) == QN_GGUF_TYPE_STRING)
                for (uint64_t j = 0; j < qn_gguf_arr_n(g, i); j++) sum += qn_gguf_arr_str(g, i, j).len;
            sum += qn_gguf_kv_str(g, i).len;
        }
        for (int64_t i = 0; i < qn_gguf_n_tensors(g); i++) {
            const qn_gguf_tensor *t = qn_gguf_tensor_at(g, i);
            if (t->nbytes) sum += ((const uint8_t *)t->data)[t->nbytes - 1];
        }
        qn_model_config cfg;
        (void)qn_model_config_from_gguf(g, &cfg, &e);
        (void)sum;
        qn_gguf_close(g);
    } else {
        assert_true(st == QN_ERR_FORMAT || st == QN_ERR_UNSUPPORTED);
        assert_non_null(strstr(e.msg, "corpus.gguf"));
    }
    free(copy);
    return st;
}

static void test_corpus(void **state) {
    (void)state;
    qn_test_corpus *corpus = qn_test_corpus_open("corpus_gguf");
    if (!corpus) {
        print_message("no corpus at %s/tests/fuzz/corpus_gguf\n", qn_test_source_dir());
        skip();
    }
    int n_files = 0, n_ok = 0;
    qn_rng rng;
    qn_rng_seed(&rng, 1234);
    for (;;) {
        size_t len = 0;
        const char *name;
        uint8_t *buf = qn_test_corpus_next(corpus, &len, &name);
        if (!name) break;
        assert_non_null(buf);
        n_files++;
        n_ok += replay(buf, len) == QN_OK;
        /* seeded mutations: single byte flips and truncations of each seed */
        for (int k = 0; k < 300 && len; k++) {
            const size_t at = (size_t)(qn_rng_u64(&rng) % len);
            const uint8_t old = buf[at];
            buf[at] = (uint8_t)qn_rng_u64(&rng);
            replay(buf, len);
            buf[at] = old;
            replay(buf, (size_t)(qn_rng_u64(&rng) % len));
        }
        free(buf);
    }
    qn_test_corpus_close(corpus);
    print_message("%d corpus files, %d parse\n", n_files, n_ok);
    assert_true(n_files >= 3);
    assert_true(n_ok >= 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_corpus)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
