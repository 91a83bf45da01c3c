#!/usr/bin/env bash
# The NCCL path at world 1 (one GPU): ddx-train with DDX_COMM=nccl (the data-parallel step:
# bucketed all-reduce on NCCL's own stream, ordered by events, the loss all-reduce, the
# parameter check) logs exactly the losses and grad norms of the plain single-GPU run, with
# CUDA graphs on (NCCL calls inside the captured step) and off.
#   test_dp_gpu.sh PATH/TO/ddx-train     (exit 77 without a usable GPU or without NCCL)
set -u
train=$(realpath "$1")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${DDX_FASHION_DIR:-}" ]; then
    echo "SKIP: Fashion-MNIST not installed"; echo "dp-gpu: 0 passed, 0 failed, 1 skipped"; exit 77
fi
common=(configs/fashion_mnist_ddpm.yaml --set train.total_steps=6 --set train.warmup_steps=2 --set train.log_every=1
        --set train.checkpoint_every=0 --set sample.n=2 --set sample.steps=2 --set sample.sampler=ddim
        --set data.num_workers=0 --set run.device=cuda --set train.batch_size=32)
[ -n "${DDX_FASHION_DIR:-}" ] && common+=(--set "data.path=$DDX_FASHION_DIR")
cd "$(dirname "$0")/.." || exit 1
pass=0 fail=0
for g in 1 0; do
    if ! DDX_CUDA_GRAPHS=$g "$train" "${common[@]}" --set run.out_dir="$tmp/single$g" >"$tmp/single$g.log" 2>&1; then
        if grep -qE "no CUDA kernel yet|built without CUDA|no CUDA device|no GPU" "$tmp/single$g.log"; then
            echo "SKIP: $(tail -1 "$tmp/single$g.log")"; echo "dp-gpu: 0 passed, 0 failed, 1 skipped"; exit 77
        fi
        echo "FAIL: single run (graphs $g): $(tail -3 "$tmp/single$g.log")"; fail=$((fail + 1)); continue
    fi
    if ! DDX_COMM=nccl DDX_CUDA_GRAPHS=$g "$train" "${common[@]}" --set run.out_dir="$tmp/nccl$g" >"$tmp/nccl$g.log" 2>&1; then
        if grep -q "need NCCL" "$tmp/nccl$g.log"; then
            echo "SKIP: $(tail -1 "$tmp/nccl$g.log")"; echo "dp-gpu: 0 passed, 0 failed, 1 skipped"; exit 77
        fi
        echo "FAIL: NCCL run (graphs $g): $(tail -3 "$tmp/nccl$g.log")"; fail=$((fail + 1)); continue
    fi
    grep -q "^world: world 1 (nccl backend" "$tmp/nccl$g.log" && pass=$((pass + 1)) || {
        echo "FAIL: graphs $g: the NCCL run did not use NCCL: $(grep '^world' "$tmp/nccl$g.log")"; fail=$((fail + 1)); }
    if [ "$g" = 1 ] && grep -q "CUDA graphs off" "$tmp/nccl$g.log"; then
        echo "FAIL: the NCCL step was not captured: $(grep 'CUDA graphs off' "$tmp/nccl$g.log")"; fail=$((fail + 1))
    fi
    a=$(sed -E 's/"img_per_s".*//' "$tmp"/single$g/*/log.jsonl)
    b=$(sed -E 's/"img_per_s".*//' "$tmp"/nccl$g/*/log.jsonl)
    if [ -n "$a" ] && [ "$a" = "$b" ]; then pass=$((pass + 1)); else
        echo "FAIL: graphs $g: NCCL losses differ from the single run's:"; diff <(echo "$a") <(echo "$b") | head; fail=$((fail + 1)); fi
    echo "graphs $g: $(echo "$b" | tail -1)"
done
echo "dp-gpu: $pass passed, $fail failed"
[ "$fail" = 0 ]
