# convert_util.py — what the `quern convert` / `quern export-hf` tests share: the inputs they skip without,
# llama.cpp's Q/K permutation in numpy, a safetensors reader and writer written from the format
# (docs/formats.md §0), so the tests need neither torch nor the safetensors package, a GGUF reader
# (gguf-py's spends seconds on a tokenizer's strings), and llama.cpp's tokenizer test vectors.
import json
import mmap
import os
import struct


def inputs():
    """(quern binary, default model), or None when either is missing (the test then skips)."""
    quern = os.environ.get("QN_QUERN_BIN")
    cache = os.environ.get("QN_CACHE", os.path.expanduser("~/.cache/quern"))
    model = os.environ.get("QN_MODEL", os.path.join(cache, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not quern or not os.path.exists(model):
        print("skip: quern binary or default model missing")
        return None
    return quern, model


def report(failures, ok):
    """Prints the failures, or ok when there are none; the exit status."""
    for f in failures:
        print("FAIL:", f)
    if failures:
        return 1
    print("ok:", ok)
    return 0


def vocab_file(name):
    """$QN_CACHE/llama.cpp/models/ggml-vocab-NAME.gguf, or None when absent."""
    cache = os.environ.get("QN_CACHE", os.path.expanduser("~/.cache/quern"))
    path = os.path.join(cache, "llama.cpp", "models", f"ggml-vocab-{name}.gguf")
    return path if os.path.exists(path) else None


def vocab_vectors(path):
    """llama.cpp's test vectors beside a vocab GGUF: [(text, [ids])] from PATH.inp (texts separated by
    "\n__ggml_vocab_test__\n") and PATH.out (one line of ids per text)."""
    with open(path + ".inp", encoding="utf-8", newline="") as f:
        texts = f.read().split("\n__ggml_vocab_test__\n")
    with open(path + ".out", encoding="utf-8") as f:
        lines = f.read().split("\n")
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, lines)]


def permute(w, n_head, n_head_kv):
    """llama.cpp's LlamaModel.permute (convert_hf_to_gguf.py): HF q/k rows -> GGUF llama rows."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_safetensors(path, np):
    """name -> read-only numpy view (BF16 as uint16 bit patterns)."""
    dtypes = {"F16": np.float16, "F32": np.float32, "BF16": np.uint16, "I32": np.int32, "U8": np.uint8}
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r")
    return {k: np.frombuffer(data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                             dtype=dtypes[v["dtype"]]).reshape(v["shape"])
            for k, v in hdr.items() if k != "__metadata__"}


def write_safetensors(path, tensors, np, metadata=None):
    """u64 header size, JSON header (sorted names) padded with spaces to 8, then the data without holes."""
    names = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}
    hdr, off, blobs = ({"__metadata__": metadata} if metadata else {}), 0, []
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        hdr[k] = {"dtype": names[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


_GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_read(path):
    """(metadata, tensors) of a GGUF file (a small parser of formats.md §1). metadata: [(key, value type,
    value)] in file order; a value is a number or bool, bytes for a string, and for an array (element type,
    [bytes] for strings, else the raw element bytes). tensors: name -> (ggml type, shape, offset, raw bytes,
    the padding after them included: it must match too)."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, mm, pos)
        pos += struct.calcsize(fmt)
        return v if len(v) > 1 else v[0]

    def take_str():
        nonlocal pos
        n = take("<Q")  # (not `pos += take(..)`: pos would be read before take moves it)
        pos += n
        return bytes(mm[pos - n:pos])

    def take_value(t):
        nonlocal pos
        if t == 8:
            return take_str()
        if t != 9:
            return take(_GGUF_SCALAR[t])
        et, n = take("<IQ")
        if et == 8:
            return et, [take_str() for _ in range(n)]
        pos += struct.calcsize(_GGUF_SCALAR[et]) * n
        return et, bytes(mm[pos - struct.calcsize(_GGUF_SCALAR[et]) * n:pos])

    magic, version, n_tensors, n_kv = take("<4sIQQ")
    assert magic == b"GGUF" and version == 3, path
    meta = []
    for _ in range(n_kv):
        key = take_str().decode()
        t = take("<I")
        meta.append((key, t, take_value(t)))
    alignment = next((v for k, _, v in meta if k == "general.alignment"), 32)
    infos = []
    for _ in range(n_tensors):
        name = take_str().decode()
        nd = take("<I")
        shape = tuple(take("<Q") for _ in range(nd))
        typ, off = take("<IQ")
        infos.append((name, typ, shape, off))
    data = (pos + alignment - 1) // alignment * alignment
    out = {}
    for i, (name, typ, shape, off) in enumerate(infos):
        end = infos[i + 1][3] if i + 1 < len(infos) else len(mm) - data
        out[name] = (typ, shape, off, bytes(mm[data + off:data + end]))
    mm.close()
    return meta, out
