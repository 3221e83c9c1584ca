#!/usr/bin/env python3
# test_vllm_bench_client.py — vLLM's own serving benchmark client, `vllm bench serve` from the vllm 0.33.0 wheel run
# unmodified (scripts/setup_venv_vllm_client.sh), against `quern serve` on the CPU with the default model:
#   1. --backend openai (/v1/completions), random dataset, 32 prompts x 64 in / 32 out, max concurrency 8,
#      --ignore-eos --temperature 0 --seed 0, model and served name given: every request succeeds, every output is
#      32 tokens (usage.completion_tokens), and every input is 64 tokens by quern's own usage.prompt_tokens (the
#      client takes prompt_len from it), i.e. quern tokenizes the client's text exactly as the HF tokenizer the
#      client built it with. With seed 0 prompt 23 decodes to text holding U+0000, which quern once refused (400).
#   2. --backend openai-chat (/v1/chat/completions), 16 prompts, no --model: the client takes the model from
#      GET /v1/models (needs "id" and "root"), runs its ready check (one test request) first, and every request
#      succeeds with 32 output tokens.
# The tokenizer the client needs is made here with `quern export-hf` (no Hugging Face hub). quern must exit 0 on
# SIGTERM afterwards. Skips (77) without the client venv, the quern binary or the default model.
# Results of a full run: bench/results/serve-vllm-client-cpu-2026-12-02.md.
# QN_TEST_LABELS: cpu peer slow
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_util as su  # noqa: E402

VENV = os.environ.get("QN_VLLM_CLIENT_VENV", os.path.expanduser("~/.cache/quern/venv-vllm-client"))
VLLM = os.path.join(VENV, "bin", "vllm")
FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what, flush=True)
    return cond


def bench(args, tmp, name):
    """Runs `vllm bench serve ARGS --save-result`; returns (rc, stdout+stderr, result dict or None)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    cmd = [VLLM, "bench", "serve"] + args + ["--save-result", "--save-detailed", "--result-dir", tmp,
                                             "--result-filename", name + ".json"]
    print("$", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=900)
    out = p.stdout
    i = out.find("============ Serving Benchmark Result")
    print(out[i:] if i >= 0 else out[-4000:], flush=True)
    res = None
    try:
        with open(os.path.join(tmp, name + ".json")) as f:
            res = json.load(f)
    except OSError:
        pass
    return p.returncode, out, res


def check_run(name, rc, out, res, n, in_len, out_len):
    check(rc == 0, f"{name}: vllm bench serve exited {rc}:\n{out[-3000:]}")
    check("Serving Benchmark Result" in out, f"{name}: no summary printed")
    if not check(res is not None, f"{name}: no result JSON"):
        return
    check(res.get("completed") == n and res.get("failed") == 0,
          f"{name}: completed {res.get('completed')} failed {res.get('failed')} of {n}; errors "
          f"{[e[:300] for e in res.get('errors', []) if e][:3]}")
    check(all(x == out_len for x in res.get("output_lens", [])), f"{name}: output_lens {res.get('output_lens')}")
    if in_len is not None:
        check(all(x == in_len for x in res.get("input_lens", [])), f"{name}: input_lens {res.get('input_lens')}")
    check(all(t > 0 for t in res.get("ttfts", [])), f"{name}: a TTFT <= 0")
    check(all(len(x) >= 1 for x in res.get("itls", [])), f"{name}: a request streamed a single chunk")
    check(res.get("mean_tpot_ms", 0) > 0, f"{name}: mean TPOT {res.get('mean_tpot_ms')}")


def main():
    quern, model = su.need_env()
    if not os.access(VLLM, os.X_OK):
        raise su.Skip(f"{VLLM} absent (scripts/setup_venv_vllm_client.sh)")
    tmp = tempfile.mkdtemp(prefix="qn_vllmc_")
    try:
        hf = os.path.join(tmp, "hf")
        r = subprocess.run([quern, "export-hf", model, hf], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            print("FAIL: export-hf:", r.stderr[-1000:])
            return 1
        os.remove(os.path.join(hf, "model.safetensors"))  # the client needs the tokenizer files only
        threads = str(min(os.cpu_count() or 2, 4))
        with su.Stack(["--device", "cpu", "-t", threads], nginx=False) as st:
            status, _, body = su.http("GET", st.direct + "/v1/models")
            served = json.loads(body)["data"][0]["id"]
            common = ["--base-url", st.direct, "--dataset-name", "random", "--random-input-len", "64",
                      "--random-output-len", "32", "--max-concurrency", "8", "--ignore-eos", "--temperature", "0",
                      "--seed", "0", "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99"]
            rc, out, res = bench(["--backend", "openai", "--endpoint", "/v1/completions", "--model", hf,
                                  "--served-model-name", served, "--num-prompts", "32"] + common, tmp, "completions")
            check_run("completions", rc, out, res, 32, 64, 32)
            rc, out, res = bench(["--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--tokenizer", hf,
                                  "--num-prompts", "16", "--ready-check-timeout-sec", "120"] + common, tmp, "chat")
            check_run("chat", rc, out, res, 16, None, 32)
            check("Model not specified, fetching first model from server" in out and served in out,
                  "chat: the client did not take the model from /v1/models")
        problem = st.shutdown_problems()
        check(problem is None, problem or "")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if FAILS else 0


if __name__ == "__main__":
    su.run(main)
