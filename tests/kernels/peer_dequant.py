#!/usr/bin/env python3
# peer_dequant.py — dequantizes raw ggml blocks with gguf-py (the peer of our C reference) for
# test_dequant_peer.c. Usage: peer_dequant.py JOB...  with JOB = ggml_type:n_rows:in.bin:out.bin.
# Writes float32 rows to out.bin. gguf-py has no Q8_1/Q8_K dequantizer (and its Q8_1 size entry is
# stale, formats.md §2.2), so those two are decoded here with numpy (y = d*q) and reported as local.
import sys

import numpy as np
from gguf import quants
from gguf.constants import GGMLQuantizationType as T


def local_q8(data: np.ndarray, qtype: int) -> np.ndarray:
    if qtype == 9:  # Q8_1: d f16 | s f16 | qs i8[32]
        blk = data.reshape(-1, 36)
        d = blk[:, 0:2].copy().view(np.float16).astype(np.float32)
        q = blk[:, 4:36].copy().view(np.int8).astype(np.float32)
    else:  # Q8_K: d f32 | qs i8[256] | bsums i16[16]
        blk = data.reshape(-1, 292)
        d = blk[:, 0:4].copy().view(np.float32)
        q = blk[:, 4:260].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(-1)


def main() -> int:
    for job in sys.argv[1:]:
        t, rows, src, dst = job.split(":")
        t, rows = int(t), int(rows)
        raw = np.fromfile(src, dtype=np.uint8)
        if t in (9, 15):
            out = local_q8(raw, t)
            print(f"type {t}: decoded locally (gguf-py has no dequantizer)")
        else:
            out = quants.dequantize(raw.reshape(rows, -1), T(t))
        np.ascontiguousarray(out, dtype=np.float32).tofile(dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
