#!/usr/bin/env bash
# A few training steps on the CPU and on the GPU from the same weights, data and seed agree:
# the per-step losses of the two devices match within 2e-3 relative (fp32 kernels on both, but
# sums in different orders, compounded through AdamW), and both runs' samples are images.
#   test_train_devices.sh PATH/TO/ddx-train     (exit 77 without a usable GPU)
set -u
train=$(realpath "$1")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${DDX_FASHION_DIR:-}" ]; then
    echo "SKIP: Fashion-MNIST not installed"; echo "train-devices: 0 passed, 0 failed, 1 skipped"; exit 77
fi
common=(configs/fashion_mnist_ddpm.yaml --set train.total_steps=8 --set train.warmup_steps=2 --set train.log_every=1
        --set train.checkpoint_every=0 --set sample.n=4 --set sample.steps=5 --set data.num_workers=0)
[ -n "${DDX_FASHION_DIR:-}" ] && common+=(--set "data.path=$DDX_FASHION_DIR")
cd "$(dirname "$0")/.." || exit 1
if ! "$train" "${common[@]}" --set run.device=cuda --set run.out_dir="$tmp/gpu" >"$tmp/gpu.log" 2>&1; then
    if grep -qE "no CUDA kernel yet|built without CUDA|no CUDA device|no GPU" "$tmp/gpu.log"; then
        echo "SKIP: $(tail -1 "$tmp/gpu.log")"; echo "train-devices: 0 passed, 0 failed, 1 skipped"; exit 77
    fi
    echo "FAIL: GPU run: $(tail -3 "$tmp/gpu.log")"; echo "train-devices: 0 passed, 1 failed"; exit 1
fi
"$train" "${common[@]}" --set run.device=cpu --set run.out_dir="$tmp/cpu" >"$tmp/cpu.log" 2>&1 ||
    { echo "FAIL: CPU run: $(tail -3 "$tmp/cpu.log")"; echo "train-devices: 0 passed, 1 failed"; exit 1; }
python3 - "$tmp"/cpu/*/log.jsonl "$tmp"/gpu/*/log.jsonl <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
ok = bad = 0
if len(a) != len(b) or not a:
    print(f"FAIL: {len(a)} CPU log lines vs {len(b)} GPU"); bad += 1
for x, y in zip(a, b):
    rel = abs(x["loss"] - y["loss"]) / max(abs(x["loss"]), 1e-12)
    if rel <= 2e-3: ok += 1
    else: bad += 1; print(f"FAIL step {x['step']}: cpu loss {x['loss']:.9g} gpu {y['loss']:.9g} (rel {rel:.2e})")
    print(f"step {x['step']}: cpu {x['loss']:.9g} gpu {y['loss']:.9g} rel {rel:.2e}")
print(f"train-devices: {ok} passed, {bad} failed")
sys.exit(1 if bad else 0)
PY
