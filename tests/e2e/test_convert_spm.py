# test_convert_spm.py — a SentencePiece tokenizer (GGUF tokenizer.ggml.model "llama": Llama-2, Mistral-7B) through
# `quern export-hf` and `quern convert` (CPU). The model: `quern synth --preset tiny --layers 1` with llama.cpp's
# llama-spm vocabulary (ggml-vocab-llama-spm.gguf: Llama-2's 32000 tokens, padded to the preset's 49152).
#   1. export-hf writes tokenizer.model, tokenizer.json and tokenizer_config.json beside the weights;
#   2. convert gives back every tokenizer.* key of the original (tokens, scores, token types, special ids,
#      add_bos / add_eos) with the same type, value and order, and every tensor bit for bit;
#   3. Hugging Face reads the export as we do: the `tokenizers` library on tokenizer.json, transformers'
#      LlamaTokenizerFast and (slow) LlamaTokenizer, and the sentencepiece library on tokenizer.model all give
#      llama.cpp's ids (ggml-vocab-llama-spm.gguf.inp / .out) for every test vector;
#   4. `quern logits --no-special` on the round trip gives those ids (every vector but the empty ones);
#   5. tokenizer_config.json with the added_tokens_decoder of today's Llama-2 (<unk> <s> </s> special: llama.cpp
#      makes them control with score -1000): that GGUF too goes through export-hf and convert unchanged;
#   6. tokenizer.json alone (tokenizer.model removed; gguf-py's LlamaHfVocab path): the same tokens, the same
#      types but <unk> (control there), and those ids again (the scores come from the merges).
# llama.cpp's own converter on such directories: test_convert_llamacpp_peer.py.
# Skips (77) without the quern binary or the llama-spm vocabulary.
# QN_TEST_LABELS: cpu
import json
import os
import shutil
import subprocess
import sys
import tempfile

from convert_util import gguf_read, report, vocab_file, vocab_vectors

OK = "SentencePiece export-hf -> convert round trip (keys, tensors, HF readers, quern tokenization)"

SKIP = 77


