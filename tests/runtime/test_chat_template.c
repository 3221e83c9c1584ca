/* test_chat_template.c — chat template family detection and rendering against reference renderings of real
 * templates (tests/fixtures/tokenizer/chat_templates.json, made by gen_chat_templates.py with Jinja2 as Hugging Face
 * transformers sets it up; the llama.cpp test-chat-template.cpp cases in it agree with llama.cpp's own expected
 * outputs), plus the SmolLM2 GGUF's template and the API contract.
 * QN_TEST_LABELS: cpu */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "model/gguf.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/vocab.h"

static qn_chat_family family_of(const char *name) {
    if (!strcmp(name, "chatml")) return QN_CHAT_FAMILY_CHATML;
    if (!strcmp(name, "llama3")) return QN_CHAT_FAMILY_LLAMA3;
    if (!strcmp(name, "llama2")) return QN_CHAT_FAMILY_LLAMA2;
    if (!strcmp(name, "mistral")) return QN_CHAT_FAMILY_MISTRAL;
    if (!strcmp(name, "gemma")) return QN_CHAT_FAMILY_GEMMA;
    return 0;
}

static void show(const char *what, const char *s) {
    fprintf(stderr, "    %s: \"", what);
    for (; *s; s++) {
        if (*s == '\n') fputs("\\n", stderr);
        else fputc(*s, stderr);
    }
    fputs("\"\n", stderr);
}

static char *apply_all(const qn_chat_template *t, const qn_chat_msg *m, size_t n, bool gen, const char *date) {
    size_t need = 0;
    qn_status st = qn_chat_template_apply(t, m, n, gen, date, NULL, 0, &need);
    assert_int_equal(st, QN_ERR_INVALID_ARG);
    char *buf = malloc(need + 1);
    size_t got = 0;
    assert_int_equal(qn_chat_template_apply(t, m, n, gen, date, buf, need + 1, &got), QN_OK);
    assert_int_equal(got, need);
    assert_int_equal(strlen(buf), need);
    return buf;
}

static void test_fixture(void **state) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/chat_templates.json", qn_test_source_dir());
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc) {
        fprintf(stderr, "%s: %s\n", path, jerr.text);
        fail();
    }
    const char *date = json_string_value(json_object_get(doc, "date_string"));
    json_t *tmpls = json_object_get(doc, "templates");
    json_t *cases = json_object_get(doc, "cases");
    size_t i;
    json_t *c;
    int bad = 0, n_cases = 0;
    json_array_foreach(cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "template"));
        json_t *tj = json_object_get(tmpls, name);
        const char *src = json_string_value(json_object_get(tj, "source"));
        qn_chat_template *t = NULL;
        qn_error err = {0};
        assert_int_equal(qn_chat_template_create(src, strlen(src), json_string_value(json_object_get(tj, "bos")),
                                                 json_string_value(json_object_get(tj, "eos")), &t, &err),
                         QN_OK);
        const qn_chat_family want_family = family_of(json_string_value(json_object_get(tj, "family")));
        if (qn_chat_template_family(t) != want_family || qn_chat_template_is_fallback(t)) {
            fprintf(stderr, "%s: detected %s, want %s\n", name, qn_chat_family_name(qn_chat_template_family(t)),
                    qn_chat_family_name(want_family));
            bad++;
        }
        json_t *msgs = json_object_get(c, "messages");
        qn_chat_msg m[16];
        size_t n = json_array_size(msgs);
        assert_true(n <= 16);
        for (size_t k = 0; k < n; k++) {
            json_t *pair = json_array_get(msgs, k);
            m[k].role = json_string_value(json_array_get(pair, 0));
            m[k].content = json_string_value(json_array_get(pair, 1));
            m[k].content_len = 0; /* NUL-terminated */
        }
        const bool gen = json_is_true(json_object_get(c, "add_generation_prompt"));
        const char *want = json_string_value(json_object_get(c, "expected"));
        char *got = apply_all(t, m, n, gen, date);
        if (strcmp(got, want) != 0) {
            fprintf(stderr, "%s, conversation %s%s:\n", name, json_string_value(json_object_get(c, "conversation")),
                    json_is_true(json_object_get(c, "polyfill")) ? " (system merged)" : "");
            show("want", want);
            show("got ", got);
            bad++;
        }
        n_cases++;
        free(got);
        qn_chat_template_destroy(t);
    }
    fprintf(stderr, "%d template cases, %d failures\n", n_cases, bad);
    json_decref(doc);
    assert_true(n_cases > 50);
    assert_int_equal(bad, 0);
}

/* SmolLM2's own template from the GGUF: default system prompt injected when the first message is not a system
 * one. Expected strings written from the template text (tokenizer.chat_template, read with gguf.GGUFReader). */
