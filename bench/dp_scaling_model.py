#!/usr/bin/env python3
"""Scaling estimate for data-parallel ddx training (issue 14): the CIFAR-10 U-Net at batch 128
per GPU on 8 GPUs (one NVLink/NVSwitch node) and 64 GPUs (8 nodes, 400 Gb/s InfiniBand).

Model (written out in bench/results/2026-12-08_dp_scaling.md):
  step(n) = fwd + bwd + exposed_comm(n) + opt + control(n)
  efficiency(n) = step(1) / step(n)            (same per-GPU batch: weak scaling)
The gradient (f32) is all-reduced in the buckets ddx-train uses (ddx-bench-allreduce prints
them), launch order = reverse parameter order, each started when the backward has produced
its gradients. A bucket of S bytes takes  alpha + S * 2 (n - 1) / n / busbw  (nccl-tests'
bus bandwidth definition), the buckets run one after another on the comm stream, and only
what is left when the backward ends is exposed. Two bounds for the backward profile:
  'uniform'   bucket k is ready after the share of the backward proportional to the bytes of
              the buckets before it and itself (gradients appear evenly in parameter order);
  'no overlap' every bucket is ready only when the backward ends (all comm exposed).
Standard library only; prints a markdown table.
"""
import argparse

p = argparse.ArgumentParser()
p.add_argument("--step-ms", type=float, default=33.09,
               help="single-GPU step, ms (H200, bf16, CUDA graphs, batch 128: bench/results/2026-11-26_issue4_targets.md)")
p.add_argument("--bwd-share", type=float, default=2 / 3, help="backward's share of fwd+bwd (2 GEMMs per forward GEMM)")
p.add_argument("--opt-ms", type=float, default=0.35, help="fused AdamW+EMA over 35.7M params (9 x 143 MB at ~4 TB/s)")
p.add_argument("--buckets-mb", default="27.91,29.93,26.77,26.78,26.26,5.34",
               help="bucket sizes in launch order, MB (ddx-bench-allreduce, 25 MiB buckets)")
a = p.parse_args()

buckets = [float(x) * 1e6 for x in a.buckets_mb.split(",")]
compute = a.step_ms - a.opt_ms
bwd = compute * a.bwd_share
fwd = compute - bwd

# (name, n, busbw GB/s at ~25 MB messages, alpha us per all-reduce, source of the busbw)
scenarios = [
    ("8 GPUs, one node, NVLink 4 / NVSwitch", 8, 300.0, 25.0,
     "460-480 GB/s at >= 1 GB (alayanew nccl-tests reference); 25 MB taken at ~65% of it"),
    ("64 GPUs, 8 nodes, 8 x 400 Gb/s IB per node", 64, 100.0, 300.0,
     "400-450 GB/s at >= 8 GB (saturncloud NDR reference); 25 MB taken at ~25% of it"),
    ("64 GPUs, 8 nodes, 1 x 400 Gb/s IB per node", 64, 45.0, 300.0,
     "hierarchical: each node's one NIC carries 2(N-1)/N of the data: 50 GB/s line rate x 0.9"),
]


def bucket_ms(s, n, busbw, alpha_us):
    return alpha_us * 1e-3 + s * 2 * (n - 1) / n / (busbw * 1e9) * 1e3


def exposed(n, busbw, alpha_us, overlap):
    total = sum(buckets)
    t_free = 0.0  # when the comm stream is free, ms after the backward starts
    done = 0.0
    for s in buckets:
        done += s
        ready = bwd * done / total if overlap else bwd
        t_free = max(t_free, ready) + bucket_ms(s, n, busbw, alpha_us)
    return max(0.0, t_free - bwd)


# The per-step loss all-reduce (4 bytes) and the stop-signal all-reduce: latency only.
print(f"single-GPU step {a.step_ms:.2f} ms = forward {fwd:.2f} + backward {bwd:.2f} + optimizer {a.opt_ms:.2f}; "
      f"gradient {sum(buckets) / 1e6:.1f} MB in {len(buckets)} buckets\n")
print("| setup | busbw at bucket size (GB/s) | alpha (us) | comm per step (ms) | exposed, uniform (ms) | "
      "efficiency, uniform | exposed, no overlap (ms) | efficiency, no overlap |")
print("|---|---|---|---|---|---|---|---|")
for name, n, bw, al, src in scenarios:
    comm = sum(bucket_ms(s, n, bw, al) for s in buckets)
    ctrl = 2 * al * 1e-3
    eu = exposed(n, bw, al, True) + ctrl
    en = exposed(n, bw, al, False) + ctrl
    print(f"| {name} | {bw:.0f} | {al:.0f} | {comm:.2f} | {eu:.2f} | {a.step_ms / (a.step_ms + eu) * 100:.1f}% | "
          f"{en:.2f} | {a.step_ms / (a.step_ms + en) * 100:.1f}% |")
print()
for name, n, bw, al, src in scenarios:
    print(f"- {name}: {src}")
