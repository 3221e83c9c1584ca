/* chat_template.c — family detection and rendering for chat templates (see chat_template.h). Variant details are
 * read from the Jinja source as data: its string literals (unescaped like Python) and a "squeezed" copy of the
 * source with whitespace outside literals removed and '"' turned into '\'', so that a construct such as
 * `" " + message["content"]` can be recognised by one fixed string. */
#include "tokenizer/chat_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/gguf.h"
#include "tokenizer/vocab.h"

enum { SYS_NATIVE, SYS_POLYFILL, SYS_FIRST_USER, SYS_LAST_USER, SYS_INLINE };

struct qn_chat_template {
    qn_chat_family family;
    bool fallback;
    char *bos, *eos;          /* texts of bos_token / eos_token */
    char *default_system;     /* injected when messages[0] is not a system message; NULL = none */
    bool bos_start;           /* bos_token once, before everything */
    bool trim;                /* message contents go through |trim or .strip() */
    bool gen_always;          /* the template emits its generation header without checking add_generation_prompt */
    int sys_place;            /* where a leading system message goes (SYS_*) */
    bool im_sep;              /* chatml: phi-4 spelling with <|im_sep|>, the assistant header after each user turn */
    bool knowledge_header;    /* llama3: 3.1+ system block with "Cutting Knowledge Date" / "Today Date" */
    bool date_today;          /* llama3: the template calls strftime_now */
    bool bos_per_user;        /* llama2: bos_token + '[INST] ' on every user turn */
    bool later_system;        /* llama2: a system message after the first renders as a <<SYS>> block (vigogne) */
    char *inst_open, *inst_close; /* mistral/llama2: "[INST] " / " [/INST]" as the template spells them */
    char *sys_open, *sys_close;   /* mistral v7: "[SYSTEM_PROMPT] " / "[/SYSTEM_PROMPT]" */
    bool reply_space;         /* mistral: " " before an assistant reply */
    bool reply_trim;          /* mistral: the reply is trimmed */
};

// ---------------------------------------------------------------------------------------------------------------
// Reading the Jinja source
// ---------------------------------------------------------------------------------------------------------------

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom || n == 0) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) {
    if (s) sb_put(b, s, strlen(s));
}

/* Python-style unescape of a string literal body s[0..n) into b (unknown escapes keep their backslash). */
static void unescape(sbuf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\' && i + 1 < n) {
            const char e = s[++i];
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case '\\': case '\'': case '"': c = e; break;
            default: sb_put(b, "\\", 1); c = e; break;
            }
        }
        sb_put(b, &c, 1);
    }
}

/* Literals: every quoted string inside {{ }} / {% %} tags, unescaped, NUL-separated in lits.
 * Squeezed: the source with whitespace outside literals removed and literal quotes normalised to '\''. */
static void read_source(const char *s, size_t n, sbuf *lits, sbuf *sq) {
    bool in_tag = false;
    for (size_t i = 0; i < n; i++) {
        const char c = s[i];
        if (!in_tag) {
            if (c == '{' && i + 1 < n && s[i + 1] == '#') { /* comment */
                const char *e = NULL;
                for (size_t j = i + 2; j + 1 < n; j++)
                    if (s[j] == '#' && s[j + 1] == '}') {
                        e = s + j;
                        break;
                    }
                i = e ? (size_t)(e - s) + 1 : n;
                continue;
            }
            if (c == '{' && i + 1 < n && (s[i + 1] == '{' || s[i + 1] == '%')) in_tag = true;
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') sb_put(sq, &c, 1);
            continue;
        }
        if ((c == '}' || c == '%') && i + 1 < n && s[i + 1] == '}') { /* "}}" or "%}" */
            in_tag = false;
            sb_put(sq, s + i, 2);
            i++;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t j = i + 1;
            while (j < n && s[j] != c) j += (s[j] == '\\') ? 2 : 1;
            if (j > n) j = n;
            unescape(lits, s + i + 1, j - i - 1);
            const char z = '\0'; /* separator */
            sb_put(lits, &z, 1);
            sb_put(sq, "'", 1);
            sb_put(sq, s + i + 1, j - i - 1);
            sb_put(sq, "'", 1);
            i = j;
            continue;
        }
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') sb_put(sq, &c, 1);
    }
}

