/* fuzz_spm_model.c — libFuzzer target: any byte string through qn_spm_model_parse (SentencePiece's
 * tokenizer.model reader), then every piece of what parses, and a serialize + reparse round trip that
 * must give the same pieces back. Built with -DQN_FUZZ=ON and clang; seeds in tests/fuzz/corpus_spm/.
 * Run: build-fuzz/tests/fuzz_spm_model NEW_DIR tests/fuzz/corpus_spm */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/spm_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qn_spm_model m;
    qn_error err;
    if (qn_spm_model_parse(data, size, "fuzz.model", &m, &err) != QN_OK) return 0;
    volatile uint64_t sink = 0;
    for (int64_t i = 0; i < m.n_pieces; i++) {
        const qn_spm_piece *p = &m.pieces[i];
        if (strlen(p->text) > p->len) abort(); /* NUL-terminated within its length (a piece may hold a NUL) */
        sink += p->len + (uint64_t)(int64_t)p->type;
    }
    (void)sink;
    /* what parses serializes, and the serialization parses to the same pieces */
    m.unk_id = m.bos_id = m.eos_id = m.pad_id = -1;
    m.byte_fallback = false, m.add_dummy_prefix = true;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (qn_spm_model_serialize(&m, &buf, &len, &err) == QN_OK) {
        qn_spm_model r;
        if (qn_spm_model_parse(buf, len, "fuzz.model (reparsed)", &r, &err) != QN_OK) abort();
        if (r.n_pieces != m.n_pieces) abort();
        for (int64_t i = 0; i < m.n_pieces; i++) {
            const qn_spm_piece *a = &m.pieces[i], *b = &r.pieces[i];
            if (a->len != b->len || memcmp(a->text, b->text, a->len) != 0 || a->type != b->type) abort();
            if (memcmp(&a->score, &b->score, sizeof a->score) != 0) abort();
        }
        qn_spm_model_free(&r);
        free(buf);
    }
    qn_spm_model_free(&m);
    return 0;
}
