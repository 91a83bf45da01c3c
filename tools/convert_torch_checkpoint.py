#!/usr/bin/env python3
"""Converts a PyTorch state dict (a .bin / .pt / .ckpt file, or a diffusers model folder) into
the safetensors file ddx-sample and ddx-inspect read, unchanged in names and layouts.

    python3 tools/convert_torch_checkpoint.py google-ddpm-cifar10-32/ ddpm_cifar10.safetensors
    build/eval/ddx-sample --checkpoint ddpm_cifar10.safetensors --config configs/cifar10_ddpm.yaml

For google/ddpm-cifar10-32 (download the folder with `huggingface-cli download
google/ddpm-cifar10-32`): its unet weights use diffusers' old attention names (query, key, value,
proj_attn); ddx accepts those as well as the current ones (to_q, to_k, to_v, to_out.0). Needs
torch and safetensors (pip install torch safetensors); not needed to build or test ddx.
"""
import os
import sys

import torch
from safetensors.torch import save_file


def load_state_dict(src):
    if os.path.isdir(src):
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
            for sub in ("", "unet"):
                p = os.path.join(src, sub, name)
                if os.path.exists(p):
                    return load_state_dict(p)
        sys.exit(f"{src}: no diffusion_pytorch_model.safetensors or .bin in it (or in unet/)")
    if src.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(src)
    sd = torch.load(src, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "ema"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    return sd


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    sd = load_state_dict(src)
    out = {k: v.detach().to(torch.float32).contiguous() for k, v in sd.items() if torch.is_tensor(v)}
    if not out:
        sys.exit(f"{src}: no tensors found")
    save_file(out, dst, metadata={"source": os.path.basename(os.path.normpath(src))})
    n = sum(v.numel() for v in out.values())
    print(f"{dst}: {len(out)} tensors, {n} parameters")


if __name__ == "__main__":
    main()
