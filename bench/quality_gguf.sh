#!/usr/bin/env bash
# quality_gguf.sh — size / quality table of every GGUF type `quern quantize` writes, on a real model:
# SmolLM2-135M-Instruct requantized to F16 as the base (the only real weights we have come as Q4_1, so the base
# is already 4.5-bit lossy: the table ranks the types, it does not measure their loss from true fp16 weights),
# then each type from that base, `quern perplexity` on alice29 (ctx 512, QN_QUALITY_CHUNKS windows, default 20).
# Prints a markdown table; writes it to $1 when given. CPU only.
set -euo pipefail
cd "$(dirname "$0")/.."
Q=${QN_QUERN_BIN:-build/quern}
M=$HOME/.cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf
T=$HOME/.cache/quern/data/alice29.txt
CH=${QN_QUALITY_CHUNKS:-20}
TH=${QN_THREADS:-$(nproc)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$Q" quantize -q "$M" "$tmp/base.gguf" F16 -t "$TH" >/dev/null
out=$tmp/table.md
{
    echo "| type | file MiB | bits/weight | perplexity (ctx 512, $CH chunks) | vs F16 base |"
    echo "|---|--:|--:|--:|--:|"
} >"$out"
base=""
for ty in F16 BF16 Q8_0 Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 Q3_K_L Q3_K_M Q3_K_S Q2_K; do
    f=$tmp/$ty.gguf
    if [ "$ty" = F16 ]; then cp "$tmp/base.gguf" "$f"; else "$Q" quantize -q "$tmp/base.gguf" "$f" "$ty" -t "$TH" >/dev/null; fi
    ppl=$("$Q" perplexity --device cpu -m "$f" -f "$T" --ctx 512 --chunks "$CH" -t "$TH" 2>&1 | sed -n 's/^perplexity: \([0-9.]*\)$/\1/p' | tail -1)
    bytes=$(stat -c %s "$f")
    [ -z "$base" ] && base=$ppl
    python3 - "$ty" "$bytes" "$ppl" "$base" >>"$out" <<'PY'
import sys
ty, b, p, base = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
params = 134515008  # SmolLM2-135M
print(f"| {ty} | {b / 2**20:.1f} | {8 * b / params:.2f} | {p:.4f} | {100 * (p / base - 1):+.2f}% |")
PY
    rm -f "$f"
done
cat "$out"
[ $# -ge 1 ] && cp "$out" "$1"
exit 0
