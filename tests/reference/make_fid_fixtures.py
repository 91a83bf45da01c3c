#!/usr/bin/env python3
"""Fixtures for tests/test_fid.c: feature sets, pytorch-fid's Fréchet distance (scipy's
sqrtm), torch-fidelity's KID and IS (their formulas in numpy, fp64), numpy's RandomState draws,
and .npz statistics written by numpy itself (np.savez, np.savez_compressed, float32, Fortran
order) plus malformed ones.

    pip install numpy scipy safetensors
    python3 tests/reference/make_fid_fixtures.py      # writes tests/data/fid/

Small on purpose (d = 64): the formulas do not depend on d = 2048.
"""
import os
import sys

import numpy as np
from scipy import linalg
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "fid")
D = 64


def stats(f):
    f = f.astype(np.float64)
    return np.mean(f, axis=0), np.cov(f, rowvar=False)


def frechet_pytorch_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    # pytorch_fid.fid_score.calculate_frechet_distance, restated.
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("imaginary component %g" % np.max(np.abs(covmean.imag)))
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_eig(mu1, sigma1, mu2, sigma2):
    # The symmetric route ddx takes, as a cross-check of the fixture itself.
    w, v = np.linalg.eigh(sigma1)
    s1h = (v * np.sqrt(np.maximum(w, 0))) @ v.T
    m = s1h @ sigma2 @ s1h
    e = np.linalg.eigvalsh((m + m.T) / 2)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sum(np.sqrt(np.maximum(e, 0))))


def mmd2_unbiased(x, y, degree=3, gamma=None, coef0=1):
    # torch_fidelity.metric_kid: polynomial_kernel + mmd2(unbiased), restated in fp64.
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    kxx = (x @ x.T * gamma + coef0) ** degree
    kyy = (y @ y.T * gamma + coef0) ** degree
    kxy = (x @ y.T * gamma + coef0) ** degree
    m = kxx.shape[0]
    txx = kxx.sum() - np.trace(kxx)
    tyy = kyy.sum() - np.trace(kyy)
    return (txx + tyy) / (m * (m - 1)) - 2 * kxy.sum() / (m * m)


def kid(f1, f2, subsets, size, seed=None, idx=None):
    f1 = f1.astype(np.float64)
    f2 = f2.astype(np.float64)
    rng = np.random.RandomState(seed) if idx is None else None
    mmds = []
    for i in range(subsets):
        if idx is None:
            a = rng.choice(len(f1), size, replace=False)
            b = rng.choice(len(f2), size, replace=False)
        else:
            a, b = idx[0][i], idx[1][i]
        mmds.append(mmd2_unbiased(f1[a], f2[b]))
    return float(np.mean(mmds)), float(np.std(mmds))


