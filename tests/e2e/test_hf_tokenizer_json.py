# test_hf_tokenizer_json.py — an HF directory runs with its own tokenizer.json (no GGUF beside it):
#   1. `quern export-hf` SmolLM2 (f16) -> DIR; `quern run -m DIR --temp 0 --token-ids` gives the same prompt
#      tokenization and the same 16 greedy tokens as the GGUF requantized to F16 (`quern quantize ... F16`: the
#      same weights), for a plain and a --chat prompt;
#   2. with tokenizer.json removed and no *.gguf, loading fails naming the directory and --vocab.
# Skips (77) without the quern binary or the default model.
# QN_TEST_LABELS: cpu
import os
import shutil
import subprocess
import sys
import tempfile

SKIP = 77


def main():
    quern = os.environ.get("QN_QUERN_BIN")
    model = os.path.join(os.environ.get("QN_CACHE", os.path.expanduser("~/.cache/quern")), "models",
                         "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not quern or not os.path.exists(model):
        print("skip: quern binary or default model missing")
        return SKIP
    tmp = tempfile.mkdtemp(prefix="qn_hftok_")
    fails = []
    try:
        hf, f16 = os.path.join(tmp, "hf"), os.path.join(tmp, "f16.gguf")
        for args in (["export-hf", model, hf, "--dtype", "f16"], ["quantize", model, f16, "F16"]):
            r = subprocess.run([quern] + args, capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                print(f"FAIL: {args[0]}: {r.stderr[-400:]}")
                return 1
        for extra in ([], ["--chat"]):
            out = {}
            for m in (hf, f16):
                r = subprocess.run([quern, "run", "-m", m, "--device", "cpu", "-t", "2", "-p", "The capital of France is",
                                    "-n", "16", "--temp", "0", "--token-ids", "--ignore-eos"] + extra,
                                   capture_output=True, text=True, timeout=600)
                if r.returncode != 0:
                    fails.append(f"run {m} {extra}: {r.stderr[-300:]}")
                    continue
                out[m] = (r.stdout, r.stderr.split("\n")[0])
            print(f"{extra or 'plain'}: hf {out.get(hf)!r}\n       gguf {out.get(f16)!r}")
            if len(out) == 2 and out[hf] != out[f16]:
                fails.append(f"{extra}: HF dir with tokenizer.json and the F16 GGUF differ")
        os.remove(os.path.join(hf, "tokenizer.json"))
        r = subprocess.run([quern, "run", "-m", hf, "--device", "cpu", "-n", "1"], capture_output=True, text=True, timeout=120)
        if r.returncode == 0 or "no tokenizer" not in r.stderr or "--vocab" not in r.stderr:
            fails.append(f"no tokenizer: rc {r.returncode} {r.stderr[-300:]!r}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in fails:
        print("FAIL:", f)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
