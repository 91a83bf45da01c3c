#!/usr/bin/env python3
"""Writes tests/data/safetensors/ref_small.safetensors with the reference safetensors package.

tests/test_safetensors.c reads it back and checks every value, proving ddx reads files written by
the Python/Rust implementation. Run from the repository root (needs: pip install safetensors numpy);
CI only reads the committed output. numpy has no bfloat16, so BF16 is covered by ddx's own round trip.
"""
import os

import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "safetensors", "ref_small.safetensors")

tensors = {
    "conv.weight": (np.arange(12, dtype=np.float32) * 0.5 - 3.0).reshape(2, 1, 2, 3),  # [O, I, H, W]
    "counts": np.array([-(2**40), 0, 2**62 + 1], dtype=np.int64),
    "half": np.array([1.0, -2.5, 0.0], dtype=np.float16),
    "idx": np.array([[-7, 7]], dtype=np.int32),
    "bytes": np.array([0, 1, 255], dtype=np.uint8),
    "scalar": np.array(3.25, dtype=np.float32),
    "empty": np.zeros((0, 4), dtype=np.float32),
}
save_file(tensors, OUT, metadata={"format": "np", "note": 'h\u00e9llo "ddx"'})
print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")
