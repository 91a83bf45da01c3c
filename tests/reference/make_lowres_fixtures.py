#!/usr/bin/env python3
"""PyTorch reference for models/lowres.c (the super-resolution conditioning) and tests/test_lowres.c.

Run from anywhere (CPU, a second; needs torch and safetensors, CI does not: the output is committed):
    python3 tests/reference/make_lowres_fixtures.py
writes tests/data/lowres/lowres.safetensors, every tensor f32 NHWC:
    P.x          input [N, H, W, C]
    P.down<f>    F.avg_pool2d(x, f)                                        [N, H/f, W/f, C]
    P.up<f>      F.interpolate(down<f>, scale_factor=f, mode='bicubic', align_corners=False), unclamped
    P.cond<f>    up<f> clamped to [-1, 1] (ddx_lowres_cond; square cases only)
for the cases P below and f in 2, 4 (8 for the 16x16 case too). The inputs mix uniform values with
runs of -1/+1 so that the bicubic overshoot (up to ~1.25 at a hard edge) shows in up<f> and the
clamp matters. Computed in float64 on the fp32 inputs, stored as f32.
"""
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "lowres", "lowres.safetensors")

# name: (N, H, W, C, factors, square)
CASES = {
    "gray16": (2, 16, 16, 1, [2, 4, 8], True),
    "rgb8": (1, 8, 8, 3, [2, 4], True),
    "rect": (1, 8, 12, 2, [2, 4], False),
}


def main():
    torch.manual_seed(7)
    out = {}
    for name, (n, h, w, c, factors, square) in CASES.items():
        x = torch.rand(n, c, h, w) * 2 - 1
        edges = torch.rand(n, c, h, w) < 0.5
        x = torch.where(edges, torch.sign(x), x).float()
        xd = x.double()
        out[f"{name}.x"] = x.permute(0, 2, 3, 1).contiguous()
        for f in factors:
            down = F.avg_pool2d(xd, f)
            up = F.interpolate(down.float().double(), scale_factor=f, mode="bicubic", align_corners=False)
            out[f"{name}.down{f}"] = down.float().permute(0, 2, 3, 1).contiguous()
            out[f"{name}.up{f}"] = up.float().permute(0, 2, 3, 1).contiguous()
            if square:
                out[f"{name}.cond{f}"] = up.clamp(-1, 1).float().permute(0, 2, 3, 1).contiguous()
            print(f"{name} x{f}: up range [{up.min().item():.3f}, {up.max().item():.3f}]")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(out, OUT, metadata={"torch": torch.__version__})
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
