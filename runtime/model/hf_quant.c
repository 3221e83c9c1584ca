/* hf_quant.c — quantization config of an HF checkpoint and per-linear tensor binding (model/hf_quant.h). */
#include "model/hf_quant.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ------------------------------------------------------------------ config */

static json_t *jget2(json_t *o, const char *a, const char *b) {
    json_t *v = json_object_get(o, a);
    return v && !json_is_null(v) ? v : (b ? json_object_get(o, b) : NULL);
}

static qn_status jint(json_t *o, const char *file, const char *a, const char *b, int32_t def, int32_t *out,
                      qn_error *err) {
    json_t *v = jget2(o, a, b);
    if (!v || json_is_null(v)) {
        *out = def;
        return QN_OK;
    }
    if (!json_is_integer(v)) return qn_error_set(err, QN_ERR_FORMAT, "%s: quantization field '%s' is not an integer", file, a);
    *out = (int32_t)json_integer_value(v);
    return QN_OK;
}

static bool jbool(json_t *o, const char *a, const char *b, bool def) {
    json_t *v = jget2(o, a, b);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static const char *jstr(json_t *o, const char *a, const char *b) { return json_string_value(jget2(o, a, b)); }

static qn_status parse_qcfg(json_t *q, const char *file, qn_hf_quant_config *c, qn_error *err) {
    qn_status st;
    const char *method = jstr(q, "quant_method", "method");
    const char *fmt = jstr(q, "checkpoint_format", "format");
    if (!method && jbool(q, "is_marlin_format", NULL, false)) method = "gptq";
    if (!method && json_object_get(q, "load_in_4bit")) method = "bitsandbytes";
    if (!method && jget2(q, "w_bit", "q_group_size")) method = "awq";
    if (!method && jget2(q, "bits", NULL)) method = "gptq"; /* AutoGPTQ quantize_config.json has no quant_method */
    if (!method) return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: quantization field 'quant_method' is missing", file);
    if (!strcasecmp(method, "gptq")) {
        c->method = QN_HF_QUANT_GPTQ;
        if ((st = jint(q, file, "bits", "w_bit", 4, &c->bits, err)) ||
            (st = jint(q, file, "group_size", "q_group_size", 128, &c->group_size, err)))
            return st;
        c->sym = jbool(q, "sym", NULL, true);
        c->desc_act = jbool(q, "desc_act", NULL, false);
        c->lm_head = jbool(q, "lm_head", NULL, false);
        if (jbool(q, "is_marlin_format", NULL, false) || (fmt && !strcasecmp(fmt, "marlin")))
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: quantization field 'checkpoint_format': marlin is not supported", file);
        if (fmt && strcasecmp(fmt, "gptq") && strcasecmp(fmt, "gptq_v2"))
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: quantization field 'checkpoint_format': '%s' is not supported (gptq, gptq_v2)", file, fmt);
        c->gptq_v2 = fmt && !strcasecmp(fmt, "gptq_v2");
        const char *pd = jstr(q, "pack_dtype", NULL);
        if (pd && strcmp(pd, "int32"))
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: quantization field 'pack_dtype': '%s' (only int32)", file, pd);
        json_t *dyn = json_object_get(q, "dynamic");
        if (dyn && json_is_object(dyn) && json_object_size(dyn))
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: quantization field 'dynamic': per-module overrides are not supported", file);
        if (c->bits != 2 && c->bits != 3 && c->bits != 4 && c->bits != 8)
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: quantization field 'bits': %d (GPTQ: 2, 3, 4, 8)", file, c->bits);
        if (c->group_size == 0 || c->group_size < -1)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: quantization field 'group_size': %d", file, c->group_size);
    } else if (!strcasecmp(method, "awq")) {
        c->method = QN_HF_QUANT_AWQ;
        if ((st = jint(q, file, "bits", "w_bit", 4, &c->bits, err)) ||
            (st = jint(q, file, "group_size", "q_group_size", 128, &c->group_size, err)))
            return st;
        const char *ver = jstr(q, "version", NULL);
        if (!ver || !strcasecmp(ver, "gemm"))
            c->awq_layout = QN_AWQ_GEMM;
        else if (!strcasecmp(ver, "gemv"))
            c->awq_layout = QN_AWQ_GEMV;
        else
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: quantization field 'version': '%s' (supported: gemm, gemv)", file, ver);
        if (!jbool(q, "zero_point", NULL, true))
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: quantization field 'zero_point': false is not supported", file);
        if (c->bits != 4)
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: quantization field 'bits': %d (AWQ: 4)", file, c->bits);
        if (c->group_size <= 0)
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: quantization field 'group_size': %d", file, c->group_size);
    } else if (!strcasecmp(method, "bitsandbytes")) {
        if (jbool(q, "load_in_8bit", "_load_in_8bit", false))
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: quantization field 'load_in_8bit': LLM.int8 is not supported", file);
        if (!jbool(q, "load_in_4bit", "_load_in_4bit", false))
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: quantization field 'load_in_4bit' is not true", file);
        c->method = QN_HF_QUANT_BNB4;
        c->bits = 4;
    } else {
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: quantization field 'quant_method': '%s' (supported: gptq, awq, bitsandbytes)", file, method);
    }
    return QN_OK;
}

qn_status qn_hf_quant_config_read(const char *dir, qn_hf_quant_config *out, qn_error *err) {
    memset(out, 0, sizeof *out);
    out->method = QN_HF_QUANT_NONE;
    static const char *const files[] = {"config.json", "quantize_config.json", "quant_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (access(path, R_OK) != 0) continue;
        json_error_t jerr;
        json_t *root = json_load_file(path, 0, &jerr);
        if (!root) return qn_error_set(err, QN_ERR_FORMAT, "%s: %s (line %d)", path, jerr.text, jerr.line);
        json_t *q = i == 0 ? json_object_get(root, "quantization_config") : root;
        qn_status st = QN_OK;
        const bool found = q && json_is_object(q);
        if (found) st = parse_qcfg(q, path, out, err);
        json_decref(root);
        if (st != QN_OK || found) return st;
    }
    return QN_OK;
}

/* ------------------------------------------------------------------ tensors */

static qn_status need(const qn_st *st, const char *prefix, const char *field, qn_st_dtype dt, int n_dims,
                      const int64_t *shape, bool optional, const qn_st_tensor **out, qn_error *err) {
    char name[512];
    snprintf(name, sizeof name, "%s%s", prefix, field);
    const qn_st_tensor *t = qn_st_find(st, name);
    *out = t;
    if (!t) return optional ? QN_OK : qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s' is missing", qn_st_path(st), name);
    if (t->dtype != dt)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s': field dtype is %s, expected %s", qn_st_path(st),
                            name, qn_st_dtype_name(t->dtype), qn_st_dtype_name(dt));
    if (shape) {
        bool ok = (int)t->n_dims == n_dims;
        for (int i = 0; ok && i < n_dims; i++) ok = t->shape[i] == shape[i];
        if (!ok) {
            char got[128] = "", want[128] = "";
            for (uint32_t i = 0; i < t->n_dims; i++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
            for (int i = 0; i < n_dims; i++)
                snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "", (long long)shape[i]);
            return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': field shape is [%s], expected [%s]", qn_st_path(st),
                                name, got, want);
        }
    }
    return QN_OK;
}

