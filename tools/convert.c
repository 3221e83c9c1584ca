/* convert.c — `quern convert HF_DIR OUT.gguf [--outtype f16|bf16|f32|q8_0] [--lora ADAPTER_DIR]` and
 * `quern export-hf MODEL.gguf OUT_DIR [--dtype f16|bf16|f32]`: Hugging Face checkpoints to GGUF as
 * llama.cpp's convert_hf_to_gguf.py writes them (runtime/model/hf_convert.h), and back
 * (runtime/model/hf_export.h). Outputs appear only when complete (NAME.tmp, then renamed). */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "model/hf_convert.h"
#include "model/hf_export.h"

typedef struct progress_state {
    bool tty, quiet;
} progress_state;

static void on_progress(void *ud, const qn_quantize_progress *p) {
    const progress_state *s = ud;
    if (s->quiet || !p->done) return;
    fprintf(stderr, "%s[%4lld/%4lld] %-28s %-5s [%lld, %lld]%s", s->tty ? "\r\033[K" : "", (long long)p->index + 1,
            (long long)p->count, p->name, QN_QFORMATS[p->to].name, (long long)p->n_per_row, (long long)p->rows,
            s->tty ? "" : "\n");
    if (s->tty && p->index + 1 == p->count) fputc('\n', stderr);
}

int qn_cmd_convert(int argc, char **argv) {
    const char *outtype = "f16", *lora = NULL;
    int n_threads = qn_tool_default_threads();
    bool quiet = false, help = false;
    const qn_arg table[] = {
        {"outtype", NULL, 0, QN_ARG_STR, &outtype, "f16 (default), bf16, f32 or q8_0 (1-D tensors and norms stay f32)"},
        {"lora", NULL, 0, QN_ARG_STR, &lora, "PEFT LoRA adapter directory merged into the weights first"},
        {"threads", NULL, 't', QN_ARG_INT, &n_threads, "worker threads (default: all cores)"},
        {"quiet", NULL, 'q', QN_ARG_BOOL, &quiet, "no per-tensor progress"},
        {"help", NULL, 'h', QN_ARG_BOOL, &help, "show this help"},
    };
    const int n_table = (int)(sizeof table / sizeof table[0]);
    const char *pos[2];
    int n_pos = 0;
    if (!qn_args_parse("convert", argc, argv, table, n_table, pos, 2, &n_pos)) return 1;
    if (help || n_pos != 2) {
        qn_args_usage("convert", "HF_DIR OUT.gguf [--outtype f16|bf16|f32|q8_0] [--lora ADAPTER_DIR]", table, n_table);
        return help ? 0 : 1;
    }
    static const struct {
        const char *name;
        qn_ftype ftype;
    } types[] = {{"f32", QN_FTYPE_ALL_F32}, {"f16", QN_FTYPE_MOSTLY_F16}, {"bf16", QN_FTYPE_MOSTLY_BF16},
                 {"q8_0", QN_FTYPE_MOSTLY_Q8_0}};
    qn_hf_convert_params p = {.outtype = (qn_ftype)-1, .lora_dir = lora, .n_threads = n_threads};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcasecmp(outtype, types[i].name)) p.outtype = types[i].ftype;
    if ((int)p.outtype < 0) {
        fprintf(stderr, "quern convert: --outtype '%s': one of f16, bf16, f32, q8_0\n", outtype);
        return 1;
    }
    progress_state ps = {.tty = isatty(2) != 0, .quiet = quiet};
    p.progress = on_progress;
    p.progress_ud = &ps;
    qn_hf_convert_stats stats;
    qn_error err = {0};
    if (qn_hf_convert(pos[0], pos[1], &p, &stats, &err) != QN_OK) {
        fprintf(stderr, "quern convert: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "quern convert: %s: %lld tensors, %s, %.2f MiB in %.1f s", pos[1], (long long)stats.n_tensors,
            outtype, (double)stats.bytes_out / (1 << 20), stats.seconds);
    if (lora) fprintf(stderr, ", LoRA merged into %lld weights", (long long)stats.n_lora_merged);
    fputc('\n', stderr);
    return 0;
}

int qn_cmd_export_hf(int argc, char **argv) {
    const char *dtype = "f16";
    bool help = false;
    const qn_arg table[] = {
        {"dtype", NULL, 0, QN_ARG_STR, &dtype, "f16 (default), bf16 or f32"},
        {"help", NULL, 'h', QN_ARG_BOOL, &help, "show this help"},
    };
    const int n_table = (int)(sizeof table / sizeof table[0]);
    const char *pos[2];
    int n_pos = 0;
    if (!qn_args_parse("export-hf", argc, argv, table, n_table, pos, 2, &n_pos)) return 1;
    if (help || n_pos != 2) {
        qn_args_usage("export-hf", "MODEL.gguf OUT_DIR [--dtype f16|bf16|f32]", table, n_table);
        return help ? 0 : 1;
    }
    qn_st_dtype d;
    if (!strcasecmp(dtype, "f16")) d = QN_ST_DTYPE_F16;
    else if (!strcasecmp(dtype, "bf16")) d = QN_ST_DTYPE_BF16;
    else if (!strcasecmp(dtype, "f32")) d = QN_ST_DTYPE_F32;
    else {
        fprintf(stderr, "quern export-hf: --dtype '%s': one of f16, bf16, f32\n", dtype);
        return 1;
    }
    const double t0 = qn_tool_now_s();
    qn_error err = {0};
    if (qn_hf_export(pos[0], pos[1], d, &err) != QN_OK) {
        fprintf(stderr, "quern export-hf: %s\n", err.msg);
        return 1;
    }
    char tm[4200];
    snprintf(tm, sizeof tm, "%s/tokenizer.model", pos[1]);
    fprintf(stderr, "quern export-hf: %s: config.json, generation_config.json, model.safetensors (%s), tokenizer.json, "
            "tokenizer_config.json%s in %.1f s\n", pos[1], dtype, access(tm, F_OK) == 0 ? ", tokenizer.model" : "",
            qn_tool_now_s() - t0);
    return 0;
}