static void test_smollm2_gguf(void **state) {
    const char *path = qn_test_default_model();
    if (!path) skip();
    qn_gguf *g = NULL;
    qn_vocab *v = NULL;
    qn_chat_template *t = NULL;
    qn_error err = {0};
    assert_int_equal(qn_gguf_open(path, &g, &err), QN_OK);
    assert_int_equal(qn_vocab_from_gguf(g, &v, &err), QN_OK);
    assert_int_equal(qn_chat_template_from_gguf(g, v, &t, &err), QN_OK);
    assert_int_equal(qn_chat_template_family(t), QN_CHAT_FAMILY_CHATML);
    assert_false(qn_chat_template_is_fallback(t));
    assert_string_equal(qn_chat_template_default_system(t),
                        "You are a helpful AI assistant named SmolLM, trained by Hugging Face");

    const qn_chat_msg user[] = {{"user", "What is the capital of France?", 0}};
    char *s = apply_all(t, user, 1, true, NULL);
    assert_string_equal(s, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
                           "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                           "<|im_start|>assistant\n");
    /* the rendered prompt tokenizes with <|im_start|> / <|im_end|> as single control tokens */
    int32_t ids[128], n_ids = 0;
    assert_int_equal(qn_vocab_tokenize(v, s, strlen(s), true, true, ids, 128, &n_ids), QN_OK);
    assert_int_equal(ids[0], 1);
    int n_end = 0;
    for (int32_t i = 0; i < n_ids; i++) n_end += ids[i] == 2;
    assert_int_equal(n_end, 2);
    free(s);

    const qn_chat_msg sys[] = {{"system", "Be terse.", 0}, {"user", "Hi", 0}};
    s = apply_all(t, sys, 2, false, NULL);
    assert_string_equal(s, "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    free(s);
    s = apply_all(t, NULL, 0, true, NULL);
    assert_string_equal(s, "<|im_start|>assistant\n");
    free(s);

    qn_chat_template_destroy(t);
    qn_vocab_destroy(v);
    qn_gguf_close(g);
}

static void test_detection(void **state) {
    static const struct {
        const char *src;
        qn_chat_family family;
        bool fallback;
    } cases[] = {
        {"{{ '<|im_start|>' + m }}", QN_CHAT_FAMILY_CHATML, false},
        {"{{ '<|start_header_id|>' }}", QN_CHAT_FAMILY_LLAMA3, false},
        {"{{ '[INST] <<SYS>>' }}", QN_CHAT_FAMILY_LLAMA2, false},
        {"{{ '[INST] ' + x + ' [/INST]' }}", QN_CHAT_FAMILY_MISTRAL, false},
        {"{{ '<start_of_turn>' }}", QN_CHAT_FAMILY_GEMMA, false},
        {"{{ 'USER: ' + content }}", QN_CHAT_FAMILY_CHATML, true},
        {"", QN_CHAT_FAMILY_CHATML, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qn_chat_template *t = NULL;
        assert_int_equal(qn_chat_template_create(cases[i].src, strlen(cases[i].src), "<s>", "</s>", &t, NULL), QN_OK);
        assert_int_equal(qn_chat_template_family(t), cases[i].family);
        assert_int_equal(qn_chat_template_is_fallback(t), cases[i].fallback);
        qn_chat_template_destroy(t);
    }
    /* the fallback renders plain chatml */
    qn_chat_template *t = NULL;
    assert_int_equal(qn_chat_template_create(NULL, 0, NULL, NULL, &t, NULL), QN_OK);
    const qn_chat_msg m[] = {{"user", "x", 0}};
    char *s = apply_all(t, m, 1, true, NULL);
    assert_string_equal(s, "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n");
    free(s);
    /* contract: capacity and bad messages */
    char small[8];
    size_t n = 0;
    assert_int_equal(qn_chat_template_apply(t, m, 1, true, NULL, small, sizeof small, &n), QN_ERR_INVALID_ARG);
    assert_int_equal(n, strlen("<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"));
    const qn_chat_msg bad[] = {{"user", NULL, 0}};
    assert_int_equal(qn_chat_template_apply(t, bad, 1, true, NULL, small, sizeof small, &n), QN_ERR_INVALID_ARG);
    /* content_len: a content holding U+0000 (an API prompt may) is rendered whole, not cut at the NUL */
    const qn_chat_msg nul[] = {{"user", "a\0b", 3}};
    const char want_nul[] = "<|im_start|>user\na\0b<|im_end|>\n<|im_start|>assistant\n";
    char big[128];
    assert_int_equal(qn_chat_template_apply(t, nul, 1, true, NULL, big, sizeof big, &n), QN_OK);
    assert_int_equal(n, sizeof want_nul - 1);
    assert_memory_equal(big, want_nul, sizeof want_nul);
    char *rendered = NULL;
    size_t rendered_len = 0;
    assert_int_equal(qn_chat_template_render_n(t, nul, 1, true, NULL, &rendered, &rendered_len), QN_OK);
    assert_int_equal(rendered_len, sizeof want_nul - 1);
    assert_memory_equal(rendered, want_nul, sizeof want_nul);
    free(rendered);
    qn_chat_template_destroy(t);
    qn_chat_template_destroy(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture),
        cmocka_unit_test(test_smollm2_gguf),
        cmocka_unit_test(test_detection),
    };
    return cmocka_run_group_tests_name("chat_template", tests, NULL, NULL);
}
