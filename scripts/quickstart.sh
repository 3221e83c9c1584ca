#!/usr/bin/env bash
# quickstart.sh — fresh Debian 12 to generated text: install dependencies, fetch the default model,
# build, and run it (prints text, then prompt and generation tokens/s on stderr).
set -euo pipefail
here="$(dirname "$0")"
bash "$here/install_deps.sh"
bash "$here/fetch_model.sh"
bash "$here/build.sh"
source "$here/common.sh"
"$QN_BUILD/quern" run -p "Write a short poem about the sea." --chat -n 128 --temp 0.7 --seed 42 --repeat-penalty 1.1
