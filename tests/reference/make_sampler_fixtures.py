#!/usr/bin/env python3
"""Reference trajectories for the multistep / two-stage samplers (models/diffusion.c's
ddx_sampler_plan, the sampler_step_ms op) from diffusers' schedulers (CPU):

  dpmpp2m / dpmpp3m  DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2/3)
  heun               HeunDiscreteScheduler
  euler_a            EulerAncestralDiscreteScheduler

Writes tests/data/diffusion/sampler_ms_fixtures.h (read by tests/test_sampler_ms.c).

The schedule is diffusers' default linear one (T = 1000, 1e-4 .. 0.02). The "model" is a fixed
function of the sample and the time, out = 0.7 x + 0.2 sin(x + 0.01 t), evaluated on the model
input (for the sigma-space schedulers, scale_model_input's x / sqrt(1 + sigma^2), which is
ddx's variance-preserving x_t). x_T is a fixed float32 normal draw (numpy, seed 1234) of
shape [2, 3, 3, 2]. Each case records the model's time input per call and ddx's x after each
call: the schedulers' prev_sample, divided by sqrt(1 + sigma_next^2) for Heun and Euler
(diffusers keeps x_s = x_t sqrt(1 + sigma^2) there).

Schedules: diffusers computes its sigmas in float32. Before stepping, the script replaces the
scheduler's sigmas by the same formulas in float64 (the sigmas of its own timesteps, or for
Karras its own _convert_to_karras / _sigma_to_t applied to float64 inputs), because ddx computes
them in double; the step arithmetic is diffusers' own (it casts the sample to float32).

Euler ancestral draws noise: its randn_tensor is replaced by a function returning zeros, so a
step's prev_sample is the noiseless mean and sigma_up the std it would multiply its noise by.
The trajectory continues with mean + std * z, z a fixed numpy draw (stored as the next call's
input); the C test feeds each call that stored input and checks ours == mean + std * z' with z'
its own Philox draw.

The model output is given to the scheduler in the config's prediction_type; EulerAncestral has
no 'sample' prediction, so for x0-parameterised cases it gets the equivalent epsilon
(x_s - out) / sigma.

Run: python3 tests/reference/make_sampler_fixtures.py
"""
import os

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, HeunDiscreteScheduler
from diffusers.schedulers import scheduling_euler_ancestral_discrete as ea_mod

T = 1000
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "diffusion", "sampler_ms_fixtures.h")
SHAPE = (1, 3, 2, 2)

abar64 = np.cumprod(1.0 - torch.linspace(1e-4, 0.02, T, dtype=torch.float64).numpy())
sig_full = np.sqrt((1.0 - abar64) / abar64)
log_sig_full = np.log(sig_full)

PRED = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
PARAM_C = {"eps": "DDX_PARAMETERIZATION_EPS", "v": "DDX_PARAMETERIZATION_V", "x0": "DDX_PARAMETERIZATION_X0"}
SAMPLER_C = {"dpmpp2m": "DDX_SAMPLER_DPMPP2M", "dpmpp3m": "DDX_SAMPLER_DPMPP3M", "heun": "DDX_SAMPLER_HEUN",
             "euler_a": "DDX_SAMPLER_EULER_A"}
SPACING_C = {"leading": "DDX_SPACING_LEADING", "trailing": "DDX_SPACING_TRAILING", "karras": "DDX_SPACING_KARRAS"}


def model(x, t):
    return 0.7 * x + 0.2 * torch.sin(x + 0.01 * float(t))


