/* fuzz_gguf.c — libFuzzer target: any byte string through qn_gguf_open_memory, then every accessor
 * and the model-config constructor on what parses. Built with -DQN_FUZZ=ON and clang; seeds in
 * tests/fuzz/corpus_gguf/ (also replayed by tests/runtime/test_gguf_corpus.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/model_config.h"
#include "model/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exact-size copy so ASan flags any read past the end */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    qn_gguf *g = NULL;
    qn_error err;
    if (qn_gguf_open_memory(buf, size, "fuzz.gguf", &g, &err) == QN_OK) {
        volatile uint64_t sink = 0;
        for (int64_t i = 0; i < qn_gguf_n_kv(g); i++) {
            const qn_gguf_str k = qn_gguf_key(g, i);
            sink += k.len ? (uint8_t)k.ptr[k.len - 1] : 0;
            const uint64_t n = qn_gguf_arr_n(g, i);
            if (qn_gguf_arr_type(g, i) == QN_GGUF_TYPE_STRING) {
                for (uint64_t j = 0; j < n; j++) {
                    const qn_gguf_str s = qn_gguf_arr_str(g, i, j);
                    sink += s.len ? (uint8_t)s.ptr[s.len - 1] : 0;
                }
            } else if (n) {
                const uint8_t *d = qn_gguf_arr_data(g, i);
                sink += d[n * qn_gguf_type_size(qn_gguf_arr_type(g, i)) - 1];
            }
            const qn_gguf_str s = qn_gguf_kv_str(g, i);
            sink += s.len ? (uint8_t)s.ptr[s.len - 1] : 0;
        }
        for (int64_t i = 0; i < qn_gguf_n_tensors(g); i++) {
            const qn_gguf_tensor *t = qn_gguf_tensor_at(g, i);
            if (t->nbytes) sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
            char name[64];
            memcpy(name, t->name.ptr, t->name.len);
            name[t->name.len] = '\0';
            (void)qn_gguf_find_tensor(g, name);
        }
        qn_model_config cfg;
        (void)qn_model_config_from_gguf(g, &cfg, &err);
        (void)sink;
        qn_gguf_close(g);
    }
    free(buf);
    return 0;
}
