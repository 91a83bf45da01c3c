#!/usr/bin/env python3
"""PyTorch reference for ddx's `unet_plain` network and the parity fixture of tests/test_unet_plain.c.

The UNetPlain module below IS the definition of unet_plain: models/unet_plain.c builds the same
network from ddx ops, and its parameter names are this module's state-dict keys.

Run from the repository root (CPU only, a few seconds):
    /tmp/misc_torchvenv/bin/python tests/reference/make_unet_plain_fixtures.py
writes tests/data/unet_plain/unet_plain.safetensors.

File contents, for each case prefix P ("gray", "rgb"):
    P.param.<name>   the fixed random weights (conv weights OIHW, as PyTorch holds them)
    P.grad.<name>    d loss / d <name>, same layout
    P.x              x_t      [N, C, H, W] (NCHW)
    P.t              timesteps [N] f32 (integers as floats)
    P.y              class labels [N] i32 (only when num_classes > 0)
    P.noise          the target [N, C, H, W]
    P.out            network output [N, C, H, W]
    P.loss           [1] mse(out, noise), mean over every element
  __metadata__: P.settings (the model settings, "key=value" joined by ';'), P.param_count,
  P.param_names (state-dict order, comma-separated).

The weights, inputs and targets are fp32 values; the forward/backward that produces the
reference outputs runs in float64 on those exact values, so the stored references carry no fp32
rounding of their own and the C test's tolerances measure only ddx's fp32 error. The sinusoidal
timestep embedding is the one exception: it is computed in fp32 exactly as diffusers does (that
IS its definition; its argument t * freq is rounded to fp32 there too) and then widened.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file


def timestep_embedding(t, dim, max_period=10000.0):
    """diffusers get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0), fp32.

    ddx: ddx_timestep_emb with {dim, freq_shift 0, flip_sin_to_cos true, max_period 10000}.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32) / half
    emb = t.float()[:, None] * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)


