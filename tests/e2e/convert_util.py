# convert_util.py — what the `quern convert` / `quern export-hf` tests share: the inputs they skip without,
# llama.cpp's Q/K permutation in numpy, and a safetensors reader and writer written from the format
# (docs/formats.md §0), so the tests need neither torch nor the safetensors package.
import json
import os


def inputs():
    """(quern binary, default model), or None when either is missing (the test then skips)."""
    quern = os.environ.get("QN_QUERN_BIN")
    cache = os.environ.get("QN_CACHE", os.path.expanduser("~/.cache/quern"))
    model = os.environ.get("QN_MODEL", os.path.join(cache, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not quern or not os.path.exists(model):
        print("skip: quern binary or default model missing")
        return None
    return quern, model


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
