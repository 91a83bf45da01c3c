#!/usr/bin/env bash
# ddx-eval and ddx-compare without the Inception weights:
#   - every subcommand's --help; psnr-ssim on files and folders;
#   - ddx-compare on a tiny trained checkpoint: a PNG and the table (DDPM and DDIM rows); the
#     sampler x steps grid (--samplers, --steps) with its markdown/JSON table and plot, and its
#     bad lists (unknown sampler, empty, repeated or out-of-range step counts) refused;
#   - bad input exits 2 with one stderr line naming the culprit, before anything is written:
#     missing or foreign weights (naming python3 tools/fetch_inception.py), stats of the wrong
#     shape, an image folder with a broken file, --n below 2048, a non-regular --out, a
#     missing data set, eval.fid_every without eval.ref in a training config.
#   test_eval_cli.sh PATH/TO/ddx-eval PATH/TO/ddx-compare PATH/TO/ddx-train
set -u
ev=$1 cmp=$2 train=$3
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
expect2() {   # NAME CMD...: exit 2, exactly one stderr line naming NAME
    local name=$1
    shift
    "$@" >"$tmp/o" 2>"$tmp/e"
    local rc=$?
    if [ "$rc" != 2 ] || [ "$(wc -l <"$tmp/e")" != 1 ] || ! grep -qF -- "$name" "$tmp/e"; then
        bad "$*: want exit 2 and one line naming '$name'; got $rc: $(head -c 400 "$tmp/e")"
    else
        ok
    fi
}
A=data/fid_real/A B=data/fid_real/B

# --help
for sub in "" stats fid psnr-ssim; do
    "$ev" $sub --help >"$tmp/o" 2>&1 && grep -q "usage: ddx-eval" "$tmp/o" && ok || bad "ddx-eval $sub --help"
done
"$cmp" --help | grep -q "usage: ddx-compare" && ok || bad "ddx-compare --help"

# psnr-ssim: identical files (PSNR infinite: reported as null with n_identical 1, SSIM 1), and
# two folders with matching names (finite, SSIM < 1).
"$ev" psnr-ssim --ref $A/000.png --pred $A/000.png >"$tmp/o" 2>/dev/null &&
    grep -q '"psnr":null' "$tmp/o" && grep -q '"n_identical":1' "$tmp/o" && grep -q '"ssim":1[,}]' "$tmp/o" && ok ||
    bad "psnr-ssim of a file with itself: $(cat "$tmp/o")"
"$ev" psnr-ssim --ref $A --pred $B >"$tmp/o" 2>/dev/null && grep -q '"n":16' "$tmp/o" &&
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(not (0 < r["psnr"] < 60 and -1 < r["ssim"] < 1))' "$tmp/o" &&
    ok || bad "psnr-ssim of two folders: $(cat "$tmp/o")"
expect2 "999.png" "$ev" psnr-ssim --ref $A/000.png --pred $A/999.png
mkdir -p "$tmp/half" && cp $A/000.png "$tmp/half/"
expect2 "001.png" "$ev" psnr-ssim --ref $A --pred "$tmp/half"