/* First literal containing needle, or NULL. */
static const char *find_literal(const sbuf *lits, const char *needle) {
    for (size_t i = 0; i < lits->n;) {
        const char *l = lits->p + i;
        if (strstr(l, needle)) return l;
        i += strlen(l) + 1;
    }
    return NULL;
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* The marker as spelled in its literal: the spaces just before it, the marker, and (with trail) the spaces after
 * it up to the end of the literal when only spaces follow. */
static char *spelled(const sbuf *lits, const char *marker, bool trail) {
    const char *l = find_literal(lits, marker);
    if (!l) return dup_n(marker, strlen(marker));
    const char *m = strstr(l, marker);
    const char *b = m;
    while (b > l && b[-1] == ' ') b--;
    const char *e = m + strlen(marker);
    if (trail) {
        const char *t = e;
        while (*t == ' ') t++;
        if (*t == '\0') e = t;
    }
    return dup_n(b, (size_t)(e - b));
}

/* chatml default system prompt: a literal "<|im_start|>system\n<text><|im_end|>..." with the text inline. */
static char *chatml_default_system(const sbuf *lits) {
    static const char P[] = "<|im_start|>system\n";
    for (size_t i = 0; i < lits->n;) {
        const char *l = lits->p + i;
        if (strncmp(l, P, sizeof P - 1) == 0) {
            const char *t = l + sizeof P - 1, *e = strstr(t, "<|im_end|>");
            if (e && e > t) return dup_n(t, (size_t)(e - t));
        }
        i += strlen(l) + 1;
    }
    return NULL;
}

/* llama2: `{% set system_message = '...' %}` with a literal value (vigogne-style default). */
static char *llama2_default_system(const char *sq) {
    static const char P[] = "setsystem_message='";
    const char *p = strstr(sq, P);
    if (!p) return NULL;
    p += sizeof P - 1;
    const char *e = p;
    while (*e && *e != '\'') e += (*e == '\\' && e[1]) ? 2 : 1;
    sbuf b = {0};
    unescape(&b, p, (size_t)(e - p));
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p ? b.p : dup_n("", 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------------------------------

qn_status qn_chat_template_create(const char *src, size_t len, const char *bos, const char *eos,
                                  qn_chat_template **out, qn_error *err) {
    *out = NULL;
    qn_chat_template *t = calloc(1, sizeof *t);
    if (!t) return qn_error_set(err, QN_ERR_NOMEM, "chat template: out of memory");
    if (!src) len = 0;
    sbuf lits = {0}, sq = {0}, raw = {0};
    sb_put(&raw, src ? src : "", len);
    read_source(src ? src : "", len, &lits, &sq);
    const char *s = raw.p ? raw.p : "";
    const char *q = sq.p ? sq.p : "";
    bool ok = !lits.oom && !sq.oom && !raw.oom;

    t->bos = dup_n(bos ? bos : "", bos ? strlen(bos) : 0);
    t->eos = dup_n(eos ? eos : "", eos ? strlen(eos) : 0);
    ok = ok && t->bos && t->eos;
    t->bos_start = strstr(s, "bos_token") != NULL;
    t->trim = strstr(q, "|trim") != NULL || strstr(q, ".strip()") != NULL;
    t->gen_always = len > 0 && strstr(s, "add_generation_prompt") == NULL;
    t->sys_place = SYS_NATIVE;

    if (strstr(s, "<|im_start|>")) {
        t->family = QN_CHAT_FAMILY_CHATML;
        t->im_sep = strstr(s, "<|im_sep|>") != NULL;
        t->default_system = chatml_default_system(&lits);
        t->trim = false; /* chatml templates render contents as they are */
    } else if (strstr(s, "<|start_header_id|>")) {
        t->family = QN_CHAT_FAMILY_LLAMA3;
        t->knowledge_header = strstr(s, "Cutting Knowledge Date") != NULL;
        t->date_today = strstr(s, "strftime_now") != NULL;
    } else if (strstr(s, "[INST]") && strstr(s, "<<SYS>>")) {
        t->family = QN_CHAT_FAMILY_LLAMA2;
        t->bos_per_user = strstr(q, "bos_token+'[INST]") != NULL;
        t->default_system = llama2_default_system(q);
        t->later_system = strstr(q, "=='system'%}{{'<<SYS>>") != NULL;
        t->sys_place = SYS_FIRST_USER;
        t->inst_open = spelled(&lits, "[INST]", true);
        t->inst_close = spelled(&lits, "[/INST]", false);
        ok = ok && t->inst_open && t->inst_close;
    } else if (strstr(s, "[INST]")) {
        t->family = QN_CHAT_FAMILY_MISTRAL;
        t->inst_open = spelled(&lits, "[INST]", true);
        t->inst_close = spelled(&lits, "[/INST]", false);
        ok = ok && t->inst_open && t->inst_close;
        t->reply_space = strstr(q, "' '+message") != NULL;
        t->reply_trim = strstr(q, "content']|trim+eos_token") != NULL;
        t->trim = false;
        if (find_literal(&lits, "[SYSTEM_PROMPT]")) {
            t->sys_place = SYS_INLINE;
            t->sys_open = spelled(&lits, "[SYSTEM_PROMPT]", true);
            t->sys_close = spelled(&lits, "[/SYSTEM_PROMPT]", false);
            ok = ok && t->sys_open && t->sys_close;
        } else if (strstr(q, "loop.lastandsystem_messageisdefined")) {
            t->sys_place = SYS_LAST_USER;
        } else if (strstr(q, "loop.firstandsystem_messageisdefined")) {
            t->sys_place = SYS_FIRST_USER;
        } else {
            t->sys_place = SYS_POLYFILL; /* v0.1/v0.2 raise on a system message */
        }
    } else if (strstr(s, "<start_of_turn>")) {
        t->family = QN_CHAT_FAMILY_GEMMA;
        /* gemma-3 puts the system text before the first user turn; gemma-1/2 raise on a system message */
        t->sys_place = strstr(s, "first_user_prefix") ? SYS_FIRST_USER : SYS_POLYFILL;
    } else {
        t->family = QN_CHAT_FAMILY_CHATML;
        t->fallback = true;
        t->bos_start = false;
        t->trim = false;
        t->gen_always = false;
    }
    free(lits.p);
    free(sq.p);
    free(raw.p);
    if (!ok) {
        qn_chat_template_destroy(t);
        return qn_error_set(err, QN_ERR_NOMEM, "chat template: out of memory");
    }
    *out = t;
    return QN_OK;
}

qn_status qn_chat_template_from_gguf(const qn_gguf *g, const qn_vocab *v, qn_chat_template **out, qn_error *err) {
    qn_gguf_str src = {0};
    const qn_status st = qn_gguf_get_str(g, "tokenizer.chat_template", &src, err);
    if (st != QN_OK && st != QN_ERR_NOT_FOUND) return st;
    const char *bos = v && qn_vocab_bos(v) >= 0 ? qn_vocab_token_text(v, qn_vocab_bos(v)) : "";
    const char *eos = v && qn_vocab_eos(v) >= 0 ? qn_vocab_token_text(v, qn_vocab_eos(v)) : "";
    return qn_chat_template_create(st == QN_OK ? src.ptr : NULL, st == QN_OK ? (size_t)src.len : 0, bos, eos, out,
                                   err);
}

void qn_chat_template_destroy(qn_chat_template *t) {
    if (!t) return;
    free(t->bos);
    free(t->eos);
    free(t->default_system);
    free(t->inst_open);
    free(t->inst_close);
    free(t->sys_open);
    free(t->sys_close);
    free(t);
}

qn_chat_family qn_chat_template_family(const qn_chat_template *t) { return t->family; }
bool qn_chat_template_is_fallback(const qn_chat_template *t) { return t->fallback; }
const char *qn_chat_template_default_system(const qn_chat_template *t) { return t->default_system; }

const char *qn_chat_family_name(qn_chat_family f) {
    switch (f) {
    case QN_CHAT_FAMILY_CHATML: return "chatml";
    case QN_CHAT_FAMILY_LLAMA3: return "llama3";
    case QN_CHAT_FAMILY_LLAMA2: return "llama2";
    case QN_CHAT_FAMILY_MISTRAL: return "mistral";
    case QN_CHAT_FAMILY_GEMMA: return "gemma";
    }
    return "unknown";
}

// ---------------------------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------------------------

typedef struct msg {
    const char *role;
    const char *content;
    size_t len;
} msg;

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Jinja's |trim and Python's str.strip() on ASCII whitespace. */
static void put_content(sbuf *b, const char *s, size_t n, bool trim) {
    if (trim) {
        while (n > 0 && is_ws(*s)) s++, n--;
        while (n > 0 && is_ws(s[n - 1])) n--;
    }
    sb_put(b, s, n);
}

static bool role_is(const msg *m, const char *r) { return strcmp(m->role, r) == 0; }

static void render_chatml(const qn_chat_template *t, const msg *m, size_t n, bool gen, sbuf *b) {
    if (t->bos_start) sb_str(b, t->bos);
    if (t->im_sep) { /* phi-4 */
        for (size_t i = 0; i < n; i++) {
            if (role_is(&m[i], "system") || role_is(&m[i], "user")) {
                sb_str(b, "<|im_start|>");
                sb_str(b, m[i].role);
                sb_str(b, "<|im_sep|>");
                sb_put(b, m[i].content, m[i].len);
                sb_str(b, role_is(&m[i], "user") ? "<|im_end|><|im_start|>assistant<|im_sep|>" : "<|im_end|>");
            } else if (role_is(&m[i], "assistant")) {
                sb_put(b, m[i].content, m[i].len);
                sb_str(b, "<|im_end|>");
            }
        }
        return;
    }
    if (t->default_system && n > 0 && !role_is(&m[0], "system")) {
        sb_str(b, "<|im_start|>system\n");
        sb_str(b, t->default_system);
        sb_str(b, "<|im_end|>\n");
    }
    for (size_t i = 0; i < n; i++) {
        sb_str(b, "<|im_start|>");
        sb_str(b, m[i].role);
        sb_str(b, "\n");
        sb_put(b, m[i].content, m[i].len);
        sb_str(b, "<|im_end|>\n");
    }
    if (gen) sb_str(b, "<|im_start|>assistant\n");
}

static void render_llama3(const qn_chat_template *t, const msg *m, size_t n, bool gen, const char *date, sbuf *b) {
    if (t->bos_start && (n > 0 || t->knowledge_header)) sb_str(b, t->bos);
    if (t->knowledge_header) {
        char today[32];
        if (!date) {
            date = "26 Jul 2024"; /* the templates' own default */
            if (t->date_today) {
                const time_t now = time(NULL);
                struct tm tm;
                if (localtime_r(&now, &tm) && strftime(today, sizeof today, "%d %b %Y", &tm) > 0) date = today;
            }
        }
        sb_str(b, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ");
        sb_str(b, date);
        sb_str(b, "\n\n");
        if (n > 0 && role_is(&m[0], "system")) {
            put_content(b, m[0].content, m[0].len, true);
            m++, n--;
        }
        sb_str(b, "<|eot_id|>");
    }
    for (size_t i = 0; i < n; i++) {
        sb_str(b, "<|start_header_id|>");
        sb_str(b, m[i].role);
        sb_str(b, "<|end_header_id|>\n\n");
        put_content(b, m[i].content, m[i].len, t->trim);
        sb_str(b, "<|eot_id|>");
    }
    if (gen) sb_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render_gemma(const qn_chat_template *t, const msg *m, size_t n, bool gen, sbuf *b) {
    if (t->bos_start) sb_str(b, t->bos);
    const msg *sys = NULL;
    if (t->sys_place == SYS_FIRST_USER && n > 0 && role_is(&m[0], "system")) sys = &m[0], m++, n--;
    for (size_t i = 0; i < n; i++) {
        sb_str(b, "<start_of_turn>");
        sb_str(b, role_is(&m[i], "assistant") ? "model" : m[i].role);
        sb_str(b, "\n");
        if (i == 0 && sys) {
            sb_put(b, sys->content, sys->len);
            sb_str(b, "\n\n");
        }
        put_content(b, m[i].content, m[i].len, t->trim);
        sb_str(b, "<end_of_turn>\n");
    }
    if (gen) sb_str(b, "<start_of_turn>model\n");
}

static void render_llama2(const qn_chat_template *t, const msg *m, size_t n, sbuf *b) {
    if (t->bos_start && !t->bos_per_user) sb_str(b, t->bos);
    const char *sys = NULL;
    size_t sys_len = 0;
    if (n > 0 && role_is(&m[0], "system")) {
        sys = m[0].content, sys_len = m[0].len;
        m++, n--;
    } else if (t->default_system && !(n > 0 && memmem(m[0].content, m[0].len, "<<SYS>>", 7))) {
        sys = t->default_system, sys_len = strlen(sys);
    }
    for (size_t i = 0; i < n; i++) {
        sbuf c = {0};
        if (i == 0 && sys) {
            sb_str(&c, "<<SYS>>\n");
            sb_put(&c, sys, sys_len);
            sb_str(&c, "\n<</SYS>>\n\n");
        }
        sb_put(&c, m[i].content, m[i].len);
        if (c.oom) b->oom = true;
        const char *cp = c.p ? c.p : "";
        if (role_is(&m[i], "user")) {
            if (t->bos_per_user) sb_str(b, t->bos);
            sb_str(b, t->inst_open);
            put_content(b, cp, c.n, t->trim);
            sb_str(b, t->inst_close);
        } else if (role_is(&m[i], "assistant")) {
            sb_str(b, " ");
            put_content(b, cp, c.n, t->trim);
            sb_str(b, " ");
            sb_str(b, t->eos);
        } else if (role_is(&m[i], "system")) { /* a later system message: vigogne renders it, Meta's skips it */
            if (t->later_system) {
                sb_str(b, "<<SYS>>\n");
                put_content(b, cp, c.n, t->trim);
                sb_str(b, "\n<</SYS>>\n\n");
            }
        }
        free(c.p);
    }
}

static void render_mistral(const qn_chat_template *t, const msg *m, size_t n, sbuf *b) {
    if (t->bos_start) sb_str(b, t->bos);
    const msg *sys = NULL;
    if ((t->sys_place == SYS_FIRST_USER || t->sys_place == SYS_LAST_USER) && n > 0 && role_is(&m[0], "system"))
        sys = &m[0], m++, n--;
    for (size_t i = 0; i < n; i++) {
        if (role_is(&m[i], "user")) {
            sb_str(b, t->inst_open);
            const bool here = sys && ((t->sys_place == SYS_FIRST_USER && i == 0) ||
                                      (t->sys_place == SYS_LAST_USER && i + 1 == n));
            if (here) {
                sb_put(b, sys->content, sys->len);
                sb_str(b, "\n\n");
            }
            sb_put(b, m[i].content, m[i].len);
            sb_str(b, t->inst_close);
        } else if (role_is(&m[i], "assistant")) {
            if (t->reply_space) sb_str(b, " ");
            put_content(b, m[i].content, m[i].len, t->reply_trim);
            sb_str(b, t->eos);
        } else if (role_is(&m[i], "system") && t->sys_place == SYS_INLINE) {
            sb_str(b, t->sys_open);
            sb_put(b, m[i].content, m[i].len);
            sb_str(b, t->sys_close);
        }
    }
}

qn_status qn_chat_template_apply(const qn_chat_template *t, const qn_chat_msg *msgs, size_t n,
                                 bool add_generation_prompt, const char *date, char *buf, size_t cap, size_t *n_out) {
    *n_out = 0;
    if (n > 0 && !msgs) return QN_ERR_INVALID_ARG;
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content) return QN_ERR_INVALID_ARG;
    msg *m = malloc((n ? n : 1) * sizeof *m);
    if (!m) return QN_ERR_NOMEM;
    size_t k = 0;
    char *merged = NULL;
    for (size_t i = 0; i < n; i++)
        m[k++] = (msg){msgs[i].role, msgs[i].content, msgs[i].content_len ? msgs[i].content_len : strlen(msgs[i].content)};
    if (t->sys_place == SYS_POLYFILL && k > 0 && role_is(&m[0], "system")) {
        /* the template rejects system messages: llama.cpp merges it into the next message with "\n" */
        if (k > 1) {
            merged = malloc(m[0].len + 1 + m[1].len + 1);
            if (!merged) {
                free(m);
                return QN_ERR_NOMEM;
            }
            memcpy(merged, m[0].content, m[0].len);
            merged[m[0].len] = '\n';
            memcpy(merged + m[0].len + 1, m[1].content, m[1].len);
            merged[m[0].len + 1 + m[1].len] = '\0';
            m[1].content = merged;
            m[1].len = m[0].len + 1 + m[1].len;
        }
        memmove(m, m + 1, (k - 1) * sizeof *m);
        k--;
    }
    const bool gen = add_generation_prompt || t->gen_always;
    sbuf b = {0};
    switch (t->family) {
    case QN_CHAT_FAMILY_CHATML: render_chatml(t, m, k, gen, &b); break;
    case QN_CHAT_FAMILY_LLAMA3: render_llama3(t, m, k, gen, date, &b); break;
    case QN_CHAT_FAMILY_LLAMA2: render_llama2(t, m, k, &b); break;
    case QN_CHAT_FAMILY_MISTRAL: render_mistral(t, m, k, &b); break;
    case QN_CHAT_FAMILY_GEMMA: render_gemma(t, m, k, gen, &b); break;
    }
    free(m);
    free(merged);
    if (b.oom) {
        free(b.p);
        return QN_ERR_NOMEM;
    }
    *n_out = b.n;
    qn_status st = QN_OK;
    if (b.n >= cap) st = QN_ERR_INVALID_ARG;
    else {
        if (b.n) memcpy(buf, b.p, b.n);
        buf[b.n] = '\0';
    }
    free(b.p);
    return st;
}

qn_status qn_chat_template_render(const qn_chat_template *t, const qn_chat_msg *msgs, size_t n,
                                  bool add_generation_prompt, const char *date, char **out) {
    size_t len;
    return qn_chat_template_render_n(t, msgs, n, add_generation_prompt, date, out, &len);
}

qn_status qn_chat_template_render_n(const qn_chat_template *t, const qn_chat_msg *msgs, size_t n,
                                    bool add_generation_prompt, const char *date, char **out, size_t *n_out) {
    size_t need = 0;
    *out = NULL;
    *n_out = 0;
    qn_status st = qn_chat_template_apply(t, msgs, n, add_generation_prompt, date, NULL, 0, &need);
    if (st != QN_ERR_INVALID_ARG || need == 0) return st == QN_OK ? QN_ERR_INTERNAL : st; /* cap 0 holds no NUL */
    char *buf = malloc(need + 1);
    if (!buf) return QN_ERR_NOMEM;
    st = qn_chat_template_apply(t, msgs, n, add_generation_prompt, date, buf, need + 1, &need);
    if (st != QN_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *n_out = need;
    return QN_OK;
}
