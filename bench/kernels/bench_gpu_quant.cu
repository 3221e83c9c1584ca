/* bench_gpu_quant.cu — the GPU matmul kernel benchmark as its own executable (scripts run it); the body is
 * gpu_quant_bench.cu, shared with `quern bench kernels`. Flags: bench_gpu_quant --help. */
#include "bench/kernels/gpu_quant_bench.h"

int main(int argc, char **argv) { return qn_bench_kernels_main(argc, argv); }
