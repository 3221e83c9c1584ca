/* gpu_quant_bench.h — the GPU matmul kernel benchmark (gpu_quant_bench.cu) as a function, so that one body
 * serves `quern bench kernels` (tools/bench.c, CUDA builds) and the bench_gpu_quant executable.
 * Defined only when QN_HAVE_CUDA is set (library qn_bench_kernels, bench/CMakeLists.txt). */
#ifndef QN_GPU_QUANT_BENCH_H
#define QN_GPU_QUANT_BENCH_H

#ifdef __cplusplus
extern "C" {
#endif

/* Returned when no CUDA device can be used (77: the "skipped" code of ctest and automake). */
#define QN_BENCH_KERNELS_NO_DEVICE 77

/* argv[0] names the program in messages ("kernels" is shown as `quern bench kernels`); flags as in
 * `--help`. Returns 0, 1 on a failure, 2 on bad flags, QN_BENCH_KERNELS_NO_DEVICE without a usable GPU.
 * Measurements go to stdout (markdown) and, with --json FILE, one JSON line per point. */
int qn_bench_kernels_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif /* QN_GPU_QUANT_BENCH_H */
