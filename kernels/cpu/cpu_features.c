/* cpu_features.c — picks the CPU kernel table: CPUID (via __builtin_cpu_supports) decides the best
 * ISA this machine runs and this build compiled (arm64: the hwcaps, from getauxval); each ISA object
 * exports one filler, qn_cpu_kernels_fill_<isa> (kernels_table_cpu.c). Reads nothing from the environment: an ISA
 * override reaches us only as an argument (tools/ owns flags and env). */
#define _DEFAULT_SOURCE /* syscall() */
#include <stdbool.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(QN_HAVE_ISA_NEON_DOTPROD)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20) /* Linux arm64 hwcap: SDOT/UDOT */
#endif
#endif

#include "kernels/cpu/cpu_kernels.h"

typedef void (*qn_cpu_fill_fn)(qn_cpu_kernels *k);

void qn_cpu_kernels_fill_scalar(qn_cpu_kernels *k);
#if defined(QN_HAVE_ISA_AVX2)
void qn_cpu_kernels_fill_avx2(qn_cpu_kernels *k);
#endif
#if defined(QN_HAVE_ISA_AVX512)
void qn_cpu_kernels_fill_avx512(qn_cpu_kernels *k);
#endif
#if defined(QN_HAVE_ISA_NEON)
void qn_cpu_kernels_fill_neon(qn_cpu_kernels *k);
#endif
#if defined(QN_HAVE_ISA_NEON_DOTPROD)
void qn_cpu_kernels_fill_neon_dotprod(qn_cpu_kernels *k);
#endif

static const char *const QN_CPU_ISA_NAMES[QN_CPU_ISA_COUNT] = {
    [QN_CPU_ISA_AUTO] = "auto", [QN_CPU_ISA_SCALAR] = "scalar", [QN_CPU_ISA_AVX2] = "avx2",
    [QN_CPU_ISA_AVX512] = "avx512", [QN_CPU_ISA_NEON] = "neon",
    [QN_CPU_ISA_NEON_DOTPROD] = "neon_dotprod",
};

const char *qn_cpu_isa_name(qn_cpu_isa isa) {
    return (unsigned)isa < QN_CPU_ISA_COUNT ? QN_CPU_ISA_NAMES[isa] : "?";
}

/* F16C (CPUID leaf 1, ECX bit 29) read directly: clang 14's __builtin_cpu_supports has no "f16c". */
bool qn_cpu_has_f16c(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
#else
    return false;
#endif
}

/* The filler for isa when both this build and this CPU have it, else NULL. */
static qn_cpu_fill_fn qn_cpu_isa_filler(qn_cpu_isa isa) {
    switch (isa) {
    case QN_CPU_ISA_SCALAR:
        return qn_cpu_kernels_fill_scalar;
#if defined(QN_HAVE_ISA_AVX2) && (defined(__x86_64__) || defined(__i386__))
    case QN_CPU_ISA_AVX2:
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && qn_cpu_has_f16c())
            return qn_cpu_kernels_fill_avx2;
        return NULL;
#endif
#if defined(QN_HAVE_ISA_AVX512) && (defined(__x86_64__) || defined(__i386__))
    case QN_CPU_ISA_AVX512:
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && qn_cpu_has_f16c())
            return qn_cpu_kernels_fill_avx512;
        return NULL;
#endif
#if defined(QN_HAVE_ISA_NEON)
    case QN_CPU_ISA_NEON: /* Advanced SIMD is mandatory on arm64 */
        return qn_cpu_kernels_fill_neon;
#endif
#if defined(QN_HAVE_ISA_NEON_DOTPROD)
    case QN_CPU_ISA_NEON_DOTPROD:
        return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) ? qn_cpu_kernels_fill_neon_dotprod : NULL;
#endif
    default:
        return NULL;
    }
}

bool qn_cpu_amx_int8_usable(void) {
#if defined(__x86_64__) && defined(SYS_arch_prctl)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d >> 24 & 1) || !(d >> 25 & 1)) return false;
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
#else
    return false;
#endif
}

bool qn_cpu_amx_bf16_usable(void) {
#if defined(__x86_64__) && defined(SYS_arch_prctl)
    unsigned a, b, c, d, a1, b1, c1, d1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d >> 24 & 1) || !(d >> 22 & 1)) return false; /* AMX-TILE, -BF16 */
    if (!__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) || !(a1 >> 5 & 1)) return false;           /* AVX512_BF16 */
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
#else
    return false;
#endif
}

qn_cpu_isa qn_cpu_isa_detect(void) {
    static const qn_cpu_isa pref[] = {QN_CPU_ISA_AVX512, QN_CPU_ISA_AVX2, QN_CPU_ISA_NEON_DOTPROD, QN_CPU_ISA_NEON};
    for (size_t i = 0; i < sizeof pref / sizeof pref[0]; i++)
        if (qn_cpu_isa_filler(pref[i])) return pref[i];
    return QN_CPU_ISA_SCALAR;
}

qn_status qn_cpu_kernels_select(qn_cpu_isa isa, qn_cpu_kernels *out) {
    if (!out || (unsigned)isa >= QN_CPU_ISA_COUNT) return QN_ERR_INVALID_ARG;
    if (isa == QN_CPU_ISA_AUTO) isa = qn_cpu_isa_detect();
    const qn_cpu_fill_fn fill = qn_cpu_isa_filler(isa);
    if (!fill) return QN_ERR_UNSUPPORTED;
    memset(out, 0, sizeof *out);
    out->isa = isa;
    out->isa_name = qn_cpu_isa_name(isa);
    fill(out);
    return QN_OK;
}
