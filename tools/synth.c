/* synth.c — `quern synth --preset NAME --type TYPE -o OUT [--seed S] [--layers N] [--vocab FILE]`:
 * writes a model with the real shapes of a known model and seeded random weights, for GPU benchmarks
 * where the real weights cannot be had: a GGUF file for the llama.cpp types (runtime/model/synth.h), a
 * quantized Hugging Face directory for gptq4 / gptq8 / gptq4-act / awq4 / nf4 / nf4-dq / fp4, with
 * random codes written directly (runtime/model/hf_synth.h). The tokenizer comes from the real model's
 * family when one is at hand: llama.cpp's vocab-only GGUFs (models/ggml-vocab-*.gguf of the
 * llama-cpp-python sdist, under $QN_CACHE/llama.cpp) for llama3 / llama2 / mistral / qwen2.5, the
 * default SmolLM2 model for smollm2-135m; otherwise SmolLM2's tokenizer padded to the preset's
 * vocabulary with [PAD<id>] tokens (formats.md §1.3 keys; see synth.h). In a Hugging Face directory the
 * tokenizer is tokenizer.json (+ tokenizer.model for SentencePiece: llama2 / mistral), as export-hf writes it. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "model/hf_synth.h"
#include "model/synth.h"

typedef struct progress_state {
    bool tty, quiet;
} progress_state;

static void on_progress(void *ud, const qn_quantize_progress *p) {
    const progress_state *s = ud;
    if (s->quiet || (!s->tty && !p->done)) return;
    char pct[16] = "";
    if (!p->done && p->rows > 0) snprintf(pct, sizeof pct, " %3d%%", (int)(100 * p->rows_done / p->rows));
    char eta[32];
    if (p->eta_s < 0) snprintf(eta, sizeof eta, "?");
    else if (p->eta_s < 90) snprintf(eta, sizeof eta, "%.0f s", p->eta_s);
    else snprintf(eta, sizeof eta, "%.1f min", p->eta_s / 60);
    fprintf(stderr, "%s[%4lld/%4lld] %-32s %-6s %10.2f MiB%s  %.0f s, ETA %s%s", s->tty ? "\r\033[K" : "",
            (long long)p->index + 1, (long long)p->count, p->name, QN_QFORMATS[p->to].name,
            (double)p->bytes_out / (1 << 20), pct, p->elapsed_s, eta, s->tty ? "" : "\n");
    if (s->tty && p->done && p->index + 1 == p->count) fputc('\n', stderr);
}

static void on_hf_progress(void *ud, int64_t index, int64_t count, const char *name, uint64_t bytes,
                           double elapsed_s) {
    const progress_state *s = ud;
    if (s->quiet || (!s->tty && index + 1 < count)) return;
    fprintf(stderr, "%s[%4lld/%4lld] %-48s %10.2f MiB  %.0f s%s", s->tty ? "\r\033[K" : "", (long long)index + 1,
            (long long)count, name, (double)bytes / (1 << 20), elapsed_s, s->tty ? "" : "\n");
    if (s->tty && index + 1 == count) fputc('\n', stderr);
}

/* The tokenizer file for a preset: llama.cpp's vocab GGUF of the model's family when present,
 * the default model (SmolLM2) otherwise. */
static const char *default_vocab(const qn_synth_preset *ps, char *buf, size_t cap) {
    if (strcmp(ps->tokenizer, "smollm2") != 0) {
        snprintf(buf, cap, "%s/llama.cpp/models/ggml-vocab-%s.gguf", qn_tool_cache_dir(), ps->tokenizer);
        if (access(buf, R_OK) == 0) return buf;
        fprintf(stderr,
                "quern synth: %s not found (scripts/fetch_testdata.sh unpacks it): using SmolLM2's tokenizer, "
                "padded to %d tokens\n",
                buf, ps->n_vocab);
    }
    return qn_tool_default_model();
}

