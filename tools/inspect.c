/* inspect.c — `quern inspect FILE|DIR`: prints a checkpoint's metadata (arrays summarised as type,
 * count and first values), its tensor table and the model config derived from it. Reads GGUF files
 * and safetensors files, index.json files and directories (with config.json when present).
 * Exit code 0 when the file parses (a config that cannot be derived is only a warning), 1 otherwise. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "config/model_config.h"
#include "model/gguf.h"
#include "model/safetensors.h"

#define QN_INSPECT_STR_MAX 60 /* characters of a string value shown before "..." */

typedef struct qn_inspect_opts {
    bool no_tensors;
    int max_values; /* array elements shown */
} qn_inspect_opts;

/* ------------------------------------------------------------------------------------------------ */
/* formatting helpers                                                                               */

/* Prints s quoted, escaping control bytes, cut after QN_INSPECT_STR_MAX characters. */
static void print_str(const char *p, uint64_t len) {
    putchar('"');
    const uint64_t n = len < QN_INSPECT_STR_MAX ? len : QN_INSPECT_STR_MAX;
    for (uint64_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)p[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (len > n) printf("... (%" PRIu64 " bytes)", len);
}

/* Prints one fixed-size value of type t stored LE at p. */
static void print_scalar(qn_gguf_type t, const uint8_t *p) {
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        float f32;
        uint64_t u64;
        int64_t i64;
        double f64;
    } v;
    memcpy(&v, p, qn_gguf_type_size(t));
    switch (t) {
    case QN_GGUF_TYPE_UINT8: printf("%u", v.u8); break;
    case QN_GGUF_TYPE_INT8: printf("%d", v.i8); break;
    case QN_GGUF_TYPE_UINT16: printf("%u", v.u16); break;
    case QN_GGUF_TYPE_INT16: printf("%d", v.i16); break;
    case QN_GGUF_TYPE_UINT32: printf("%" PRIu32, v.u32); break;
    case QN_GGUF_TYPE_INT32: printf("%" PRId32, v.i32); break;
    case QN_GGUF_TYPE_FLOAT32: printf("%g", (double)v.f32); break;
    case QN_GGUF_TYPE_BOOL: printf("%s", v.u8 ? "true" : "false"); break;
    case QN_GGUF_TYPE_UINT64: printf("%" PRIu64, v.u64); break;
    case QN_GGUF_TYPE_INT64: printf("%" PRId64, v.i64); break;
    case QN_GGUF_TYPE_FLOAT64: printf("%g", v.f64); break;
    default: printf("?"); break;
    }
}

static void print_bytes(uint64_t n) {
    if (n >= (1ull << 30)) printf("%.2f GiB", (double)n / (1ull << 30));
    else if (n >= (1ull << 20)) printf("%.2f MiB", (double)n / (1ull << 20));
    else if (n >= (1ull << 10)) printf("%.2f KiB", (double)n / (1ull << 10));
    else printf("%" PRIu64 " B", n);
}

static void print_config(const qn_model_config *c) {
    printf("\nconfig:\n");
    printf("  arch %s, n_vocab %d, n_ctx_train %d\n", qn_arch_name(c->arch), c->n_vocab, c->n_ctx_train);
    printf("  n_embd %d, n_layer %d, n_ff %d\n", c->n_embd, c->n_layer, c->n_ff);
    printf("  n_head %d, n_head_kv %d, head_dim %d\n", c->n_head, c->n_head_kv, c->head_dim);
    printf("  rms_eps %g, rope_theta %g, rope_dim %d, rope_style %s\n", (double)c->rms_eps, (double)c->rope_theta,
           c->rope_dim, qn_rope_style_name(c->rope_style));
    const qn_rope_scaling *r = &c->rope_scaling;
    printf("  rope_scaling %s", qn_rope_scaling_type_name(r->type));
    if (r->type == QN_ROPE_SCALING_LLAMA3 && c->rope_freqs_tensor) printf(" (factors in rope_freqs.weight)");
    else if (r->type != QN_ROPE_SCALING_NONE) printf(", factor %g, orig_ctx %d", (double)r->factor, r->orig_ctx);
    if (r->type == QN_ROPE_SCALING_LLAMA3 && !c->rope_freqs_tensor)
        printf(", low_freq_factor %g, high_freq_factor %g", (double)r->low_freq_factor, (double)r->high_freq_factor);
    if (r->type == QN_ROPE_SCALING_YARN)
        printf(", beta_fast %g, beta_slow %g", (double)r->yarn_beta_fast, (double)r->yarn_beta_slow);
    printf("\n  tied_embeddings %s, qkv_bias %s, bos %d, eos %d\n", c->tied_embeddings ? "yes" : "no",
           c->qkv_bias ? "yes" : "no", c->bos_id, c->eos_id);
}

