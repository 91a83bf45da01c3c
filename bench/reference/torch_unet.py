#!/usr/bin/env python3
"""PyTorch on the GPU for a ddx config: the baseline `ddx-bench step --device cuda` is measured against.

    python3 bench/reference/torch_unet.py CONFIG.yaml [--batch B] [--sample-batch M] [--steps K]
                                          [--modes fp32,tf32,bf16] [--compile | --compile-only]

Builds the same diffusers UNet2DModel as bench/reference/torch_step.py (same config mapping) on
CUDA and times, for each mode, one training step (q_sample at random t, forward, MSE, backward,
clip_grad_norm_, fused AdamW, EMA lerp, zero_grad) at the config's batch size, and one forward
pass at --sample-batch (default 2 x batch; a sampling step), with CUDA events: 3 warm-up
iterations, then the median of K (default 10). Modes: fp32 (TF32 off everywhere), tf32 (PyTorch's
cuDNN/cuBLAS TF32), bf16 (autocast, channels_last). --compile adds torch.compile runs of each
mode (slow to start: minutes). Random data, never zeros. One JSON line per (mode, compile).
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import alphas_cumprod, build_unet, load_config  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--sample-batch", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--modes", default="fp32,tf32,bf16")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-only", action="store_true", help="only the torch.compile runs (default mode)")
    args = ap.parse_args()
    import torch

    cfg = load_config(args.config)
    mc, dc, tc = cfg["model"], cfg["diffusion"], cfg["train"]
    B = args.batch or tc["batch_size"]
    M = args.sample_batch or 2 * B
    S, C = mc["image_size"], mc["in_channels"]
    dev = torch.device("cuda")
    abar = alphas_cumprod(dc, torch).to(dev)

    def timed(fn):
        for _ in range(3):
            fn()
        times = []
        for _ in range(args.steps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        return statistics.median(times)

    for mode in args.modes.split(","):
        for compiled in ([True] if args.compile_only else [False, True] if args.compile else [False]):
            torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
            torch.backends.cudnn.allow_tf32 = mode == "tf32"
            torch.manual_seed(0)
            model = build_unet(mc).to(dev).train()
            fmt = torch.channels_last if mode == "bf16" else torch.contiguous_format
            model = model.to(memory_format=fmt)
            # dynamic=False: the batch-256 forward after the batch-128 step would otherwise be
            # recompiled with a dynamic batch dimension (slower kernels than ANCHORS.md measured).
            run = torch.compile(model, dynamic=False) if compiled else model
            opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"], betas=(tc["beta1"], tc["beta2"]),
                                    weight_decay=tc["weight_decay"], fused=True)
            ema = [p.detach().clone() for p in model.parameters()]
            clip, decay = tc.get("grad_clip", 0.0) or 0.0, tc.get("ema_decay", 0.0) or 0.0
            x0 = (torch.rand(B, C, S, S, device=dev) * 2 - 1).to(memory_format=fmt)
            xs = (torch.rand(M, C, S, S, device=dev) * 2 - 1).to(memory_format=fmt)
            ts = torch.randint(0, dc["timesteps"], (M,), device=dev)

            def step():
                t = torch.randint(0, dc["timesteps"], (B,), device=dev)
                noise = torch.randn_like(x0)
                a = abar[t].view(B, 1, 1, 1).float()
                x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "bf16"):
                    out = run(x_t, t).sample
                    loss = torch.nn.functional.mse_loss(out.float(), noise)
                loss.backward()
                if clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
                if decay > 0:
                    with torch.no_grad():
                        torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1.0 - decay)
                opt.zero_grad(set_to_none=True)

            def forward():
                with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "bf16"):
                    run(xs, ts)

            train_ms = timed(step)
            fwd_ms = timed(forward)
            print(json.dumps({"framework": "pytorch", "torch": torch.__version__, "device": torch.cuda.get_device_name(),
                              "mode": mode, "compile": compiled, "batch": B, "ms_per_step_median": round(train_ms, 3),
                              "sample_batch": M, "fwd_ms_median": round(fwd_ms, 3)}), flush=True)
            del model, run, opt, ema
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
