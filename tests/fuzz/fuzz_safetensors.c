/* fuzz_safetensors.c — libFuzzer target: any byte string through qn_st_open_memory, then every
 * tensor view and metadata entry of what parses. Built with -DQN_FUZZ=ON and clang; seeds in
 * tests/fuzz/corpus_safetensors/ (without them the fuzzer rarely gets past the JSON header: jansson
 * carries no coverage). Run: build-fuzz/tests/fuzz_safetensors NEW_DIR tests/fuzz/corpus_safetensors */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    qn_st *st = NULL;
    qn_error err;
    if (qn_st_open_memory(buf, size, "fuzz.safetensors", &st, &err) == QN_OK) {
        volatile uint64_t sink = 0;
        for (int64_t i = 0; i < qn_st_n_tensors(st); i++) {
            const qn_st_tensor *t = qn_st_tensor_at(st, i);
            if (t->nbytes) sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
            if (qn_st_find(st, t->name) != t) abort();
        }
        const char *k, *v;
        for (int64_t i = 0; qn_st_metadata_at(st, i, &k, &v) == 0; i++) sink += strlen(k) + strlen(v);
        (void)sink;
        qn_st_close(st);
    }
    free(buf);
    return 0;
}
