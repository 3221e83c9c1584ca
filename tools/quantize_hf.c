/* quantize_hf.c — `quern quantize HF_DIR OUT_DIR gptq|awq|nf4 [...]`: quantizes a Hugging Face directory into the
 * AutoGPTQ/GPTQModel, AutoAWQ (GEMM) or bitsandbytes layout (runtime/model/hf_quantize.h); reached from quantize.c
 * when the third positional argument names one of these methods. Progress (layer i/N, ETA, the device) on stderr;
 * with -v, AWQ prints each scaling group's alpha and its calibration error against round-to-nearest. --device picks
 * where GPTQ's / AWQ's calibration work runs (auto: CUDA when built with it and a device is present). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "model/hf_quantize.h"

int qn_quantize_is_hf_method(const char *s) { return !strcmp(s, "gptq") || !strcmp(s, "nf4") || !strcmp(s, "awq"); }

typedef struct hf_progress_state {
    bool tty, quiet, verbose;
    char device[160]; /* the calibration backend's name, from the first progress callback ("" until then) */
} hf_progress_state;

static void on_awq(void *ud, int32_t layer, const char *group, float alpha, double err_rtn, double err_best) {
    const hf_progress_state *s = ud;
    if (s->verbose)
        fprintf(stderr, "awq: layer %d %-16s alpha %.2f  error %.4g (rtn %.4g, x%.3f)\n", layer, group, (double)alpha,
                err_best, err_rtn, err_rtn > 0 ? err_best / err_rtn : 1.0);
}

static void on_progress(void *ud, const qn_hfq_progress *p) {
    hf_progress_state *s = ud;
    if (!s->device[0] && p->device) snprintf(s->device, sizeof s->device, "%s", p->device);
    if (!s->quiet && !strcmp(p->what, "calibration"))
        fprintf(stderr, "quantize: calibration and quantization on %s\n", p->device);
    if (s->quiet || strcmp(p->what, "layer")) return;
    fprintf(stderr, "%slayer %lld/%lld [%s]  %.1f s, ETA %.0f s%s", s->tty ? "\r\033[K" : "", (long long)p->index + 1,
            (long long)p->count, p->device, p->elapsed_s, p->eta_s, s->tty && p->index + 1 < p->count ? "" : "\n");
}

