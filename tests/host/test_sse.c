/* test_sse.c — SSE and NDJSON byte framing, checked by an independent line-based SSE parser (the rules of
 * the WHATWG event-stream format: "data:" lines joined by "\n", an event ends at a blank line, lines
 * starting with ":" are comments). No sockets.
 * QN_TEST_LABELS: cpu */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "host/sse.h"

static char *drain(struct evbuffer *b) {
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

/* A minimal event-stream parser: returns the data of each dispatched event and counts comments. */
typedef struct parsed {
    char *events[16];
    size_t n;
    size_t comments;
} parsed;

static void parse_stream(const char *s, parsed *p) {
    memset(p, 0, sizeof *p);
    char data[1024] = "";
    bool have = false;
    while (*s) {
        const char *nl = strchr(s, '\n');
        assert_non_null(nl); /* every line is terminated */
        size_t len = (size_t)(nl - s);
        if (len == 0) {
            if (have) p->events[p->n++] = strdup(data);
            data[0] = '\0';
            have = false;
        } else if (s[0] == ':') {
            p->comments++;
        } else if (len >= 5 && !strncmp(s, "data:", 5)) {
            const char *v = s + 5;
            if (*v == ' ') v++;
            if (have) strcat(data, "\n");
            strncat(data, v, (size_t)(nl - v));
            have = true;
        } else {
            fail_msg("unexpected line: %.*s", (int)len, s);
        }
        s = nl + 1;
    }
    assert_false(have); /* no event left without its blank line */
}

static void parsed_free(parsed *p) {
    for (size_t i = 0; i < p->n; i++) free(p->events[i]);
}

static void test_data_framing(void **state) {
    (void)state;
    struct evbuffer *b = evbuffer_new();
    const char *json = "{\"a\":\"x y\",\"b\":[1,2]}";
    assert_int_equal(qn_sse_frame_data(b, json, strlen(json)), 0);
    char *s = drain(b);
    assert_string_equal(s, "data: {\"a\":\"x y\",\"b\":[1,2]}\n\n"); /* exact bytes: a space after the colon */
    free(s);
    assert_int_equal(qn_sse_frame_done(b), 0);
    s = drain(b);
    assert_string_equal(s, "data: [DONE]\n\n");
    free(s);
    assert_int_equal(qn_sse_frame_comment(b), 0);
    s = drain(b);
    assert_string_equal(s, ":\n\n");
    free(s);
    /* a payload with newlines becomes several data lines of one event */
    assert_int_equal(qn_sse_frame_data(b, "l1\nl2\r\nl3", 9), 0);
    s = drain(b);
    assert_string_equal(s, "data: l1\ndata: l2\ndata: l3\n\n");
    free(s);
    assert_int_equal(qn_sse_frame_data(b, "", 0), 0);
    s = drain(b);
    assert_string_equal(s, "data: \n\n");
    free(s);
    evbuffer_free(b);
}

static void test_stream_roundtrip(void **state) {
    (void)state;
    struct evbuffer *b = evbuffer_new();
    const char *ev[] = {"{\"i\":0}", "{\"i\":1,\"t\":\"a\\nb\"}", "multi\nline"};
    qn_sse_frame_comment(b);
    for (size_t i = 0; i < 3; i++) qn_sse_frame_data(b, ev[i], strlen(ev[i]));
    qn_sse_frame_comment(b);
    qn_sse_frame_done(b);
    char *s = drain(b);
    parsed p;
    parse_stream(s, &p);
    assert_int_equal(p.n, 4);
    assert_int_equal(p.comments, 2);
    for (size_t i = 0; i < 3; i++) assert_string_equal(p.events[i], ev[i]);
    assert_string_equal(p.events[3], "[DONE]");
    /* what `removeprefix("data: ")` clients see per line */
    assert_non_null(strstr(s, "\ndata: {\"i\":1,\"t\":\"a\\nb\"}\n\n"));
    parsed_free(&p);
    free(s);
    evbuffer_free(b);
}

static void test_ndjson(void **state) {
    (void)state;
    struct evbuffer *b = evbuffer_new();
    assert_int_equal(qn_ndjson_frame(b, "{\"a\":1}", 7), 0);
    assert_int_equal(qn_ndjson_frame(b, "{\"b\":\n2}", 8), 0); /* a raw newline must not split the line */
    char *s = drain(b);
    assert_string_equal(s, "{\"a\":1}\n{\"b\": 2}\n");
    free(s);
    evbuffer_free(b);
}

static void test_now_monotonic(void **state) {
    (void)state;
    uint64_t a = qn_now_ns(), b = qn_now_ns();
    assert_true(b >= a);
    assert_true(a > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_framing),
        cmocka_unit_test(test_stream_roundtrip),
        cmocka_unit_test(test_ndjson),
        cmocka_unit_test(test_now_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
