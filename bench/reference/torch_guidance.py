#!/usr/bin/env python3
"""diffusers' classifier-free guided DDIM sampling vs unguided, per step: the baseline of
`ddx-bench guidance` (bench/bench_guidance.c) on the same machine and batch.

    python bench/reference/torch_guidance.py [CONFIG.yaml] [--device cpu|cuda] [--batch B]
                                             [--steps S] [--reps R] [--guidance W] [--threads N]

Builds the diffusers UNet2DModel that models/unet_ddpm.c builds from the config (torch_step.py's
mapping: num_class_embeds = num_classes + 1, the last row the null class) with random weights and
times DDIMScheduler sampling of B images of class 0 three ways, each the median of R runs of S
steps (after a warm-up), per step:
    unguided     one forward of B rows
    concat       diffusers' pipelines' way: one forward of torch.cat([x, x]) with [labels, null],
                 chunk, eps_u + w (eps_c - eps_u), scheduler.step
    two_forward  two forwards of B rows, the same combine
Prints one JSON line {"framework":"diffusers","device":...,"unguided_ms":...,"concat_ms":...,
"two_forward_ms":...,"ratio":concat/unguided}. Needs torch and diffusers.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import DEFAULTS, build_unet, load_config  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", nargs="?", default="configs/fashion_mnist_cond.yaml")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from diffusers import DDIMScheduler

    if args.device == "cuda" and not torch.cuda.is_available():
        print("SKIP: no CUDA device", file=sys.stderr)
        return 77
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    raw = load_config(args.config)
    cfg = {s: {**d, **(raw.get(s) or {})} for s, d in DEFAULTS.items()}
    mc = cfg["model"]
    if mc["num_classes"] <= 0:
        print(f"{args.config}: model.num_classes is 0; guidance needs a class-conditional config", file=sys.stderr)
        return 2
    dev = torch.device(args.device)
    unet = build_unet(mc).to(dev).eval()
    dc = cfg["diffusion"]
    sched = DDIMScheduler(num_train_timesteps=dc["timesteps"], beta_start=dc["beta_start"], beta_end=dc["beta_end"],
                          beta_schedule="linear", clip_sample=True)
    B, S, C, w = args.batch, mc["image_size"], mc["out_channels"], args.guidance
    y = torch.zeros(B, dtype=torch.long, device=dev)
    null = torch.full((B,), mc["num_classes"], dtype=torch.long, device=dev)
    y2 = torch.cat([y, null])

    def run(mode):
        sched.set_timesteps(args.steps)
        x = torch.randn(B, C, S, S, device=dev)
        for t in sched.timesteps:
            tt = t.to(dev)
            if mode == "unguided":
                eps = unet(x, tt, class_labels=y).sample
            elif mode == "concat":
                ec, eu = unet(torch.cat([x, x]), tt, class_labels=y2).sample.chunk(2)
                eps = eu + w * (ec - eu)
            else:
                ec = unet(x, tt, class_labels=y).sample
                eu = unet(x, tt, class_labels=null).sample
                eps = eu + w * (ec - eu)
            x = sched.step(eps, t, x, eta=1.0).prev_sample
        if dev.type == "cuda":
            torch.cuda.synchronize()

    modes = ["unguided", "concat", "two_forward"]
    ms = {m: [] for m in modes}
    with torch.no_grad():
        for r in range(args.reps + 1):
            for m in modes:
                t0 = time.perf_counter()
                run(m)
                if r > 0:   # r = 0: warm-up
                    ms[m].append(1e3 * (time.perf_counter() - t0) / args.steps)
    med = {m: statistics.median(v) for m, v in ms.items()}
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    print(json.dumps({"framework": "diffusers", "device": name, "batch": B, "steps": args.steps, "guidance": w,
                      "unguided_ms": round(med["unguided"], 3), "concat_ms": round(med["concat"], 3),
                      "two_forward_ms": round(med["two_forward"], 3),
                      "ratio": round(med["concat"] / med["unguided"], 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
