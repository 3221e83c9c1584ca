/* test_api_json.c — request parsing (every field shape), validation errors (type + param), chunk and
 * response JSON framing, the error envelope, UTF-8 sanitizing. No engine, no sockets.
 * QN_TEST_LABELS: cpu */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/api_json.h"
#include "tests/fuzz/api_contract.h"

static int parse(qn_api_kind k, const char *body, qn_api_request *r, qn_api_error *e) {
    return qn_api_parse_request(k, body, strlen(body), NULL, r, e);
}

static void expect_err(qn_api_kind k, const char *body, int status, const char *type, const char *param) {
    qn_api_request r;
    qn_api_error e;
    if (parse(k, body, &r, &e) == 0) {
        qn_api_request_free(&r);
        fail_msg("accepted: %s", body);
    }
    if (e.status != status || strcmp(e.type, type) || (param && strcmp(e.param, param)))
        fail_msg("%s -> %d %s param='%s' (%s); want %d %s '%s'", body, e.status, e.type, e.param, e.message, status, type,
                 param ? param : "(any)");
    if (!param && e.param[0]) fail_msg("%s -> unexpected param '%s'", body, e.param);
}

static void test_chat_fields(void **state) {
    (void)state;
    qn_api_request r;
    qn_api_error e;
    const char *body =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}],"
        "\"temperature\":0,\"top_p\":0.9,\"top_k\":-1,\"min_p\":0.05,\"repetition_penalty\":1.1,"
        "\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,\"seed\":-3,\"max_tokens\":10,"
        "\"max_completion_tokens\":20,\"min_tokens\":2,\"ignore_eos\":true,\"skip_special_tokens\":false,"
        "\"include_stop_str_in_output\":true,\"stop\":[\"x\",\"\",\"yy\"],\"stop_token_ids\":[7,8],"
        "\"logit_bias\":{\"5\":-100,\"6\":2.5},\"n\":3,\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true,\"continuous_usage_stats\":true},"
        "\"logprobs\":true,\"top_logprobs\":4,\"response_format\":{\"type\":\"json_object\"},"
        "\"user\":\"u\",\"metadata\":{},\"tools\":[],\"some_future_field\":[1,2,3]}";
    assert_int_equal(parse(QN_API_CHAT, body, &r, &e), 0);
    assert_string_equal(r.model, "m");
    assert_int_equal(r.n_messages, 3);
    assert_string_equal(r.messages[1].content, "a\nb");
    assert_string_equal(r.messages[2].content, "");
    assert_string_equal(r.messages[2].role, "assistant");
    const qn_sampling_params *s = &r.sampling;
    assert_true(s->temperature == 0.0f);
    assert_true(s->top_p > 0.89f && s->top_p < 0.91f);
    assert_int_equal(s->top_k, 0);
    assert_true(s->min_p > 0.04f && s->min_p < 0.06f);
    assert_true(s->repetition_penalty > 1.09f);
    assert_true(s->presence_penalty == 0.5f && s->frequency_penalty == -0.5f);
    assert_true(s->has_seed);
    assert_true((int64_t)s->seed == -3);
    assert_true(r.max_tokens_set);
    assert_int_equal(s->max_tokens, 20); /* max_completion_tokens wins */
    assert_int_equal(s->min_tokens, 2);
    assert_true(s->ignore_eos && !s->skip_special_tokens && s->include_stop_str_in_output);
    assert_int_equal(s->n_stop, 2); /* the empty stop string is dropped */
    assert_string_equal(s->stop[0], "x");
    assert_string_equal(s->stop[1], "yy");
    assert_int_equal(s->n_stop_token_ids, 2);
    assert_int_equal(s->stop_token_ids[1], 8);
    assert_int_equal(s->n_logit_bias, 2);
    assert_int_equal(r.n, 3);
    assert_true(r.stream && r.include_usage && r.continuous_usage);
    assert_int_equal(s->logprobs, 4);
    assert_string_equal(s->response_format, "{\"type\":\"json_object\"}");
    qn_api_request_free(&r);

    /* defaults */
    assert_int_equal(parse(QN_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r, &e), 0);
    assert_true(r.sampling.temperature == 1.0f && r.sampling.top_p == 1.0f && r.sampling.repetition_penalty == 1.0f);
    assert_false(r.max_tokens_set);
    assert_false(r.sampling.has_seed);
    assert_int_equal(r.sampling.logprobs, -1);
    assert_int_equal(r.n, 1);
    assert_false(r.stream);
    assert_true(r.sampling.skip_special_tokens);
    assert_true(r.add_generation_prompt);
    assert_null(r.model);
    assert_null(r.sampling.response_format);
    qn_api_request_free(&r);

    /* max_tokens alone, stop as a string, integral real accepted for ints, nulls are defaults */
    assert_int_equal(parse(QN_API_CHAT,
                           "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":7.0,\"stop\":\"END\","
                           "\"temperature\":null,\"n\":null,\"response_format\":{\"type\":\"text\"}}",
                           &r, &e),
                     0);
    assert_int_equal(r.sampling.max_tokens, 7);
    assert_int_equal(r.sampling.n_stop, 1);
    assert_string_equal(r.sampling.stop[0], "END");
    assert_true(r.sampling.temperature == 1.0f);
    assert_null(r.sampling.response_format);
    qn_api_request_free(&r);
}

