/* detok.c — the streaming detokenizer (qn_detok): a UTF-8 validator that holds back an incomplete sequence
 * across tokens, so streamed text chunks (SSE, JSON strings) are always whole code points. */
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/utf8.h"

static const char REPL[3] = {'\xEF', '\xBF', '\xBD'}; /* U+FFFD */

void qn_detok_init(qn_detok *d, const qn_vocab *v, bool special) {
    memset(d, 0, sizeof *d);
    d->vocab = v;
    d->special = special;
}

/* Runs bytes through the state machine on a copy of the state; writes to out when out != NULL (the caller has
 * checked the size with a dry run). Returns the output length. */
static size_t run(qn_detok *d, const uint8_t *b, size_t n, char *out) {
    size_t o = 0;
#define EMIT(p, k)                                  \
    do {                                            \
        if (out) memcpy(out + o, (p), (k));         \
        o += (k);                                   \
    } while (0)
    for (size_t i = 0; i < n;) {
        const uint8_t c = b[i];
        if (d->n_pend == 0) {
            const size_t len = qn_utf8_seq_len(c);
            if (len == 1) {
                EMIT(&c, 1);
            } else if (len == 0) {
                EMIT(REPL, 3); /* cannot start a sequence */
            } else {
                d->pend[0] = c;
                d->n_pend = 1;
                d->need = (uint8_t)len;
            }
            i++;
            continue;
        }
        if (qn_utf8_cont_ok(d->pend[0], d->n_pend, c)) {
            d->pend[d->n_pend++] = c;
            i++;
            if (d->n_pend == d->need) {
                EMIT(d->pend, d->n_pend);
                d->n_pend = d->need = 0;
            }
            continue;
        }
        /* proven invalid: the held prefix becomes one U+FFFD and c starts over (not consumed here) */
        EMIT(REPL, 3);
        d->n_pend = d->need = 0;
    }
#undef EMIT
    return o;
}

qn_status qn_detok_feed_bytes(qn_detok *d, const char *bytes, size_t len, char *out, int32_t cap, int32_t *n_out) {
    *n_out = 0;
    if (cap < 0 || (len > 0 && !bytes)) return QN_ERR_INVALID_ARG;
    qn_detok dry = *d;
    const size_t need = run(&dry, (const uint8_t *)bytes, len, NULL);
    if (need > INT32_MAX) return QN_ERR_OVERFLOW;
    *n_out = (int32_t)need;
    if (need > (size_t)cap) return QN_ERR_INVALID_ARG;
    run(d, (const uint8_t *)bytes, len, out);
    return QN_OK;
}

qn_status qn_detok_feed(qn_detok *d, int32_t id, char *out, int32_t cap, int32_t *n_out) {
    *n_out = 0;
    const qn_vocab *v = d->vocab;
    if (id < 0 || id >= v->n_tokens) return QN_ERR_INVALID_ARG;
    if (!d->special && (v->attr[id] & (QN_TOKATTR_UNKNOWN | QN_TOKATTR_CONTROL))) return QN_OK;
    return qn_detok_feed_bytes(d, v->pieces + v->piece_off[id], v->piece_len[id], out, cap, n_out);
}

qn_status qn_detok_flush(qn_detok *d, char *out, int32_t cap, int32_t *n_out) {
    *n_out = 0;
    if (d->n_pend == 0) return QN_OK;
    *n_out = 3;
    if (cap < 3) return QN_ERR_INVALID_ARG;
    memcpy(out, REPL, 3);
    d->n_pend = d->need = 0;
    return QN_OK;
}
