#!/usr/bin/env python3
"""PyTorch eager on the GPU at the shapes of `ddx-bench kernels` (bench/bench_kernels.c: gemm, conv,
attention, optim) and of the batch-128 perf cases of `test_ops --perf --backend cuda`
(tests/cases_perf.c: group_norm, diffusion).

    python3 bench/reference/torch_kernels.py [--quick] [--reps N] [--filter SECTION[,SECTION...]]

Sections: elementwise (only the copy, the bandwidth the GB/s rows are read against), gemm, conv,
group_norm, diffusion, attention, optim. Every row is timed with torch.cuda.Event
after warm-up: each sample brackets enough back-to-back calls to last about 0.25 ms, the median of the
samples is reported. Eager means the Python dispatch of each op is part of the cost where the kernels
are short; that is what a PyTorch training loop pays.

Output: one line per item with the columns of ddx-bench kernels
    kernel | shape | dtype | ms | rate | unit | %ref | baseline | base ms | b.rate | ratio
where %ref is the share of this run's copy bandwidth (GB/s rows) or of this run's same-dtype
torch.matmul rate (TF/s rows), with the same byte and FLOP counts as the C bench:
  conv TF/s = 2 N Ho Wo Co KH KW Ci / time (fwd, dgrad and wgrad alike; dgrad and wgrad are
    aten.convolution_backward with one output each, what autograd calls; cudnn.benchmark on);
  attention fwd = 4 N L^2 d / time, bwd = 2.5x that (F.scaled_dot_product_attention, backward
    through autograd.grad on a kept graph);
  group_norm + SiLU: fwd x and y, bwd x, dy and dx, plus params and stats;
  q_sample 8 bytes / element, sampler_step 12 (x_t, out read, y written; the noise drawn by torch
    is extra traffic that ddx does not have, as it draws inside the kernel);
  AdamW + clip + EMA 36 bytes / param.
Exit 77 (skip) without torch or without a CUDA device.
"""
import argparse
import math
import statistics
import sys

SECTIONS = ("elementwise", "gemm", "conv", "group_norm", "diffusion", "attention", "optim")

# The DDPM CIFAR-10 U-Net's convs at batch 128, as in bench_kernels.c. The Downsample2D conv
# (F.pad right/bottom by one, then 3x3 stride 2 with no padding) is timed with padding 1 all
# round: the same output size and FLOPs, without the separate pad copy, and what the cuDNN rows
# of ddx-bench do too.
CONV_SHAPES = [
    ("3x3 [128,32,32,128]->128", 128, 32, 32, 128, 128, 3, 1, 1),
    ("3x3 [128,16,16,256]->256", 128, 16, 16, 256, 256, 3, 1, 1),
    ("3x3 [128,8,8,256]->256", 128, 8, 8, 256, 256, 3, 1, 1),
    ("3x3 [128,4,4,256]->256", 128, 4, 4, 256, 256, 3, 1, 1),
    ("3x3s2 [128,32,32,128]->128", 128, 32, 32, 128, 128, 3, 2, 1),
    ("1x1 [128,16,16,128]->256", 128, 16, 16, 128, 256, 1, 1, 0),
]
GN_SHAPES = [("[128,32,32,128] G32", 128, 32, 32, 128), ("[128,16,16,256] G32", 128, 16, 16, 256)]
DIFF_SIZES = [("128x3x32x32", 128 * 3 * 32 * 32, 3 * 32 * 32), ("256x3x64x64", 256 * 3 * 64 * 64, 3 * 64 * 64),
              ("64Mi (4096x4x64x64)", 1 << 26, 4 * 64 * 64)]
ATTN_SHAPES = [("[128,256,256] h1 d256", 128, 256, 256), ("[32,1024,128] h1 d128", 32, 1024, 128)]
N_PARAMS = 35746307


