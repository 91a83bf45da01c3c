#!/usr/bin/env python3
"""Reference values for the scaled_linear schedule and zero-terminal-SNR rescaling in
models/diffusion.c, from diffusers' DDPMScheduler / DDIMScheduler (CPU), for tests/test_schedules.c.

Writes tests/data/diffusion/schedule_fixtures.h (C arrays):
  - T = 1000 alphas_cumprod (and betas for scaled_linear) of
      scaled_linear (beta_start 0.00085, beta_end 0.012, Stable Diffusion's), and each of linear,
      cosine ('squaredcos_cap_v2') and scaled_linear with rescale_betas_zero_snr=True;
      * float64: the formulas evaluated in float64 (torch.linspace(float64) ** 2 with
        math.sqrt of the endpoints; diffusers' own rescale_zero_terminal_snr function run on
        float64 betas);
      * float32: diffusers' scheduler tensors as the library computes them.
  - single DDPM / DDIM steps at zero terminal SNR (v_prediction and sample) on fixed float32
    x_t / model output, the schedulers run in float64 with the float64 tensors above, noise
    replaced by zeros; std = what diffusers multiplies its noise by (as make_diffusion_fixtures.py).
Run: python3 tests/reference/make_schedule_fixtures.py
"""
import math
import os

import numpy as np
import torch
import diffusers
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.schedulers import scheduling_ddpm
from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr

T = 1000
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "diffusion", "schedule_fixtures.h")
SD_START, SD_END = 0.00085, 0.012
NAMES = {"linear": "linear", "cosine": "squaredcos_cap_v2", "scaled_linear": "scaled_linear"}


def c_array(ctype, name, vals, fmt):
    vals = list(vals)
    lines = []
    for i in range(0, len(vals), 4):
        lines.append("    " + ", ".join(fmt(v) for v in vals[i:i + 4]) + ",")
    return f"static const {ctype} {name}[{len(vals)}] = {{\n" + "\n".join(lines) + "\n};\n"


def d(v):
    return repr(float(v))


def f(v):
    return repr(float(np.float32(v))) + "f"


def betas64(name):
    if name == "linear":
        return torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    if name == "scaled_linear":
        return torch.linspace(math.sqrt(SD_START), math.sqrt(SD_END), T, dtype=torch.float64) ** 2

    def abar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return torch.tensor([min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)], dtype=torch.float64)


def scheduler(cls, name, zsnr, **kw):
    lo, hi = (SD_START, SD_END) if name == "scaled_linear" else (1e-4, 0.02)
    return cls(num_train_timesteps=T, beta_start=lo, beta_end=hi, beta_schedule=NAMES[name],
               rescale_betas_zero_snr=zsnr, **kw)


def as64(s, b64):
    s.betas = b64.clone()
    s.alphas = 1.0 - s.betas
    s.alphas_cumprod = torch.cumprod(s.alphas, 0)
    s.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(s, "final_alpha_cumprod"):
        s.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return s


