#!/bin/bash
# before (bee4cdb) / after (fe7c043) / llama.cpp: llama-bench-style rounds on two models, then quern serve + bench serve
out=/work/main/bench/results/raw/cpu-attn-tiles-2026-12-05
LB=~/.cache/quern/llama.cpp/build/bin/llama-bench
S=~/.cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf
B=/tmp/m/l8b2-Q4_K_M.gguf
for r in 1 2 3; do
  for m in smol:$S:128,1024 l8b2:$B:128; do
    tag=${m%%:*}; rest=${m#*:}; path=${rest%%:*}; ng=${rest#*:}
    /tmp/quern-base bench -m $path -p 512 -n $ng -r 3 -t 2 -o jsonl > $out/$tag-before-$r.jsonl 2>/dev/null
    /tmp/quern-after bench -m $path -p 512 -n $ng -r 3 -t 2 -o jsonl > $out/$tag-after-$r.jsonl 2>/dev/null
    LD_LIBRARY_PATH=$(dirname $LB) $LB -m $path -p 512 -n $ng -r 3 -t 2 -o jsonl > $out/$tag-llamacpp-$r.jsonl 2>/dev/null
  done
done
for r in 1 2; do
  for v in before after; do
    bin=/tmp/quern-base; [ $v = after ] && bin=/tmp/quern-after
    $bin serve -m $S --port 18155 --kv-cache-mem 512M -c 2048 > $out/serve-$v-$r.log 2>&1 &
    pid=$!
    for i in $(seq 60); do curl -sf http://127.0.0.1:18155/health >/dev/null && break; sleep 1; done
    /tmp/quern-after bench serve --base-url http://127.0.0.1:18155 --num-prompts 32 --random-input-len 512 --random-output-len 128 --max-concurrency 8 --request-rate inf --metric-percentiles 50,90,99 --percentile-metrics ttft,tpot,itl,e2el --seed 0 > $out/bench-serve-$v-$r.txt 2>&1
    kill $pid; wait $pid 2>/dev/null
  done
done
cat /proc/loadavg > $out/loadavg-end.txt
echo done
