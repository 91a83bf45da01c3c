"""Writes tests/data/inception/fixture.safetensors: pytorch-fid's own InceptionV3 (FIDInceptionV3
through pytorch_fid.inception.fid_inception_v3 and the InceptionV3 wrapper, resize_input=True,
normalize_input=True) on two small images, with fixed pseudo-random weights that
tests/test_inception.c rebuilds bit for bit in C (the real weights are 95 MB: too big to commit).

Weights: every tensor of the state dict (torchvision names) is filled element by element from a
hash of its name and the element's flat index in PyTorch's layout:
    h = FNV-1a-64(name);  z = splitmix64(h + (i + 1) * 0x9E3779B97F4A7C15);  u = (z >> 40) * 2^-24
and, in double, rounded once to f32:
    *.conv.weight, fc.weight   (2u - 1) * sqrt(6 / fan_in)       (He-uniform: activations keep their scale)
    *.bn.weight, *.bn.running_var   0.5 + u
    *.bn.bias, *.bn.running_mean, fc.bias   0.2u - 0.1
Images: the same generator under the names "image_rgb" and "image_gray", u as the pixel value.

Needs torch, torchvision, pytorch-fid==0.3.0, safetensors, numpy (not needed at test time).
Run: python3 tests/reference/gen_inception.py
"""
import os

import numpy as np
import torch
from safetensors.numpy import save_file

import pytorch_fid.inception as pfi

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def uniforms(name, n):
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(fnv1a64(name)) + i * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) * 2.0 ** -24


def weight_values(name, shape):
    n = int(np.prod(shape))
    u = uniforms(name, n)
    if name.endswith("conv.weight") or name == "fc.weight":
        fan_in = int(np.prod(shape[1:]))
        v = (2.0 * u - 1.0) * np.sqrt(6.0 / fan_in)
    elif name.endswith("bn.weight") or name.endswith("bn.running_var"):
        v = 0.5 + u
    elif name.endswith("bn.bias") or name.endswith("bn.running_mean") or name == "fc.bias":
        v = 0.2 * u - 0.1
    else:
        raise ValueError("no rule for " + name)
    return v.astype(np.float32).reshape(shape)


def main():
    torch.manual_seed(0)
    sd_holder = {}

    def fake_load(url, progress=True):
        # fid_inception_v3() builds the network and loads the release weights through this
        # function: hand it the formula's weights instead of downloading.
        return sd_holder["sd"]

    # The state dict's names and shapes come from the real architecture.
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
    sd = {}
    n_params = 0
    names = []
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            sd[k] = v
            continue
        sd[k] = torch.from_numpy(weight_values(k, tuple(v.shape)))
        n_params += v.numel()
        names.append(k + ":" + "x".join(str(d) for d in v.shape))
    sd_holder["sd"] = sd
    pfi.load_state_dict_from_url = fake_load

    model = pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
    inception = pfi.fid_inception_v3()   # same weights, for the fc on top of pool3
    inception.eval()

    rgb = uniforms("image_rgb", 32 * 32 * 3).astype(np.float32).reshape(1, 32, 32, 3)
    gray = uniforms("image_gray", 20 * 24).astype(np.float32).reshape(1, 20, 24, 1)
    pool3, logits = [], []
    with torch.no_grad():
        for img in (rgb, gray):
            x = torch.from_numpy(img).permute(0, 3, 1, 2)
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            f = model(x)[0]                       # [1, 2048, 1, 1]
            f = f.flatten(1)
            pool3.append(f.numpy())
            # torchvision Inception3: avgpool -> dropout (identity in eval) -> flatten -> fc.
            logits.append(inception.fc(f).numpy())
    out = {
        "image_rgb": rgb,
        "image_gray": gray,
        "pool3": np.concatenate(pool3).astype(np.float32),
        "logits": np.concatenate(logits).astype(np.float32),
    }
    meta = {
        "torch": torch.__version__,
        "n_tensors": str(len(names)),
        "n_params": str(n_params),
        # name:shape of every weight tensor in state-dict order: the C test builds the same file.
        "tensors": ",".join(names),
    }
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "data", "inception", "fixture.safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(out, path, metadata=meta)
    print("wrote", path, "tensors", len(names), "params", n_params,
          "pool3 mean %.4f max %.4f" % (out["pool3"].mean(), out["pool3"].max()))


if __name__ == "__main__":
    main()
