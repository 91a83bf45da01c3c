#!/usr/bin/env bash
# FID Inception features on the CPU: ddx (ddx-bench inception) against PyTorch with pytorch-fid's
# InceptionV3 (bench/reference/torch_inception.py) at the same thread count, image size and
# batch, run alternately ROUNDS times so that load from other processes hits both alike; prints
# the per-round rates, the medians and the ratio, and appends them to
# bench/results/<date>_inception_cpu.md. PyTorch is optional: without torch, torchvision and
# pytorch-fid the ddx side runs alone.
#
#   bench/inception_cpu.sh [BUILD_DIR] (env: THREADS, BATCH, IMAGES, SIZE, ROUNDS)
set -u -o pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
threads=${THREADS:-$(nproc)}
batch=${BATCH:-8}
images=${IMAGES:-16}
size=${SIZE:-32}
rounds=${ROUNDS:-3}
bench=$build/bench/ddx-bench
[ -x "$bench" ] || { echo "inception_cpu.sh: $bench not found: build first (ninja -C $build)" >&2; exit 2; }
have_torch=0
python3 -c "import torch, torchvision, pytorch_fid" >/dev/null 2>&1 && have_torch=1

rate() { sed -n 's/.*= \([0-9.]*\) img\/s.*/\1/p' | head -n 1; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

d_rates=() t_rates=()
for r in $(seq "$rounds"); do
    d=$(DDX_NUM_THREADS=$threads "$bench" inception --batch "$batch" --images "$images" --size "$size" --reps 1 | rate)
    d_rates+=("$d")
    t=n/a
    if [ $have_torch = 1 ]; then
        t=$(python3 "$root/bench/reference/torch_inception.py" --threads "$threads" --batch "$batch" --images "$images" --size "$size" --reps 1 | rate)
        t_rates+=("$t")
    fi
    echo "round $r: ddx $d img/s, torch $t img/s"
done
dm=$(printf '%s\n' "${d_rates[@]}" | median)
tm=n/a ratio=n/a
if [ $have_torch = 1 ]; then
    tm=$(printf '%s\n' "${t_rates[@]}" | median)
    ratio=$(awk -v a="$dm" -v b="$tm" 'BEGIN { printf "%.2f", a / b }')
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
torchv=$([ $have_torch = 1 ] && python3 -c "import torch; print(torch.__version__)" || echo absent)
out=$root/bench/results/$(date -u +%Y-%m-%d)_inception_cpu.md
{
    echo "# FID Inception features on the CPU, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $cpu, $(nproc) CPUs visible, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
    echo "Both sides: $threads threads, $images images of ${size}x${size}x3 resized to 299x299 inside, batch $batch,"
    echo "pool3 features to the host; ddx-bench inception (formula weights) vs bench/reference/torch_inception.py"
    echo "(pytorch-fid 0.3.0 InceptionV3, torch $torchv), $rounds alternating rounds."
    echo
    echo "| round | ddx img/s | PyTorch img/s |"
    echo "|---|---|---|"
    for i in "${!d_rates[@]}"; do echo "| $((i + 1)) | ${d_rates[$i]} | ${t_rates[$i]:-n/a} |"; done
    echo "| median | $dm | $tm |"
    echo
    echo "ddx / PyTorch = $ratio"
} | tee -a "$out"
echo "written: $out"