/* ------------------------------------------------------------------------------------------------ */
/* GGUF                                                                                             */

static void gguf_print_kv(const qn_gguf *g, int64_t i, const qn_inspect_opts *o) {
    const qn_gguf_str k = qn_gguf_key(g, i);
    const qn_gguf_type t = qn_gguf_kv_type(g, i);
    printf("  %-44.*s ", (int)(k.len > 200 ? 200 : k.len), k.ptr);
    if (t == QN_GGUF_TYPE_STRING) {
        const qn_gguf_str s = qn_gguf_kv_str(g, i);
        printf("%-8s ", "string");
        print_str(s.ptr, s.len);
    } else if (t == QN_GGUF_TYPE_ARRAY) {
        const qn_gguf_type et = qn_gguf_arr_type(g, i);
        const uint64_t n = qn_gguf_arr_n(g, i);
        printf("[%s x %" PRIu64 "]", qn_gguf_type_name(et), n);
        const uint64_t show = n < (uint64_t)o->max_values ? n : (uint64_t)o->max_values;
        for (uint64_t j = 0; j < show; j++) {
            fputs(j ? ", " : " ", stdout);
            if (et == QN_GGUF_TYPE_STRING) {
                const qn_gguf_str s = qn_gguf_arr_str(g, i, j);
                print_str(s.ptr, s.len);
            } else {
                print_scalar(et, (const uint8_t *)qn_gguf_arr_data(g, i) + j * qn_gguf_type_size(et));
            }
        }
        if (n > show) fputs(", ...", stdout);
    } else {
        printf("%-8s ", qn_gguf_type_name(t));
        print_scalar(t, qn_gguf_kv_data(g, i));
    }
    putchar('\n');
}