class Bench:
    def __init__(self, torch, reps, warmup, budget_ms, min_reps):
        self.torch = torch
        self.reps, self.warmup, self.budget_ms, self.min_reps = reps, warmup, budget_ms, min_reps
        self.copy_gbs = 0.0
        self.gemm = {}
        self.fails = 0

    def time(self, fn):
        """Median ms of one call of fn, or -1 when it raises (printed)."""
        torch = self.torch
        try:
            for _ in range(self.warmup):
                fn()
            torch.cuda.synchronize()
            e0 = torch.cuda.Event(enable_timing=True)
            e1 = torch.cuda.Event(enable_timing=True)
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            one = max(e0.elapsed_time(e1), 1e-4)
            inner = min(1000, max(1, math.ceil(0.25 / one)))
            reps = self.reps
            if reps * one * inner > self.budget_ms:
                reps = max(self.min_reps, int(self.budget_ms / (one * inner)))
            samples = []
            for _ in range(reps):
                e0.record()
                for _ in range(inner):
                    fn()
                e1.record()
                e1.synchronize()
                samples.append(e0.elapsed_time(e1) / inner)
            return statistics.median(samples)
        except Exception as exc:   # report and go on: one unsupported case must not hide the rest
            print(f"torch_kernels.py: {type(exc).__name__}: {exc}", file=sys.stderr)
            self.fails += 1
            return -1.0


def gbs(nbytes, ms):
    return nbytes / (ms * 1e-3) / 1e9 if ms > 0 else -1.0


def tflops(flops, ms):
    return flops / (ms * 1e-3) / 1e12 if ms > 0 else -1.0


def header(section, what):
    print(f"\n== {section}: {what}")
    print(f"{'kernel':<24} {'shape':<30} {'dtype':<5} {'ms':>9} {'rate':>8} {'unit':<4} {'%ref':>6} | "
          f"{'baseline':<22} {'base ms':>9} {'b.rate':>8} {'ratio':>6}")


def row(name, shape, dt, ms, rate, unit, ref):
    if ms < 0:
        a, b, c = "FAIL", "-", "-"
    else:
        a = f"{ms:.4f}"
        b = f"{rate:.2f}" if unit.startswith("T") else f"{rate:.0f}"
        c = f"{100 * rate / ref:.0f}%" if ref and ref > 0 else "-"
    print(f"{name:<24} {shape:<30} {dt:<5} {a:>9} {b:>8} {unit:<4} {c:>6} | {'-':<22} {'-':>9} {'-':>8} {'-':>6}",
          flush=True)


def section_copy(B, show):
    torch = B.torch
    n = 1 << 26
    x = torch.randn(n, device="cuda")
    y = torch.empty_like(x)
    ms = B.time(lambda: y.copy_(x))
    B.copy_gbs = gbs(8.0 * n, ms)
    if show:
        header("elementwise", "64 Mi elements; the D2D copy the GB/s rows are read against")
        row("copy (y.copy_(x))", "64Mi", "f32", ms, B.copy_gbs, "GB/s", B.copy_gbs)
    else:
        print(f"copy bandwidth (y.copy_(x), 256 MiB, read + write): {B.copy_gbs:.0f} GB/s")


