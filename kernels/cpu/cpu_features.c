/* cpu_features.c — picks the CPU kernel table once at start-up (placeholder until the quant kernels land). */
#include "kernels/cpu/cpu_kernels.h"