qn_status qn_hf_gptq_bind(const qn_st *st, const char *prefix, const qn_hf_quant_config *qc, int64_t k, int64_t n,
                          qn_gptq_weight *out, qn_error *err) {
    memset(out, 0, sizeof *out);
    const qn_st_tensor *qw, *qz, *sc, *gi;
    qn_status s;
    const int64_t b = qc->bits;
    const int64_t shq[2] = {k * b / 32, n};
    if ((s = need(st, prefix, "qweight", QN_ST_DTYPE_I32, 2, shq, false, &qw, err))) return s;
    if ((s = need(st, prefix, "scales", QN_ST_DTYPE_F16, 2, NULL, false, &sc, err)) != QN_OK) {
        if ((s = need(st, prefix, "scales", QN_ST_DTYPE_BF16, 2, NULL, false, &sc, err))) return s;
        out->scales_bf16 = true;
    }
    const int64_t G = sc->shape[0];
    const int64_t shs[2] = {G, n}, shz[2] = {G, n * b / 32}, shg[1] = {k};
    if ((s = need(st, prefix, "scales", sc->dtype, 2, shs, false, &sc, err)) ||
        (s = need(st, prefix, "qzeros", QN_ST_DTYPE_I32, 2, shz, false, &qz, err)) ||
        (s = need(st, prefix, "g_idx", QN_ST_DTYPE_I32, 1, shg, true, &gi, err)))
        return s;
    out->bits = qc->bits;
    out->group_size = qc->group_size > 0 ? qc->group_size : (int32_t)k;
    out->k = k, out->n = n, out->n_groups = G, out->v2 = qc->gptq_v2;
    out->qweight = qw->data, out->qzeros = qz->data, out->scales = sc->data, out->g_idx = gi ? gi->data : NULL;
    char why[256];
    if ((s = qn_gptq_check(out, why, sizeof why)) != QN_OK)
        return qn_error_set(err, s, "%s: tensor '%sqweight': %s", qn_st_path(st), prefix, why);
    return QN_OK;
}

