/* pretok.c — the pre-tokenizer table (tokenizer.ggml.pre id -> regex list + flags) and PCRE2 splitting.
 * The patterns are those of the models' tokenizer.json files, in the spellings llama.cpp's converter maps each
 * id to (case-insensitive contractions written as explicit classes so that (?i) cannot fold 'ſ' into 's');
 * non-ASCII characters are written as \x{...}. */
#include "tokenizer/pretok.h"
#include "tokenizer/utf8.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------------------------
// Pattern sets
// ---------------------------------------------------------------------------------------------------------------

#define RE_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_CJK_DS "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"
#define RE_CJK_DS3 "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+"
#define RE_PORO " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"
#define RE_CASED_L                                                                                               \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+" RE_CONTRACTIONS  \
    "?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" RE_CONTRACTIONS \
    "?"

typedef struct pattern_set {
    const char *family;
    const char *re[7]; /* NULL-terminated */
} pattern_set;

enum {
    PS_DEFAULT, PS_LLAMA3, PS_JAIS2, PS_DEEPSEEK_LLM, PS_DEEPSEEK3, PS_SPARK2_5, PS_YOUTU, PS_DEEPSEEK_CODER,
    PS_FALCON, PS_STARCODER, PS_GPT2, PS_QWEN2, PS_QWEN35, PS_PORO, PS_VIKING, PS_TEKKEN, PS_CHAMELEON, PS_GPT4O,
    PS_GRANITE_EMB, PS_TINY_AYA, PS_SUPERBPE, PS_BAILINGMOE, PS_SEED_CODER, PS_UFAKZEKA, PS_LAGUNA, PS_EXAONE_MOE,
    PS_NEWLINES, PS_MINICPM5, PS_COUNT
};

