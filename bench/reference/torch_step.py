#!/usr/bin/env python3
"""PyTorch's CPU training step for a ddx config: the baseline ddx's CPU step is measured against.

    python bench/reference/torch_step.py CONFIG.yaml [--threads N] [--steps K] [--batch B]

Builds the diffusers UNet2DModel that models/unet_ddpm.c builds from the config (same mapping:
block_out_channels = ch * ch_mult, attention at the levels whose size is in attn_resolutions,
freq_shift 1, [sin, cos] embedding, Downsample2D padding 0, one attention head, norm_eps, groups,
dropout, class embedding when num_classes > 0) and times one training step as ddx-train does it:
q_sample at a random t with the config's beta schedule, forward, MSE against the noise, backward,
clip_grad_norm_ (train.grad_clip), torch.optim.AdamW step (config lr / betas / weight_decay), the EMA
update (train.ema_decay), zero_grad. Data are random images in
[-1, 1] (the data loader is not what is measured). Two warm-up steps, then the median of K.
Prints one JSON line:
    {"framework":"pytorch","model":...,"batch":...,"threads":...,"ms_per_step_median":...,"params":...}
Needs torch and diffusers (CPU only); PyYAML when installed, else a parser for ddx's flat
two-level config files.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time


def parse_scalar(v):
    v = v.strip()
    if v.startswith("[") and v.endswith("]"):
        inner = v[1:-1].strip()
        return [parse_scalar(x) for x in inner.split(",")] if inner else []
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    if v in ("true", "false"):
        return v == "true"
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def strip_comment(line):
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def load_flat_yaml(path):
    """The subset of YAML ddx configs use: `section:` lines, then indented `key: value` lines."""
    cfg, section = {}, None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = strip_comment(raw).rstrip()
            if not line.strip():
                continue
            key, _, val = line.strip().partition(":")
            if not line[0].isspace():
                if val.strip():   # a dotted top-level key: "train.lr: 2e-4"
                    sec, _, k = key.partition(".")
                    cfg.setdefault(sec, {})[k] = parse_scalar(val)
                else:
                    section = cfg.setdefault(key, {})
            elif section is not None:
                section[key] = parse_scalar(val)
    return cfg


def load_config(path):
    try:
        import yaml
    except ImportError:
        return load_flat_yaml(path)
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    for k in [k for k in cfg if "." in k]:   # dotted top-level keys
        sec, _, sub = k.partition(".")
        cfg.setdefault(sec, {})[sub] = cfg.pop(k)
    # PyYAML follows YAML 1.1, where 2e-4 (no dot) is a string; ddx reads it as a number.
    for sec in cfg.values():
        if isinstance(sec, dict):
            for k, v in sec.items():
                if isinstance(v, str):
                    sec[k] = parse_scalar(v) if v.strip() else v
    return cfg


# ddx's defaults (config/config.c) for keys a file may leave out.
DEFAULTS = {
    "model": dict(in_channels=3, out_channels=3, image_size=32, ch=128, ch_mult=[1, 2, 2, 2], num_res_blocks=2,
                  attn_resolutions=[16], dropout=0.1, num_classes=0, groups=32, norm_eps=1e-6),
    "diffusion": dict(timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02),
    "train": dict(batch_size=128, lr=2e-4, beta1=0.9, beta2=0.999, weight_decay=0.0),
    "run": dict(name="run"),
}


def build_unet(mc):
    from diffusers import UNet2DModel

    levels = len(mc["ch_mult"])
    attn = [(mc["image_size"] >> i) in mc["attn_resolutions"] for i in range(levels)]
    return UNet2DModel(
        sample_size=mc["image_size"],
        in_channels=mc["in_channels"],
        out_channels=mc["out_channels"],
        block_out_channels=tuple(mc["ch"] * m for m in mc["ch_mult"]),
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        layers_per_block=mc["num_res_blocks"],
        freq_shift=1,
        flip_sin_to_cos=False,
        downsample_padding=0,
        norm_eps=mc["norm_eps"],
        norm_num_groups=mc["groups"],
        attention_head_dim=None,
        dropout=mc["dropout"],
        num_class_embeds=mc["num_classes"] + 1 if mc["num_classes"] > 0 else None,   # + ddx's null class row
    )


def alphas_cumprod(dc, torch):
    T = dc["timesteps"]
    if dc["beta_schedule"] == "cosine":   # Nichol & Dhariwal 2021, s = 0.008, betas clipped at 0.999
        f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = [min(1 - f(i + 1) / f(i), 0.999) for i in range(T)]
        betas = torch.tensor(betas, dtype=torch.float64)
    else:
        betas = torch.linspace(dc["beta_start"], dc["beta_end"], T, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, 0).float()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=0, help="batch size (default: the config's train.batch_size)")
    args = ap.parse_args()
    if args.steps < 1 or args.threads < 1 or args.batch < 0:
        ap.error("--steps and --threads must be at least 1, --batch at least 0")
    if not os.path.exists(args.config):
        print(f"{args.config}: no such file", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    raw = load_config(args.config)
    cfg = {s: {**d, **(raw.get(s) or {})} for s, d in DEFAULTS.items()}
    mc, dc, tc = cfg["model"], cfg["diffusion"], cfg["train"]
    B = args.batch or tc["batch_size"]

    model = build_unet(mc).train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"], betas=(tc["beta1"], tc["beta2"]),
                            weight_decay=tc["weight_decay"])
    abar = alphas_cumprod(dc, torch)
    S, C = mc["image_size"], mc["in_channels"]
    # The rest of ddx's step: global grad-norm clipping and an EMA of the weights.
    clip = tc.get("grad_clip", 0.0) or 0.0
    ema_decay = tc.get("ema_decay", 0.0) or 0.0
    ema = [p.detach().clone() for p in model.parameters()] if ema_decay > 0 else None

    def step():
        x0 = torch.rand(B, C, S, S) * 2 - 1
        t = torch.randint(0, dc["timesteps"], (B,))
        noise = torch.randn_like(x0)
        a = abar[t].view(B, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        y = torch.randint(0, mc["num_classes"], (B,)) if mc["num_classes"] > 0 else None
        out = model(x_t, t, class_labels=y).sample
        loss = torch.nn.functional.mse_loss(out, noise)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1.0 - ema_decay)
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({
        "framework": "pytorch",
        "model": cfg["run"].get("name") or os.path.splitext(os.path.basename(args.config))[0],
        "batch": B,
        "threads": args.threads,
        "ms_per_step_median": round(statistics.median(times), 3),
        "params": params,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