int qn_cmd_synth(int argc, char **argv) {
    const char *preset_name = NULL, *type = NULL, *out = NULL, *vocab = NULL;
    int64_t seed = 1234;
    int n_layer = 0, n_threads = qn_tool_default_threads(), group_size = 0;
    float std = 0.02f;
    bool quiet = false, help = false, sym = false;
    const qn_arg table[] = {
        {"preset", NULL, 'p', QN_ARG_STR, &preset_name, "model shapes: llama3-8b llama2-7b mistral-7b qwen2.5-7b "
                                                        "smollm2-135m (tiny: a 256-wide test llama)"},
        {"type", NULL, 0, QN_ARG_STR, &type, "GGUF file type: Q4_0 ... Q6_K, Q4_K_M ..., F16, BF16, F32; or a "
                                             "Hugging Face directory: gptq4 gptq8 gptq4-act awq4 nf4 nf4-dq fp4"},
        {"output", NULL, 'o', QN_ARG_STR, &out, "output GGUF file (a directory for the Hugging Face types)"},
        {"group-size", NULL, 0, QN_ARG_INT, &group_size, "gptq / awq group size (128; gptq also -1 = all of K)"},
        {"sym", NULL, 0, QN_ARG_BOOL, &sym, "gptq: symmetric (zero 2^(bits-1)); default asymmetric zeros"},
        {"seed", NULL, 's', QN_ARG_I64, &seed, "random seed (1234)"},
        {"layers", NULL, 0, QN_ARG_INT, &n_layer, "keep only the first N layers (default: all)"},
        {"std", NULL, 0, QN_ARG_FLOAT, &std, "standard deviation of the weights (0.02)"},
        {"vocab", NULL, 0, QN_ARG_STR, &vocab, "GGUF to copy the tokenizer from (default: see below)"},
        {"threads", NULL, 't', QN_ARG_INT, &n_threads, "worker threads (default: all cores)"},
        {"quiet", NULL, 'q', QN_ARG_BOOL, &quiet, "no per-tensor progress"},
        {"help", NULL, 'h', QN_ARG_BOOL, &help, "show this help"},
    };
    const int n_table = (int)(sizeof table / sizeof table[0]);
    const char *pos[1];
    int n_pos = 0;
    if (!qn_args_parse("synth", argc, argv, table, n_table, pos, 1, &n_pos)) return 1;
    if (help || n_pos != 0 || !preset_name || !type || !out) {
        qn_args_usage("synth", "--preset NAME --type TYPE -o OUT [--seed S] [--layers N]", table, n_table);
        fprintf(help ? stdout : stderr,
                "\nTokenizer: $QN_CACHE/llama.cpp/models/ggml-vocab-{llama-bpe,llama-spm,qwen2}.gguf for "
                "llama3 / llama2 and mistral / qwen2.5,\nthe default SmolLM2 model for smollm2-135m and tiny; "
                "SmolLM2's padded to the vocabulary size when a file is missing.\n"
                "Hugging Face types write OUT as a directory (model.safetensors, config.json with quantization_config, "
                "tokenizer.json)\nwith random codes whose dequantized weights have std --std: GPTQ v1 (g_idx; gptq4-act: "
                "desc_act with\nrandom act-order groups, one order per input as GPTQ gives: q/k/v, gate/up), AutoAWQ GEMM, "
                "bitsandbytes NF4 / FP4\n(nf4-dq: double quant); "
                "embeddings and norms\nfp16; the tokenizer as tokenizer.json (llama2 / mistral: also tokenizer.model).\n"
                "`quern run -m OUT`.\n");
        if (!help && (!preset_name || !type || !out))
            fprintf(stderr, "quern synth: --preset, --type and -o are required\n");
        return help ? 0 : 1;
    }
    qn_synth_params p = {.seed = (uint64_t)seed, .n_layer = n_layer, .std = std, .n_threads = n_threads};
    p.preset = qn_synth_preset_find(preset_name);
    if (!p.preset) {
        fprintf(stderr, "quern synth: unknown preset '%s' (one of: %s)\n", preset_name, qn_synth_preset_names());
        return 1;
    }
    qn_synth_hf_params hp = {.group_size = group_size, .sym = sym};
    const bool hf = qn_synth_hf_type_parse(type, &hp.type);
    if (!hf && qn_ftype_parse(type, &p.ftype) != QN_OK) {
        fprintf(stderr, "quern synth: unknown type '%s' (GGUF: %s; Hugging Face: %s)\n", type, qn_ftype_names(),
                qn_synth_hf_type_names());
        return 1;
    }
    if (!hf && (group_size != 0 || sym)) {
        fprintf(stderr, "quern synth: --group-size and --sym are for the Hugging Face types (%s)\n",
                qn_synth_hf_type_names());
        return 1;
    }
    if (n_layer < 0 || n_layer > p.preset->n_layer || n_threads < 1 || !(std > 0)) {
        fprintf(stderr, "quern synth: --layers must be 1..%d, --threads >= 1, --std > 0\n", p.preset->n_layer);
        return 1;
    }
    char vbuf[1024];
    p.vocab_path = vocab ? vocab : default_vocab(p.preset, vbuf, sizeof vbuf);
    progress_state ps = {.tty = isatty(2) != 0, .quiet = quiet};
    p.progress = on_progress;
    p.progress_ud = &ps;
    hp.progress = on_hf_progress;
    hp.progress_ud = &ps;
    qn_quantize_stats stats;
    qn_error err = {0};
    if ((hf ? qn_synth_hf(out, &p, &hp, &stats, &err) : qn_synth_gguf(out, &p, &stats, &err)) != QN_OK) {
        fprintf(stderr, "%squern synth: %s\n", ps.tty && !quiet ? "\n" : "", err.msg);
        return 1;
    }
    fprintf(stderr, "quern synth: %s: %s %s, %d layers, seed %lld, tokenizer from %s: %lld tensors, %.2f MiB in %.1f s\n",
            out, p.preset->name, hf ? qn_synth_hf_type_name(hp.type) : qn_ftype_name(p.ftype), n_layer ? n_layer : p.preset->n_layer, (long long)seed,
            p.vocab_path, (long long)stats.n_tensors, (double)stats.bytes_out / (1 << 20), stats.seconds);
    return 0;
}
