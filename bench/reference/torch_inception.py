"""PyTorch baseline for `ddx-bench inception`: pytorch-fid's InceptionV3 (FIDInceptionV3, resize to
299 and 2x-1 inside, pool3 out) on N random SxS images in batches of B, with T threads, median of
R timed passes after one warm-up batch. The weights are the architecture's own initialisation
(speed does not depend on them; nothing is downloaded).

  python3 bench/reference/torch_inception.py [--threads T] [--batch B] [--images N] [--size S]
        [--reps R] [--device cpu|cuda] [--precision fp32|tf32|bf16]

Needs torch, torchvision and pytorch-fid==0.3.0.
"""
import argparse
import statistics
import time

import torch

import pytorch_fid.inception as pfi


def build(device):
    sd = {}

    def own_weights(url, progress=True):
        return sd

    # fid_inception_v3() loads the release weights through this function; give it a state dict
    # of the right names and shapes instead (built once to learn them).
    pfi.load_state_dict_from_url = own_weights
    probe = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    probe.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    probe.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    probe.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    probe.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    probe.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    probe.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    probe.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    probe.Mixed_7b = pfi.FIDInceptionE_1(1280)
    probe.Mixed_7c = pfi.FIDInceptionE_2(2048)
    sd.update(probe.state_dict())
    del probe
    model = pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True)
    return model.eval().to(device)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    model = build(dev)
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(a.images, 3, a.size, a.size, generator=g)

    def run():
        with torch.no_grad(), torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            for i in range(0, a.images, a.batch):
                f = model(imgs[i:i + a.batch].to(dev))[0]
                f.float().cpu()

    with torch.no_grad():
        model(imgs[:a.batch].to(dev))
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        run()
        if a.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print("torch %s inception features: %s %s, %d threads, %d images %dx%d, batch %d: %.3f s = %.2f img/s (best %.2f)"
          % (torch.__version__, a.device, a.precision, torch.get_num_threads(), a.images, a.size, a.size, a.batch,
             med, a.images / med, a.images / min(times)))


if __name__ == "__main__":
    main()
