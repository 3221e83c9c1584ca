/* kq_cpu.c — GGUF block dot products, compiled once per ISA (placeholder). */
#include "kernels/quant/gguf/gguf_blocks.h"
typedef int qn_kq_cpu_placeholder;