class ConvBlock(nn.Module):
    """conv3x3 (padding 1) -> ReLU -> conv3x3 (padding 1) -> ReLU."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class TimeMLP(nn.Module):
    """Linear(tdim, tdim) -> SiLU -> Linear(tdim, c3)."""

    def __init__(self, tdim, cout):
        super().__init__()
        self.linear1 = nn.Linear(tdim, tdim)
        self.linear2 = nn.Linear(tdim, cout)

    def forward(self, e):
        return self.linear2(F.silu(self.linear1(e)))


class UNetPlain(nn.Module):
    """The simple seed U-Net (ddx model.type: unet_plain).

    Settings: in_channels, out_channels, ch, ch_mult (exactly 3 entries), num_classes.
    c1, c2, c3 = ch * ch_mult[0], ch * ch_mult[1], ch * ch_mult[2]; tdim = 4 * ch.
    H and W must be divisible by 4 (two 2x poolings).

        s1 = enc1(x)                         ConvBlock(in_channels, c1)      [N, c1, H,   W  ]
        s2 = enc2(maxpool2x(s1))             ConvBlock(c1, c2)               [N, c2, H/2, W/2]
        h  = enc3(maxpool2x(s2))             ConvBlock(c2, c3)  bottleneck   [N, c3, H/4, W/4]
        e  = timestep_embedding(t, tdim)     (+ label_emb(y) when num_classes > 0)   [N, tdim]
        h  = h * time_mlp(e)[:, :, None, None]           the time vector scales each channel
        h  = dec2(cat([up2x(h), s2]))        ConvBlock(c3 + c2, c2)          [N, c2, H/2, W/2]
        h  = dec1(cat([up2x(h), s1]))        ConvBlock(c2 + c1, c1)          [N, c1, H,   W  ]
        out = out(h)                         Conv2d 1x1 (c1, out_channels)

    maxpool2x = F.max_pool2d(2); up2x = F.interpolate(scale_factor=2, mode='bilinear',
    align_corners=False); cat is along channels with the upsampled tensor first. There is no
    normalisation, dropout or attention: model.num_res_blocks, attn_resolutions, dropout, groups
    and norm_eps do not apply to this network. Class labels: nn.Embedding(num_classes + 1, tdim)
    (label num_classes: the null class of classifier-free guidance) added to the sinusoidal
    embedding before the MLP. Default PyTorch initialisation.
    """

    def __init__(self, in_channels, out_channels, ch, ch_mult, num_classes=0):
        super().__init__()
        assert len(ch_mult) == 3
        c1, c2, c3 = (ch * m for m in ch_mult)
        self.tdim = 4 * ch
        self.enc1 = ConvBlock(in_channels, c1)
        self.enc2 = ConvBlock(c1, c2)
        self.enc3 = ConvBlock(c2, c3)
        self.time_mlp = TimeMLP(self.tdim, c3)
        # num_classes + 1 rows: the last is the null class of classifier-free guidance.
        self.label_emb = nn.Embedding(num_classes + 1, self.tdim) if num_classes > 0 else None
        self.dec2 = ConvBlock(c3 + c2, c2)
        self.dec1 = ConvBlock(c2 + c1, c1)
        self.out = nn.Conv2d(c1, out_channels, 1)

    def forward(self, x, t, y=None):
        s1 = self.enc1(x)
        s2 = self.enc2(F.max_pool2d(s1, 2))
        h = self.enc3(F.max_pool2d(s2, 2))
        e = timestep_embedding(t, self.tdim).to(x.dtype)
        if self.label_emb is not None:
            e = e + self.label_emb(y.long())
        h = h * self.time_mlp(e)[:, :, None, None]
        up = lambda z: F.interpolate(z, scale_factor=2, mode="bilinear", align_corners=False)
        h = self.dec2(torch.cat([up(h), s2], dim=1))
        h = self.dec1(torch.cat([up(h), s1], dim=1))
        return self.out(h)


# Settings mirrored by tests/test_unet_plain.c (it checks P.settings against its own).
CASES = [
    dict(name="gray", in_channels=1, out_channels=1, ch=8, ch_mult=[1, 2, 4], num_classes=0, size=16,
         t=[3.0, 517.0], y=None, seed=1),
    dict(name="rgb", in_channels=3, out_channels=3, ch=8, ch_mult=[1, 2, 3], num_classes=10, size=12,
         t=[999.0, 40.0], y=[10, 2], seed=2),   # 10: the null class
    # Super-resolution (model.cond lowres, factor 4): x is x_t next to the bicubic-upsampled
    # area-downsampled image, so in_channels = 2 * out_channels.
    dict(name="sr", in_channels=2, out_channels=1, ch=8, ch_mult=[1, 2, 2], num_classes=0, size=16,
         t=[250.0, 731.0], y=None, seed=3, sr_factor=4),
]


def settings_string(cs):
    return ";".join([
        f"in_channels={cs['in_channels']}", f"out_channels={cs['out_channels']}", f"ch={cs['ch']}",
        "ch_mult=" + ",".join(str(m) for m in cs["ch_mult"]), f"num_classes={cs['num_classes']}",
        f"size={cs['size']}", "batch=2",
    ])


def make_case(cs, tensors, meta):
    p = cs["name"]
    torch.manual_seed(cs["seed"])
    model = UNetPlain(cs["in_channels"], cs["out_channels"], cs["ch"], cs["ch_mult"], cs["num_classes"])
    n, s = 2, cs["size"]
    x = torch.randn(n, cs["in_channels"], s, s)
    noise = torch.randn(n, cs["out_channels"], s, s)
    if cs.get("sr_factor"):
        f, co = cs["sr_factor"], cs["out_channels"]
        x0 = torch.rand(n, co, s, s) * 2 - 1
        low = F.avg_pool2d(x0, f)
        cond = F.interpolate(low, scale_factor=f, mode="bicubic", align_corners=False).clamp(-1, 1)
        x = torch.cat([x[:, :co], cond], dim=1)
    t = torch.tensor(cs["t"], dtype=torch.float32)
    y = torch.tensor(cs["y"], dtype=torch.int32) if cs["y"] is not None else None

    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    model = model.double()
    out = model(x.double(), t, y)
    loss = F.mse_loss(out, noise.double())
    loss.backward()

    for k, v in sd.items():
        tensors[f"{p}.param.{k}"] = v
    for k, prm in model.named_parameters():
        tensors[f"{p}.grad.{k}"] = prm.grad.float().contiguous()
    tensors[f"{p}.x"] = x
    tensors[f"{p}.t"] = t
    if y is not None:
        tensors[f"{p}.y"] = y
    tensors[f"{p}.noise"] = noise
    tensors[f"{p}.out"] = out.detach().float().contiguous()
    tensors[f"{p}.loss"] = loss.detach().float().reshape(1)
    meta[f"{p}.settings"] = settings_string(cs)
    meta[f"{p}.param_count"] = str(sum(prm.numel() for prm in model.parameters()))
    meta[f"{p}.param_names"] = ",".join(k for k, _ in model.named_parameters())
    print(f"{p}: {meta[p + '.param_count']} parameters, loss {loss.item():.6f}, max|out| {out.abs().max().item():.4f}")


def main():
    torch.set_num_threads(1)
    tensors, meta = {}, {}
    for cs in CASES:
        make_case(cs, tensors, meta)
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = os.path.join(here, "..", "data", "unet_plain")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "unet_plain.safetensors")
    save_file(tensors, path, metadata=meta)
    print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
