#!/usr/bin/env python3
"""Reference values for models/diffusion.c from diffusers' DDPMScheduler / DDIMScheduler (CPU).

Writes tests/data/diffusion/diffusion_fixtures.h (C arrays, read by tests/test_diffusion.c):
  - betas / alphas_cumprod, T = 1000, for 'linear' (1e-4 .. 0.02) and 'squaredcos_cap_v2':
      * float64: linear = torch.linspace(dtype=float64) and its cumprod; cosine = diffusers'
        betas_for_alpha_bar formula evaluated in Python doubles (diffusers itself stores the
        result as float32; the script asserts that rounding our doubles to float32 gives
        diffusers' tensor bit for bit, so the float64 values are diffusers' formula);
      * float32: diffusers' own scheduler tensors, as the library computes them.
  - DDIM 'leading' timesteps (DDIMScheduler.set_timesteps) for several step counts, and the
    DDIM paper's quadratic spacing int(linspace(0, sqrt(0.8 T), S)^2) from numpy.
  - single DDPM and DDIM steps on fixed float32 x_t / model output (clip_sample=True). The
    schedulers run in float64: their float32 schedule tensors are replaced by the float64
    ones above before stepping. Noise: DDPM's step draws its own noise with randn_tensor,
    which the script replaces by zeros; DDIM is given variance_noise = zeros. Each fixture
    therefore stores the noiseless result `mean` plus the noise std that diffusers would
    multiply its noise by (sqrt(_get_variance) for DDPM, eta * sqrt(_get_variance) for DDIM);
    the C test checks ours == mean + std * z with z its own Philox draw.
Run: /tmp/misc_torchvenv/bin/python tests/reference/make_diffusion_fixtures.py
"""
import math
import os

import numpy as np
import torch
import diffusers
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.schedulers import scheduling_ddpm

T = 1000
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "diffusion", "diffusion_fixtures.h")


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


def cosine_betas64():
    def abar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return [min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)]


def schedules():
    out = {}
    lin64 = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    cos64 = torch.tensor(cosine_betas64(), dtype=torch.float64)
    for name, sched, b64 in (("linear", "linear", lin64), ("cosine", "squaredcos_cap_v2", cos64)):
        s = DDPMScheduler(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule=sched)
        if name == "cosine":
            assert torch.equal(b64.to(torch.float32), s.betas), name   # our doubles are diffusers' formula
        else:   # diffusers runs linspace in float32 itself: equal to float32 rounding
            assert torch.allclose(b64.to(torch.float32), s.betas, rtol=1e-6, atol=0), name
        out[name] = dict(b64=b64, ac64=torch.cumprod(1.0 - b64, 0), b32=s.betas, ac32=s.alphas_cumprod)
    return out


def as64(s, sch):
    s.betas = sch["b64"].clone()
    s.alphas = 1.0 - s.betas
    s.alphas_cumprod = sch["ac64"].clone()
    s.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(s, "final_alpha_cumprod"):
        s.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return s


