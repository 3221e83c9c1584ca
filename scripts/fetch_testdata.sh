#!/usr/bin/env bash
# fetch_testdata.sh — evaluation text and peer test vectors from PyPI sdists, cached:
#   alice29.txt (+ other Canterbury files) from the Brotli sdist; llama.cpp's tokenizer vocab
#   test files (models/ggml-vocab-*) and source tree from the llama-cpp-python sdist.
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [ ! -f "$QN_DATA/alice29.txt" ]; then
  tmp=$(mktemp -d)
  "$QN_SYS_PY" -m pip download -q --no-deps --no-binary :all: "$QN_BROTLI_PKG" -d "$tmp"
  tar xzf "$tmp"/brotli-*.tar.gz -C "$tmp"
  cp "$tmp"/brotli-*/tests/testdata/{alice29.txt,asyoulik.txt,lcet10.txt,plrabn12.txt} "$QN_DATA/"
  rm -rf "$tmp"
fi
if [ ! -d "$QN_CACHE/llama.cpp/models" ]; then
  mkdir -p "$QN_CACHE/sdist"
  "$QN_SYS_PY" -m pip download -q --no-deps --no-binary :all: "$QN_LLAMACPP_PKG" -d "$QN_CACHE/sdist"
  rm -rf "$QN_CACHE/llama.cpp"
  tar xzf "$QN_CACHE"/sdist/llama_cpp_python-*.tar.gz -C "$QN_CACHE/sdist"
  cp -r "$QN_CACHE"/sdist/llama_cpp_python-*/vendor/llama.cpp "$QN_CACHE/llama.cpp"
fi
echo "fetch_testdata: ok"
