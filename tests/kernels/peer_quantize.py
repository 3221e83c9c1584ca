#!/usr/bin/env python3
# peer_quantize.py — quantizes float32 rows with llama.cpp's own ggml_quantize_chunk (ctypes on the
# libggml-base.so bundled with the venv's llama-cpp-python, no importance matrix), the peer of our
# reference quantizers for test_quantize_peer.c.
# Usage: peer_quantize.py --check             exit 0 when the library loads, 77 otherwise
#        peer_quantize.py JOB...              JOB = ggml_type:n_per_row:in.f32:out.bin
# Each job reads [rows][n_per_row] float32 and writes rows * ggml_row_size(type, n_per_row) bytes.
import ctypes
import os
import sys

SKIP = 77


def load_ggml():
    try:
        import llama_cpp  # noqa: F401  (only to locate the bundled libraries)
    except ImportError:
        return None
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        path = os.path.join(libdir, name)
        if os.path.exists(path):
            lib = ctypes.CDLL(path)
            lib.ggml_quantize_chunk.restype = ctypes.c_size_t
            lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                                ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
            lib.ggml_row_size.restype = ctypes.c_size_t
            lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
            return lib
    return None


def main() -> int:
    lib = load_ggml()
    if lib is None:
        print("peer_quantize: llama-cpp-python (libggml-base) not available", file=sys.stderr)
        return SKIP
    if sys.argv[1:] == ["--check"]:
        return 0
    import numpy as np

    for job in sys.argv[1:]:
        t, n, src, dst = job.split(":")
        t, n = int(t), int(n)
        x = np.ascontiguousarray(np.fromfile(src, dtype=np.float32))
        rows = x.size // n
        out = np.zeros(rows * lib.ggml_row_size(t, n), dtype=np.uint8)
        written = lib.ggml_quantize_chunk(t, x.ctypes.data, out.ctypes.data, 0, rows, n, None)
        if written != out.size:
            print(f"peer_quantize: type {t}: wrote {written} bytes, expected {out.size}", file=sys.stderr)
            return 1
        out.tofile(dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