static const pattern_set PATTERN_SETS[PS_COUNT] = {
    [PS_DEFAULT] = {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    [PS_LLAMA3] = {"llama3",
                   {RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                                    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [PS_JAIS2] = {"jais2",
                  {RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                                   "|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)"
                                   "|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}"}},
    [PS_DEEPSEEK_LLM] = {"deepseek-llm",
                         {"[\\r\\n]",
                          "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"
                          "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}"
                          "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"
                          "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}"
                          "\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}"
                          "\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"
                          "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}"
                          "\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"
                          "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}"
                          "\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}"
                          "\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}"
                          "\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}"
                          "\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}"
                          "\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}"
                          "\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}"
                          "\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"
                          "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
                          "\\x{1E900}-\\x{1E943}]+",
                          "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
                          "\\s+$", RE_CJK_DS, "\\p{N}+"}},
    [PS_DEEPSEEK3] = {"deepseek-v3",
                      {"\\p{N}{1,3}", RE_CJK_DS3,
                       "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
                       "| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [PS_SPARK2_5] = {"spark2_5",
                     {"\\p{N}{1,3}", RE_CJK_DS3,
                      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
                      "| ?[\\p{P}\\p{S}]+|[\\r\\n]|\\s+(?!\\S)|\\s+",
                      "\\p{N}"}},
    [PS_YOUTU] = {"youtu",
                  {"[\\x{AC00}-\\x{D7A3}\\x{3131}-\\x{318E}]+|[\\x{FF01}\\x{2026}\\x{201C}\\x{201D}\\x{2018}\\x{2019}"
                   "\\x{2014}\\x{FF1A}\\x{FF1B}\\x{FF0C}\\x{3001}-\\x{303F}\\x{FE30}-\\x{FE4F}]+|[\\x{3105}-\\x{312F}]+"
                   "|" RE_CJK_DS3,
                   RE_CASED_L "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [PS_DEEPSEEK_CODER] = {"deepseek-coder", {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK_DS, "\\p{N}"}},
    [PS_FALCON] = {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    [PS_STARCODER] = {"starcoder", {"\\p{N}", RE_GPT2}},
    [PS_GPT2] = {"gpt2", {RE_GPT2}},
    [PS_QWEN2] = {"qwen2",
                  {RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                                   "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [PS_QWEN35] = {"qwen35",
                   {RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*"
                                    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [PS_PORO] = {"poro", {RE_PORO}},
    [PS_VIKING] = {"viking", {RE_PORO, "\\p{N}"}},
    [PS_TEKKEN] = {"tekken",
                   {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+"
                    "|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*"
                    "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [PS_CHAMELEON] = {"chameleon",
                      {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
                       "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2}},
    [PS_GPT4O] = {"gpt-4o",
                  {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+" RE_CONTRACTIONS
                   "?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*" RE_CONTRACTIONS
                   "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [PS_GRANITE_EMB] = {"granite-embed-multi",
                        {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+" RE_CONTRACTIONS
                         "?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*"
                         RE_CONTRACTIONS "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [PS_TINY_AYA] = {"tiny_aya",
                     {"\\d{1,3}(?=(?:\\d{3})*\\b)",
                      RE_CASED_L "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [PS_SUPERBPE] = {"superbpe", {"\\p{N}+", "(?=(\\d{3})+(?!\\d))"}},
    [PS_BAILINGMOE] = {"bailingmoe",
                       {"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                        "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"}},
    [PS_SEED_CODER] = {"seed-coder",
                       {RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+"
                                        "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [PS_UFAKZEKA] = {"ufakzeka",
                     {"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [PS_LAGUNA] = {"laguna",
                   {"[^\\n]+|[\\n]+", RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                                                      "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [PS_EXAONE_MOE] = {"exaone-moe",
                       {RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}"
                                        "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"}},
    [PS_NEWLINES] = {"newlines", {"[^\\n]+|[\\n]+"}},
    [PS_MINICPM5] = {"minicpm5",
                     {"\\p{N}{1,3}", RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                                                     "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
};

// ---------------------------------------------------------------------------------------------------------------
// tokenizer.ggml.pre ids
// ---------------------------------------------------------------------------------------------------------------

#define CS QN_PRETOK_CLEAN_SPACES
#define IM QN_PRETOK_IGNORE_MERGES
#define AB QN_PRETOK_ADD_BOS
#define RB QN_PRETOK_RAW_BYTES

typedef struct pre_id {
    const char *name;
    int set;
    unsigned flags;
} pre_id;

/* Flags as llama.cpp assigns them per id (clean_spaces defaults to on for BPE and is switched off per id). */
static const pre_id PRE_IDS[] = {
    {"default", PS_DEFAULT, CS},
    {"llama3", PS_LLAMA3, CS | IM | AB}, {"llama-v3", PS_LLAMA3, CS | IM | AB}, {"llama-bpe", PS_LLAMA3, CS | IM | AB},
    {"falcon3", PS_LLAMA3, CS | IM | AB}, {"falcon-h1", PS_LLAMA3, CS | IM | AB}, {"pixtral", PS_LLAMA3, CS | IM | AB},
    {"midm-2.0", PS_LLAMA3, CS | IM | AB}, {"lfm2", PS_LLAMA3, CS | IM | AB}, {"jina-v5-nano", PS_LLAMA3, CS | IM | AB},
    {"dbrx", PS_LLAMA3, CS}, {"smaug-bpe", PS_LLAMA3, CS},
    {"chatglm-bpe", PS_LLAMA3, CS}, {"glm4", PS_LLAMA3, CS | IM}, {"glm5", PS_LLAMA3, CS | IM},
    {"jais-2", PS_JAIS2, CS},
    {"deepseek-llm", PS_DEEPSEEK_LLM, 0},
    {"deepseek-coder", PS_DEEPSEEK_CODER, 0},
    {"deepseek-v3", PS_DEEPSEEK3, 0}, {"hunyuan-dense", PS_DEEPSEEK3, 0}, {"hy_v4", PS_DEEPSEEK3, 0},
    {"joyai-llm", PS_DEEPSEEK3, 0},
    {"spark2_5", PS_SPARK2_5, 0},
    {"youtu", PS_YOUTU, IM},
    {"falcon", PS_FALCON, CS},
    {"mpt", PS_GPT2, CS}, {"gpt-2", PS_GPT2, CS}, {"gpt2", PS_GPT2, CS}, {"gpt-neox", PS_GPT2, CS},
    {"phi-2", PS_GPT2, CS}, {"jina-es", PS_GPT2, CS}, {"jina-de", PS_GPT2, CS}, {"gigachat", PS_GPT2, CS},
    {"jina-v2-es", PS_GPT2, CS}, {"jina-v2-de", PS_GPT2, CS},
    {"a.x-4.0", PS_GPT2, CS}, {"mellum", PS_GPT2, CS}, {"modern-bert", PS_GPT2, CS}, {"jina-v1-en", PS_GPT2, CS},
    {"jina-v2-code", PS_GPT2, CS}, {"roberta-bpe", PS_GPT2, CS}, {"olmo", PS_GPT2, CS}, {"jais", PS_GPT2, CS},
    {"exaone4", PS_GPT2, CS}, {"trillion", PS_GPT2, 0}, {"granite-docling", PS_GPT2, 0},
    {"starcoder", PS_STARCODER, CS}, {"refact", PS_STARCODER, CS}, {"command-r", PS_STARCODER, 0},
    {"smollm", PS_STARCODER, 0}, {"codeshell", PS_STARCODER, CS}, {"exaone", PS_STARCODER, CS},
    {"minerva-7b", PS_STARCODER, CS}, {"mellum2", PS_STARCODER, CS},
    {"qwen2", PS_QWEN2, 0}, {"deepseek-r1-qwen", PS_QWEN2, 0}, {"kormo", PS_QWEN2, 0}, {"f2llmv2", PS_QWEN2, 0},
    {"megrez", PS_QWEN2, CS}, {"stablelm2", PS_QWEN2, CS}, {"hunyuan", PS_QWEN2, 0}, {"solar-open", PS_QWEN2, 0},
    {"grok-2", PS_QWEN2, 0},
    {"qwen35", PS_QWEN35, 0},
    {"poro-chat", PS_PORO, 0}, {"bloom", PS_PORO, CS}, {"gpt3-finnish", PS_PORO, CS},
    {"viking", PS_VIKING, 0},
    {"tekken", PS_TEKKEN, IM | AB},
    {"chameleon", PS_CHAMELEON, AB},
    {"gpt-4o", PS_GPT4O, 0}, {"llama4", PS_GPT4O, 0}, {"kanana2", PS_GPT4O, 0}, {"talkie", PS_GPT4O, 0},
    {"minimax-m2", PS_GPT4O, 0},
    {"granite-embed-multi-97m", PS_GRANITE_EMB, IM},
    {"tiny_aya", PS_TINY_AYA, 0}, {"cohere2moe", PS_TINY_AYA, 0},
    {"superbpe", PS_SUPERBPE, 0},
    {"bailingmoe", PS_BAILINGMOE, 0}, {"bailingmoe2", PS_BAILINGMOE, 0}, {"llada-moe", PS_BAILINGMOE, 0},
    {"seed-coder", PS_SEED_CODER, 0},
    {"ufakzeka", PS_UFAKZEKA, 0},
    {"laguna", PS_LAGUNA, 0},
    {"exaone-moe", PS_EXAONE_MOE, CS},
    {"gemma4", PS_NEWLINES, CS | AB | RB}, {"granite-embed-multi-311m", PS_NEWLINES, CS | RB},
    {"sarvam-moe", PS_NEWLINES, RB},
    {"minicpm5", PS_MINICPM5, CS | IM},
};

#undef CS
#undef IM
#undef AB
#undef RB

static const pre_id *find_pre(const char *name) {
    if (!name || !name[0]) name = "default";
    for (size_t i = 0; i < sizeof PRE_IDS / sizeof PRE_IDS[0]; i++)
        if (strcmp(PRE_IDS[i].name, name) == 0) return &PRE_IDS[i];
    return NULL;
}

// ---------------------------------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------------------------------

struct qn_pretok {
    const pre_id *id;
    int n_re;
    pcre2_code *re[7]; /* compiled once; shared read-only between threads */
};

bool qn_pretok_known(const char *name) { return find_pre(name) != NULL; }

unsigned qn_pretok_flags_of(const char *name) {
    const pre_id *id = find_pre(name);
    return id ? id->flags : 0;
}

qn_status qn_pretok_create(const char *name, qn_pretok **out, qn_error *err) {
    *out = NULL;
    const pre_id *id = find_pre(name);
    if (!id)
        return qn_error_set(err, QN_ERR_UNSUPPORTED,
                            "tokenizer.ggml.pre: pre-tokenizer '%s' is not supported (not a regex-only split)", name);
    qn_pretok *p = calloc(1, sizeof *p);
    if (!p) return qn_error_set(err, QN_ERR_NOMEM, "pre-tokenizer '%s': out of memory", name);
    p->id = id;
    const pattern_set *ps = &PATTERN_SETS[id->set];
    for (int i = 0; i < 7 && ps->re[i]; i++) {
        int code = 0;
        PCRE2_SIZE off = 0;
        /* DOLLAR_ENDONLY: '$' means end of fragment, as in ECMAScript and Rust regex. */
        p->re[i] = pcre2_compile((PCRE2_SPTR)ps->re[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_NO_UTF_CHECK, &code, &off, NULL);
        if (!p->re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(code, msg, sizeof msg);
            qn_pretok_destroy(p);
            return qn_error_set(err, QN_ERR_INTERNAL, "pre-tokenizer '%s': pattern %d: %s at offset %zu", name, i,
                                (const char *)msg, (size_t)off);
        }
        p->n_re = i + 1;
        (void)pcre2_jit_compile(p->re[i], PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT fails */
    }
    *out = p;
    return QN_OK;
}

void qn_pretok_destroy(qn_pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n_re; i++) pcre2_code_free(p->re[i]);
    free(p);
}

unsigned qn_pretok_flags(const qn_pretok *p) { return p->id->flags; }

const char *qn_pretok_family(const qn_pretok *p) { return PATTERN_SETS[p->id->set].family; }

// ---------------------------------------------------------------------------------------------------------------
// Splitting
// ---------------------------------------------------------------------------------------------------------------

typedef struct span_vec {
    qn_span *v;
    size_t n, cap;
} span_vec;

static bool span_push(span_vec *s, size_t off, size_t len) {
    if (len == 0) return true;
    if (s->n == s->cap) {
        const size_t cap = s->cap ? s->cap * 2 : 64;
        qn_span *v = realloc(s->v, cap * sizeof *v);
        if (!v) return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (qn_span){(uint32_t)off, (uint32_t)len};
    return true;
}

/* One match of re in subject[start..len). Returns 1 with [*b, *e), 0 for none, <0 on error. Retries without JIT
 * when the JIT stack is too small for a pathological input. */
static int match_once(const pcre2_code *re, const char *subject, size_t len, size_t start, uint32_t opts,
                      pcre2_match_data *md, size_t *b, size_t *e) {
    int rc = pcre2_match(re, (PCRE2_SPTR)subject, len, start, opts | PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(re, (PCRE2_SPTR)subject, len, start, opts | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) return rc;
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *b = ov[0];
    *e = ov[1];
    return 1;
}

/* Splits fragment text[off..off+len) with re: matches and the gaps between them, in order. An empty match (a
 * pure lookahead such as superbpe's digit grouping) only marks a split point. */
static qn_status split_fragment(const pcre2_code *re, pcre2_match_data *md, const char *text, size_t off, size_t len,
                                span_vec *out) {
    const char *s = text + off;
    size_t pos = 0;     /* search start */
    size_t emitted = 0; /* end of the last emitted piece */
    bool after_empty = false;
    while (pos <= len) {
        size_t b, e;
        /* NOTEMPTY_ATSTART after an empty match: the search stays unanchored but cannot stall at pos */
        const int rc = match_once(re, s, len, pos, after_empty ? PCRE2_NOTEMPTY_ATSTART : 0, md, &b, &e);
        if (rc < 0) return QN_ERR_INTERNAL;
        if (rc == 0) break;
        if (b > emitted && !span_push(out, off + emitted, b - emitted)) return QN_ERR_NOMEM;
        if (e > b && !span_push(out, off + b, e - b)) return QN_ERR_NOMEM;
        emitted = e; /* b >= pos >= emitted */
        after_empty = e == b;
        pos = e;
    }
    if (emitted < len && !span_push(out, off + emitted, len - emitted)) return QN_ERR_NOMEM;
    return QN_OK;
}

qn_status qn_pretok_split(const qn_pretok *p, const char *text, size_t len, qn_span **spans, size_t *n_spans) {
    *spans = NULL;
    *n_spans = 0;
    span_vec cur = {0}, next = {0};
    qn_status st = QN_OK;
    if (!span_push(&cur, 0, len)) return QN_ERR_NOMEM;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL); /* only the whole-match pair is read */
    if (!md) {
        free(cur.v);
        return QN_ERR_NOMEM;
    }
    for (int i = 0; i < p->n_re && st == QN_OK; i++) {
        next.n = 0;
        for (size_t f = 0; f < cur.n && st == QN_OK; f++)
            st = split_fragment(p->re[i], md, text, cur.v[f].off, cur.v[f].len, &next);
        span_vec t = cur;
        cur = next;
        next = t;
    }
    pcre2_match_data_free(md);
    free(next.v);
    if (st != QN_OK) {
        free(cur.v);
        return st;
    }
    *spans = cur.v;
    *n_spans = cur.n;
    return QN_OK;
}