static void test_chat_errors(void **state) {
    (void)state;
    const qn_api_kind C = QN_API_CHAT;
    const char *inv = QN_API_ERR_INVALID;
    expect_err(C, "", 400, inv, NULL);
    expect_err(C, "{", 400, inv, NULL);
    expect_err(C, "[]", 400, inv, NULL);
    expect_err(C, "{}", 400, inv, "messages");
    expect_err(C, "{\"messages\":{}}", 400, inv, "messages");
    expect_err(C, "{\"messages\":[]}", 400, inv, "messages");
    expect_err(C, "{\"messages\":[5]}", 400, inv, "messages[0]");
    expect_err(C, "{\"messages\":[{\"content\":\"x\"}]}", 400, inv, "messages[0].role");
    expect_err(C, "{\"messages\":[{\"role\":\"user\",\"content\":{}}]}", 400, inv, "messages[0].content");
    expect_err(C, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]}", 400, inv,
               "messages[0].content[0].text");
    expect_err(C, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}", 400,
               QN_API_ERR_NOT_SUPPORTED, "messages[0].content[0].type");
    const char *m = "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]";
    struct {
        const char *field;
        const char *param;
    } bad[] = {
        {"\"temperature\":\"1\"", "temperature"},
        {"\"temperature\":-0.1", "temperature"},
        {"\"top_p\":0", "top_p"},
        {"\"top_p\":1.5", "top_p"},
        {"\"top_k\":-2", "top_k"},
        {"\"top_k\":1.5", "top_k"},
        {"\"min_p\":2", "min_p"},
        {"\"repetition_penalty\":0", "repetition_penalty"},
        {"\"presence_penalty\":3", "presence_penalty"},
        {"\"frequency_penalty\":true", "frequency_penalty"},
        {"\"seed\":\"s\"", "seed"},
        {"\"max_tokens\":0", "max_tokens"},
        {"\"max_tokens\":\"5\"", "max_tokens"},
        {"\"max_completion_tokens\":-1", "max_completion_tokens"},
        {"\"max_tokens\":3,\"min_tokens\":5", "min_tokens"},
        {"\"ignore_eos\":1", "ignore_eos"},
        {"\"stop\":5", "stop"},
        {"\"stop\":[\"a\",5]", "stop"},
        {"\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]", "stop"},
        {"\"stop_token_ids\":[-1]", "stop_token_ids"},
        {"\"logit_bias\":{\"abc\":1}", "logit_bias"},
        {"\"logit_bias\":{\"1\":500}", "logit_bias"},
        {"\"n\":0", "n"},
        {"\"n\":17", "n"},
        {"\"stream\":\"yes\"", "stream"},
        {"\"stream_options\":[]", "stream_options"},
        {"\"stream_options\":{\"include_usage\":\"y\"}", "stream_options.include_usage"},
        {"\"logprobs\":1", "logprobs"},
        {"\"top_logprobs\":3", "top_logprobs"},
        {"\"logprobs\":true,\"top_logprobs\":21", "top_logprobs"},
        {"\"response_format\":{\"type\":\"yaml\"}", "response_format.type"},
        {"\"response_format\":\"json\"", "response_format"},
        {"\"model\":5", "model"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "{%s,%s}", m, bad[i].field);
        expect_err(C, body, 400, inv, bad[i].param);
    }
    expect_err(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"best_of\":3}", 400, QN_API_ERR_NOT_SUPPORTED,
               "best_of");
}

