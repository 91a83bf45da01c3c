#!/usr/bin/env python3
"""Writes the fixtures of tests/test_unet_ddpm.c from diffusers' UNet2DModel (CPU, float32).

Run from anywhere (needs torch, safetensors and diffusers; CI does not: the outputs are committed):
    python3 tests/reference/make_unet_ddpm_fixtures.py [VARIANT ...]   (no names: every file)

tests/data/unet_ddpm/cifar10_names.txt
    "name d0,d1,..." per line: every state-dict key and shape (conv weights OIHW) of the
    UNet2DModel that google/ddpm-cifar10-32 uses, i.e. ddx's default config; the C test checks
    that ddx registers exactly these names with these shapes (conv weights compared after OHWI ->
    OIHW) and 35,746,307 parameters.

tests/data/unet_ddpm/<variant>.safetensors, one per tiny variant (settings in VARIANTS, repeated
in the C test and checked against the metadata; the DIFFUSERS variants are UNet2DModels made from
diffusers settings directly, and their metadata also holds "diffusers_config" (the UNet2DModel
arguments, as a config.json would) and "ddx_config" (what tools/convert_torch_checkpoint.py maps
them to, which the C test loads and compares with its own settings):
    param.<name>  every parameter as torch holds it (conv weights OIHW)
    grad.<name>   d loss / d parameter, same layout
    x             x_t [N, H, W, Cin] (NHWC)
    t             timesteps [N] f32 (two different values)
    y             class labels [N] i32 (class-conditional variants only; the null class, index
                  num_classes = num_class_embeds - 1, among them)
    noise         the target [N, H, W, Cout] (NHWC)
    out           the model output [N, H, W, Cout] (NHWC)
    loss          [1]: mean((out - noise)^2)
Weights are diffusers' default initialisation with a fixed seed, except GroupNorm weights and
biases, which are moved away from 1 / 0 so that a swapped or missing affine shows.
"""
import json
import os
import sys

import torch
from diffusers import UNet2DModel
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "unet_ddpm")
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import convert_torch_checkpoint  # noqa: E402  (the config.json -> ddx mapping under test)


def ddx_like_unet(image_size, in_ch, out_ch, ch, ch_mult, num_res_blocks, attn_res, groups, num_classes=0,
                  dropout=0.0):
    """UNet2DModel exactly as models/unet_ddpm.c builds it from a ddx config."""
    levels = len(ch_mult)
    attn = [(image_size >> i) in attn_res for i in range(levels)]
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn))
    return UNet2DModel(
        sample_size=image_size,
        in_channels=in_ch,
        out_channels=out_ch,
        block_out_channels=tuple(ch * m for m in ch_mult),
        down_block_types=down,
        up_block_types=up,
        layers_per_block=num_res_blocks,
        freq_shift=1,
        flip_sin_to_cos=False,
        downsample_padding=0,
        norm_eps=1e-6,
        norm_num_groups=groups,
        attention_head_dim=None,
        dropout=dropout,
        num_class_embeds=num_classes + 1 if num_classes > 0 else None,   # + the null class row
    )


def write_names():
    m = ddx_like_unet(32, 3, 3, 128, [1, 2, 2, 2], 2, [16], 32)
    sd = m.state_dict()
    n = sum(v.numel() for v in sd.values())
    assert n == 35746307, n
    with open(os.path.join(DATA, "cifar10_names.txt"), "w") as f:
        f.write(f"# diffusers UNet2DModel for google/ddpm-cifar10-32: {len(sd)} tensors, {n} parameters\n")
        for k, v in sd.items():
            f.write(f"{k} {','.join(str(d) for d in v.shape)}\n")


# name: (settings, batch, timesteps, labels)
VARIANTS = {
    # attention at the lower level (8x8: down block 1, up block 0 which upsamples) and in the mid block
    "tiny": (dict(image_size=16, in_ch=3, out_ch=3, ch=16, ch_mult=[1, 2], num_res_blocks=1, attn_res=[8],
                  groups=8), [37.0, 912.0], None),
    # class-conditional, attention at the top level (16x16: down block 0 which downsamples, the last
    # up block), in_channels != out_channels, two resnets per level
    "tiny_cond": (dict(image_size=16, in_ch=1, out_ch=2, ch=8, ch_mult=[1, 2], num_res_blocks=2, attn_res=[16],
                       groups=4, num_classes=5), [500.0, 3.0], [5, 1]),   # 5: the null class
    # super-resolution (model.cond lowres, factor 2): UNet2DModel with in_channels = 2 * out_channels,
    # x = x_t next to the bicubic-upsampled area-downsampled image (SR_FACTOR below)
    "sr": (dict(image_size=16, in_ch=6, out_ch=3, ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_res=[8], groups=4),
           [120.0, 880.0], None),
}
SR_FACTOR = {"sr": 2}