static void gguf_print_tensors(const qn_gguf *g) {
    printf("\ntensors (shape is GGUF ne[], innermost first):\n");
    printf("  %-5s %-40s %-6s %-26s %14s %12s\n", "#", "name", "type", "shape", "bytes", "offset");
    uint64_t total = 0, elems = 0;
    for (int64_t i = 0; i < qn_gguf_n_tensors(g); i++) {
        const qn_gguf_tensor *t = qn_gguf_tensor_at(g, i);
        char shape[96];
        int n = snprintf(shape, sizeof shape, "[");
        for (uint32_t j = 0; j < t->n_dims; j++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%" PRId64, j ? ", " : "", t->ne[j]);
        snprintf(shape + n, sizeof shape - (size_t)n, "]");
        printf("  %-5" PRId64 " %-40.*s %-6s %-26s %14" PRIu64 " %12" PRIu64 "\n", i, (int)t->name.len, t->name.ptr,
               qn_qformat_name(t->fmt), shape, t->nbytes, t->offset);
        total += t->nbytes;
        elems += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    }
    printf("  total: %" PRId64 " tensors, %.2f M elements, ", qn_gguf_n_tensors(g), (double)elems / 1e6);
    print_bytes(total);
    putchar('\n');
}

static int inspect_gguf(const char *path, const qn_inspect_opts *o) {
    qn_gguf *g = NULL;
    qn_error err = {0};
    if (qn_gguf_open(path, &g, &err) != QN_OK) {
        fprintf(stderr, "quern inspect: %s\n", err.msg);
        return 1;
    }
    printf("file: %s\n", path);
    printf("format: GGUF v%u, alignment %u, %" PRId64 " metadata keys, %" PRId64 " tensors, data at %" PRIu64
           ", file ",
           qn_gguf_version(g), qn_gguf_alignment(g), qn_gguf_n_kv(g), qn_gguf_n_tensors(g), qn_gguf_data_start(g));
    print_bytes(qn_gguf_file_size(g));
    printf("\n\nmetadata:\n");
    for (int64_t i = 0; i < qn_gguf_n_kv(g); i++) gguf_print_kv(g, i, o);
    if (!o->no_tensors) gguf_print_tensors(g);
    qn_model_config cfg;
    if (qn_model_config_from_gguf(g, &cfg, &err) == QN_OK) print_config(&cfg);
    else fprintf(stderr, "quern inspect: warning: no model config: %s\n", err.msg);
    qn_gguf_close(g);
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* safetensors                                                                                      */

static void st_print_tensors(const qn_st *st) {
    const bool sharded = qn_st_n_shards(st) > 1;
    printf("\ntensors (shape in PyTorch order):\n");
    printf("  %-5s %-56s %-5s %-24s %14s%s\n", "#", "name", "dtype", "shape", "bytes", sharded ? "  shard" : "");
    uint64_t total = 0;
    for (int64_t i = 0; i < qn_st_n_tensors(st); i++) {
        const qn_st_tensor *t = qn_st_tensor_at(st, i);
        char shape[160];
        int n = snprintf(shape, sizeof shape, "[");
        for (uint32_t j = 0; j < t->n_dims && n < (int)sizeof shape; j++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%" PRId64, j ? ", " : "", t->shape[j]);
        if (n < (int)sizeof shape) snprintf(shape + n, sizeof shape - (size_t)n, "]");
        printf("  %-5" PRId64 " %-56s %-5s %-24s %14" PRIu64, i, t->name, qn_st_dtype_name(t->dtype), shape,
               t->nbytes);
        if (sharded) {
            const char *base = strrchr(t->shard, '/');
            printf("  %s", base ? base + 1 : t->shard);
        }
        putchar('\n');
        total += t->nbytes;
    }
    printf("  total: %" PRId64 " tensors, ", qn_st_n_tensors(st));
    print_bytes(total);
    putchar('\n');
}

/* config.json next to the checkpoint: in DIR, or beside FILE. */
static void st_print_config(const char *path, bool is_dir) {
    char cfg_path[4096];
    if (is_dir) {
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", path);
    } else {
        const char *slash = strrchr(path, '/');
        const int dl = slash ? (int)(slash - path) : 1;
        snprintf(cfg_path, sizeof cfg_path, "%.*s/config.json", dl, slash ? path : ".");
    }
    if (access(cfg_path, F_OK) != 0) {
        printf("\nconfig: no config.json next to the checkpoint\n");
        return;
    }
    qn_model_config cfg;
    qn_error err = {0};
    if (qn_model_config_from_hf(cfg_path, &cfg, &err) == QN_OK) print_config(&cfg);
    else fprintf(stderr, "quern inspect: warning: no model config: %s\n", err.msg);
}

static int inspect_safetensors(const char *path, bool is_dir, const qn_inspect_opts *o) {
    qn_st *st = NULL;
    qn_error err = {0};
    if (qn_st_open(path, &st, &err) != QN_OK) {
        fprintf(stderr, "quern inspect: %s\n", err.msg);
        return 1;
    }
    printf("file: %s\n", path);
    printf("format: safetensors, %" PRId64 " shard%s, %" PRId64 " tensors\n", qn_st_n_shards(st),
           qn_st_n_shards(st) == 1 ? "" : "s", qn_st_n_tensors(st));
    for (int64_t i = 0; i < qn_st_n_shards(st) && qn_st_n_shards(st) > 1; i++)
        printf("  shard %" PRId64 ": %s\n", i, qn_st_shard_path(st, i));
    printf("\nmetadata (__metadata__):\n");
    const char *k, *v;
    for (int64_t i = 0; qn_st_metadata_at(st, i, &k, &v) == 0; i++) {
        printf("  %-44s ", k);
        print_str(v, strlen(v));
        putchar('\n');
    }
    if (!o->no_tensors) st_print_tensors(st);
    st_print_config(path, is_dir);
    qn_st_close(st);
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* entry                                                                                            */

/* GGUF when the file starts with the magic; everything else goes to the safetensors reader. */
static bool is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char m[4] = {0};
    const bool yes = fread(m, 1, 4, f) == 4 && !memcmp(m, "GGUF", 4);
    fclose(f);
    return yes;
}

int qn_cmd_inspect(int argc, char **argv) {
    qn_inspect_opts o = {.no_tensors = false, .max_values = 5};
    bool help = false;
    const qn_arg table[] = {
        {"no-tensors", NULL, 0, QN_ARG_BOOL, &o.no_tensors, "skip the tensor table"},
        {"max-values", NULL, 'n', QN_ARG_INT, &o.max_values, "array elements shown per key (default 5)"},
        {"help", NULL, 'h', QN_ARG_BOOL, &help, "show this help"},
    };
    const int n_table = (int)(sizeof table / sizeof table[0]);
    const char *pos[1];
    int n_pos = 0;
    if (!qn_args_parse("inspect", argc, argv, table, n_table, pos, 1, &n_pos)) return 1;
    if (help || n_pos != 1) {
        qn_args_usage("inspect", "FILE.gguf | FILE.safetensors | model.safetensors.index.json | DIR", table,
                      n_table);
        return help ? 0 : 1;
    }
    if (o.max_values < 0) o.max_values = 0;
    const char *path = pos[0];
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "quern inspect: %s: no such file or directory\n", path);
        return 1;
    }
    const bool is_dir = S_ISDIR(sb.st_mode);
    if (!is_dir && is_gguf(path)) return inspect_gguf(path, &o);
    return inspect_safetensors(path, is_dir, &o);
}