static void test_completion_prompts(void **state) {
    (void)state;
    qn_api_request r;
    qn_api_error e;
    assert_int_equal(parse(QN_API_COMPLETION, "{\"prompt\":\"hello\"}", &r, &e), 0);
    assert_int_equal(r.n_prompts, 1);
    assert_string_equal(r.prompts[0].text, "hello");
    assert_int_equal(r.prompts[0].text_len, 5);
    qn_api_request_free(&r);
    assert_int_equal(parse(QN_API_COMPLETION, "{\"prompt\":[\"a\",\"\",\"ccc\"]}", &r, &e), 0);
    assert_int_equal(r.n_prompts, 3);
    assert_string_equal(r.prompts[2].text, "ccc");
    assert_string_equal(r.prompts[1].text, "");
    qn_api_request_free(&r);
    assert_int_equal(parse(QN_API_COMPLETION, "{\"prompt\":[1,2,3]}", &r, &e), 0);
    assert_int_equal(r.n_prompts, 1);
    assert_null(r.prompts[0].text);
    assert_int_equal(r.prompts[0].n_tokens, 3);
    assert_int_equal(r.prompts[0].tokens[2], 3);
    qn_api_request_free(&r);
    assert_int_equal(parse(QN_API_COMPLETION, "{\"prompt\":[[1,2],[3]],\"logprobs\":2,\"echo\":false}", &r, &e), 0);
    assert_int_equal(r.n_prompts, 2);
    assert_int_equal(r.prompts[1].n_tokens, 1);
    assert_int_equal(r.sampling.logprobs, 2);
    qn_api_request_free(&r);
    assert_int_equal(parse(QN_API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":null}", &r, &e), 0);
    assert_int_equal(r.sampling.logprobs, -1);
    qn_api_request_free(&r);

    const qn_api_kind P = QN_API_COMPLETION;
    const char *inv = QN_API_ERR_INVALID;
    expect_err(P, "{}", 400, inv, "prompt");
    expect_err(P, "{\"prompt\":5}", 400, inv, "prompt");
    expect_err(P, "{\"prompt\":[]}", 400, inv, "prompt");
    expect_err(P, "{\"prompt\":[1,\"a\"]}", 400, inv, "prompt");
    expect_err(P, "{\"prompt\":[\"a\",1]}", 400, inv, "prompt[1]");
    expect_err(P, "{\"prompt\":[[1],\"a\"]}", 400, inv, "prompt[1]");
    expect_err(P, "{\"prompt\":[[1],[]]}", 400, inv, "prompt[1]");
    expect_err(P, "{\"prompt\":[-1]}", 400, inv, "prompt");
    expect_err(P, "{\"prompt\":[1.5]}", 400, inv, "prompt");
    expect_err(P, "{\"prompt\":[3000000000]}", 400, inv, "prompt");
    expect_err(P, "{\"prompt\":\"a\",\"logprobs\":21}", 400, inv, "logprobs");
    expect_err(P, "{\"prompt\":\"a\",\"echo\":true}", 400, QN_API_ERR_NOT_SUPPORTED, "echo");
    expect_err(P, "{\"prompt\":\"a\",\"suffix\":\"b\"}", 400, QN_API_ERR_NOT_SUPPORTED, "suffix");
}

static void test_ollama_requests(void **state) {
    (void)state;
    qn_api_request r;
    qn_api_error e;
    assert_int_equal(parse(QN_API_OLLAMA_GENERATE,
                           "{\"model\":\"m\",\"prompt\":\"p\",\"system\":\"s\",\"keep_alive\":\"5m\","
                           "\"options\":{\"temperature\":0.2,\"top_k\":40,\"num_predict\":12,\"seed\":5,"
                           "\"stop\":[\"\\n\"],\"repeat_penalty\":1.2,\"num_ctx\":4096},\"format\":\"json\"}",
                           &r, &e),
                     0);
    assert_true(r.stream); /* Ollama default */
    assert_int_equal(r.n_messages, 2);
    assert_string_equal(r.messages[0].role, "system");
    assert_string_equal(r.messages[1].content, "p");
    assert_int_equal(r.sampling.top_k, 40);
    assert_int_equal(r.sampling.max_tokens, 12);
    assert_true(r.max_tokens_set);
    assert_int_equal(r.sampling.n_stop, 1);
    assert_true(r.sampling.repetition_penalty > 1.19f);
    assert_string_equal(r.sampling.response_format, "{\"type\":\"json_object\"}");
    qn_api_request_free(&r);
    assert_int_equal(parse(QN_API_OLLAMA_GENERATE, "{\"prompt\":\"p\",\"raw\":true,\"stream\":false,"
                                                   "\"options\":{\"num_predict\":-1}}", &r, &e), 0);
    assert_false(r.stream);
    assert_int_equal(r.n_prompts, 1);
    assert_int_equal(r.n_messages, 0);
    assert_false(r.max_tokens_set);
    qn_api_request_free(&r);
    assert_int_equal(parse(QN_API_OLLAMA_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r, &e), 0);
    assert_int_equal(r.n_messages, 1);
    qn_api_request_free(&r);
    assert_int_equal(parse(QN_API_OLLAMA_CHAT, "{\"model\":\"m\"}", &r, &e), 0); /* load request */
    assert_int_equal(r.n_messages, 0);
    qn_api_request_free(&r);
    expect_err(QN_API_OLLAMA_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"images\":[\"b64\"]}]}", 400,
               QN_API_ERR_NOT_SUPPORTED, "messages[0].images");
    expect_err(QN_API_OLLAMA_GENERATE, "{\"prompt\":\"p\",\"options\":{\"temperature\":\"hot\"}}", 400,
               QN_API_ERR_INVALID, "options.temperature");
    expect_err(QN_API_OLLAMA_GENERATE, "{\"prompt\":\"p\",\"options\":5}", 400, QN_API_ERR_INVALID, "options");
    expect_err(QN_API_OLLAMA_GENERATE, "{\"prompt\":5}", 400, QN_API_ERR_INVALID, "prompt");
}

