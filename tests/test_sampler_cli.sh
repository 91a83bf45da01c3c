#!/usr/bin/env bash
# The samplers from the command line (issue 16), on a tiny trained checkpoint:
#   - the training grids with the config's sampler (dpmpp2m);
#   - ddx-sample --sampler NAME for every sampler (and --spacing): exit 0, the run line names
#     the sampler, heun counts its model calls; the same seed gives the same PNG;
#   - ddx-compare --sampler NAME as the second column;
#   - bad input exits 2 with one stderr line and leaves an existing --out alone: an unknown
#     sampler or spacing (ddx-sample, ddx-compare), ddpm as ddx-compare's second column,
#     inpainting with a sampler other than ddpm / ddim (ddx-inpaint).
#   test_sampler_cli.sh ddx-train ddx-sample ddx-compare ddx-inpaint
set -u
train=$1 smp=$2 cmp=$3 inp=$4
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
expect2() {
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
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "SKIP: Fashion-MNIST not installed (tools/install-deps.sh fetches it)"
    exit 77
fi
cat >"$tmp/tiny.yaml" <<YAML
run: {name: tiny, out_dir: $tmp/out, seed: 3, device: cpu}
model: {type: unet_ddpm, in_channels: 1, out_channels: 1, image_size: 28, ch: 8, ch_mult: [1, 2],
        num_res_blocks: 1, attn_resolutions: [], dropout: 0.0, groups: 4}
diffusion: {timesteps: 20}
data: {dataset: fashion_mnist, image_size: 28, hflip: false, num_workers: 1}
train: {batch_size: 4, total_steps: 2, warmup_steps: 1, log_every: 1, sample_every: 1, checkpoint_every: 0, ema_decay: 0.9}
sample: {sampler: dpmpp2m, steps: 4, n: 2}
YAML
"$train" "$tmp/tiny.yaml" >"$tmp/train.out" 2>&1 || bad "tiny training run: $(tail -3 "$tmp/train.out")"
ck=$(ls "$tmp"/out/tiny_*/checkpoints/last.safetensors 2>/dev/null | head -1)
[ -n "$ck" ] || { echo "FAIL no checkpoint"; exit 1; }
# The training grids use the config's sampler.
grep -q "samples: .*(2 images, dpmpp2m 4 steps" "$tmp/train.out" && ok || bad "training grid with dpmpp2m: $(grep samples: "$tmp/train.out")"

for s in ddim dpmpp2m dpmpp3m heun euler_a; do
    if "$smp" --checkpoint "$ck" --sampler "$s" --steps 3 --n 2 --seed 9 --out "$tmp/$s.png" >"$tmp/o" 2>"$tmp/e"; then
        want="$s, 3 steps"
        [ "$s" = heun ] && want="heun, 5 model calls"
        grep -qF "$want" "$tmp/o" && [ -s "$tmp/$s.png" ] && ok || bad "ddx-sample --sampler $s: $(head -2 "$tmp/o")"
    else
        bad "ddx-sample --sampler $s: $(cat "$tmp/e")"
    fi
done
"$smp" --checkpoint "$ck" --sampler dpmpp2m --steps 3 --n 2 --seed 9 --out "$tmp/again.png" >/dev/null 2>&1 &&
    cmp -s "$tmp/again.png" "$tmp/dpmpp2m.png" && ok || bad "dpmpp2m: the same seed gave another PNG"
"$smp" --checkpoint "$ck" --sampler dpmpp2m --steps 3 --n 2 --seed 9 --spacing karras --out "$tmp/k.png" >/dev/null 2>&1 &&
    ! cmp -s "$tmp/k.png" "$tmp/dpmpp2m.png" && ok || bad "dpmpp2m --spacing karras: failed or gave the uniform spacing's PNG"
# The config's sample.sampler (dpmpp2m above) is the default.
"$smp" --checkpoint "$ck" --n 1 --out "$tmp/d.png" >"$tmp/o" 2>&1 && grep -qF "dpmpp2m, 4 steps" "$tmp/o" && ok ||
    bad "ddx-sample with the config's sampler: $(head -2 "$tmp/o")"

"$cmp" --checkpoint "$ck" --n 2 --ddim-steps 3 --sampler heun --out "$tmp/cmp.png" >"$tmp/o" 2>"$tmp/e" &&
    grep -qE '^ddpm +20 ' "$tmp/o" && grep -qE '^heun +3 +5 ' "$tmp/o" && [ -s "$tmp/cmp.png" ] && ok ||
    bad "ddx-compare --sampler heun: $(cat "$tmp/o" "$tmp/e" | tail -5)"

echo keep >"$tmp/keep.png"
expect2 "--sampler" "$smp" --checkpoint "$ck" --sampler foo --out "$tmp/keep.png"
expect2 "--spacing" "$smp" --checkpoint "$ck" --sampler heun --spacing sideways --out "$tmp/keep.png"
expect2 "unknown sampler 'bar'" "$cmp" --checkpoint "$ck" --sampler bar --out "$tmp/keep.png"
expect2 "--sampler ddpm" "$cmp" --checkpoint "$ck" --sampler ddpm --out "$tmp/keep.png"
expect2 "ddpm or ddim" "$inp" --checkpoint "$ck" --from-data 1 --mask center --sampler heun --steps 3 --out "$tmp/keep.png"
expect2 "ddpm or ddim" "$inp" --checkpoint "$ck" --from-data 1 --mask center --sampler euler_a --steps 3 --resample 2 --jump 1 --out "$tmp/keep.png"
[ "$(cat "$tmp/keep.png")" = keep ] && ok || bad "a refused run changed --out"

echo "sampler-cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
