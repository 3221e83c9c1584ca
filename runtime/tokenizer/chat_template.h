/* chat_template.h — chat prompt rendering for the common template families, without a Jinja engine.
 * Owns: the family detected from a tokenizer.chat_template source and the variant details read from it (default
 * system prompt, bos placement, trimming, [INST] spacing, where a system message goes), plus copies of the bos /
 * eos texts. Rendering reproduces what the template itself produces for plain {role, content} messages (checked
 * against Jinja2 renderings in tests/fixtures/tokenizer/chat_templates.json). Not handled: tools, multimodal parts,
 * reasoning fields, and templates whose default system prompt is computed (e.g. Mistral-Small-3.2's dated one).
 * Families: chatml ("<|im_start|>"), llama-3 ("<|start_header_id|>"), llama-2 ("[INST]" + "<<SYS>>"), mistral
 * ("[INST]" alone), gemma ("<start_of_turn>"); anything else renders as chatml with qn_chat_template_is_fallback()
 * set. Templates that reject a system message (gemma-2, Mistral v0.1/v0.2) get it merged into the next message
 * with "\n", as llama.cpp does. Immutable after creation: one template may render on many threads. */
#ifndef QN_TOK_CHAT_TEMPLATE_H
#define QN_TOK_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qn_chat_template qn_chat_template;
typedef struct qn_gguf qn_gguf;
typedef struct qn_vocab qn_vocab;

typedef enum qn_chat_family {
    QN_CHAT_FAMILY_CHATML = 1,
    QN_CHAT_FAMILY_LLAMA3 = 2,
    QN_CHAT_FAMILY_LLAMA2 = 3,
    QN_CHAT_FAMILY_MISTRAL = 4,
    QN_CHAT_FAMILY_GEMMA = 5,
} qn_chat_family;

/* One message, borrowed for the call. role is NUL-terminated; content is content_len bytes of UTF-8, which may
 * hold U+0000 (an API request may send "\u0000"); content_len 0 means NUL-terminated (strlen). */
typedef struct qn_chat_msg {
    const char *role; /* "system", "user", "assistant", ... */
    const char *content;
    size_t content_len;
} qn_chat_msg;

/* --- lifecycle --- */
/* src[0..len): the Jinja source (NULL or empty: unknown -> chatml fallback). bos / eos: the texts the template's
 * bos_token / eos_token stand for (NULL = ""). QN_ERR_NOMEM only. */
qn_status qn_chat_template_create(const char *src, size_t len, const char *bos, const char *eos,
                                  qn_chat_template **out, qn_error *err);
/* tokenizer.chat_template of g (absent: chatml fallback), with bos / eos texts from v (either may be absent). */
qn_status qn_chat_template_from_gguf(const qn_gguf *g, const qn_vocab *v, qn_chat_template **out, qn_error *err);
void qn_chat_template_destroy(qn_chat_template *t); /* NULL is a no-op */

/* --- queries --- */
qn_chat_family qn_chat_template_family(const qn_chat_template *t);
const char *qn_chat_family_name(qn_chat_family f); /* "chatml", "llama3", "llama2", "mistral", "gemma" */
/* True when the source matched no family and chatml is used instead (callers should warn once). */
bool qn_chat_template_is_fallback(const qn_chat_template *t);
/* Default system prompt the template injects when the first message is not a system one, or NULL. */
const char *qn_chat_template_default_system(const qn_chat_template *t);

/* --- rendering --- */
/* Renders msgs[0..n) (+ the assistant header when add_generation_prompt) into buf[0..cap) and NUL-terminates it;
 * *n_out = length without the NUL. QN_ERR_INVALID_ARG with the needed length in *n_out when cap <= length (buf may
 * be NULL with cap 0 to ask), or for a message with a NULL role/content. date: the "Today Date" of Llama 3.1+
 * templates, formatted like "26 Jul 2024"; NULL = the template's own default ("26 Jul 2024", or today's date for
 * templates that call strftime_now). */
qn_status qn_chat_template_apply(const qn_chat_template *t, const qn_chat_msg *msgs, size_t n,
                                 bool add_generation_prompt, const char *date, char *buf, size_t cap, size_t *n_out);
/* Same, into a malloc'd NUL-terminated string (*out; the caller frees it). */
qn_status qn_chat_template_render(const qn_chat_template *t, const qn_chat_msg *msgs, size_t n,
                                  bool add_generation_prompt, const char *date, char **out);
/* Same, and *n_out = the length without the NUL, which counts any U+0000 the contents carry (content_len). */
qn_status qn_chat_template_render_n(const qn_chat_template *t, const qn_chat_msg *msgs, size_t n,
                                    bool add_generation_prompt, const char *date, char **out, size_t *n_out);

#ifdef __cplusplus
}
#endif
#endif