# Settings outside google/ddpm-cifar10-32's, as UNet2DModel arguments (what a config.json holds):
# name: (UNet2DModel kwargs, timesteps, labels). Each stays well under 1 MB of fixture.
DIFFUSERS = {
    # several heads: attention_head_dim 8 gives 2 heads of 8 at level 0 and in the mid block (16 channels)
    "heads": (dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(16, 16),
                   down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
                   layers_per_block=1, freq_shift=1, flip_sin_to_cos=False, downsample_padding=0, norm_eps=1e-6,
                   norm_num_groups=4, attention_head_dim=8), [37.0, 912.0], None),
    # diffusers' own defaults for the timestep embedding and downsampling: [cos, sin], freq_shift 0,
    # Downsample2D padding 1
    "defaults": (dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                      down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                      layers_per_block=2, flip_sin_to_cos=True, freq_shift=0, downsample_padding=1,
                      norm_num_groups=4, attention_head_dim=None), [999.0, 250.0], None),
    # widths that are not multiples of the first: the time embedding is block_out_channels[0] wide
    "widths": (dict(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(12, 20),
                    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                    layers_per_block=1, freq_shift=1, flip_sin_to_cos=False, downsample_padding=0, norm_eps=1e-6,
                    norm_num_groups=4, attention_head_dim=None), [1.0, 640.0], None),
    # all of it together, three levels and class labels
    "combined": (dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 12, 16),
                      down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                      flip_sin_to_cos=True, freq_shift=0, downsample_padding=1, norm_num_groups=4,
                      attention_head_dim=4, num_class_embeds=3), [123.0, 7.0], [2, 0]),
}


def write_variant(name, cfg, ts, labels, diffusers_kwargs=None):
    torch.manual_seed(1234)
    if diffusers_kwargs is not None:
        m = UNet2DModel(**diffusers_kwargs)
        cfg = dict(image_size=diffusers_kwargs["sample_size"], in_ch=diffusers_kwargs["in_channels"],
                   out_ch=diffusers_kwargs["out_channels"])
    else:
        m = ddx_like_unet(**cfg)
    with torch.no_grad():
        for mod_name, mod in m.named_modules():
            if isinstance(mod, torch.nn.GroupNorm):
                mod.weight.copy_(1.0 + 0.3 * torch.randn_like(mod.weight))
                mod.bias.copy_(0.2 * torch.randn_like(mod.bias))
    m.train()   # dropout is 0: train mode only matters for its code path
    N, S = len(ts), cfg["image_size"]
    x = torch.randn(N, cfg["in_ch"], S, S)
    noise = torch.randn(N, cfg["out_ch"], S, S)
    if name in SR_FACTOR:
        f, co = SR_FACTOR[name], cfg["out_ch"]
        low = torch.nn.functional.avg_pool2d(torch.rand(N, co, S, S) * 2 - 1, f)
        cond = torch.nn.functional.interpolate(low, scale_factor=f, mode="bicubic", align_corners=False).clamp(-1, 1)
        x = torch.cat([x[:, :co], cond], dim=1)
    t = torch.tensor(ts, dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.long) if labels is not None else None
    out = m(x, t, class_labels=y).sample
    loss = ((out - noise) ** 2).mean()
    loss.backward()

    nhwc = lambda v: v.detach().permute(0, 2, 3, 1).contiguous()
    tensors = {}
    for k, p in m.named_parameters():
        tensors["param." + k] = p.detach().contiguous()
        tensors["grad." + k] = p.grad.detach().contiguous()
    tensors["x"] = nhwc(x)
    tensors["t"] = t
    if y is not None:
        tensors["y"] = y.to(torch.int32)
    tensors["noise"] = nhwc(noise)
    tensors["out"] = nhwc(out)
    tensors["loss"] = loss.detach().reshape(1)
    meta = {"torch": torch.__version__, "config": json.dumps(cfg)}
    if diffusers_kwargs is not None:
        full = {k: v for k, v in m.config.items() if not k.startswith("_")}
        full = json.loads(json.dumps(full))   # tuples -> lists, as in a config.json
        meta["diffusers_config"] = json.dumps(full)
        settings = convert_torch_checkpoint.ddx_config_from_diffusers(full)
        meta["ddx_config"] = convert_torch_checkpoint.ddx_yaml(settings, name)
    import diffusers
    meta["diffusers"] = diffusers.__version__
    path = os.path.join(DATA, name + ".safetensors")
    save_file(tensors, path, metadata=meta)
    nparam = sum(p.numel() for p in m.parameters())
    print(f"{path}: {nparam} parameters, loss {loss.item():.6f}, {os.path.getsize(path)} bytes")


def main():
    # Variant names as arguments: write only those (a new variant need not rewrite the others).
    only = set(sys.argv[1:])
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(DATA, exist_ok=True)
    if not only:
        write_names()
    for name, (cfg, ts, labels) in VARIANTS.items():
        if not only or name in only:
            write_variant(name, cfg, ts, labels)
    for name, (kwargs, ts, labels) in DIFFUSERS.items():
        if not only or name in only:
            write_variant(name, None, ts, labels, kwargs)


if __name__ == "__main__":
    main()