# Bad input before any work.
export DDX_INCEPTION=$tmp/no_such_weights.safetensors
expect2 "python3 tools/fetch_inception.py" "$ev" fid --images $A --ref $B
expect2 "python3 tools/fetch_inception.py" "$ev" stats --config ../configs/fashion_mnist_ddpm.yaml --out "$tmp/r.npz"
[ ! -e "$tmp/r.npz" ] && ok || bad "a refused stats run wrote its output"
# Foreign weights: a valid safetensors file that is not the Inception network.
DDX_INCEPTION=data/safetensors/ref_small.safetensors expect2 "python3 tools/fetch_inception.py" "$ev" fid --images $A --ref $B
# Statistics of the wrong shape (64-d, or sigma not d x d) are refused naming the file.
expect2 "stats1.npz" "$ev" fid --images $A --ref data/fid/stats1.npz
expect2 "bad_shape.npz" "$ev" fid --images $A --ref data/fid/bad_shape.npz
# A broken image: named, before the network loads (the weights here are not even Inception's).
mkdir -p "$tmp/broken" && cp $A/00[0-3].png "$tmp/broken/" && head -c 100 $A/004.png >"$tmp/broken/004.png"
DDX_INCEPTION=data/safetensors/ref_small.safetensors expect2 "broken/004.png" "$ev" fid --images "$tmp/broken" --ref $B
DDX_INCEPTION=data/safetensors/ref_small.safetensors expect2 "broken/004.png" "$ev" fid --images $A --ref "$tmp/broken"
mkdir -p "$tmp/empty"
expect2 "no .png" "$ev" fid --images "$tmp/empty" --ref $B
# --n below 2048 without --allow-small; generation flags with --images; unknown arguments.
expect2 "--n 100" "$ev" fid --checkpoint "$tmp/x.safetensors" --ref $B --n 100
expect2 "--checkpoint only" "$ev" fid --images $A --ref $B --n 5000
expect2 "--bogus" "$ev" fid --bogus
expect2 "frobnicate" "$ev" frobnicate
expect2 "--split 'val'" "$ev" stats --config ../configs/fashion_mnist_ddpm.yaml --split val --out "$tmp/r.npz"
expect2 "--out" "$ev" stats --config ../configs/fashion_mnist_ddpm.yaml --out /dev/null
expect2 "--out" "$ev" stats --config ../configs/fashion_mnist_ddpm.yaml --out "$tmp"
expect2 "test split" "$ev" stats --config ../configs/celeba64_ddpm.yaml --split test --out "$tmp/r.npz" \
    --inception data/safetensors/ref_small.safetensors --set data.path="$tmp"
expect2 "data.path" "$ev" stats --config ../configs/cifar10_ddpm.yaml --set data.path="$tmp/nothing" --out "$tmp/r.npz" \
    --inception data/safetensors/ref_small.safetensors
expect2 "eval.ref" "$train" ../configs/fashion_mnist_ddpm.yaml --set eval.fid_every=10 --set run.out_dir="$tmp/never"
[ ! -e "$tmp/never" ] && ok || bad "a refused training start left a run folder"
# A super-resolution model has no FID (its samples need a low-res input): refused before any run folder.
expect2 "eval.fid_every" "$train" ../configs/fashion_mnist_sr4.yaml --set eval.fid_every=10 --set eval.ref="$tmp/r.npz" \
    --set run.out_dir="$tmp/never"
[ ! -e "$tmp/never" ] && ok || bad "a refused super-resolution FID start left a run folder"
unset DDX_INCEPTION

# ddx-compare on a tiny checkpoint (20 diffusion steps, so DDPM is quick).
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    cat >"$tmp/tiny.yaml" <<YAML
run: {name: tiny, out_dir: $tmp/out, seed: 3, device: cpu}
model: {type: unet_ddpm, in_channels: 1, out_channels: 1, image_size: 28, ch: 8, ch_mult: [1, 2],
        num_res_blocks: 1, attn_resolutions: [], dropout: 0.0, groups: 4}