qn_status qn_hf_awq_bind(const qn_st *st, const char *prefix, const qn_hf_quant_config *qc, int64_t k, int64_t n,
                         qn_awq_weight *out, qn_error *err) {
    memset(out, 0, sizeof *out);
    out->layout = qc->awq_layout, out->bits = qc->bits, out->group_size = qc->group_size, out->k = k, out->n = n;
    out->zeros_width = qc->awq_layout == QN_AWQ_GEMM ? n / 8 : qn_awq_gemv_zeros_width(k, qc->group_size);
    char why[256];
    qn_status s;
    if ((s = qn_awq_check(out, why, sizeof why)) != QN_OK)
        return qn_error_set(err, s, "%s: tensor '%sqweight': %s", qn_st_path(st), prefix, why);
    const qn_st_tensor *qw, *qz, *sc;
    const int64_t G = k / qc->group_size;
    if (qc->awq_layout == QN_AWQ_GEMM) {
        out->zeros_width = n / 8;
        const int64_t shq[2] = {k, n / 8}, shz[2] = {G, n / 8}, shs[2] = {G, n};
        if ((s = need(st, prefix, "qweight", QN_ST_DTYPE_I32, 2, shq, false, &qw, err)) ||
            (s = need(st, prefix, "qzeros", QN_ST_DTYPE_I32, 2, shz, false, &qz, err)) ||
            (s = need(st, prefix, "scales", QN_ST_DTYPE_F16, 2, shs, false, &sc, err)))
            return s;
    } else {
        out->zeros_width = qn_awq_gemv_zeros_width(k, qc->group_size);
        if (!out->zeros_width)
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%sqzeros': GEMV group_size %d (32, 64, >= 128)",
                                qn_st_path(st), prefix, qc->group_size);
        const int64_t shq[2] = {n, k / 8}, shz[2] = {n, out->zeros_width}, shs[2] = {n, 8 * out->zeros_width};
        if ((s = need(st, prefix, "qweight", QN_ST_DTYPE_I32, 2, shq, false, &qw, err)) ||
            (s = need(st, prefix, "qzeros", QN_ST_DTYPE_I32, 2, shz, false, &qz, err)) ||
            (s = need(st, prefix, "scales", QN_ST_DTYPE_F16, 2, shs, false, &sc, err)))
            return s;
    }
    out->qweight = qw->data, out->qzeros = qz->data, out->scales = sc->data;
    return QN_OK;
}

