"""The `ddx-eval fid --checkpoint` pipeline in PyTorch, for bench/fid_pipeline.sh's ratio:
diffusers' UNet2DModel (built from the ddx config as torch_step.py builds it, with the ddx
checkpoint's EMA weights when given) sampled with diffusers' DDIMScheduler (eta 0), images
quantised to uint8 as saved PNGs are, then pytorch-fid 0.3.0's InceptionV3 (resize_input,
normalize_input) with the converted weights (tools/fetch_inception.py), mean/covariance and
pytorch-fid's calculate_frechet_distance against a .npz. Prints one JSON line with the wall
times (sampling, features, total) and the FID.

python3 bench/reference/torch_fid_pipeline.py CONFIG.yaml --inception W.safetensors --ref ref.npz
    [--checkpoint ddx.safetensors] [--n 256] [--steps 50] [--batch 64] [--threads 2] [--device cpu|cuda]
    [--precision fp32|bf16]
Needs torch, diffusers, pytorch-fid, safetensors, numpy.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import DEFAULTS, build_unet, load_config  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--inception", required=True)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--checkpoint")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--feature-batch", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = ap.parse_args()

    import numpy as np
    import torch
    from diffusers import DDIMScheduler
    from safetensors.torch import load_file

    import pytorch_fid.inception as pfi
    from pytorch_fid.fid_score import calculate_frechet_distance

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    raw = load_config(args.config)
    cfg = {s: {**d, **(raw.get(s) or {})} for s, d in DEFAULTS.items()}
    mc, dc = cfg["model"], cfg["diffusion"]
    unet = build_unet(mc)
    if args.checkpoint:
        sd = load_file(args.checkpoint)
        ema = {k[4:]: v for k, v in sd.items() if k.startswith("ema/")}
        unet.load_state_dict(ema or {k: v for k, v in sd.items() if "/" not in k})
    unet = unet.to(dev).eval()
    sched = DDIMScheduler(num_train_timesteps=dc["timesteps"], beta_schedule="linear", beta_start=dc["beta_start"],
                          beta_end=dc["beta_end"], clip_sample=False, set_alpha_to_one=False)
    sched.set_timesteps(args.steps)

    sd = load_file(args.inception)
    sd.setdefault("fc.weight", torch.zeros(1008, 2048))
    sd.setdefault("fc.bias", torch.zeros(1008))
    pfi.load_state_dict_from_url = lambda *a, **k: sd
    incep = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(dev).eval()
    dt = torch.bfloat16 if args.precision == "bf16" else torch.float32
    if dt != torch.float32:
        unet = unet.to(dt)
        incep = incep.to(dt)
    ref = np.load(args.ref)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    S, C = mc["image_size"], mc["in_channels"]
    g = torch.Generator(device="cpu").manual_seed(0)
    feats = []
    t_sample = t_feat = 0.0
    t0 = time.perf_counter()
    with torch.no_grad():
        for i0 in range(0, args.n, args.batch):
            b = min(args.batch, args.n - i0)
            ta = time.perf_counter()
            x = torch.randn(b, C, S, S, generator=g).to(dev, dt)
            for t in sched.timesteps:
                eps = unet(x, t).sample
                x = sched.step(eps, t, x, eta=0.0).prev_sample
            u8 = torch.floor(((x.float() + 1) / 2).clamp(0, 1) * 255 + 0.5)
            img = (u8 / 255).to(dt)
            if C == 1:
                img = img.repeat(1, 3, 1, 1)
            sync()
            tb = time.perf_counter()
            for j in range(0, b, args.feature_batch):
                feats.append(incep(img[j:j + args.feature_batch])[0].float().reshape(-1, 2048).cpu().numpy())
            sync()
            t_sample += tb - ta
            t_feat += time.perf_counter() - tb
    f = np.concatenate(feats).astype(np.float64)
    mu, sigma = f.mean(0), np.cov(f, rowvar=False)
    fid = calculate_frechet_distance(mu, sigma, ref["mu"], ref["sigma"])
    total = time.perf_counter() - t0
    print(json.dumps({"impl": "pytorch", "n": args.n, "steps": args.steps, "threads": args.threads, "device": args.device,
                      "precision": args.precision, "fid": float(fid), "sample_s": t_sample, "features_s": t_feat,
                      "seconds": total, "img_per_s": args.n / total, "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