static void test_tokenize_shapes(void **state) {
    (void)state;
    qn_api_tokenize_req t;
    qn_api_error e;
    const char *b1 = "{\"content\":\"hi\",\"with_pieces\":true}";
    assert_int_equal(qn_api_parse_tokenize(b1, strlen(b1), &t, &e), 0);
    assert_string_equal(t.text, "hi");
    assert_false(t.add_special);
    assert_true(t.parse_special);
    assert_true(t.with_pieces);
    qn_api_tokenize_req_free(&t);
    const char *b2 = "{\"model\":\"m\",\"prompt\":\"hi\",\"return_token_strs\":true}";
    assert_int_equal(qn_api_parse_tokenize(b2, strlen(b2), &t, &e), 0);
    assert_true(t.add_special);
    assert_true(t.return_token_strs);
    qn_api_tokenize_req_free(&t);
    const char *b3 = "{\"prompt\":\"hi\",\"add_special_tokens\":false}";
    assert_int_equal(qn_api_parse_tokenize(b3, strlen(b3), &t, &e), 0);
    assert_false(t.add_special);
    qn_api_tokenize_req_free(&t);
    const char *b4 = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"add_generation_prompt\":false}";
    assert_int_equal(qn_api_parse_tokenize(b4, strlen(b4), &t, &e), 0);
    assert_int_equal(t.n_messages, 1);
    assert_false(t.add_generation_prompt);
    qn_api_tokenize_req_free(&t);
    const char *b5 = "{\"content\":[1]}";
    assert_int_equal(qn_api_parse_tokenize(b5, strlen(b5), &t, &e), -1);
    assert_string_equal(e.param, "content");
    const char *b6 = "{}";
    assert_int_equal(qn_api_parse_tokenize(b6, strlen(b6), &t, &e), -1);

    int32_t *ids;
    size_t n;
    const char *d1 = "{\"tokens\":[1,2,3]}";
    assert_int_equal(qn_api_parse_detokenize(d1, strlen(d1), &ids, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[2], 3);
    free(ids);
    const char *d2 = "{\"tokens\":[1,\"x\"]}";
    assert_int_equal(qn_api_parse_detokenize(d2, strlen(d2), &ids, &n, &e), -1);
    assert_string_equal(e.param, "tokens");
}

static json_t *dump_load(json_t *j) { /* round trip through the compact serializer */
    size_t len;
    char *s = qn_api_dump(j, &len);
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    assert_null(strchr(s, '\n'));
    json_t *back = json_loads(s, 0, NULL);
    assert_non_null(back);
    free(s);
    json_decref(j);
    return back;
}

/* "\u0000" in texts: vLLM's random dataset decodes random token ids, byte 0x00 among them, so `vllm bench serve`
 * sends it. Prompts and message contents keep it (with their lengths); fields kept as C strings reject it. */
static void test_nul_in_strings(void **state) {
    (void)state;
    qn_api_request r;
    qn_api_error e;
    assert_int_equal(parse(QN_API_COMPLETION, "{\"prompt\":\"a\\u0000b\",\"max_tokens\":2}", &r, &e), 0);
    assert_int_equal(r.prompts[0].text_len, 3);
    assert_memory_equal(r.prompts[0].text, "a\0b", 4);
    qn_api_request_free(&r);
    assert_int_equal(parse(QN_API_COMPLETION, "{\"prompt\":[\"x\\u0000\",\"y\"]}", &r, &e), 0);
    assert_int_equal(r.prompts[0].text_len, 2);
    assert_int_equal(r.prompts[1].text_len, 1);
    qn_api_request_free(&r);
    assert_int_equal(parse(QN_API_CHAT,
                           "{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"},{\"role\":\"user\",\"content\":"
                           "[{\"type\":\"text\",\"text\":\"c\\u0000\"},{\"type\":\"text\",\"text\":\"d\"}]},"
                           "{\"role\":\"assistant\",\"content\":\"plain\"}]}",
                           &r, &e),
                     0);
    assert_int_equal(r.messages[0].content_len, 3);
    assert_memory_equal(r.messages[0].content, "a\0b", 4);
    assert_int_equal(r.messages[1].content_len, 4);
    assert_memory_equal(r.messages[1].content, "c\0\nd", 5);
    assert_int_equal(r.messages[2].content_len, 5);
    qn_api_request_free(&r);
    assert_int_equal(parse(QN_API_OLLAMA_GENERATE, "{\"prompt\":\"p\\u0000q\",\"system\":\"s\\u0000\"}", &r, &e), 0);
    assert_int_equal(r.n_messages, 2);
    assert_int_equal(r.messages[0].content_len, 2);
    assert_int_equal(r.messages[1].content_len, 3);
    qn_api_request_free(&r);
    assert_int_equal(parse(QN_API_OLLAMA_GENERATE, "{\"prompt\":\"p\\u0000q\",\"raw\":true}", &r, &e), 0);
    assert_int_equal(r.prompts[0].text_len, 3);
    qn_api_request_free(&r);
    qn_api_tokenize_req t;
    const char *tb = "{\"prompt\":\"a\\u0000b\"}";
    assert_int_equal(qn_api_parse_tokenize(tb, strlen(tb), &t, &e), 0);
    assert_int_equal(t.text_len, 3);
    qn_api_tokenize_req_free(&t);
    const char *inv = QN_API_ERR_INVALID;
    expect_err(QN_API_COMPLETION, "{\"model\":\"m\\u0000\",\"prompt\":\"p\"}", 400, inv, "model");
    expect_err(QN_API_CHAT, "{\"messages\":[{\"role\":\"us\\u0000er\",\"content\":\"x\"}]}", 400, inv, "messages[0].role");
    expect_err(QN_API_COMPLETION, "{\"prompt\":\"p\",\"stop\":\"x\\u0000\"}", 400, inv, "stop");
    expect_err(QN_API_COMPLETION, "{\"prompt\":\"p\",\"stop\":[\"x\",\"y\\u0000\"]}", 400, inv, "stop[1]");
}

static void test_chunks(void **state) {
    (void)state;
    qn_api_meta m = {.id = "chatcmpl-abc", .model = "mod", .created = 1700000000};
    json_t *c = dump_load(qn_api_chat_chunk(&m, 0, "assistant", "", 0, NULL, NULL, NULL, NULL));
    assert_string_equal(json_string_value(json_object_get(c, "object")), "chat.completion.chunk");
    assert_string_equal(json_string_value(json_object_get(c, "id")), "chatcmpl-abc");
    assert_int_equal(json_integer_value(json_object_get(c, "created")), 1700000000);
    assert_true(json_is_null(json_object_get(c, "usage")));
    json_t *ch = json_array_get(json_object_get(c, "choices"), 0);
    assert_int_equal(json_integer_value(json_object_get(ch, "index")), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ch, "delta"), "role")), "assistant");
    assert_true(json_is_null(json_object_get(ch, "finish_reason")));
    assert_true(json_is_null(json_object_get(ch, "logprobs")));
    assert_null(json_object_get(ch, "stop_reason"));
    json_decref(c);

    c = dump_load(qn_api_chat_chunk(&m, 2, NULL, NULL, 0, NULL, "stop", qn_api_stop_reason_json(NULL, 2), NULL));
    ch = json_array_get(json_object_get(c, "choices"), 0);
    assert_int_equal(json_object_size(json_object_get(ch, "delta")), 0); /* {} */
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "stop");
    assert_int_equal(json_integer_value(json_object_get(ch, "stop_reason")), 2);
    json_decref(c);

    c = dump_load(qn_api_usage_chunk(&m, QN_API_CHAT, qn_api_usage_json(10, 5, 3)));
    assert_int_equal(json_array_size(json_object_get(c, "choices")), 0);
    assert_true(json_is_array(json_object_get(c, "choices")));
    json_t *u = json_object_get(c, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 15);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens")), 3);
    json_decref(c);

    qn_api_meta mc = {.id = "cmpl-1", .model = "mod", .created = 1};
    c = dump_load(qn_api_completion_chunk(&mc, 1, "he\"llo\n", 7, NULL, "length", json_null(), NULL));
    assert_string_equal(json_string_value(json_object_get(c, "object")), "text_completion");
    ch = json_array_get(json_object_get(c, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(ch, "text")), "he\"llo\n");
    assert_true(json_is_null(json_object_get(ch, "stop_reason")));
    json_decref(c);

    /* full responses */
    json_t *choices = json_array();
    json_array_append_new(choices, qn_api_chat_choice(0, "hi", 2, NULL, "length", NULL));
    c = dump_load(qn_api_response(&m, QN_API_CHAT, choices, qn_api_usage_json(1, 2, 0)));
    assert_string_equal(json_string_value(json_object_get(c, "object")), "chat.completion");
    ch = json_array_get(json_object_get(c, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ch, "message"), "content")), "hi");
    assert_string_equal(json_string_value(json_object_get(json_object_get(ch, "message"), "role")), "assistant");
    json_decref(c);

    /* logprobs shapes */
    qn_token_logprob s = {42, -0.5f, "ab", 2};
    qn_token_logprob top[2] = {{42, -0.5f, "ab", 2}, {7, -2.0f, "\xe2\x82", 2}};
    c = dump_load(qn_api_chat_logprob_entry(&s, top, 2));
    assert_string_equal(json_string_value(json_object_get(c, "token")), "ab");
    assert_int_equal(json_array_size(json_object_get(c, "bytes")), 2);
    json_t *t1 = json_array_get(json_object_get(c, "top_logprobs"), 1);
    assert_string_equal(json_string_value(json_object_get(t1, "token")), "\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(c);
    json_t *lp = qn_api_completion_logprobs_new();
    qn_api_completion_logprobs_append(lp, &s, top, 2, 0);
    qn_api_completion_logprobs_append(lp, &s, top, 1, 2);
    c = dump_load(lp);
    assert_int_equal(json_array_size(json_object_get(c, "tokens")), 2);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(c, "text_offset"), 1)), 2);
    assert_true(json_is_object(json_array_get(json_object_get(c, "top_logprobs"), 0)));
    json_decref(c);

    /* Ollama */
    qn_api_ollama_final f = {.done_reason = "stop", .total_duration_ns = 5, .eval_count = 3, .prompt_eval_count = 4};
    c = dump_load(qn_api_ollama_chunk("m", "2024-01-01T00:00:00.000000Z", true, "", 0, &f));
    assert_true(json_is_true(json_object_get(c, "done")));
    assert_int_equal(json_integer_value(json_object_get(c, "eval_count")), 3);
    assert_string_equal(json_string_value(json_object_get(json_object_get(c, "message"), "role")), "assistant");
    json_decref(c);
    c = dump_load(qn_api_ollama_chunk("m", "t", false, "x", 1, NULL));
    assert_true(json_is_false(json_object_get(c, "done")));
    assert_string_equal(json_string_value(json_object_get(c, "response")), "x");
    json_decref(c);
    char at[48];
    qn_api_rfc3339_now(at, sizeof at);
    assert_int_equal(strlen(at), 27);
    assert_true(at[4] == '-' && at[10] == 'T' && at[26] == 'Z');
}