qn_status qn_hf_bnb4_bind(const qn_st *st, const char *prefix, int64_t k, int64_t n, qn_bnb4_weight *out,
                          qn_error *err) {
    memset(out, 0, sizeof *out);
    const char *path = qn_st_path(st);
    char name[512];
    const qn_st_tensor *qs = NULL;
    qn_bnb4_type type = QN_BNB4_NF4;
    snprintf(name, sizeof name, "%sweight.quant_state.bitsandbytes__nf4", prefix);
    if (!(qs = qn_st_find(st, name))) {
        snprintf(name, sizeof name, "%sweight.quant_state.bitsandbytes__fp4", prefix);
        qs = qn_st_find(st, name);
        type = QN_BNB4_FP4;
    }
    if (!qs) return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%sweight.quant_state.bitsandbytes__nf4' (or __fp4) is missing", path, prefix);
    json_error_t jerr;
    json_t *js = json_loadb(qs->data, (size_t)qs->nbytes, 0, &jerr);
    if (!js || !json_is_object(js)) {
        json_decref(js);
        return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': quant_state is not a JSON object", path, name);
    }
    qn_status s = QN_OK;
    const char *qt = json_string_value(json_object_get(js, "quant_type"));
    const char *dt = json_string_value(json_object_get(js, "dtype"));
    json_t *shape = json_object_get(js, "shape");
    json_t *bs = json_object_get(js, "blocksize");
    json_t *nbs = json_object_get(js, "nested_blocksize");
    json_t *noff = json_object_get(js, "nested_offset");
    if (!qt || strcmp(qt, type == QN_BNB4_NF4 ? "nf4" : "fp4"))
        s = qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': field 'quant_type' is '%s'", path, name, qt ? qt : "(missing)");
    else if (!dt || (strcmp(dt, "float16") && strcmp(dt, "bfloat16")))
        s = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s': field 'dtype' is '%s' (float16, bfloat16)", path, name, dt ? dt : "(missing)");
    else if (!json_is_array(shape) || json_array_size(shape) != 2 ||
             json_integer_value(json_array_get(shape, 0)) != n || json_integer_value(json_array_get(shape, 1)) != k)
        s = qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': field 'shape' is not [%lld, %lld]", path, name, (long long)n, (long long)k);
    else if (bs && !json_is_integer(bs))
        s = qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': field 'blocksize' is not an integer", path, name);
    if (s != QN_OK) {
        json_decref(js);
        return s;
    }
    out->type = type;
    out->k = k, out->n = n;
    out->blocksize = bs ? (int32_t)json_integer_value(bs) : 64;
    out->dtype = strcmp(dt, "bfloat16") ? QN_LUTQ_ROUND_F16 : QN_LUTQ_ROUND_BF16;
    out->nested = nbs != NULL;
    out->nested_blocksize = nbs ? (int32_t)json_integer_value(nbs) : 0;
    out->nested_offset = noff ? (float)json_number_value(noff) : 0.0f;
    json_t *ndt = json_object_get(js, "nested_dtype");
    if (out->nested && ndt && strcmp(json_string_value(ndt) ? json_string_value(ndt) : "", "float32"))
        s = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s': field 'nested_dtype' is not float32", path, name);
    json_decref(js);
    if (s != QN_OK) return s;

    const qn_st_tensor *w, *am, *qm, *nam = NULL, *nqm = NULL;
    snprintf(name, sizeof name, "%sweight", prefix);
    w = qn_st_find(st, name);
    if (!w) return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s' is missing", path, name);
    /* bnb_4bit_quant_storage other than uint8 stores the same bytes under another dtype */
    if (w->nbytes != (uint64_t)((n * k + 1) / 2))
        return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': field nbytes %llu, expected %lld packed codes", path,
                            name, (unsigned long long)w->nbytes, (long long)((n * k + 1) / 2));
    out->n_blocks = (n * k + out->blocksize - 1) / out->blocksize;
    const int64_t sh16[1] = {16}, shb[1] = {out->n_blocks};
    if ((s = need(st, prefix, "weight.absmax", out->nested ? QN_ST_DTYPE_U8 : QN_ST_DTYPE_F32, 1, shb, false, &am, err)) ||
        (s = need(st, prefix, "weight.quant_map", QN_ST_DTYPE_F32, 1, sh16, false, &qm, err)))
        return s;
    if (out->nested) {
        const int64_t shn[1] = {(out->n_blocks + out->nested_blocksize - 1) / out->nested_blocksize}, sh256[1] = {256};
        if ((s = need(st, prefix, "weight.nested_absmax", QN_ST_DTYPE_F32, 1, shn, false, &nam, err)) ||
            (s = need(st, prefix, "weight.nested_quant_map", QN_ST_DTYPE_F32, 1, sh256, false, &nqm, err)))
            return s;
    }
    out->codes = w->data, out->absmax = am->data, out->quant_map = qm->data;
    out->nested_absmax = nam ? nam->data : NULL, out->nested_quant_map = nqm ? nqm->data : NULL;
    char why[256];
    if ((s = qn_bnb4_check(out, why, sizeof why)) != QN_OK)
        return qn_error_set(err, s, "%s: tensor '%sweight': %s", path, prefix, why);
    return QN_OK;
}