def section_gemm(B, show):
    torch = B.torch
    m = 8192
    flops = 2.0 * m ** 3
    if show:
        header("gemm", "torch.matmul square, the rate the conv and attention rows are read against")
    for name, dt, tf32 in (("bf16", torch.bfloat16, False), ("f32", torch.float32, False), ("tf32", torch.float32, True)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(m, m, device="cuda", dtype=dt)
        b = torch.randn(m, m, device="cuda", dtype=dt)
        c = torch.empty(m, m, device="cuda", dtype=dt)
        ms = B.time(lambda: torch.matmul(a, b, out=c))
        B.gemm[name] = tflops(flops, ms)
        if show:
            row("torch.matmul", f"{m}x{m}x{m}", name, ms, B.gemm[name], "TF/s", 0)
        else:
            print(f"GEMM rate (torch.matmul {m}^3, {name}): {B.gemm[name]:.1f} TFLOP/s")
    torch.backends.cuda.matmul.allow_tf32 = False


def section_conv(B):
    torch = B.torch
    F = torch.nn.functional
    cl = torch.channels_last
    torch.backends.cudnn.benchmark = True
    header("conv", "channels_last, cudnn.benchmark; TF/s = 2 N Ho Wo Co KH KW Ci / time; %ref = share of the "
                   "same-dtype matmul rate")
    for label, n, h, w, ci, co, k, s, p in CONV_SHAPES:
        for dname, dt, tf32 in (("bf16", torch.bfloat16, False), ("f32", torch.float32, False),
                                ("tf32", torch.float32, True)):
            torch.backends.cudnn.allow_tf32 = tf32
            x = torch.randn(n, ci, h, w, device="cuda", dtype=dt).to(memory_format=cl)
            wt = torch.randn(co, ci, k, k, device="cuda", dtype=dt).to(memory_format=cl)
            y = F.conv2d(x, wt, None, s, p)
            dy = torch.randn_like(y).contiguous(memory_format=cl)
            ho, wo = y.shape[2], y.shape[3]
            flops = 2.0 * n * ho * wo * co * k * k * ci
            conv_bwd = torch.ops.aten.convolution_backward

            def fwd():
                F.conv2d(x, wt, None, s, p)

            def dgrad():
                conv_bwd(dy, x, wt, None, [s, s], [p, p], [1, 1], False, [0, 0], 1, [True, False, False])

            def wgrad():
                conv_bwd(dy, x, wt, None, [s, s], [p, p], [1, 1], False, [0, 0], 1, [False, True, False])

            ref = B.gemm.get(dname, 0)
            for name, fn in (("conv2d fwd", fwd), ("conv2d dgrad", dgrad), ("conv2d wgrad", wgrad)):
                ms = B.time(fn)
                row(name, label, dname, ms, tflops(flops, ms), "TF/s", ref)
    torch.backends.cudnn.allow_tf32 = False


def section_group_norm(B):
    torch = B.torch
    F = torch.nn.functional
    header("group_norm", "F.silu(F.group_norm(x)) NCHW (PyTorch's fast layout), G=32, params in x's dtype; GB/s as "
                         "ddx-bench; %ref = share of the copy")
    for label, n, h, w, c in GN_SHAPES:
        for dname, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
            es = 2 if dt == torch.bfloat16 else 4
            x = torch.randn(n, c, h, w, device="cuda", dtype=dt, requires_grad=True)
            gamma = torch.randn(c, device="cuda", dtype=dt, requires_grad=True)
            beta = torch.randn(c, device="cuda", dtype=dt, requires_grad=True)

            def fwd():
                return F.silu(F.group_norm(x, 32, gamma, beta, 1e-5))

            with torch.no_grad():
                ms_f = B.time(fwd)
            y = fwd()
            dy = torch.randn_like(y)
            ms_b = B.time(lambda: torch.autograd.grad(y, (x, gamma, beta), dy, retain_graph=True))
            numel, st = n * h * w * c, n * 32
            row("group_norm+silu fwd", label, dname, ms_f, gbs(2.0 * numel * es + 2.0 * c * es + 8.0 * st, ms_f), "GB/s",
                B.copy_gbs)
            row("group_norm+silu bwd", label, dname, ms_b, gbs(3.0 * numel * es + 4.0 * c * es + 8.0 * st, ms_b), "GB/s",
                B.copy_gbs)


def section_diffusion(B):
    torch = B.torch
    header("diffusion", "eager tensor ops, f32; GB/s counted as ddx-bench (noise traffic not counted); %ref = share "
                        "of the copy")
    a, b, f, g = 1.02, -0.2, 0.1, 0.98
    for label, n, per in DIFF_SIZES:
        ns = n // per
        x = torch.randn(ns, per, device="cuda")
        out = torch.randn(ns, per, device="cuda")
        coef = torch.randn(ns, 2, device="cuda")
        c0, c1 = coef[:, 0:1], coef[:, 1:2]

        def q_sample():
            return c0 * x + c1 * torch.randn_like(x)

        def step(c, d, e, sigma):
            x0 = (a * x + b * out).clamp_(-1.0, 1.0)
            eps = f * x + g * out
            prev = c * x0 + d * x + e * eps
            if sigma > 0:
                prev = prev + sigma * torch.randn_like(x)
            return prev

        with torch.no_grad():
            ms = B.time(q_sample)
            row("q_sample", label, "f32", ms, gbs(8.0 * n + 8.0 * ns, ms), "GB/s", B.copy_gbs)
            ms = B.time(lambda: step(0.05, 0.94, 0.0, 0.03))
            row("sampler_step DDPM", label, "f32", ms, gbs(12.0 * n, ms), "GB/s", B.copy_gbs)
            ms = B.time(lambda: step(0.9, 0.0, 0.43, 0.0))
            row("sampler_step DDIM", label, "f32", ms, gbs(12.0 * n, ms), "GB/s", B.copy_gbs)


def section_attention(B):
    torch = B.torch
    F = torch.nn.functional
    header("attention", "F.scaled_dot_product_attention [N,1,L,d]; fwd TF/s = 4 N L^2 d / time, bwd 2.5x that; "
                        "%ref = share of the same-dtype matmul rate")
    torch.backends.cuda.matmul.allow_tf32 = False
    for label, n, L, d in ATTN_SHAPES:
        for dname, dt in (("bf16", torch.bfloat16), ("f32", torch.float32)):
            q, k, v = (torch.randn(n, 1, L, d, device="cuda", dtype=dt, requires_grad=True) for _ in range(3))
            fwd_flops = 4.0 * n * L * L * d
            with torch.no_grad():
                ms_f = B.time(lambda: F.scaled_dot_product_attention(q, k, v))
            o = F.scaled_dot_product_attention(q, k, v)
            do = torch.randn_like(o)
            ms_b = B.time(lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True))
            ref = B.gemm.get(dname, 0)
            row("sdpa fwd", label, dname, ms_f, tflops(fwd_flops, ms_f), "TF/s", ref)
            row("sdpa bwd", label, dname, ms_b, tflops(2.5 * fwd_flops, ms_b), "TF/s", ref)


