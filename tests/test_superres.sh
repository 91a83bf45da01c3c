#!/usr/bin/env bash
# ddx-superres end to end on a tiny model.cond lowres checkpoint over Fashion-MNIST (7 -> 28):
#   - --from-data writes low-res | bicubic | SR | truth and prints PSNR/SSIM; --image writes
#     three panels; --eval prints one JSON object with the model's and bicubic's mean PSNR/SSIM,
#     the same for the same seed whatever --batch; --samples K adds the mean of K draws;
#   - ddx-train's grids of a lowres model are made;
#   - bad input exits 2 with one line and leaves an existing --out untouched: a low-res image of
#     the wrong size (the full-size one), the wrong channel count, not a PNG, a checkpoint that is
#     not a super-resolution model, an index past the test split, a folder as --out, a missing
#     --out, two inputs at once; ddx-sample refuses a lowres checkpoint.
#   test_superres.sh PATH/TO/ddx-train PATH/TO/ddx-superres PATH/TO/ddx-sample
set -u
train=$1 sr=$2 sample=$3
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
    echo "superres-cli: $pass passed, $fail failed"
    [ "$fail" = 0 ]
    exit $?
}

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
    echo "SKIP: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
    echo "superres-cli: 0 passed, 0 failed, 1 skipped"
    exit 77
fi

cat >"$tmp/sr.yaml" <<YAML
run: {name: sr, out_dir: $tmp/out, seed: 3, device: cpu}
model: {type: unet_plain, cond: lowres, in_channels: 2, out_channels: 1, image_size: 28, ch: 8, ch_mult: [1, 2, 2]}
data: {dataset: fashion_mnist, image_size: 28, sr_factor: 4, hflip: false, num_workers: 0}
train: {batch_size: 4, total_steps: 3, lr: 1e-3, warmup_steps: 1, ema_decay: 0.9, log_every: 1, sample_every: 3,
        checkpoint_every: 0}
sample: {sampler: ddim, steps: 2, n: 4}
diffusion: {timesteps: 50}
YAML
sed -e 's/cond: lowres, in_channels: 2/in_channels: 1/' -e 's/, sr_factor: 4//' -e 's/name: sr,/name: plain,/' \
    "$tmp/sr.yaml" >"$tmp/plain.yaml"

"$train" "$tmp/sr.yaml" >"$tmp/t.out" 2>&1 || bad "training the SR model failed: $(tail -3 "$tmp/t.out")"
"$train" "$tmp/plain.yaml" >"$tmp/p.out" 2>&1 || bad "training the plain model failed: $(tail -3 "$tmp/p.out")"
ck=$(ls "$tmp"/out/sr_*/checkpoints/last.safetensors 2>/dev/null | head -1)
pk=$(ls "$tmp"/out/plain_*/checkpoints/last.safetensors 2>/dev/null | head -1)
[ -n "$ck" ] && [ -n "$pk" ] && ok || { bad "no checkpoints"; finish; }
[ -f "$(dirname "$ck")/../samples/step_0000003.png" ] && ok || bad "no sample grid for the SR run"

# PNG size from the header (bytes 16..23: width, height), with the stdlib only.
png_size() { python3 -c "import struct,sys; d=open(sys.argv[1],'rb').read(24); print(*struct.unpack('>II', d[16:24]))" "$1"; }
# A grey (1 channel) or RGB (3) PNG of w x h, with the stdlib only.
mkpng() {
    python3 - "$@" <<'PY'
import struct, sys, zlib
path, w, h, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
raw = b"".join(b"\0" + bytes(((x * 37 + y * 11) % 256) for x in range(w * c)) for y in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
hdr = struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0)
open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", hdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
PY
}

# 1. --from-data: 2 rows of 4 panels (28 + 2-pixel borders), PSNR/SSIM of SR and bicubic.
"$sr" --checkpoint "$ck" --from-data 5 --n 2 --out "$tmp/a.png" >"$tmp/o" 2>"$tmp/e"
rc=$?
[ "$rc" = 0 ] && [ "$(png_size "$tmp/a.png")" = "122 62" ] && grep -q "mean SR PSNR .* dB SSIM .*; bicubic PSNR" "$tmp/o" && ok ||
    bad "--from-data: rc $rc, size $(png_size "$tmp/a.png" 2>/dev/null), $(cat "$tmp/o" "$tmp/e" | head -c 400)"

# 2. --image: a 7x7 grey PNG, 3 panels.
mkpng "$tmp/s7.png" 7 7 1
"$sr" --checkpoint "$ck" --image "$tmp/s7.png" --out "$tmp/b.png" >"$tmp/o" 2>"$tmp/e" && [ "$(png_size "$tmp/b.png")" = "92 32" ] && ok ||
    bad "--image: $(cat "$tmp/o" "$tmp/e" | head -c 400)"