static void test_error_envelope(void **state) {
    (void)state;
    qn_api_error e;
    assert_int_equal(qn_api_error_set(&e, 400, QN_API_ERR_INVALID, "temperature", "bad %s", "value"), -1);
    json_t *j = dump_load(qn_api_error_json(&e));
    json_t *in = json_object_get(j, "error");
    assert_int_equal(json_object_size(j), 1);
    assert_string_equal(json_string_value(json_object_get(in, "message")), "bad value");
    assert_string_equal(json_string_value(json_object_get(in, "type")), "invalid_request_error");
    assert_string_equal(json_string_value(json_object_get(in, "param")), "temperature");
    assert_int_equal(json_integer_value(json_object_get(in, "code")), 400);
    assert_null(json_object_get(in, "n_ctx"));
    json_decref(j);
    qn_api_error_set(&e, 401, QN_API_ERR_AUTH, NULL, "no");
    j = dump_load(qn_api_error_json(&e));
    assert_true(json_is_null(json_object_get(json_object_get(j, "error"), "param")));
    json_decref(j);
    qn_api_error_set(&e, 400, QN_API_ERR_CONTEXT, "messages", "too long");
    e.n_prompt_tokens = 300;
    e.n_ctx = 256;
    j = dump_load(qn_api_error_json(&e));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "error"), "n_ctx")), 256);
    json_decref(j);
    struct {
        qn_status st;
        int status;
        const char *type;
    } map[] = {{QN_ERR_BUSY, 429, QN_API_ERR_RATE},
               {QN_ERR_CONTEXT, 400, QN_API_ERR_CONTEXT},
               {QN_ERR_INVALID_ARG, 400, QN_API_ERR_INVALID},
               {QN_ERR_UNSUPPORTED, 400, QN_API_ERR_NOT_SUPPORTED},
               {QN_ERR_CUDA, 500, QN_API_ERR_SERVER},
               {QN_ERR_ABORTED, 503, QN_API_ERR_UNAVAILABLE}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        qn_api_error_from_status(&e, map[i].st, NULL);
        assert_int_equal(e.status, map[i].status);
        assert_string_equal(e.type, map[i].type);
        assert_true(e.message[0] != '\0');
    }
}

