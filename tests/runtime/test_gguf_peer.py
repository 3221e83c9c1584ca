# test_gguf_peer.py — compares `quern inspect` with gguf-py's GGUFReader (an independent reader) on
# the real SmolLM2 file and the parseable seed-corpus files: the same keys with the same value types,
# and the same tensors with the same type, shape (ne order), byte size and data offset.
# QN_TEST_LABELS: cpu peer
import os
import re
import subprocess
import sys

try:
    from gguf import GGUFReader
except ImportError:
    print("gguf-py not available; skipping")
    sys.exit(77)

QUERN = os.environ.get("QN_QUERN_BIN")
SRC = os.environ.get("QN_SOURCE_DIR", ".")
if not QUERN or not os.access(QUERN, os.X_OK):
    print("QN_QUERN_BIN not set; skipping")
    sys.exit(77)

TYPE_NAMES = {  # gguf-py GGUFValueType name -> ours
    "UINT8": "u8", "INT8": "i8", "UINT16": "u16", "INT16": "i16", "UINT32": "u32", "INT32": "i32",
    "FLOAT32": "f32", "BOOL": "bool", "STRING": "string", "UINT64": "u64", "INT64": "i64", "FLOAT64": "f64",
}
KV_RE = re.compile(r"^  (\S+)\s+(?:\[(\w+) x (\d+)\]|(\w+)\s)")
T_RE = re.compile(r"^  (\d+)\s+(\S+)\s+(\w+)\s+\[([0-9, ]*)\]\s+(\d+)\s+(\d+)$")


def ours(path):
    out = subprocess.run([QUERN, "inspect", "-n", "0", path], capture_output=True, text=True, check=True).stdout
    kv, tensors, section = {}, [], None
    data_start = int(re.search(r"data at (\d+)", out).group(1))
    for line in out.splitlines():
        if line.startswith("metadata"):
            section = "kv"
        elif line.startswith("tensors"):
            section = "t"
        elif line.startswith("config"):
            section = None
        elif section == "kv" and (m := KV_RE.match(line)):
            kv[m.group(1)] = (("array", m.group(2), int(m.group(3))) if m.group(2) else (m.group(4),))
        elif section == "t" and (m := T_RE.match(line)):
            shape = [int(x) for x in m.group(4).split(",") if x.strip()]
            tensors.append((m.group(2), m.group(3).lower(), shape, int(m.group(5)), data_start + int(m.group(6))))
    return kv, tensors


def peer(path):
    r = GGUFReader(path)
    kv = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        t = f.types[0].name
        kv[name] = ("array", TYPE_NAMES[f.types[1].name], len(f.data)) if t == "ARRAY" else (TYPE_NAMES[t],)
    tensors = [(t.name, t.tensor_type.name.lower(), [int(x) for x in t.shape], int(t.n_bytes), int(t.data_offset))
               for t in r.tensors]
    return kv, tensors


def main():
    files = []
    model = os.environ.get("QN_MODEL") or os.path.expanduser("~/.cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(model):
        files.append(model)
    corpus = os.path.join(SRC, "tests", "fuzz", "corpus_gguf")
    for f in sorted(os.listdir(corpus)) if os.path.isdir(corpus) else []:
        p = os.path.join(corpus, f)
        try:
            GGUFReader(p)
        except Exception:  # gguf-py rejects it too: nothing to compare
            continue
        files.append(p)
    if not files:
        print("no GGUF files to compare; skipping")
        return 77
    bad = 0
    for p in files:
        before = bad
        kv_q, t_q = ours(p)
        kv_p, t_p = peer(p)  # offsets compared as absolute file positions
        if kv_q != kv_p:
            bad += 1
            for k in sorted(set(kv_q) | set(kv_p)):
                if kv_q.get(k) != kv_p.get(k):
                    print(f"{p}: key {k}: quern {kv_q.get(k)} gguf-py {kv_p.get(k)}")
        if t_q != t_p:
            bad += 1
            print(f"{p}: tensor tables differ ({len(t_q)} vs {len(t_p)})")
            for a, b in zip(t_q, t_p):
                if a != b:
                    print(f"  quern {a}\n  gguf-py {b}")
                    break
        print(f"{p}: {len(kv_q)} keys, {len(t_q)} tensors {'ok' if bad == before else 'MISMATCH'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