def main():
    quern, vocab = os.environ.get("QN_QUERN_BIN"), vocab_file("llama-spm")
    if not quern or not vocab:
        print("skip: quern binary or ggml-vocab-llama-spm.gguf missing")
        return SKIP
    vectors = vocab_vectors(vocab)
    sample = [v for v in vectors if v[0]]  # `-p ""` would be no prompt
    failures = []

    def run(args):
        r = subprocess.run([quern] + args, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            failures.append(f"{' '.join(args[:2])}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
        return r

    def quern_ids(model, label):
        bad = []
        for text, want in sample:
            r = run(["logits", "-m", model, "-p", text, "--no-special", "-t", "2"])
            got = json.loads(r.stdout)["tokens"] if r.returncode == 0 else None
            if got != want:
                bad.append(f"{text[:30]!r}: {got} != {want}")
        print(f"{label}: quern logits on {len(sample)} vectors, {len(bad)} differ")
        if bad:
            failures.append(f"{label}: {len(bad)} of {len(sample)} vectors differ, first {bad[:2]}")

    tmp = tempfile.mkdtemp(prefix="qn_spm_")
    try:
        orig, hf = os.path.join(tmp, "tiny-spm.gguf"), os.path.join(tmp, "hf")
        rt, rtj = os.path.join(tmp, "rt.gguf"), os.path.join(tmp, "rt-json.gguf")
        for args in (["synth", "--preset", "tiny", "--layers", "1", "--type", "F16", "--vocab", vocab, "-o", orig,
                      "-q", "-t", "2"],
                     ["export-hf", orig, hf], ["convert", hf, rt, "-q", "-t", "2"]):
            if run(args).returncode != 0:
                return report(failures, OK)

        # 1. the files
        for f in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "config.json", "model.safetensors"):
            if not os.path.exists(os.path.join(hf, f)):
                failures.append(f"export: {f} missing")

        # 2. metadata and tensors
        (ma, ta), (mb, tb) = gguf_read(orig), gguf_read(rt)
        ka, kb = ([m for m in meta if m[0].startswith("tokenizer.")] for meta in (ma, mb))
        if ka != kb:
            da, db = {k: v for k, _, v in ka}, {k: v for k, _, v in kb}
            failures.append(f"tokenizer keys differ: original {[k for k, _, _ in ka]}, round trip "
                            f"{[k for k, _, _ in kb]}, values {[k for k in da if da[k] != db.get(k)]}")
        else:
            print(f"round trip: {len(ka)} tokenizer keys identical ({', '.join(k for k, _, _ in ka)})")
        def same(n):  # type, shape, bytes (the offset would change with the order)
            return n in ta and n in tb and ta[n][:2] + ta[n][3:] == tb[n][:2] + tb[n][3:]
        bad = sorted(n for n in set(ta) | set(tb) if not same(n))
        if bad:
            failures.append(f"{len(bad)} tensors differ or are missing, first {bad[:4]}")
        else:
            print(f"round trip: {len(ta)} tensors identical")

        # 3. Hugging Face on the export
        hf_check(hf, vectors, failures)

        # 4. our tokenizer on the round trip
        quern_ids(rt, "round trip")

        # 5. Llama-2's added_tokens_decoder
        hf2, hf3 = os.path.join(tmp, "hf2"), os.path.join(tmp, "hf3")
        rt2, rt3 = os.path.join(tmp, "rt2.gguf"), os.path.join(tmp, "rt3.gguf")
        shutil.copytree(hf, hf2)
        cfg_path = os.path.join(hf2, "tokenizer_config.json")
        cfg = json.load(open(cfg_path))
        cfg["added_tokens_decoder"] = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                                "single_word": False, "special": True}
                                       for i, t in enumerate(("<unk>", "<s>", "</s>"))}
        json.dump(cfg, open(cfg_path, "w"), indent=2)
        if all(run(a).returncode == 0 for a in (["convert", hf2, rt2, "-q"], ["export-hf", rt2, hf3],
                                                 ["convert", hf3, rt3, "-q"])):
            k2, k3 = ([m for m in gguf_read(p)[0] if m[0].startswith("tokenizer.")] for p in (rt2, rt3))
            d2 = dict((k, v) for k, _, v in k2)
            types = memoryview(d2["tokenizer.ggml.token_type"][1]).cast("i")[:3].tolist()
            scores = memoryview(d2["tokenizer.ggml.scores"][1]).cast("f")[:3].tolist()
            if types != [3, 3, 3] or scores != [-1000.0] * 3:
                failures.append(f"added_tokens_decoder: ids 0-2 types {types} scores {scores} (want control, -1000)")
            if k2 != k3:
                failures.append("added_tokens_decoder: the GGUF changes through export-hf and convert: "
                                f"{[a[0] for a, b in zip(k2, k3) if a != b]}")
            else:
                print("added_tokens_decoder: control <unk> <s> </s> at -1000 come back unchanged")

        # 6. tokenizer.json alone
        os.remove(os.path.join(hf, "tokenizer.model"))
        if run(["convert", hf, rtj, "-q", "-t", "2"]).returncode == 0:
            kc = dict((k, v) for k, _, v in gguf_read(rtj)[0])
            ka = dict((k, v) for k, _, v in ka)
            if kc["tokenizer.ggml.tokens"] != ka["tokenizer.ggml.tokens"]:
                failures.append("tokenizer.json path: tokens differ")
            ta, tc = (memoryview(k["tokenizer.ggml.token_type"][1]).cast("i") for k in (ka, kc))
            diff = [i for i in range(len(ta)) if ta[i] != tc[i]]
            if diff != [0] or tc[0] != 3:
                failures.append(f"tokenizer.json path: token types differ at {diff[:8]} (want only <unk>, as control)")
            quern_ids(rtj, "tokenizer.json path")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report(failures, OK)


def hf_check(hf, vectors, failures):
    """Every HF reader available in the venv gives llama.cpp's ids on every vector."""
    readers = []
    try:
        from tokenizers import Tokenizer
        t = Tokenizer.from_file(os.path.join(hf, "tokenizer.json"))
        readers.append(("tokenizers (tokenizer.json)", lambda s: t.encode(s, add_special_tokens=False).ids))
    except ImportError:
        pass
    try:
        from transformers import AutoTokenizer
        for fast in (True, False):
            at = AutoTokenizer.from_pretrained(hf, use_fast=fast)
            readers.append((f"transformers {type(at).__name__}",
                            lambda s, at=at: at.encode(s, add_special_tokens=False)))
        if at.bos_token_id != 1 or at.eos_token_id != 2 or at.encode("a")[0] != 1:
            failures.append(f"transformers: bos {at.bos_token_id} eos {at.eos_token_id}, encode adds {at.encode('a')}")
    except ImportError:
        pass
    try:
        import sentencepiece
        sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(hf, "tokenizer.model"))
        readers.append(("sentencepiece (tokenizer.model)", sp.encode))
        if (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) != (0, 1, 2, -1):
            failures.append(f"sentencepiece: unk/bos/eos/pad {sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()}")
    except ImportError:
        pass
    if not readers:
        print("note: neither tokenizers, transformers nor sentencepiece installed; HF side not checked")
    for name, encode in readers:
        bad = [(s, encode(s), ids) for s, ids in vectors if encode(s) != ids]
        print(f"{name}: {len(vectors)} vectors, {len(bad)} differ")
        if bad:
            failures.append(f"{name}: {len(bad)} vectors differ, first {bad[0][0][:30]!r}: {bad[0][1]} != {bad[0][2]}")


if __name__ == "__main__":
    sys.exit(main())
