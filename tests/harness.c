/* harness.c — implementation of tests/harness.h. */
#include "harness.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void qn_rng_seed(qn_rng *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull; }

uint64_t qn_rng_u64(qn_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float qn_rng_uniform(qn_rng *r, float lo, float hi) {
    return lo + (hi - lo) * (float)((qn_rng_u64(r) >> 40) * (1.0 / 16777216.0));
}

float qn_rng_normal(qn_rng *r) {
    double u1 = ((qn_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (qn_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void qn_rng_fill_normal(qn_rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * qn_rng_normal(r);
}

void qn_rng_fill_bytes(qn_rng *r, void *p, size_t n) {
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(qn_rng_u64(r) >> 56);
}

void qn_rng_permutation(qn_rng *r, int32_t *perm, int64_t n) {
    for (int64_t j = 0; j < n; j++) perm[j] = (int32_t)j;
    for (int64_t j = n - 1; j > 0; j--) {
        const int64_t i = (int64_t)(qn_rng_u64(r) % (uint64_t)(j + 1));
        const int32_t t = perm[j];
        perm[j] = perm[i], perm[i] = t;
    }
}

static int check_impl(const char *what, const float *got, const double *refd, const float *reff, size_t n,
                      double atol, double rtol, double max_nmse, qn_check_result *out) {
    qn_check_result res = {0};
    double num = 0, den = 0;
    int shown = 0;
    for (size_t i = 0; i < n; i++) {
        const double ref = refd ? refd[i] : (double)reff[i];
        const double g = got[i];
        if (isnan(g) || (isnan(ref) != isnan(g))) {
            res.n_nan++;
            res.n_bad++;
            if (shown++ < 5) fprintf(stderr, "  %s[%zu]: got %g ref %g (nan)\n", what, i, g, ref);
            continue;
        }
        const double d = fabs(g - ref);
        num += d * d;
        den += ref * ref;
        if (d > res.max_abs_err) res.max_abs_err = d;
        const double rel = d / (fabs(ref) + atol + 1e-30);
        if (rel > res.max_rel_err) res.max_rel_err = rel;
        if (d > atol + rtol * fabs(ref)) {
            res.n_bad++;
            if (shown++ < 5) fprintf(stderr, "  %s[%zu]: got %.9g ref %.9g |d| %.3g\n", what, i, g, ref, d);
        }
    }
    res.nmse = den > 0 ? num / den : num;
    if (out) *out = res;
    const int ok = res.n_bad == 0 && res.nmse <= max_nmse;
    if (!ok)
        fprintf(stderr, "%s: %zu/%zu bad (%zu nan), max_rel %.3g max_abs %.3g nmse %.3g (limit %.3g)\n", what,
                res.n_bad, n, res.n_nan, res.max_rel_err, res.max_abs_err, res.nmse, max_nmse);
    return ok;
}

int qn_check_close(const char *what, const float *got, const double *ref, size_t n, double atol, double rtol,
                   double max_nmse, qn_check_result *out) {
    return check_impl(what, got, ref, NULL, n, atol, rtol, max_nmse, out);
}

int qn_check_close_f(const char *what, const float *got, const float *ref, size_t n, double atol, double rtol,
                     double max_nmse, qn_check_result *out) {
    return check_impl(what, got, NULL, ref, n, atol, rtol, max_nmse, out);
}

const char *qn_test_source_dir(void) {
    const char *s = getenv("QN_SOURCE_DIR");
    return s ? s : ".";
}

const char *qn_test_build_dir(void) {
    const char *s = getenv("QN_BUILD_DIR");
    return s ? s : ".";
}

const char *qn_test_python(void) {
    const char *s = getenv("QN_PYTHON");
    return (s && access(s, X_OK) == 0) ? s : NULL;
}

const char *qn_test_default_model(void) {
    static char path[1024];
    const char *m = getenv("QN_MODEL");
    if (m && access(m, R_OK) == 0) return m;
    const char *home = getenv("HOME");
    snprintf(path, sizeof path, "%s/.cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf", home ? home : "/root");
    return access(path, R_OK) == 0 ? path : NULL;
}

void qn_test_tmp_path(char *buf, size_t cap, const char *name) {
    static char dir[512];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/quern-test-XXXXXX");
        if (!mkdtemp(dir)) snprintf(dir, sizeof dir, "/tmp");
    }
    snprintf(buf, cap, "%s/%s", dir, name);
}

char *qn_test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        if (len) *len = (size_t)n;
    }
    return buf;
}

int qn_test_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

struct qn_test_corpus {
    DIR *d;
    char dir[1024];
    char path[1300];
};

qn_test_corpus *qn_test_corpus_open(const char *name) {
    qn_test_corpus *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    snprintf(c->dir, sizeof c->dir, "%s/tests/fuzz/%s", qn_test_source_dir(), name);
    if (!(c->d = opendir(c->dir))) {
        free(c);
        return NULL;
    }
    return c;
}

uint8_t *qn_test_corpus_next(qn_test_corpus *c, size_t *len, const char **name) {
    *name = NULL;
    for (struct dirent *ent; (ent = readdir(c->d));) {
        if (ent->d_name[0] == '.') continue;
        snprintf(c->path, sizeof c->path, "%s/%s", c->dir, ent->d_name);
        *name = c->path + strlen(c->dir) + 1;
        return (uint8_t *)qn_test_read_file(c->path, len);
    }
    return NULL;
}

void qn_test_corpus_close(qn_test_corpus *c) {
    if (!c) return;
    closedir(c->d);
    free(c);
}
