/* kernels_table_cpu.c — per-ISA entry point: qn_cpu_kernels_fill_<isa> fills the kernel table with
 * this ISA's functions, family by family. Later families overwrite nothing of earlier ones, except kquant_x512, which
 * replaces kquant's matmul_x8 entries where the CPU has AVX512_VNNI / AMX-INT8, and lutq_amx, which replaces
 * lutq_matmul where it has AMX-BF16; a NULL entry means "no kernel"
 * (qn_cpu_matmul_rows then refuses the format). */
#include "kernels/cpu/isa.h"

void QN_ISA_FN(qn_cpu_kernels_fill)(qn_cpu_kernels *k);

void QN_ISA_FN(qn_cpu_kernels_fill)(qn_cpu_kernels *k) {
    QN_ISA_FN(qn_cpu_fill_dequant)(k);
    QN_ISA_FN(qn_cpu_fill_float)(k);
    QN_ISA_FN(qn_cpu_fill_float_gemm)(k);
    QN_ISA_FN(qn_cpu_fill_legacy)(k);
    QN_ISA_FN(qn_cpu_fill_kquant)(k);
    QN_ISA_FN(qn_cpu_fill_kquant_x512)(k);
    QN_ISA_FN(qn_cpu_fill_lutq)(k);
    QN_ISA_FN(qn_cpu_fill_lutq_amx)(k);
    QN_ISA_FN(qn_cpu_fill_attention)(k);
    QN_ISA_FN(qn_cpu_fill_vexp)(k);
}
