#!/usr/bin/env bash
# gpu_kernels_vs_ggml.sh — quern's GPU matmuls beside ggml-cuda's MUL_MAT on the same GPU, same run: one
# markdown table (type, shape, n, quern µs, ggml µs, ratio). Run on the GPU machine after
# bench/gpu_check.sh built $QN_GPU_BUILD/quern and bench/gpu_llamacpp.sh built test-backend-ops.
#   quern: `quern bench kernels --quick --fmt TYPES --json` (AUTO path, cuBLAS fp16 beside; weights rotate
#          through > 3x L2, so they come from HBM).
#   ggml:  `test-backend-ops perf -o MUL_MAT -b CUDA0 -p REGEX`, the regex keeping its perf cases of our types,
#          shapes and n. Those cases (make_test_cases_perf) hold, of our grid, only m=4096 k=14336 (down) at
#          n = 1, 2, 4, 8, 512 for every type, and Q4_K at 4096x4096 and 14336x4096 for n = 1, 2, 4, 8;
#          1024x4096 and n = 16..128, 4096 are absent. QN_GGML_FILL_N="16,128,4096" (say) adds those n on all
#          four shapes for QN_GGML_FILL_TYPES (default q4_K,q8_0) through --test-file (generic MUL_MAT ops;
#          ~2-4 s per case). ggml's perf mode runs one weight tensor over and over (no rotation), so weights
#          under ~50 MB may be served from L2: its small-shape numbers are optimistic. ggml takes f32
#          activations (converted inside the op), quern fp16.
# Output in $OUT (default ./gpu-kernels-vs-ggml-out): quern_kernels.{md,jsonl,log}, ggml_perf.txt,
# ggml_fill.txt, kernels_vs_ggml.md. Whole script about 4-5 minutes on an H200 with the defaults.
# Env: QN_GPU_BUILD (build-gpu), QN_QUERN (path of quern), QN_LLAMA_DIR (/tmp/llama.cpp), QN_GGML_TYPES
# (f16,bf16,q4_0,q4_1,q5_0,q5_1,q8_0,q2_K,q3_K,q4_K,q5_K,q6_K), QN_QUERN_TIMEOUT (150 s),
# QN_GGML_TIMEOUT (200 s, per test-backend-ops call; its cases run n = 1 first, so a cut loses n = 512), QN_GGML_FILL_N, QN_GGML_FILL_TYPES.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-kernels-vs-ggml-out}
mkdir -p "$OUT"
Q=${QN_QUERN:-$ROOT/${QN_GPU_BUILD:-build-gpu}/quern}
LD=${QN_LLAMA_DIR:-/tmp/llama.cpp}
TBO=$LD/build-cuda/bin/test-backend-ops
TYPES=${QN_GGML_TYPES:-f16,bf16,q4_0,q4_1,q5_0,q5_1,q8_0,q2_K,q3_K,q4_K,q5_K,q6_K}
FILL_N=${QN_GGML_FILL_N:-}
FILL_TYPES=${QN_GGML_FILL_TYPES:-q4_K,q8_0}
NS="1,2,4,8,16,32,64,128,512,4096"
SHAPES="4096x4096 1024x4096 14336x4096 4096x14336"
t0=$(date +%s)
say() { echo "[kernels_vs_ggml $(($(date +%s) - t0))s] $*" | tee -a "$OUT/run.log"; }
LB=()
command -v stdbuf >/dev/null && LB=(stdbuf -oL) # a timeout keeps what was printed

[ -x "$Q" ] || { say "no quern at $Q (bench/gpu_check.sh builds it)"; exit 1; }
[ -x "$TBO" ] || { say "no test-backend-ops at $TBO (bench/gpu_llamacpp.sh builds it)"; exit 1; }

say "quern: $Q bench kernels --quick --fmt $TYPES"
timeout "${QN_QUERN_TIMEOUT:-150}" "$Q" bench kernels --quick --fmt "$TYPES" --n "$NS" --json "$OUT/quern_kernels.jsonl" \
    >"$OUT/quern_kernels.md" 2>"$OUT/quern_kernels.log"
say "quern: rc=$?"

alt() { echo "$1" | tr ', ' '||' | sed 's/||*/|/g; s/^|//; s/|$//'; }
RE="^type_a=($(alt "$TYPES")),type_b=f32,m=(4096|1024|14336),n=($(alt "$NS")),k=(4096|14336),bs=\\[1,1\\],nr=\\[1,1\\],per=\\[0,1,2,3\\],"
say "ggml: test-backend-ops perf -o MUL_MAT -b CUDA0 -p '$RE'"
timeout "${QN_GGML_TIMEOUT:-200}" "${LB[@]}" "$TBO" perf -o MUL_MAT -b CUDA0 -p "$RE" >"$OUT/ggml_perf.txt" 2>&1
say "ggml: rc=$? ($(grep -c 'us/run' "$OUT/ggml_perf.txt") cases)"

