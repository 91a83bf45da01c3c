#!/usr/bin/env bash
# Mixed precision on the GPU trains the same model as the fp32 CPU reference: a few steps of
# the default config from the same weights, data and seed, run on the CPU (fp32) and on the GPU
# with run.precision bf16 and tf32; every step's loss must agree with the CPU's within the
# precision's tolerance (bf16: 5e-2 relative, tf32: 5e-3), and the runs must finish with images.
#   test_train_precision.sh PATH/TO/ddx-train     (exit 77 without a usable GPU)
set -u
train=$(realpath "$1")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${DDX_FASHION_DIR:-}" ]; then
    echo "SKIP: Fashion-MNIST not installed"; echo "train-precision: 0 passed, 0 failed, 1 skipped"; exit 77
fi
common=(configs/fashion_mnist_ddpm.yaml --set train.total_steps=8 --set train.warmup_steps=2 --set train.log_every=1
        --set train.checkpoint_every=0 --set sample.n=4 --set sample.steps=5 --set data.num_workers=0)
[ -n "${DDX_FASHION_DIR:-}" ] && common+=(--set "data.path=$DDX_FASHION_DIR")
cd "$(dirname "$0")/.." || exit 1
for p in bf16 tf32; do
    if ! "$train" "${common[@]}" --set run.device=cuda --set run.precision=$p --set run.out_dir="$tmp/$p" >"$tmp/$p.log" 2>&1; then
        if grep -qE "built without CUDA|no CUDA device|no GPU" "$tmp/$p.log"; then
            echo "SKIP: $(tail -1 "$tmp/$p.log")"; echo "train-precision: 0 passed, 0 failed, 1 skipped"; exit 77
        fi
        echo "FAIL: GPU $p run: $(tail -3 "$tmp/$p.log")"; echo "train-precision: 0 passed, 1 failed"; exit 1
    fi
    ls "$tmp/$p"/*/samples/*.png >/dev/null 2>&1 || { echo "FAIL: GPU $p run wrote no sample grid"; echo "train-precision: 0 passed, 1 failed"; exit 1; }
done
"$train" "${common[@]}" --set run.device=cpu --set run.out_dir="$tmp/cpu" >"$tmp/cpu.log" 2>&1 ||
    { echo "FAIL: CPU run: $(tail -3 "$tmp/cpu.log")"; echo "train-precision: 0 passed, 1 failed"; exit 1; }
python3 - "$tmp" <<'PY'
import glob, json, sys
tmp = sys.argv[1]
def losses(name):
    return [json.loads(l) for l in open(glob.glob(f"{tmp}/{name}/*/log.jsonl")[0])]
ref = losses("cpu")
ok = bad = 0
for prec, tol in (("bf16", 5e-2), ("tf32", 5e-3)):
    got = losses(prec)
    if len(got) != len(ref) or not ref:
        print(f"FAIL {prec}: {len(got)} log lines vs {len(ref)} on the CPU"); bad += 1; continue
    worst = 0.0
    for x, y in zip(ref, got):
        rel = abs(x["loss"] - y["loss"]) / max(abs(x["loss"]), 1e-12)
        worst = max(worst, rel)
        print(f"{prec} step {x['step']}: cpu {x['loss']:.6g} gpu {y['loss']:.6g} rel {rel:.2e}")
    if worst <= tol: ok += 1
    else: bad += 1; print(f"FAIL {prec}: worst relative loss difference {worst:.2e} > {tol:g}")
print(f"train-precision: {ok} passed, {bad} failed")
sys.exit(1 if bad else 0)
PY
