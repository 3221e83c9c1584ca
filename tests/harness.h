/* harness.h — shared test support: seeded RNG, tolerance checks (max rel err + NMSE + first
 * mismatches), fixture and model paths, skips. Used by every cmocka test under tests/. */
#ifndef QN_TEST_HARNESS_H
#define QN_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* --- seeded RNG (splitmix64 / xoshiro-like), never shared between tests --- */
typedef struct qn_rng { uint64_t s; } qn_rng;
void qn_rng_seed(qn_rng *r, uint64_t seed);
uint64_t qn_rng_u64(qn_rng *r);
float qn_rng_uniform(qn_rng *r, float lo, float hi);
float qn_rng_normal(qn_rng *r);
void qn_rng_fill_normal(qn_rng *r, float *x, size_t n, float scale);
void qn_rng_fill_bytes(qn_rng *r, void *p, size_t n);
/* perm[0..n) = a uniformly random permutation of 0..n-1 (Fisher-Yates, n - 1 draws). */
void qn_rng_permutation(qn_rng *r, int32_t *perm, int64_t n);

/* --- comparisons --- */
typedef struct qn_check_result {
    double max_rel_err; /* max |got-ref| / (|ref| + abs_floor) */
    double max_abs_err;
    double nmse;        /* sum (got-ref)^2 / sum ref^2 */
    size_t n_bad;       /* elements over tolerance */
    size_t n_nan;
} qn_check_result;
/* Compares got against ref; element i is bad when |got-ref| > atol + rtol*|ref| or got is NaN.
 * Prints the first 5 mismatches with `what`. Returns 1 when no element is bad and nmse <= max_nmse. */
int qn_check_close(const char *what, const float *got, const double *ref, size_t n, double atol,
                   double rtol, double max_nmse, qn_check_result *out);
int qn_check_close_f(const char *what, const float *got, const float *ref, size_t n, double atol,
                     double rtol, double max_nmse, qn_check_result *out);

/* --- environment --- */
const char *qn_test_source_dir(void);   /* QN_SOURCE_DIR or "." */
const char *qn_test_build_dir(void);    /* QN_BUILD_DIR or "." */
const char *qn_test_python(void);       /* QN_PYTHON (venv) or NULL when absent */
/* Default model path (~/.cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf) or NULL if missing. */
const char *qn_test_default_model(void);
/* Writes a path under a fresh per-test temp dir into buf. */
void qn_test_tmp_path(char *buf, size_t cap, const char *name);
/* Reads a whole file (malloc'd, NUL-terminated); NULL on failure. */
char *qn_test_read_file(const char *path, size_t *len);
/* Writes bytes to path; returns 0 on success. */
int qn_test_write_file(const char *path, const void *data, size_t len);
/* The seed files of a fuzz corpus, tests/fuzz/<name>/ under the source dir (names not starting with '.'), in
 * directory order: open gives NULL where the directory cannot be opened; next gives the next file's bytes
 * (qn_test_read_file's, the caller frees them) with its length and name (valid until the next call), NULL at the end
 * or on a file it cannot read (*name then set to that file's, else NULL). */
typedef struct qn_test_corpus qn_test_corpus;
qn_test_corpus *qn_test_corpus_open(const char *name);
uint8_t *qn_test_corpus_next(qn_test_corpus *c, size_t *len, const char **name);
void qn_test_corpus_close(qn_test_corpus *c);

#endif