int qn_cmd_quantize_hf(int argc, char **argv) {
    int n_threads = qn_tool_default_threads(), bits = 4, group_size = 128, n_samples = 0, calib_ctx = 0;
    bool act_order = false, sym = false, v2 = false, rtn = false, double_quant = false, quiet = false, help = false;
    bool no_clip = false, verbose = false, mse = false, no_act_order = false, dynamic_groups = false;
    int awq_grid = 0;
    float damp = 0.1f; /* transformers/optimum's GPTQConfig default (AutoGPTQ: 0.01), see the defaults note below */
    const char *calib = NULL, *device = "auto";
    const qn_arg table[] = {
        {"bits", NULL, 'b', QN_ARG_INT, &bits, "gptq: 2, 3, 4 or 8 (default 4)"},
        {"group-size", NULL, 'g', QN_ARG_INT, &group_size, "gptq/awq: columns per group, -1 = one group (gptq; default 128)"},
        {"act-order", "desc-act", 0, QN_ARG_BOOL, &act_order, "gptq: columns by descending Hessian diagonal (the default)"},
        {"no-act-order", NULL, 0, QN_ARG_BOOL, &no_act_order, "gptq: columns in their stored order"},
        {"dynamic-groups", NULL, 0, QN_ARG_BOOL, &dynamic_groups, "gptq: fit each group's scale/zero when GPTQ reaches it, "
         "on the updated weights (default: static groups, fitted on the original weights; g_idx stays k / group)"},
        {"sym", NULL, 0, QN_ARG_BOOL, &sym, "gptq: symmetric (default: asymmetric scale/zero)"},
        {"damp", NULL, 0, QN_ARG_FLOAT, &damp, "gptq: dampening, fraction of the mean diagonal (default 0.1)"},
        {"mse", NULL, 0, QN_ARG_BOOL, &mse, "gptq: per-group range search (shrink of min/max, lowest |error|^2.4)"},
        {"v2", NULL, 0, QN_ARG_BOOL, &v2, "gptq: write checkpoint_format gptq_v2 (GPTQModel) instead of gptq"},
        {"calib", NULL, 0, QN_ARG_STR, &calib, "gptq/awq: calibration text file"},
        {"calib-samples", NULL, 0, QN_ARG_INT, &n_samples, "gptq/awq: calibration windows (default 64)"},
        {"calib-ctx", NULL, 0, QN_ARG_INT, &calib_ctx, "gptq/awq: tokens per window (default 512)"},
        {"awq-grid", NULL, 0, QN_ARG_INT, &awq_grid, "awq: scale search points alpha = i/N (default 20)"},
        {"no-clip", NULL, 0, QN_ARG_BOOL, &no_clip, "awq: skip the clipping search"},
        {"rtn", NULL, 0, QN_ARG_BOOL, &rtn, NULL}, /* round-to-nearest in the GPTQ layout (baseline) */
        {"double-quant", NULL, 0, QN_ARG_BOOL, &double_quant, "nf4: quantize the absmax too (nested, 256)"},
        {"device", NULL, 0, QN_ARG_STR, &device, "gptq/awq: auto|cpu|cuda, where calibration and the dense "
         "quantization work run (default auto: CUDA when this build has it and a GPU is present)"},
        {"threads", NULL, 't', QN_ARG_INT, &n_threads, "worker threads (default: all cores)"},
        {"quiet", NULL, 'q', QN_ARG_BOOL, &quiet, "no progress"},
        {"verbose", NULL, 'v', QN_ARG_BOOL, &verbose, "awq: print every scaling group's search result"},
        {"help", NULL, 'h', QN_ARG_BOOL, &help, "show this help"},
    };
    const int n_table = (int)(sizeof table / sizeof table[0]);
    const char *pos[3];
    int n_pos = 0;
    if (!qn_args_parse("quantize", argc, argv, table, n_table, pos, 3, &n_pos)) return 1;
    if (help || n_pos != 3) {
        qn_args_usage("quantize", "HF_DIR OUT_DIR gptq|awq|nf4", table, n_table);
        return help ? 0 : 1;
    }
    qn_hfq_params p = qn_hfq_params_default();
    p.method = !strcmp(pos[2], "nf4") ? QN_HFQ_NF4 : !strcmp(pos[2], "awq") ? QN_HFQ_AWQ : QN_HFQ_GPTQ;
    p.awq.group_size = group_size, p.awq.clip = !no_clip;
    if (awq_grid) p.awq.n_grid = awq_grid;
    /* Defaults act-order, static groups, damp 0.1: the GPTQ variant measured better than round-to-nearest on
     * SmolLM2 on all three texts tried (bench/results/quality-hf-quantize-2026-12-02.md); --act-order is kept for
     * old command lines */
    (void)act_order;
    p.gptq.bits = bits, p.gptq.group_size = group_size, p.gptq.act_order = !no_act_order, p.gptq.sym = sym;
    p.gptq.v2 = v2, p.gptq.mse = mse, p.gptq.static_groups = !dynamic_groups, p.gptq.damp = damp, p.rtn = rtn, p.double_quant = double_quant;
    if (n_samples) p.calib.n_samples = n_samples;
    if (calib_ctx) p.calib.ctx = calib_ctx;
    p.n_threads = n_threads < 1 ? 1 : n_threads;
    if (!qn_calib_device_parse(device, &p.device)) {
        fprintf(stderr, "quern quantize: --device %s (auto, cpu or cuda)\n", device);
        return 1;
    }
    char *text = NULL;
    if ((p.method == QN_HFQ_GPTQ && !rtn) || p.method == QN_HFQ_AWQ) {
        if (!calib) {
            fprintf(stderr, "quern quantize: %s needs --calib TEXT_FILE\n", pos[2]);
            return 1;
        }
        if (!(text = qn_tool_read_text("quantize", calib, &p.calib_len))) return 1;
        p.calib_text = text;
    }
    hf_progress_state ps = {.tty = isatty(2) != 0, .quiet = quiet, .verbose = verbose};
    p.progress = on_progress, p.awq_log = on_awq, p.progress_ud = &ps;
    const double t0 = qn_tool_now_s();
    qn_error err = {0};
    const qn_status st = qn_hf_quantize(pos[0], pos[1], &p, &err);
    free(text);
    if (st != QN_OK) {
        fprintf(stderr, "quern quantize: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "quern quantize: %s: %s in %.1f s on %s\n", pos[1],
            p.method == QN_HFQ_NF4 ? (double_quant ? "nf4 (double quant)" : "nf4")
            : p.method == QN_HFQ_AWQ ? "awq (gemm)" : rtn ? "rtn (gptq layout)" : "gptq",
            qn_tool_now_s() - t0, ps.device[0] ? ps.device : "cpu");
    return 0;
}
