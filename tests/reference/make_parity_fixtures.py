#!/usr/bin/env python3
"""Writes tests/data/parity/parity.safetensors: PyTorch forward and backward of the GEMM and
normalisation ops, for tests/test_parity.c (the `parity` meson suite).

Run from anywhere (needs torch and safetensors; CI does not: the output is committed):
    python3 tests/reference/make_parity_fixtures.py

Everything runs on the CPU in float32 with a fixed seed and deterministic algorithms. For each
case `<case>` the file holds
    <case>.<input>       inputs and weights
    <case>.out           the forward output
    <case>.R             a fixed random upstream gradient, shape of out
    <case>.grad.<input>  the gradient of (out * R).sum() with respect to <input>
Layouts:
  - conv and group_norm tensors are stored as torch has them: activations NCHW, conv weights
    OIHW. The C test converts to NHWC / OHWI itself, as checkpoint loading will.
  - attention tensors are stored in the ddx layout [N, L, heads * head_dim] (head h owns
    channels h*d .. h*d + d - 1): torch's scaled_dot_product_attention takes [N, heads, L, d], so
    q, k, v are permuted here before the call and out / grads permuted back.
  - attn_block (the DDPM AttnBlock) stores x, out, R and grad.x NCHW like conv; its projection
    weights are linear [out, in] and need no conversion.
Shapes and op parameters live in the C test, which checks the file's shapes against them.
"""
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "parity", "parity.safetensors")

tensors = {}


def record(case, inputs, fn, store=None):
    """Runs fn(**inputs), backward of (out * R).sum(), and stores everything under `case`.

    `store` maps a tensor (output or gradient) to the layout written to the file."""
    store = store or (lambda t: t)
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    out = fn(**leaves)
    R = torch.randn_like(out)
    (out * R).sum().backward()
    for k, v in leaves.items():
        tensors[f"{case}.{k}"] = store(v.detach())
        tensors[f"{case}.grad.{k}"] = store(v.grad.detach())
    tensors[f"{case}.out"] = store(out.detach())
    tensors[f"{case}.R"] = store(R)


def conv_cases():
    N, Ci, Co, H, W = 2, 5, 7, 6, 5

    def conv(stride, padding, tf_pad=False, bias=True, k=3, ci=Ci, co=Co):
        inp = {"x": torch.randn(N, ci, H, W), "w": torch.randn(co, ci, k, k) * 0.3}
        if bias:
            inp["b"] = torch.randn(co)

        def fn(x, w, b=None):
            if tf_pad:
                # TensorFlow "SAME" for stride 2 on an even-ish input: one extra row/column at the
                # bottom/right only (ddx: pad_top 0, pad_bottom 1, pad_left 0, pad_right 1).
                x = F.pad(x, (0, 1, 0, 1))
            return F.conv2d(x, w, b, stride=stride, padding=padding)

        return inp, fn

    for case, args in [("conv_s1", dict(stride=1, padding=1)),
                       ("conv_s2", dict(stride=2, padding=1)),
                       ("conv_s2_tf", dict(stride=2, padding=0, tf_pad=True)),
                       ("conv_1x1", dict(stride=1, padding=0, bias=False, k=1))]:
        inp, fn = conv(**args)
        record(case, inp, fn)


def linear_cases():
    record("linear_2d", {"x": torch.randn(5, 12), "w": torch.randn(9, 12) * 0.3, "b": torch.randn(9)},
           lambda x, w, b: F.linear(x, w, b))
    record("linear_3d", {"x": torch.randn(2, 7, 12), "w": torch.randn(9, 12) * 0.3, "b": torch.randn(9)},
           lambda x, w, b: F.linear(x, w, b))


def group_norm_cases():
    def gn(case, shape, groups, silu, std=2.0):
        C = shape[1]
        inp = {"x": torch.randn(*shape) * std + 0.5,   # non-zero mean, non-unit variance
               "gamma": 1.0 + 0.5 * torch.randn(C), "beta": 0.5 * torch.randn(C)}

        def fn(x, gamma, beta):
            y = F.group_norm(x, groups, gamma, beta, eps=1e-6)
            return F.silu(y) if silu else y

        record(case, inp, fn)

    gn("gn", (2, 12, 5, 3), 4, False)
    gn("gn_silu", (2, 12, 5, 3), 4, True)
    # Small spread around a large mean: eps (1e-6 vs torch's default 1e-5) changes the output by
    # percents, and a one-pass E[x^2] - E[x]^2 variance in fp32 loses ~3 of its 7 digits.
    gn("gn_32", (2, 64, 4, 4), 32, False, std=0.02)


def to_ddx_tokens(t):
    # [N, heads, L, d] -> [N, L, heads * d]
    N, Hh, L, d = t.shape
    return t.permute(0, 2, 1, 3).reshape(N, L, Hh * d).contiguous()


def from_ddx_tokens(t, heads):
    # [N, L, heads * d] -> [N, heads, L, d]
    N, L, C = t.shape
    return t.reshape(N, L, heads, C // heads).permute(0, 2, 1, 3)


def attention_cases():
    for case, N, heads, L, d in [("attn_h1", 2, 1, 9, 16), ("attn_h4", 2, 4, 12, 8)]:
        # Drawn in ddx layout directly: the permutation is applied inside fn, so torch's autograd
        # returns gradients in the ddx layout too.
        inp = {k: torch.randn(N, L, heads * d) for k in ("q", "k", "v")}

        def fn(q, k, v, heads=heads):
            o = F.scaled_dot_product_attention(from_ddx_tokens(q, heads), from_ddx_tokens(k, heads),
                                               from_ddx_tokens(v, heads))
            return to_ddx_tokens(o)

        record(case, inp, fn)


def attn_block_case():
    # The DDPM AttnBlock on x [1, C=32, 4, 4] (NCHW): GroupNorm(32, C) -> q, k, v projections
    # (1x1 convs in the original, linear over channels here) -> single-head attention over the
    # H*W tokens -> output projection -> residual add.
    N, C, H, W = 1, 32, 4, 4
    inp = {"x": torch.randn(N, C, H, W), "gamma": 1.0 + 0.3 * torch.randn(C), "beta": 0.3 * torch.randn(C)}
    for p in ("q", "k", "v", "proj"):
        inp[f"w_{p}"] = torch.randn(C, C) / C ** 0.5
        inp[f"b_{p}"] = 0.1 * torch.randn(C)

    def fn(x, gamma, beta, w_q, b_q, w_k, b_k, w_v, b_v, w_proj, b_proj):
        h = F.group_norm(x, 32, gamma, beta, eps=1e-6)
        h = h.flatten(2).transpose(1, 2)   # [N, H*W, C]
        q, k, v = F.linear(h, w_q, b_q), F.linear(h, w_k, b_k), F.linear(h, w_v, b_v)
        a = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        o = F.linear(a, w_proj, b_proj)
        return x + o.transpose(1, 2).reshape(N, C, H, W)

    record("attn_block", inp, fn)


def main():
    torch.manual_seed(20240611)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    conv_cases()
    linear_cases()
    group_norm_cases()
    attention_cases()
    attn_block_case()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT,
              metadata={"generator": "tests/reference/make_parity_fixtures.py", "torch": torch.__version__})
    print(f"wrote {os.path.normpath(OUT)}: {len(tensors)} tensors, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
