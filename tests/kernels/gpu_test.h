/* gpu_test.h — support for the GPU kernel tests (test_gpu_*.c, CUDA builds only): a CUDA check that
 * fails the cmocka test, one stream per test program, poisoned device outputs with a guard region
 * behind them, and the skip (exit 77) when there is no device. Header-only: each test is its own
 * program, so the stream below is that program's. Include after harness.h. */
#ifndef QN_GPU_TEST_H
#define QN_GPU_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#define CK(call)                                                                  \
    do {                                                                          \
        const cudaError_t e_ = (call);                                            \
        if (e_ != cudaSuccess) fail_msg("%s: %s", #call, cudaGetErrorString(e_)); \
    } while (0)

static cudaStream_t g_stream;

/* QN_TEST_QUICK=1 trims the cases (compute-sanitizer runs) */
static inline int qn_gpu_test_quick(void) { return getenv("QN_TEST_QUICK") && atoi(getenv("QN_TEST_QUICK")) > 0; }

/* 1 (after saying so) when the program has to exit 77: no CUDA device */
static inline int qn_gpu_test_skip(const char *name) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) == cudaSuccess && n_dev > 0) return 0;
    fprintf(stderr, "%s: no CUDA device, skipped\n", name);
    return 1;
}

static inline int qn_gpu_test_setup(void **state) {
    (void)state;
    return cudaSetDevice(0) == cudaSuccess && cudaStreamCreate(&g_stream) == cudaSuccess ? 0 : -1;
}

static inline int qn_gpu_test_teardown(void **state) {
    (void)state;
    cudaStreamDestroy(g_stream);
    return 0;
}

/* a device copy of bytes from src */
static inline void *dev_upload(const void *src, size_t bytes) {
    void *d = NULL;
    CK(cudaMalloc(&d, bytes ? bytes : 16));
    if (bytes) CK(cudaMemcpy(d, src, bytes, cudaMemcpyHostToDevice));
    return d;
}

/* an output of bytes plus guard_bytes behind it, all 0xFF (NaN as f32 and fp16, -1 as int32) */
static inline void *dev_poisoned(size_t bytes, size_t guard_bytes) {
    void *d = NULL;
    CK(cudaMalloc(&d, bytes + guard_bytes));
    CK(cudaMemset(d, 0xFF, bytes + guard_bytes));
    return d;
}

/* Waits for g_stream, copies bytes back and fails when the guard behind them was written. */
static inline void dev_fetch(void *dst, const void *d, size_t bytes, size_t guard_bytes, const char *what) {
    CK(cudaStreamSynchronize(g_stream));
    CK(cudaGetLastError());
    CK(cudaMemcpy(dst, d, bytes, cudaMemcpyDeviceToHost));
    unsigned char *g = malloc(guard_bytes ? guard_bytes : 1);
    assert_non_null(g);
    CK(cudaMemcpy(g, (const unsigned char *)d + bytes, guard_bytes, cudaMemcpyDeviceToHost));
    size_t hit = 0;
    for (size_t i = 0; i < guard_bytes; i++) hit += g[i] != 0xFF;
    free(g);
    if (hit) fail_msg("%s: %zu guard bytes overwritten", what, hit);
}

/* Fails when any 32-bit word of the device region d [bytes] is not zero (e.g. split-K counters left behind). */
static inline void dev_check_zero(const void *d, size_t bytes, const char *what) {
    uint32_t *c = malloc(bytes ? bytes : 4);
    assert_non_null(c);
    CK(cudaMemcpy(c, d, bytes, cudaMemcpyDeviceToHost));
    size_t nz = 0;
    for (size_t i = 0; i < bytes / 4; i++) nz += c[i] != 0;
    free(c);
    if (nz) fail_msg("%s: %zu split-K counters left non-zero", what, nz);
}

#endif /* QN_GPU_TEST_H */