# 3. --eval: JSON with both rows; the same numbers with another --batch; bicubic's do not
#    depend on the seed, the model's do.
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['model']['psnr'], d['model']['ssim'], d['bicubic']['psnr'], d['bicubic']['ssim'], d['images'])" "$1"; }
"$sr" --checkpoint "$ck" --eval 6 >"$tmp/j1" 2>/dev/null && "$sr" --checkpoint "$ck" --eval 6 --batch 4 >"$tmp/j2" 2>/dev/null &&
    "$sr" --checkpoint "$ck" --eval 6 --seed 99 >"$tmp/j3" 2>/dev/null || bad "--eval failed"
m1=$(json_get "$tmp/j1" 2>&1) m2=$(json_get "$tmp/j2" 2>&1) m3=$(json_get "$tmp/j3" 2>&1)
[ "$m1" = "$m2" ] && [ "$(echo "$m1" | awk '{print NF, $5}')" = "5 6" ] && ok || bad "--eval by batch: '$m1' vs '$m2'"
[ "$(echo "$m1" | cut -d' ' -f3-)" = "$(echo "$m3" | cut -d' ' -f3-)" ] && [ "$(echo "$m1" | cut -d' ' -f1)" != "$(echo "$m3" | cut -d' ' -f1)" ] &&
    ok || bad "--eval seeds: '$m1' vs '$m3'"
# --samples 2: the first draw is the K = 1 result; their mean is reported beside it, and a fifth panel.
"$sr" --checkpoint "$ck" --eval 6 --samples 2 >"$tmp/j4" 2>/dev/null || bad "--eval --samples 2 failed"
python3 -c "import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); sys.exit(not (a['model'] == b['model'] and b['model_mean']['samples'] == 2 and 'model_mean' not in a))" "$tmp/j1" "$tmp/j4" &&
    ok || bad "--samples 2: $(cat "$tmp/j4")"
"$sr" --checkpoint "$ck" --from-data 5 --samples 2 --out "$tmp/c.png" >"$tmp/o" 2>&1 && [ "$(png_size "$tmp/c.png")" = "152 32" ] &&
    grep -q "mean of 2 samples: PSNR" "$tmp/o" && ok || bad "--from-data --samples 2: $(head -c 300 "$tmp/o")"
# Bicubic from 7x7 on Fashion-MNIST: far from perfect, far from noise.
echo "$m1" | awk '{ exit !($3 > 10 && $3 < 30 && $4 > 0.1 && $4 < 0.95) }' && ok || bad "bicubic PSNR/SSIM implausible: $m1"

# 4. Bad input: exit 2, one line naming the problem, the existing --out untouched.
expect2() {
    local name=$1
    shift
    echo keep >"$tmp/keep.png"
    "$@" >"$tmp/o" 2>"$tmp/e"
    local rc=$?
    if [ "$rc" != 2 ] || [ "$(wc -l <"$tmp/e")" != 1 ] || ! grep -qF -- "$name" "$tmp/e" || [ "$(cat "$tmp/keep.png")" != keep ]; then
        bad "$*: want exit 2, one line naming '$name', --out kept; got $rc: $(head -c 400 "$tmp/e")"
    else
        ok
    fi
}
mkpng "$tmp/s28.png" 28 28 1
mkpng "$tmp/rgb7.png" 7 7 3
echo "not a png" >"$tmp/junk.png"
expect2 "is 28x28; the model super-resolves 7x7" "$sr" --checkpoint "$ck" --image "$tmp/s28.png" --out "$tmp/keep.png"
expect2 "has 3 channels" "$sr" --checkpoint "$ck" --image "$tmp/rgb7.png" --out "$tmp/keep.png"
expect2 "not a readable PNG" "$sr" --checkpoint "$ck" --image "$tmp/junk.png" --out "$tmp/keep.png"
expect2 "not a super-resolution model" "$sr" --checkpoint "$pk" --from-data 0 --out "$tmp/keep.png"
expect2 "the test split has 10000" "$sr" --checkpoint "$ck" --from-data 9999 --n 2 --out "$tmp/keep.png"
expect2 "--out" "$sr" --checkpoint "$ck" --from-data 0 --out "$tmp"
expect2 "--out big.png is required" "$sr" --checkpoint "$ck" --from-data 0
expect2 "--samples" "$sr" --checkpoint "$ck" --from-data 0 --samples 0 --out "$tmp/keep.png"
expect2 "exactly one of" "$sr" --checkpoint "$ck" --from-data 0 --image "$tmp/s7.png" --out "$tmp/keep.png"
expect2 "--steps" "$sr" --checkpoint "$ck" --from-data 0 --sampler ddpm --steps 5 --out "$tmp/keep.png"
expect2 "use ddx-superres" "$sample" --checkpoint "$ck" --out "$tmp/keep.png"
echo "eval: $m1"
finish