def section_optim(B):
    torch = B.torch
    header("optim", f"one flat f32 parameter of {N_PARAMS:,} (PyTorch's best case: one tensor); %ref = share of the copy")
    p = torch.nn.Parameter(torch.randn(N_PARAMS, device="cuda"))
    p.grad = torch.randn(N_PARAMS, device="cuda")
    ema = p.detach().clone()
    opt = torch.optim.AdamW([p], lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, fused=True)

    def sumsq():
        return torch.linalg.vector_norm(p.grad)

    def step():
        torch.nn.utils.clip_grad_norm_([p], 1.0)
        opt.step()
        with torch.no_grad():
            ema.lerp_(p, 1.0 - 0.9999)

    ms = B.time(sumsq)
    row("grad norm", str(N_PARAMS), "f32", ms, gbs(4.0 * N_PARAMS, ms), "GB/s", B.copy_gbs)
    ms = B.time(step)
    row("clip+AdamW(fused)+ema", str(N_PARAMS), "f32", ms, gbs(36.0 * N_PARAMS, ms), "GB/s", B.copy_gbs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples per row")
    ap.add_argument("--reps", type=int, default=None, help="samples per row (default 25, --quick 7)")
    ap.add_argument("--filter", default="", help="comma-separated sections: " + ",".join(SECTIONS))
    args = ap.parse_args()
    wanted = set(s for s in args.filter.split(",") if s) or set(SECTIONS)
    unknown = wanted - set(SECTIONS)
    if unknown:
        print(f"torch_kernels.py: unknown section(s) {sorted(unknown)} (sections: {','.join(SECTIONS)})", file=sys.stderr)
        return 2
    try:
        import torch
    except ImportError:
        print("torch_kernels.py: SKIP: torch is not installed")
        return 77
    if not torch.cuda.is_available():
        print("torch_kernels.py: SKIP: no CUDA device")
        return 77
    reps = args.reps if args.reps else (7 if args.quick else 25)
    B = Bench(torch, max(3, reps), 2 if args.quick else 3, 200.0 if args.quick else 1000.0, min(5, max(3, reps)))
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    props = torch.cuda.get_device_properties(0)
    print(f"torch_kernels.py: {props.name} ({props.multi_processor_count} SMs), torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    print(f"timing: torch.cuda.Event, median of up to {B.reps} samples after {B.warmup} warm-up calls")
    if wanted & {"elementwise", "group_norm", "diffusion", "optim"}:
        section_copy(B, "elementwise" in wanted)
    if wanted & {"gemm", "conv", "attention"}:
        section_gemm(B, "gemm" in wanted)
    for name, fn in (("conv", section_conv), ("group_norm", section_group_norm), ("diffusion", section_diffusion),
                     ("attention", section_attention), ("optim", section_optim)):
        if name in wanted:
            fn(B)
            torch.cuda.empty_cache()   # the section's tensors died with its frame
    if B.fails:
        print(f"\ntorch_kernels.py: {B.fails} row(s) failed, see stderr")
    return 1 if B.fails else 0


if __name__ == "__main__":
    sys.exit(main())
