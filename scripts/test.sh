#!/usr/bin/env bash
# test.sh — the whole test suite: dependencies, model, peer venv (gguf-py, llama-cpp-python, openai,
# litellm), a Release build and an ASan+UBSan build, then ctest; then the arm64 NEON kernels under qemu
# (scripts/test_neon.sh). GPU tests (label gpu) skip without a GPU; run them on a GPU machine with
# bench/gpu_check.sh.
set -euo pipefail
here="$(dirname "$0")"
source "$here/common.sh"
t_all=$(date +%s)
# step NAME CMD...: runs CMD and says how long it took (the CI log's time budget, step by step)
step() {
  local name=$1 t=$(date +%s) r=0
  shift
  "$@" || r=$?
  echo "test.sh: $name took $(( $(date +%s) - t )) s (rc $r)"
  return $r
}
step install_deps bash "$here/install_deps.sh"
# The Release build needs the system packages only: it runs in the background while the model, the test data and
# the peer venv come down (mostly network: about 3 minutes of a 2-core CI run); its log is printed when it is done.
build_log=$(mktemp)
step build_release bash "$here/build.sh" "$QN_BUILD" >"$build_log" 2>&1 &
build_pid=$!
trap 'kill "$build_pid" 2>/dev/null || true' EXIT
step fetch_model bash "$here/fetch_model.sh"
step fetch_testdata bash "$here/fetch_testdata.sh"
step setup_venv bash "$here/setup_venv.sh"
build_rc=0
wait "$build_pid" || build_rc=$?
trap - EXIT
cat "$build_log"
rm -f "$build_log"
[ "$build_rc" = 0 ] || { echo "test.sh: the Release build failed (rc $build_rc)"; exit "$build_rc"; }
jobs="$(nproc)"
step build_asan bash "$here/build.sh" "$QN_ROOT/build-asan" -DQN_SANITIZE=ON -DQN_CPU_ONLY=ON
rc=0
echo "=== ctest: ASan+UBSan build (labels cpu, excluding slow/peer) ==="
ASAN_OPTIONS=detect_leaks=1 step ctest_asan ctest --test-dir "$QN_ROOT/build-asan" -L cpu -LE 'slow|peer' -j"$jobs" \
  --output-on-failure || rc=1
echo "=== ctest: Release build (all tests but the script tests the ASan+UBSan build ran: label asan_script) ==="
# the llama.cpp parity test compares perplexity on the whole of alice29 (QN_PARITY_PPL_CHUNKS=N: N windows;
# llama.cpp's side from tests/fixtures/llamacpp/ppl_alice29.json, 3 windows live; QN_PARITY_PPL_LIVE=1: all live)
step ctest_release ctest --test-dir "$QN_BUILD" -LE asan_script -j"$jobs" --output-on-failure || rc=1
# the arm64 NEON kernels: an aarch64 cross build of the kernels, the runtime and their C tests, label neon under
# qemu-aarch64 (installs the cross compiler and qemu-user; about a minute and a half once they are there)
step test_neon bash "$here/test_neon.sh" || rc=1
echo "test.sh: all steps took $(( $(date +%s) - t_all )) s"
exit $rc