def inception_score(logits, splits=10, shuffle=True, seed=2020):
    # torch_fidelity.metric_isc.isc_features_to_metric, restated in numpy fp64.
    n = logits.shape[0]
    x = logits.astype(np.float64)
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(n)]
    mx = x.max(axis=1, keepdims=True)
    logp = x - mx - np.log(np.exp(x - mx).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    scores = []
    for i in range(splits):
        pc = p[i * n // splits:(i + 1) * n // splits]
        lpc = logp[i * n // splits:(i + 1) * n // splits]
        q = pc.mean(axis=0, keepdims=True)
        kl = (pc * (lpc - np.log(q))).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(11)
    # Inception-like features: non-negative, correlated, mean well away from 0 (so a
    # non-shifted sum-of-squares covariance would lose digits).
    mix = rng.standard_normal((D, D)) / np.sqrt(D)
    f1 = np.abs(rng.standard_normal((300, D)) @ mix + 3.0).astype(np.float32)
    f2 = np.abs(rng.standard_normal((250, D)) @ (mix * 1.3) + 3.2).astype(np.float32)
    f3 = np.abs(rng.standard_normal((40, D)) @ mix + 3.0).astype(np.float32)   # N < d: rank-deficient sigma
    k1 = rng.standard_normal((120, D)).astype(np.float32) + 0.5
    k2 = (rng.standard_normal((100, D)) * 1.1).astype(np.float32) + 0.6
    logits = (rng.standard_normal((103, 50)) * 3).astype(np.float32)

    m1, s1 = stats(f1)
    m2, s2 = stats(f2)
    m3, s3 = stats(f3)
    meta = {}
    for name, a, b in (("fid_12", (m1, s1), (m2, s2)), ("fid_13", (m1, s1), (m3, s3)), ("fid_31", (m3, s3), (m1, s1)),
                       ("fid_33", (m3, s3), (m3 + 0.25, s3))):
        ref = frechet_pytorch_fid(*a, *b)
        alt = frechet_eig(*a, *b)
        print("%s: scipy sqrtm %.12g, symmetric eig %.12g (rel %.2e)" % (name, ref, alt, abs(ref - alt) / abs(ref)))
        meta[name] = repr(ref)

    sub, size = 7, 50
    r = np.random.default_rng(5)
    idx1 = np.stack([r.choice(len(k1), size, replace=False) for _ in range(sub)])
    idx2 = np.stack([r.choice(len(k2), size, replace=False) for _ in range(sub)])
    meta["kid_fixed_mean"], meta["kid_fixed_std"] = map(repr, kid(k1, k2, sub, size, idx=(idx1, idx2)))
    meta["kid_seeded_mean"], meta["kid_seeded_std"] = map(repr, kid(k1, k2, 9, 60, seed=2020))
    meta["kid_seeded_subsets"], meta["kid_seeded_size"] = "9", "60"
    meta["is_mean"], meta["is_std"] = map(repr, inception_score(logits))
    meta["is_noshuffle_mean"], meta["is_noshuffle_std"] = map(repr, inception_score(logits, shuffle=False))
    meta["is_splits3_mean"], meta["is_splits3_std"] = map(repr, inception_score(logits, splits=3, seed=7))

    perm_small = np.random.RandomState(2020).permutation(1000)
    perm_big = np.random.RandomState(0).permutation(70000)[:64]   # masks above 16 bits
    save_file({"f1": f1, "f2": f2, "f3": f3, "k1": k1, "k2": k2, "logits": logits,
               "kid_idx1": idx1.astype(np.int64).ravel(), "kid_idx2": idx2.astype(np.int64).ravel(),
               "perm_2020_1000": perm_small.astype(np.int64), "perm_0_70000_head": perm_big.astype(np.int64)},
              os.path.join(OUT, "features.safetensors"),
              metadata={**meta, "numpy": np.__version__, "kid_subsets": str(sub), "kid_size": str(size)})

    # Statistics files as numpy writes them; test_fid.c reads these as the expected mu/sigma.
    np.savez(os.path.join(OUT, "stats1.npz"), mu=m1, sigma=s1)
    np.savez_compressed(os.path.join(OUT, "stats3_compressed.npz"), mu=m3, sigma=s3)
    np.savez_compressed(os.path.join(OUT, "stats2_f32_fortran.npz"), sigma=np.asfortranarray(s2.astype(np.float32)),
                        mu=m2.astype(np.float32), extra=np.arange(3))
    # Malformed ones, small (the C test makes the truncated and oversized variants itself).
    sm, ss = m1[:8], s1[:8, :8]
    np.savez(os.path.join(OUT, "bad_dtype.npz"), mu=np.arange(8), sigma=ss)
    np.savez(os.path.join(OUT, "bad_shape.npz"), mu=sm, sigma=ss[:, :7])
    np.savez(os.path.join(OUT, "bad_nomu.npz"), sigma=ss)
    np.savez(os.path.join(OUT, "bad_mismatch.npz"), mu=sm[:6], sigma=ss)
    np.savez(os.path.join(OUT, "bad_sigma_1d.npz"), mu=sm, sigma=ss.ravel())
    print("wrote", OUT)


if __name__ == "__main__":
    sys.exit(main())
