"""For timing the FID pipeline without a trained model (bench/gpu_check.sh): a diffusers
UNet2DModel built from a ddx config (as torch_step.py builds it) with PyTorch's random init,
converted to a ddx checkpoint by tools/convert_torch_checkpoint.py, plus a 2048-d reference
.npz (mu 0, sigma I). The FID it gives is meaningless; the time is what is measured.

python3 bench/reference/make_random_unet.py CONFIG.yaml OUT_DIR   ->  OUT_DIR/unet.safetensors, OUT_DIR/ref.npz
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import DEFAULTS, build_unet, load_config  # noqa: E402


def main():
    import numpy as np
    import torch

    config, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    raw = load_config(config)
    cfg = {s: {**d, **(raw.get(s) or {})} for s, d in DEFAULTS.items()}
    build_unet(cfg["model"]).save_pretrained(os.path.join(out, "diffusers"), safe_serialization=True)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    subprocess.run([sys.executable, os.path.join(root, "tools", "convert_torch_checkpoint.py"),
                    os.path.join(out, "diffusers"), os.path.join(out, "unet.safetensors")], check=True)
    np.savez(os.path.join(out, "ref.npz"), mu=np.zeros(2048), sigma=np.eye(2048))
    return 0


if __name__ == "__main__":
    sys.exit(main())