def main():
    sched = {}
    for name in NAMES:
        for z in (False, True):
            if name != "scaled_linear" and not z:
                continue   # make_diffusion_fixtures.py covers these
            b = betas64(name)
            if z:
                b = rescale_zero_terminal_snr(b)
            s = scheduler(DDPMScheduler, name, z)
            ac64 = torch.cumprod(1.0 - b, 0)
            if z:
                assert ac64[-1].item() == 0.0 and s.alphas_cumprod[-1].item() == 0.0, name
            # diffusers' float32 betas of a rescaled schedule lose ~1e-3 relative to the cancellation
            # in 1 - abar_t / abar_{t-1}; alphas_cumprod is the comparable quantity.
            assert torch.allclose(ac64.float(), s.alphas_cumprod, rtol=1e-4, atol=1e-7), name
            sched[(name, z)] = dict(b64=b, ac64=ac64, b32=s.betas, ac32=s.alphas_cumprod)

    g = torch.Generator().manual_seed(4321)
    shape = (2, 4, 4, 3)
    x_t = torch.randn(shape, generator=g, dtype=torch.float32)
    out = torch.randn(shape, generator=g, dtype=torch.float32)
    scheduling_ddpm.randn_tensor = lambda shape, generator=None, device=None, dtype=None, **kw: torch.zeros(shape, dtype=dtype)
    steps = []
    # (sampler, schedule, prediction, variance / eta, t, t_prev)
    cases = [(0, "linear", "v_prediction", "fixed_small", 999, 998), (0, "linear", "v_prediction", "fixed_large", 999, 998),
             (0, "cosine", "sample", "fixed_small", 999, 998), (0, "scaled_linear", "v_prediction", "fixed_small", 500, 499),
             (1, "linear", "v_prediction", 0.0, 999, 979), (1, "linear", "v_prediction", 1.0, 999, 979),
             (1, "scaled_linear", "sample", 0.5, 999, 899), (1, "cosine", "v_prediction", 0.0, 999, 989)]
    for kind, name, pred, var, t, tp in cases:
        b = sched[(name, True)]["b64"]
        if kind == 0:
            s = as64(scheduler(DDPMScheduler, name, True, variance_type=var, clip_sample=True, prediction_type=pred), b)
            mean = s.step(out.double(), t, x_t.double()).prev_sample
            std = float(s._get_variance(t) ** 0.5)
            eta = 0.0
        else:
            S = T // (t - tp)
            s = scheduler(DDIMScheduler, name, True, clip_sample=True, set_alpha_to_one=True, prediction_type=pred,
                          timestep_spacing="leading", steps_offset=0)
            s.set_timesteps(S)
            as64(s, b)
            eta = var
            mean = s.step(out.double(), t, x_t.double(), eta=eta,
                          variance_noise=torch.zeros(shape, dtype=torch.float64)).prev_sample
            std = eta * float(s._get_variance(t, tp)) ** 0.5
        assert torch.isfinite(mean).all(), (kind, name, pred, t)
        steps.append((kind, name, pred, var if kind == 0 else "", eta, t, tp, mean, std))

    with open(OUT, "w") as fh:
        w = fh.write
        w(f"// Generated by tests/reference/make_schedule_fixtures.py with diffusers {diffusers.__version__}, "
          f"torch {torch.__version__}. Do not edit.\n")
        w("#ifndef DDX_SCHEDULE_FIXTURES_H\n#define DDX_SCHEDULE_FIXTURES_H\n\n")
        w(f"#define FS_T {T}\n#define FS_SD_START {SD_START!r}\n#define FS_SD_END {SD_END!r}\n")
        for (name, z), v in sched.items():
            tag = name + ("_zsnr" if z else "")
            w(c_array("double", f"fs_{tag}_betas64", v["b64"].tolist(), d))
            w(c_array("double", f"fs_{tag}_abar64", v["ac64"].tolist(), d))
            w(c_array("float", f"fs_{tag}_abar32", v["ac32"].tolist(), f))
        w(f"\n#define FS_N {x_t.numel()}\n")
        w(c_array("float", "fs_x_t", x_t.flatten().tolist(), f))
        w(c_array("float", "fs_model_out", out.flatten().tolist(), f))
        w("// sampler 0 DDPM / 1 DDIM; schedule 0 linear / 1 cosine / 2 scaled_linear, all zero terminal SNR;\n"
          "// param 1 x0 / 2 v; variance 0 fixedlarge / 1 fixedsmall.\n")
        w("typedef struct fs_step { int sampler, schedule, param, variance; double eta; int t, t_prev; "
          "const double *mean; double std; const char *desc; } fs_step;\n")
        pmap = {"sample": 1, "v_prediction": 2}
        smap = {"linear": 0, "cosine": 1, "scaled_linear": 2}
        for i, st in enumerate(steps):
            w(c_array("double", f"fs_step{i}_mean", st[7].flatten().tolist(), d))
        w("static const fs_step fs_steps[] = {\n")
        for i, (kind, name, pred, var, eta, t, tp, mean, std) in enumerate(steps):
            desc = f"{'DDPM' if kind == 0 else 'DDIM'} zsnr {name} {pred} {var or 'eta=' + str(eta)} t={t}->{tp}"
            w(f"    {{{kind}, {smap[name]}, {pmap[pred]}, {1 if var == 'fixed_small' else 0}, {d(eta)}, {t}, {tp}, "
              f"fs_step{i}_mean, {d(std)}, \"{desc}\"}},\n")
        w("};\n\n#endif\n")
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