: >"$OUT/ggml_fill.txt"
if [ -n "$FILL_N" ]; then
    # test-file lines (make_test_cases_from_file): op type ne0..3 n_params n_src {type ne0..3 nb0..3}... name
    op=$(awk '/enum ggml_op \{/{f=1;i=0;next} f&&/^ *GGML_OP_[A-Z0-9_]+ *(= *0)? *,/{match($0,/GGML_OP_[A-Z0-9_]+/);
              if(substr($0,RSTART,RLENGTH)=="GGML_OP_MUL_MAT"){print i;exit} i++}' "$LD/ggml/include/ggml.h")
    declare -A TID=([f16]=1 [bf16]=30 [q4_0]=2 [q4_1]=3 [q5_0]=6 [q5_1]=7 [q8_0]=8 [q2_K]=10 [q3_K]=11 [q4_K]=12 [q5_K]=13 [q6_K]=14)
    tf=$OUT/ggml_fill.ops
    : >"$tf"
    for ty in ${FILL_TYPES//,/ }; do
        [ -n "${TID[$ty]:-}" ] || continue
        for sh in $SHAPES; do
            N=${sh%x*} K=${sh#*x}
            for n in ${FILL_N//,/ }; do
                # skip what the perf cases already time
                grep -q "type_a=$ty,type_b=f32,m=$N,n=$n,k=$K," "$OUT/ggml_perf.txt" && continue
                echo "$op 0 $N $n 1 1 0 2 ${TID[$ty]} $K $N 1 1 0 0 0 0 0 $K $n 1 1 0 0 0 0 -" >>"$tf"
            done
        done
    done
    if [ -n "$op" ] && [ -s "$tf" ]; then
        say "ggml fill: $(wc -l <"$tf") cases (GGML_OP_MUL_MAT = $op) through --test-file"
        timeout "${QN_GGML_TIMEOUT:-200}" "${LB[@]}" "$TBO" perf -o MUL_MAT -b CUDA0 --test-file "$tf" \
            >"$OUT/ggml_fill.txt" 2>&1
        say "ggml fill: rc=$? ($(grep -c 'us/run' "$OUT/ggml_fill.txt") cases)"
    fi
fi

# One table. quern rows: "chosen":true (AUTO) and cuBLAS; ggml rows: the named perf cases
# (type_a=T,...,m=N,n=n,k=K) and the generic ones (sources=T[K,N,1,1],f32[K,n,1,1]).
{
    echo "## quern GPU matmuls vs ggml-cuda MUL_MAT ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), commit ${QN_COMMIT:-unknown})"
    echo
    echo "quern: \`quern bench kernels --quick\`, AUTO path, weights rotated over > 3x L2 (from HBM). ggml:"
    echo "\`test-backend-ops perf\`, one weight buffer reused (no rotation: weights under ~50 MB may sit in L2), f32"
    echo "activations. ratio = ggml µs / quern µs (> 1: quern faster). src: perf = ggml's own perf case, fill = --test-file."
    echo
    echo "| type | NxK | n | quern µs | quern path | ggml µs | ratio | cuBLAS fp16 µs | src |"
    echo "|---|---|---:|---:|---|---:|---:|---:|---|"
    awk -v OFS='\t' '
        function num(s, key,   m) { if (match(s, "\"" key "\":[-0-9.]+")) { m = substr(s, RSTART, RLENGTH); sub(/.*:/, "", m); return m } return "" }
        function str(s, key,   m) { if (match(s, "\"" key "\":\"[^\"]*\"")) { m = substr(s, RSTART, RLENGTH); sub(/^[^:]*:"/, "", m); sub(/"$/, "", m); return m } return "" }
        FILENAME ~ /jsonl$/ {
            if ($0 !~ /"bench":"gpu_quant"/) next
            k = num($0, "N") "x" num($0, "K") " " num($0, "n")
            if (str($0, "fmt") == "cublas_f16") { cub[k] = num($0, "us"); next }
            if ($0 !~ /"chosen":true/) next
            qus[str($0, "fmt") " " k] = num($0, "us"); qpath[str($0, "fmt") " " k] = str($0, "path"); next
        }
        /us\/run/ {
            src = FILENAME ~ /fill/ ? "fill" : "perf"
            us = $0; sub(/ us\/run.*/, "", us); sub(/.* /, "", us)
            if (match($0, /type_a=[^,]*,type_b=f32,m=[0-9]+,n=[0-9]+,k=[0-9]+/)) {
                split(substr($0, RSTART, RLENGTH), f, /[=,]/); t = f[2]; N = f[6]; n = f[8]; K = f[10]
            } else if (match($0, /sources=[a-z0-9_A-Z]+\[[0-9]+,[0-9]+,1,1\],f32\[[0-9]+,[0-9]+,1,1\]/)) {
                s = substr($0, RSTART + 8, RLENGTH - 8); gsub(/[\[\]]/, ",", s)
                split(s, f, ","); t = f[1]; K = f[2]; N = f[3]; n = f[9] # T,K,N,1,1,,f32,K,n,1,1,
            } else next
            key = t " " N "x" K " " n
            g[key] = us; gsrc[key] = src; gt[key] = t; gs[key] = N "x" K; gn[key] = n
        }
        END {
            for (key in g) {
                q = (key in qus) ? qus[key] : ""
                c = gs[key] " " gn[key]
                r = (q != "" && q + 0 > 0) ? sprintf("%.2fx", g[key] / q) : "—"
                print gt[key], gs[key], gn[key], (q != "" ? q : "—"), (key in qpath ? qpath[key] : "—"), g[key], r,
                      (c in cub ? cub[c] : "—"), gsrc[key]
            }
        }' "$OUT/quern_kernels.jsonl" "$OUT/ggml_perf.txt" "$OUT/ggml_fill.txt" |
        sort -t$'\t' -k1,1 -k2,2 -k3,3n | awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}'
    echo
    echo "Not compared (no ggml perf case; QN_GGML_FILL_N adds some): the rest of quern's grid, in quern_kernels.md."
} >"$OUT/kernels_vs_ggml.md"
cat "$OUT/kernels_vs_ggml.md"
say "done: $OUT/kernels_vs_ggml.md"
