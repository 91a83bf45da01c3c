#!/usr/bin/env python3
"""The baseline for bench-fid: pytorch-fid's own statistics path on the same sizes, timed.
mean/cov: numpy (np.mean, np.cov(rowvar=False) of the float32 activations, as
pytorch_fid.fid_score.calculate_activation_statistics); Fréchet: pytorch_fid.fid_score.
calculate_frechet_distance (scipy.linalg.sqrtm of the non-symmetric product).

    pip install numpy scipy pytorch-fid
    python3 bench/reference/fid_stats_numpy.py [--n 50000] [--n2 10000] [--d 2048]
"""
import argparse
import time

import numpy as np
from pytorch_fid.fid_score import calculate_frechet_distance


def feats(rng, n, d, scale):
    a = rng.random((n, 1)) * (np.arange(d) % 7 / 7.0) * 0.2
    b = rng.random((n, 1)) * (np.arange(d) % 13 / 13.0) * 0.1
    return (scale * (0.3 * rng.random((n, d)) + a + b)).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--n2", type=int, default=10000)
    ap.add_argument("--d", type=int, default=2048)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    f1 = feats(rng, a.n, a.d, 1.0)
    f2 = feats(rng, a.n2, a.d, 1.1)
    t0 = time.perf_counter()
    mu1, s1 = np.mean(f1, axis=0), np.cov(f1, rowvar=False)
    t_stats = time.perf_counter() - t0
    mu2, s2 = np.mean(f2, axis=0), np.cov(f2, rowvar=False)
    t0 = time.perf_counter()
    fid = calculate_frechet_distance(mu1, s1, mu2, s2)
    t_fd = time.perf_counter() - t0
    print("features %d x %d (second set %d rows), numpy %s" % (a.n, a.d, a.n2, np.__version__))
    print("numpy mean + cov (pytorch-fid)      %8.3f s" % t_stats)
    print("calculate_frechet_distance (sqrtm)  %8.3f s   FID = %.6f" % (t_fd, fid))


if __name__ == "__main__":
    main()