static void test_utf8(void **state) {
    (void)state;
    json_t *s = qn_api_string("ok \xc3\xa9", 5);
    assert_string_equal(json_string_value(s), "ok \xc3\xa9");
    json_decref(s);
    s = qn_api_string("a\xffz\xc3", 4); /* stray byte + truncated sequence */
    assert_string_equal(json_string_value(s), "a\xef\xbf\xbdz\xef\xbf\xbd");
    json_decref(s);
    s = qn_api_string("\xed\xa0\x80", 3); /* a surrogate is not valid UTF-8 */
    assert_string_equal(json_string_value(s), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(s);
    s = qn_api_string("\xc0\xaf", 2); /* overlong */
    assert_string_equal(json_string_value(s), "\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(s);
    s = qn_api_string("nul\0in", 6);
    assert_int_equal(json_string_length(s), 6);
    json_decref(s);
    assert_int_equal(qn_utf8_complete_prefix("abc", 3), 3);
    assert_int_equal(qn_utf8_complete_prefix("ab\xc3", 3), 2);
    assert_int_equal(qn_utf8_complete_prefix("ab\xc3\xa9", 4), 4);
    assert_int_equal(qn_utf8_complete_prefix("\xe2\x82", 2), 0);
    assert_int_equal(qn_utf8_complete_prefix("\xe2\x82\xac", 3), 3);
    assert_int_equal(qn_utf8_complete_prefix("x\xf0\x9f\x98", 4), 1);
    assert_int_equal(qn_utf8_complete_prefix("", 0), 0);
}

/* Random bytes and random JSON-ish documents never crash the parsers. */
static void test_fuzz_parsers(void **state) {
    (void)state;
    qn_rng rng;
    qn_rng_seed(&rng, 42);
    const char *alphabet = "{}[]\":,0123456789-.eEtrufalsn \\u\"messages\"\"role\"\"content\"\"prompt\"";
    size_t al = strlen(alphabet);
    char buf[256];
    for (int it = 0; it < 20000; it++) {
        size_t n = (size_t)(qn_rng_u64(&rng) % sizeof buf);
        if (it % 2) {
            qn_rng_fill_bytes(&rng, buf, n);
        } else {
            for (size_t i = 0; i < n; i++) buf[i] = alphabet[qn_rng_u64(&rng) % al];
        }
        qn_api_request r;
        qn_api_error e;
        for (int k = 0; k < 4; k++)
            if (qn_api_parse_request((qn_api_kind)k, buf, n, NULL, &r, &e) == 0) qn_api_request_free(&r);
        qn_api_tokenize_req t;
        if (qn_api_parse_tokenize(buf, n, &t, &e) == 0) qn_api_tokenize_req_free(&t);
        int32_t *ids;
        size_t ni;
        if (qn_api_parse_detokenize(buf, n, &ids, &ni, &e) == 0) free(ids);
    }
}

/* One fuzz-corpus input (tests/fuzz/corpus_api/, fuzz_api_json.c's form) through its parser; fails the test if
 * api_contract.h breaks. Returns the parser's rc. */
static int replay_api(const uint8_t *in, size_t size) {
    int rc;
    const char *bad = qn_api_contract_run(in, size, &rc);
    if (bad) fail_msg("input '%.*s' (parser %d): %s", (int)(size < 300 ? size : 300), (const char *)in, in[0] % 6, bad);
    return rc;
}

/* The end of the JSON value that starts at s[i] (a string, an array or object with what it nests, or a scalar). */
static size_t json_value_end(const uint8_t *s, size_t len, size_t i) {
    int depth = 0;
    bool str = false;
    for (; i < len; i++) {
        const uint8_t c = s[i];
        if (str) {
            if (c == '\\') i++;
            else if (c == '"') {
                str = false;
                if (depth == 0) return i + 1;
            }
        } else if (c == '"') {
            str = true;
        } else if (c == '[' || c == '{') {
            depth++;
        } else if (c == ']' || c == '}') {
            if (depth == 0) return i; /* a scalar ends at its container's close */
            if (--depth == 0) return i + 1;
        } else if (depth == 0 && c == ',') {
            return i;
        }
    }
    return len;
}

/* The fuzz seeds (every one a valid request) and seeded mutations of them: byte flips, truncations and JSON values
 * of another type or out of range spliced in at random places; every answer keeps api_contract.h. */
static void test_api_corpus(void **state) {
    (void)state;
    static const char *const splices[] = {"null", "-1", "0", "1e308", "-1e308", "2.5", "9223372036854775808",
                                          "4294967296", "[]", "{}", "[[]]", "\"\"", "\"\\u0000\"", "true",
                                          "[-1]", "{\"type\":1}", "[\"\"]", "[null]", "-0.0", "1e-320"};
    qn_test_corpus *corpus = qn_test_corpus_open("corpus_api");
    assert_non_null(corpus);
    int n_files = 0, n_refused = 0;
    long n_runs = 0;
    qn_rng rng;
    qn_rng_seed(&rng, 777);
    for (;;) {
        size_t len = 0;
        const char *name;
        uint8_t *seed = qn_test_corpus_next(corpus, &len, &name);
        if (!name) break;
        assert_non_null(seed);
        assert_true(len >= 2);
        n_files++;
        if (replay_api(seed, len) != 0) fail_msg("seed %s refused", name);
        uint8_t *buf = malloc(len + 64);
        assert_non_null(buf);
        for (int k = 0; k < 400; k++) {
            const size_t at = 1 + (size_t)(qn_rng_u64(&rng) % (len - 1));
            memcpy(buf, seed, len);
            size_t m = len;
            switch (k % 4) {
            case 0: buf[at] = (uint8_t)qn_rng_u64(&rng); break;       /* a byte flipped */
            case 1: m = at; break;                                   /* truncated */
            case 2: {                                                /* a whole field's value replaced */
                const uint8_t *colon = memchr(seed + at, ':', len - at);
                if (!colon) colon = memchr(seed + 1, ':', len - 1);
                if (!colon) break;
                const size_t v0 = (size_t)(colon - seed) + 1, v1 = json_value_end(seed, len, v0);
                const char *v = splices[qn_rng_u64(&rng) % (sizeof splices / sizeof *splices)];
                const size_t vl = strlen(v);
                memcpy(buf + v0, v, vl);
                memcpy(buf + v0 + vl, seed + v1, len - v1);
                m = v0 + vl + (len - v1);
                break;
            }
            default: {                                               /* a value spliced over a few bytes */
                const char *v = splices[qn_rng_u64(&rng) % (sizeof splices / sizeof *splices)];
                const size_t vl = strlen(v), cut = (size_t)(qn_rng_u64(&rng) % 8);
                const size_t tail = at + cut < len ? len - (at + cut) : 0;
                memcpy(buf + at, v, vl);
                memcpy(buf + at + vl, seed + len - tail, tail);
                m = at + vl + tail;
            }
            }
            n_refused += replay_api(buf, m) != 0;
            n_runs++;
        }
        free(buf);
        free(seed);
    }
    qn_test_corpus_close(corpus);
    print_message("%d seeds, %ld mutations, %d refused\n", n_files, n_runs, n_refused);
    assert_true(n_files >= 15);
    assert_true(n_refused > n_runs / 4 && n_refused < n_runs * 9 / 10); /* the mutations reach both answers */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_fields),      cmocka_unit_test(test_chat_errors),
        cmocka_unit_test(test_completion_prompts), cmocka_unit_test(test_ollama_requests),
        cmocka_unit_test(test_tokenize_shapes),  cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_error_envelope),   cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_fuzz_parsers),     cmocka_unit_test(test_nul_in_strings),
        cmocka_unit_test(test_api_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
