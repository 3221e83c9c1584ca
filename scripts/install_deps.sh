#!/usr/bin/env bash
# install_deps.sh — Debian 12 build and test dependencies (root, apt reachable). Idempotent.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config git unzip curl ca-certificates
      libevent-dev libjansson-dev libpcre2-dev libcmocka-dev nginx-light clang
      python3 python3-venv python3-pip)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install_deps: ok"