def main():
    sch = schedules()
    g = torch.Generator().manual_seed(1234)
    shape = (2, 4, 4, 3)   # NHWC for ddx; the schedulers are elementwise, so layout is irrelevant
    x_t = torch.randn(shape, generator=g, dtype=torch.float32)
    eps = torch.randn(shape, generator=g, dtype=torch.float32)
    n = x_t.numel()

    # Zero noise inside DDPMScheduler.step.
    scheduling_ddpm.randn_tensor = lambda shape, generator=None, device=None, dtype=None, **kw: torch.zeros(shape, dtype=dtype)

    steps = []   # (kind, sched, pred, var/eta, t, t_prev, mean, std)
    ddpm_cases = [("linear", "epsilon", "fixed_large", 500), ("linear", "epsilon", "fixed_small", 500),
                  ("linear", "epsilon", "fixed_large", 1), ("linear", "epsilon", "fixed_large", 0),
                  ("linear", "sample", "fixed_large", 300), ("cosine", "v_prediction", "fixed_small", 10),
                  ("cosine", "epsilon", "fixed_large", 999)]
    for sname, pred, var, t in ddpm_cases:
        s = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear" if sname == "linear" else "squaredcos_cap_v2",
                          variance_type=var, clip_sample=True, prediction_type=pred)
        as64(s, sch[sname])
        mean = s.step(eps.double(), t, x_t.double()).prev_sample
        std = float(s._get_variance(t) ** 0.5) if t > 0 else 0.0
        steps.append((0, sname, pred, var, 0.0, t, t - 1, mean, std))

    ddim_cases = [("linear", "epsilon", 0.0, 50, 500), ("linear", "epsilon", 0.5, 50, 500),
                  ("linear", "epsilon", 0.0, 50, 0), ("linear", "v_prediction", 0.5, 50, 20),
                  ("linear", "sample", 0.0, 50, 980), ("cosine", "epsilon", 1.0, 10, 900)]
    for sname, pred, eta, S, t in ddim_cases:
        s = DDIMScheduler(num_train_timesteps=T, beta_schedule="linear" if sname == "linear" else "squaredcos_cap_v2",
                          clip_sample=True, set_alpha_to_one=True, prediction_type=pred, timestep_spacing="leading",
                          steps_offset=0)
        s.set_timesteps(S)
        as64(s, sch[sname])
        prev = t - T // S
        mean = s.step(eps.double(), t, x_t.double(), eta=eta, variance_noise=torch.zeros(shape, dtype=torch.float64)).prev_sample
        std = eta * float(s._get_variance(t, prev)) ** 0.5
        steps.append((1, sname, pred, "", eta, t, prev if prev >= 0 else -1, mean, std))

    # Timesteps.
    leading = {}
    for S in (1, 7, 10, 33, 50, 100, 1000):
        s = DDIMScheduler(num_train_timesteps=T, timestep_spacing="leading", steps_offset=0)
        s.set_timesteps(S)
        leading[S] = [int(v) for v in s.timesteps]
    quad = {}
    for S in (10, 20, 50, 100):
        seq = [int(v) for v in list(np.linspace(0, np.sqrt(T * 0.8), S) ** 2)]
        quad[S] = seq   # ascending with possible repeats, exactly as the DDIM authors' code

    with open(OUT, "w") as fh:
        w = fh.write
        w(f"// Generated by tests/reference/make_diffusion_fixtures.py with diffusers {diffusers.__version__}, "
          f"torch {torch.__version__}, numpy {np.__version__}. Do not edit.\n")
        w("#ifndef DDX_DIFFUSION_FIXTURES_H\n#define DDX_DIFFUSION_FIXTURES_H\n\n")
        w(f"#define FX_T {T}\n")
        w("// linear betas in diffusers are torch.linspace in float32 (its *32 arrays); ddx follows the\n"
          "// float64 linspace (*64 arrays).\n")
        for name in ("linear", "cosine"):
            w(c_array("double", f"fx_{name}_betas64", sch[name]["b64"].tolist(), d))
            w(c_array("double", f"fx_{name}_abar64", sch[name]["ac64"].tolist(), d))
            w(c_array("float", f"fx_{name}_betas32", sch[name]["b32"].tolist(), f))
            w(c_array("float", f"fx_{name}_abar32", sch[name]["ac32"].tolist(), f))
        w("\n// DDIM 'leading' timesteps (decreasing) and quadratic (ascending, repeats kept).\n")
        w("typedef struct fx_ts { int steps; int n; const int *ts; } fx_ts;\n")
        for S, v in leading.items():
            w(c_array("int", f"fx_leading_{S}", v, str))
        w("static const fx_ts fx_leading[] = {" + ", ".join(f"{{{S}, {len(v)}, fx_leading_{S}}}" for S, v in leading.items()) + "};\n")
        for S, v in quad.items():
            w(c_array("int", f"fx_quad_{S}", v, str))
        w("static const fx_ts fx_quad[] = {" + ", ".join(f"{{{S}, {len(v)}, fx_quad_{S}}}" for S, v in quad.items()) + "};\n")
        w(f"\n// One step on [2,4,4,3] inputs: x_t and the model output (float32, exact).\n#define FX_N {n}\n")
        w(c_array("float", "fx_x_t", x_t.flatten().tolist(), f))
        w(c_array("float", "fx_model_out", eps.flatten().tolist(), f))
        w("// sampler 0 DDPM / 1 DDIM; schedule 0 linear / 1 cosine; param 0 eps / 1 x0 / 2 v;\n"
          "// variance 0 fixedlarge / 1 fixedsmall (DDPM); mean = diffusers' result with zero noise;\n"
          "// std = what diffusers multiplies its noise by.\n")
        w("typedef struct fx_step { int sampler, schedule, param, variance; double eta; int t, t_prev; "
          "const double *mean; double std; const char *desc; } fx_step;\n")
        pmap = {"epsilon": 0, "sample": 1, "v_prediction": 2}
        for i, st in enumerate(steps):
            w(c_array("double", f"fx_step{i}_mean", st[7].flatten().tolist(), d))
        w("static const fx_step fx_steps[] = {\n")
        for i, (kind, sname, pred, var, eta, t, tp, mean, std) in enumerate(steps):
            desc = f"{'DDPM' if kind == 0 else 'DDIM'} {sname} {pred} {var or 'eta=' + str(eta)} t={t}->{tp}"
            w(f"    {{{kind}, {0 if sname == 'linear' else 1}, {pmap[pred]}, {1 if var == 'fixed_small' else 0}, "
              f"{d(eta)}, {t}, {tp}, fx_step{i}_mean, {d(std)}, \"{desc}\"}},\n")
        w("};\n\n#endif\n")
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
