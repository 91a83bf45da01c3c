#!/usr/bin/env python3
"""One training step's loss and every parameter gradient for v-prediction with Min-SNR-gamma
loss weighting on a tiny U-Net, for tests/test_unet_ddpm.c (test_vpred_minsnr).

Run from anywhere (needs torch, safetensors and diffusers; CI does not: the output is committed):
    python3 tests/reference/make_vpred_fixtures.py
writes tests/data/unet_ddpm/vpred_minsnr.safetensors:
    param.<name>, grad.<name>   as make_unet_ddpm_fixtures.py (torch layout, conv weights OIHW)
    x0      the clean batch [N, H, W, C] (NHWC)
    t       the timesteps [N] f32 ddx draws for (SEED, STEP)
    out     the model output [N, H, W, C]
    loss    [1]
The step is ddx_diffusion_loss(x0, seed SEED, step STEP) with the cosine schedule (T = 1000),
diffusion.parameterization v and train.loss_weight min_snr, gamma 5:
  - t_i = floor(u_i T), u = Philox4x32-10 uniforms of (SEED, stream TIMESTEP, STEP) and noise the
    Philox normals of (SEED, stream Q_SAMPLE, STEP), both re-implemented below from ddx's keying
    convention (kernels/philox.h); the normals here use float64 log/cos/sin and so differ from
    ddx's polynomial ones by a few float ulps, far below the test's tolerance;
  - x_t = sqrt(abar) x0 + sqrt(1 - abar) eps and the target v = sqrt(abar) eps - sqrt(1 - abar) x0
    in float32 from float32-rounded coefficients (as ddx's q_sample);
  - the weights are diffusers' recipe (examples/text_to_image/train_text_to_image.py, --snr_gamma):
    snr = diffusers.training_utils.compute_snr(scheduler, t), w = min(snr, gamma) / (snr + 1)
    for v_prediction; loss = mean_i(w_i * mean(F.mse_loss(out, v, reduction='none')[i])). The
    scheduler's alphas_cumprod is replaced by the float64 cumprod of its betas (ddx's values)
    so that the fixture checks the convention rather than float32 cumprod drift.
SEED and STEP are chosen (first that fits, searched below) so that the batch has timesteps on
both sides of SNR = gamma, i.e. both branches of the min.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import diffusers
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_unet_ddpm_fixtures import ddx_like_unet  # noqa: E402

OUT = os.path.join(HERE, "..", "data", "unet_ddpm", "vpred_minsnr.safetensors")
T, GAMMA, N = 1000, 5.0, 4
CFG = dict(image_size=8, in_ch=3, out_ch=3, ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_res=[4], groups=4)
STREAM_Q_SAMPLE, STREAM_TIMESTEP = 0x40000000, 0x40000001
M32 = 0xFFFFFFFF


def philox_group(seed, stream, step, group):
    x = [group & M32, group >> 32, stream, step]
    k0, k1 = seed & M32, seed >> 32
    for _ in range(10):
        p0, p1 = 0xD2511F53 * x[0], 0xCD9E8D57 * x[2]
        x = [(p1 >> 32) ^ x[1] ^ k0, p1 & M32, (p0 >> 32) ^ x[3] ^ k1, p0 & M32]
        k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
    return x


def unit(x):
    return float(np.float32((((x >> 9) << 1) | 1) * 2.0 ** -24))


def uniforms(seed, stream, step, n):
    return [unit(philox_group(seed, stream, step, i >> 2)[i & 3]) for i in range(n)]


def normals(seed, stream, step, n):
    out = []
    for g in range((n + 3) // 4):
        x = philox_group(seed, stream, step, g)
        for h in range(2):
            rad = math.sqrt(-2.0 * math.log(unit(x[2 * h])))
            ang = 2.0 * math.pi * ((((x[2 * h + 1] >> 9) << 1) | 1) * 2.0 ** -24)
            out += [rad * math.cos(ang), rad * math.sin(ang)]
    return np.array(out[:n], dtype=np.float32)


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    sch = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    def abar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    b64 = torch.tensor([min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)], dtype=torch.float64)
    assert torch.equal(b64.float(), sch.betas)
    sch.alphas_cumprod = torch.cumprod(1.0 - b64, 0)
    ac = sch.alphas_cumprod

    seed = 5
    for step in range(1, 1000):
        ts = [min(int(math.floor(u * T)), T - 1) for u in uniforms(seed, STREAM_TIMESTEP, step, N)]
        snr = [ac[t].item() / (1 - ac[t].item()) for t in ts]
        if min(snr) < GAMMA / 2 and max(snr) > 2 * GAMMA:
            break
    print(f"seed {seed} step {step}: t = {ts}, snr = {[round(s, 3) for s in snr]}")

    torch.manual_seed(99)
    S, C = CFG["image_size"], CFG["out_ch"]
    m = ddx_like_unet(**CFG)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.GroupNorm):
                mod.weight.copy_(1.0 + 0.3 * torch.randn_like(mod.weight))
                mod.bias.copy_(0.2 * torch.randn_like(mod.bias))
    m.train()
    x0 = (torch.rand(N, S, S, C) * 2 - 1).float()                     # NHWC
    eps = torch.from_numpy(normals(seed, STREAM_Q_SAMPLE, step, x0.numel())).reshape(N, S, S, C)
    t = torch.tensor(ts, dtype=torch.long)
    sab = torch.tensor([math.sqrt(ac[i].item()) for i in ts], dtype=torch.float32).view(N, 1, 1, 1)
    s1ab = torch.tensor([math.sqrt(1.0 - ac[i].item()) for i in ts], dtype=torch.float32).view(N, 1, 1, 1)
    x_t = sab * x0 + s1ab * eps
    v = sab * eps - s1ab * x0
    nchw = lambda a: a.permute(0, 3, 1, 2).contiguous()
    out = m(nchw(x_t), t.float()).sample
    snr_t = compute_snr(sch, t)
    w = torch.stack([snr_t, GAMMA * torch.ones_like(snr_t)], dim=1).min(dim=1)[0] / (snr_t + 1)
    loss = F.mse_loss(out.float(), nchw(v).float(), reduction="none")
    loss = (loss.mean(dim=list(range(1, loss.ndim))) * w).mean()
    loss.backward()
    print("weights", w.tolist(), "loss", loss.item())

    tensors = {}
    for k, p in m.named_parameters():
        tensors["param." + k] = p.detach().contiguous()
        tensors["grad." + k] = p.grad.detach().contiguous()
    tensors["x0"] = x0.contiguous()
    tensors["t"] = t.float()
    tensors["out"] = out.detach().permute(0, 2, 3, 1).contiguous()
    tensors["loss"] = loss.detach().reshape(1)
    meta = {"torch": torch.__version__, "diffusers": diffusers.__version__, "config": json.dumps(CFG),
            "seed": str(seed), "step": str(step), "gamma": str(GAMMA)}
    save_file(tensors, OUT, metadata=meta)
    print(f"wrote {os.path.normpath(OUT)}: {sum(p.numel() for p in m.parameters())} parameters, "
          f"{os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
