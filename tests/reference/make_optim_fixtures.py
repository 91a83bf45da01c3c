#!/usr/bin/env python3
"""Writes tests/data/optim/adamw.safetensors: three steps of torch.optim.AdamW with linear lr
warmup, torch.nn.utils.clip_grad_norm_ and an EMA of the weights, for tests/test_optim.c.

Run from anywhere (needs torch and safetensors; CI does not: the output is committed):
    python3 tests/reference/make_optim_fixtures.py

Everything runs on the CPU in float32 with the single-tensor (foreach=False) code paths, the
ones whose roundings train/optim.c reproduces. Settings (also in __metadata__, which the C test
reads): lr 1e-2 ramped linearly over warmup_steps = 2 (lr * min(1, step / 2), set on the
param group before each step), betas (0.9, 0.999), eps 1e-8, clip max_norm 1.0, EMA decay 0.9
(ema = 0.9 * ema + 0.1 * p after each update, starting from the initial weights). The gradient
scales are chosen so that steps 1 and 3 clip (norm > 1) and step 2 does not.

Two runs share the initial weights and gradients: `wd` with weight_decay 0.01 and `nowd`
with 0. Keys:
    init.<p>                    initial weights
    grad.<s>.<p>                the (unclipped) gradient fed at step s = 1, 2, 3
    <run>.<s>.{param,m,v,ema}.<p>  state after step s
    <run>.<s>.norm              clip_grad_norm_'s returned total norm (F32, shape [1])
Parameters (shapes chosen so several are not multiples of 64 elements):
    a [3, 5], b [64], c [2, 3, 3, 7], d [100], e [1]
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "optim", "adamw.safetensors"))

SHAPES = {"a": (3, 5), "b": (64,), "c": (2, 3, 3, 7), "d": (100,), "e": (1,)}
LR, WARMUP, BETAS, EPS, MAX_NORM, EMA = 1e-2, 2, (0.9, 0.999), 1e-8, 1.0, 0.9
GRAD_SCALE = {1: 0.4, 2: 0.02, 3: 0.15}   # total norms about 6.5, 0.33, 2.4
STEPS = 3


def main():
    g = torch.Generator().manual_seed(1234)
    init = {k: torch.randn(s, generator=g) * 0.5 for k, s in SHAPES.items()}
    grads = {s: {k: torch.randn(sh, generator=g) * GRAD_SCALE[s] for k, sh in SHAPES.items()} for s in range(1, STEPS + 1)}
    out = {}
    for k, t in init.items():
        out[f"init.{k}"] = t
    for s, gs in grads.items():
        for k, t in gs.items():
            out[f"grad.{s}.{k}"] = t

    for run, wd in (("wd", 0.01), ("nowd", 0.0)):
        params = {k: torch.nn.Parameter(t.clone()) for k, t in init.items()}
        ema = {k: t.clone() for k, t in init.items()}
        opt = torch.optim.AdamW(list(params.values()), lr=LR, betas=BETAS, eps=EPS, weight_decay=wd,
                                foreach=False, fused=False)
        for s in range(1, STEPS + 1):
            for k, p in params.items():
                p.grad = grads[s][k].clone()
            norm = torch.nn.utils.clip_grad_norm_(list(params.values()), MAX_NORM, foreach=False)
            for group in opt.param_groups:
                group["lr"] = LR * min(1.0, s / WARMUP)
            opt.step()
            with torch.no_grad():
                for k, p in params.items():
                    ema[k].mul_(EMA).add_(p, alpha=1 - EMA)
            out[f"{run}.{s}.norm"] = norm.reshape(1).clone()
            for k, p in params.items():
                st = opt.state[p]
                out[f"{run}.{s}.param.{k}"] = p.detach().clone()
                out[f"{run}.{s}.m.{k}"] = st["exp_avg"].clone()
                out[f"{run}.{s}.v.{k}"] = st["exp_avg_sq"].clone()
                out[f"{run}.{s}.ema.{k}"] = ema[k].clone()
            print(f"{run} step {s}: norm {norm.item():.6f} ({'clipped' if norm.item() > MAX_NORM else 'not clipped'})")

    meta = {"lr": repr(LR), "warmup_steps": str(WARMUP), "beta1": repr(BETAS[0]), "beta2": repr(BETAS[1]),
            "eps": repr(EPS), "grad_clip": repr(MAX_NORM), "ema_decay": repr(EMA), "steps": str(STEPS),
            "weight_decay.wd": "0.01", "weight_decay.nowd": "0.0", "torch": torch.__version__}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, OUT, metadata=meta)
    print(f"wrote {OUT}: {len(out)} tensors")


if __name__ == "__main__":
    main()