diffusion: {timesteps: 20}
data: {dataset: fashion_mnist, image_size: 28, hflip: false, num_workers: 1}
train: {batch_size: 4, total_steps: 2, warmup_steps: 1, log_every: 1, sample_every: 0, checkpoint_every: 0, ema_decay: 0.9}
sample: {sampler: ddim, steps: 4, n: 4}
YAML
    "$train" "$tmp/tiny.yaml" >"$tmp/train.out" 2>&1 || bad "tiny training run: $(tail -3 "$tmp/train.out")"
    ck=$(ls "$tmp"/out/tiny_*/checkpoints/last.safetensors 2>/dev/null | head -1)
    "$cmp" --checkpoint "$ck" --n 3 --ddim-steps 4 --out "$tmp/cmp.png" >"$tmp/o" 2>"$tmp/e" &&
        grep -qE '^ddpm +20 ' "$tmp/o" && grep -qE '^ddim +4 ' "$tmp/o" && [ -s "$tmp/cmp.png" ] &&
        python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); sys.exit(d[:8] != b"\x89PNG\r\n\x1a\n")' "$tmp/cmp.png" &&
        ok || bad "ddx-compare: $(cat "$tmp/o" "$tmp/e" | tail -5)"
    expect2 "--out" "$cmp" --checkpoint "$ck" --out /dev/null
    expect2 "--ddim-steps" "$cmp" --checkpoint "$ck" --ddim-steps 50
    expect2 "--n" "$cmp" --checkpoint "$ck" --n 0
    expect2 "--fid 100" "$cmp" --checkpoint "$ck" --fid 100 --ref $B
    expect2 "--ref" "$cmp" --checkpoint "$ck" --fid 4 --allow-small
    expect2 "stats1.npz" "$cmp" --checkpoint "$ck" --fid 4 --allow-small --ref data/fid/stats1.npz
    # The sampler x steps grid: ddpm (no step count) runs once, ddim once per count; the
    # markdown table, its JSON twin and the plot over steps.
    # Heun's rows give the steps asked for and its 2 S - 1 model calls.
    "$cmp" --checkpoint "$ck" --samplers ddpm,ddim,heun --steps 2,4 --n 3 --out "$tmp/grid.png" >"$tmp/o" 2>"$tmp/e" &&
        [ "$(grep -c '^| ddpm | 20 | 20 |' "$tmp/grid.md")" = 1 ] && grep -q '^| ddim | 2 | 2 |' "$tmp/grid.md" &&
        grep -q '^| ddim | 4 | 4 |' "$tmp/grid.md" && grep -q '^| heun | 4 | 7 |' "$tmp/grid.md" &&
        [ "$(grep -c '"sampler"' "$tmp/grid.json")" = 5 ] &&
        grep -q '"steps_requested": 4, "model_calls": 4' "$tmp/grid.json" &&
        [ "$(head -c 4 "$tmp/grid_steps.png" | od -An -c | tr -d ' ')" = '211PNG' ] && [ -s "$tmp/grid.png" ] &&
        ok || bad "ddx-compare --samplers --steps: $(cat "$tmp/o" "$tmp/e" "$tmp/grid.md" 2>&1 | tail -8)"
    expect2 "--samplers: unknown sampler 'nope'" "$cmp" --checkpoint "$ck" --samplers ddim,nope --out "$tmp/g2.png"
    expect2 "--samplers" "$cmp" --checkpoint "$ck" --samplers ddim,ddim --out "$tmp/g2.png"
    expect2 "--steps" "$cmp" --checkpoint "$ck" --steps 2,,4 --out "$tmp/g2.png"
    expect2 "--steps" "$cmp" --checkpoint "$ck" --steps 2,x --out "$tmp/g2.png"
    expect2 "--steps" "$cmp" --checkpoint "$ck" --steps 0 --out "$tmp/g2.png"
    expect2 "--steps" "$cmp" --checkpoint "$ck" --steps 4,21 --out "$tmp/g2.png"
    expect2 "--ddim-steps and --steps" "$cmp" --checkpoint "$ck" --steps 4 --ddim-steps 4 --out "$tmp/g2.png"
    expect2 "--table" "$cmp" --checkpoint "$ck" --steps 4 --table /dev/null --out "$tmp/g2.png"
    [ ! -e "$tmp/g2.png" ] && [ ! -e "$tmp/g2.md" ] && ok || bad "a refused ddx-compare grid wrote a file"
    head -c 1000 "$ck" >"$tmp/trunc.safetensors"
    expect2 "trunc.safetensors" "$cmp" --checkpoint "$tmp/trunc.safetensors" --out "$tmp/c2.png"
    [ ! -e "$tmp/c2.png" ] && ok || bad "a refused ddx-compare wrote its figure"
else
    echo "SKIP part: Fashion-MNIST not installed (ddx-compare end to end)"
fi

echo "eval-cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