def make(sampler, param, spacing, steps):
    karras = spacing == "karras"
    common = dict(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                  timestep_spacing="linspace" if karras else spacing, steps_offset=0)
    if sampler.startswith("dpmpp"):
        sch = DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2 if sampler == "dpmpp2m" else 3,
                                          prediction_type=PRED[param], use_karras_sigmas=karras, **common)
    elif sampler == "heun":
        sch = HeunDiscreteScheduler(prediction_type=PRED[param], use_karras_sigmas=karras, **common)
    else:
        sch = EulerAncestralDiscreteScheduler(prediction_type="epsilon" if param == "x0" else PRED[param], **common)
    if sampler.startswith("dpmpp") and spacing == "leading":
        # DPMSolverMultistepScheduler's own 'leading' is k * (T // (steps + 1)), unlike DDIM's,
        # Euler's and Heun's k * (T // steps), which is what ddx's leading (= uniform) means: give
        # it those timesteps.
        sch.set_timesteps(timesteps=[k * (T // steps) for k in range(steps - 1, -1, -1)])
    else:
        sch.set_timesteps(steps)
    # The levels visited in float64 (see the docstring), in each scheduler's layout.
    if karras:
        s = sch._convert_to_karras(in_sigmas=np.flip(sig_full).copy(), num_inference_steps=steps)
        tl = np.array([sch._sigma_to_t(v, log_sig_full) for v in s])
        if sampler.startswith("dpmpp"):
            tl = tl.round()
    else:
        ts = sch.timesteps.numpy()
        base = ts if sampler != "heun" else np.concatenate([ts[:1], ts[1::2]])
        tl = base.astype(np.float64)
        s = sig_full[base.astype(np.int64)]
    s = np.concatenate([s, [0.0]])
    if sampler == "heun":
        sigmas = np.concatenate([s[:1], np.repeat(s[1:-1], 2), s[-1:]])
        tcalls = np.concatenate([tl[:1], np.repeat(tl[1:], 2)])
    else:
        sigmas, tcalls = s, tl
    # The float64 levels must be diffusers' own up to float32 rounding, or this tests nothing.
    # (Karras: sigma_min = sigma(t=0) from a float32 abar_0 = 1 - 1e-4 is off by ~1e-4 relative
    # in diffusers' float32 version, and every Karras sigma inherits a share of that.)
    ref = sch.sigmas.numpy().astype(np.float64)
    rtol = 2e-4 if karras else 2e-5
    assert ref.shape == sigmas.shape and np.allclose(ref, sigmas, rtol=rtol, atol=1e-6), (sampler, spacing, ref, sigmas)
    reft = sch.timesteps.numpy().astype(np.float64)
    assert np.allclose(reft, tcalls, rtol=0, atol=1e-2 if karras else 0), (sampler, spacing, reft, tcalls)
    sch.sigmas = torch.tensor(sigmas, dtype=torch.float64)
    sch.timesteps = torch.tensor(tcalls, dtype=torch.float64 if sampler != "dpmpp2m" and sampler != "dpmpp3m" else torch.int64)
    sch._step_index = None
    sch._begin_index = 0
    return sch, tcalls, sigmas


def run(sampler, param, spacing, steps, xT, zs):
    sch, tcalls, sigmas = make(sampler, param, spacing, steps)
    vp = sampler.startswith("dpmpp")
    x = torch.tensor(xT.reshape(SHAPE), dtype=torch.float64)
    sample = x if vp else x * np.sqrt(1.0 + sigmas[0] ** 2)
    inputs, outs, stds = [], [], []
    for k, t in enumerate(tcalls):
        xin = sample if vp else sch.scale_model_input(sample, sch.timesteps[k])
        assert vp or torch.allclose(xin.to(torch.float64), sample / np.sqrt(1.0 + sigmas[k] ** 2), rtol=1e-6, atol=0), (sampler, param, spacing, k, sch.step_index, xin.flatten()[:2], (sample / np.sqrt(1.0 + sigmas[k] ** 2)).flatten()[:2])
        inputs.append(xin.numpy().astype(np.float32).ravel())
        # The model sees float32 inputs in ddx.
        xin32 = torch.tensor(inputs[-1].reshape(SHAPE), dtype=torch.float64)
        out = model(xin32, t).to(torch.float32).to(torch.float64)
        given = out
        if sampler == "euler_a" and param == "x0":
            given = (sample - out) / sigmas[k]
        tt = sch.timesteps[k]
        res = sch.step(given, tt, sample, return_dict=False)[0].to(torch.float64)
        scale = 1.0 if vp else np.sqrt(1.0 + sigmas[k + 1] ** 2)
        if sampler == "euler_a":
            s0, s1 = sigmas[k], sigmas[k + 1]
            up = np.sqrt(s1 ** 2 * (s0 ** 2 - s1 ** 2) / s0 ** 2)
            outs.append((res / scale).numpy().ravel())
            stds.append(up / scale)
            res = res + up * torch.tensor(zs[k].reshape(SHAPE), dtype=torch.float64)
        else:
            outs.append((res / scale).numpy().ravel())
        sample = res
    return tcalls, inputs, outs, stds


def fl(v):
    return repr(float(np.float32(v))) + "f"


def main():
    rng = np.random.default_rng(1234)
    n = int(np.prod(SHAPE))
    xT = rng.standard_normal(n).astype(np.float32)
    zs = rng.standard_normal((64, n)).astype(np.float32)
    ea_mod.randn_tensor = lambda shape, **kw: torch.zeros(shape, dtype=torch.float64)
    cases = []
    for sampler in ["dpmpp2m", "dpmpp3m", "heun", "euler_a"]:
        for param in ["eps", "v", "x0"]:
            for spacing, steps in [("leading", 8), ("trailing", 6), ("karras", 7)]:
                if sampler == "euler_a" and spacing == "karras":
                    continue   # diffusers' Euler ancestral has no Karras sigmas
                if sampler == "dpmpp3m" and spacing == "leading":
                    steps = 16   # past 15 steps the second-to-last step is third order too
                cases.append((sampler, param, spacing, steps) + run(sampler, param, spacing, steps, xT, zs))
    lines = ["// Generated by tests/reference/make_sampler_fixtures.py (diffusers schedulers); do not edit.",
             "#ifndef DDX_SAMPLER_MS_FIXTURES_H", "#define DDX_SAMPLER_MS_FIXTURES_H", "",
             f"#define MSFX_N {n}", f"static const int64_t msfx_shape[4] = {{{', '.join(str(v) for v in SHAPE)}}};", ""]
    lines.append(f"static const float msfx_xT[{n}] = {{" + ", ".join(fl(v) for v in xT) + "};")
    lines.append("")
    for ci, (sampler, param, spacing, steps, tcalls, inputs, outs, stds) in enumerate(cases):
        K = len(tcalls)
        lines.append(f"static const double msfx_t_{ci}[{K}] = {{" + ", ".join(repr(float(v)) for v in tcalls) + "};")
        if sampler == "euler_a":
            lines.append(f"static const float msfx_in_{ci}[{K * n}] = {{" +
                         ", ".join(fl(v) for a in inputs for v in a) + "};")
        lines.append(f"static const float msfx_out_{ci}[{K * n}] = {{" +
                     ", ".join(fl(v) for a in outs for v in a) + "};")
        std = stds if stds else [0.0] * K
        lines.append(f"static const double msfx_std_{ci}[{K}] = {{" + ", ".join(repr(float(v)) for v in std) + "};")
    lines.append("")
    lines.append("typedef struct msfx_case {")
    lines.append("    const char *name;")
    lines.append("    ddx_sampler sampler;")
    lines.append("    ddx_parameterization param;")
    lines.append("    ddx_spacing spacing;")
    lines.append("    int steps, calls;")
    lines.append("    const double *t;")
    lines.append("    const float *in, *out;   // [calls][MSFX_N]: each call's input x_t (euler_a only), and ddx's x after it")
    lines.append("    const double *std;       // [calls]: euler_a's noise std per call (0 otherwise)")
    lines.append("} msfx_case;")
    lines.append("static const msfx_case msfx_cases[] = {")
    for ci, (sampler, param, spacing, steps, tcalls, *_r) in enumerate(cases):
        lines.append(f"    {{\"{sampler} {param} {spacing} {steps}\", {SAMPLER_C[sampler]}, {PARAM_C[param]}, "
                     f"{SPACING_C[spacing]}, {steps}, {len(tcalls)}, msfx_t_{ci}, "
                     f"{'msfx_in_%d' % ci if sampler == 'euler_a' else 'NULL'}, msfx_out_{ci}, msfx_std_{ci}}},")
    lines.append("};")
    lines.append("")
    lines.append("#endif")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()
