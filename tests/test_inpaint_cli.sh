#!/usr/bin/env bash
# ddx-mask and ddx-inpaint end to end on a tiny model trained here for 2 steps on Fashion-MNIST:
#   - ddx-mask: every kind writes a mask; the same seed gives the same file, another seed
#     another random mask; bad kinds, sizes and mask files exit 2 with one line;
#   - ddx-inpaint (--from-data and --image, DDIM and DDPM, RePaint): one PNG per input, PSNR and
#     SSIM printed and in the JSON, the known region equal to the input exactly, the same seed
#     the same files, another batch size the same files;
#   - bad input (image of another size or with other channels, mask file of another size or
#     colour or all white, --resample without --jump, unknown kind, a checkpoint that is not
#     one, --label for an unconditional model) exits 2 with one line, before any sampling, and
#     an existing --out is left as it was.
#   test_inpaint_cli.sh PATH/TO/ddx-train PATH/TO/ddx-inpaint PATH/TO/ddx-mask
set -u
train=$1 inpaint=$2 mask=$3
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
    echo "inpaint-cli: $pass passed, $fail failed"
    [ "$fail" = 0 ]
    exit $?
}
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
# A PNG from the standard library only: png W H CHANNELS VALUE OUT
png() {
    python3 - "$@" <<'PY'
import struct, sys, zlib
w, h, c, v, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ct = {1: 0, 2: 4, 3: 2, 4: 6}[c]
raw = b"".join(b"\0" + bytes([v]) * (w * c) for _ in range(h))
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
open(out, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ct, 0, 0, 0)) +
                      chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
PY
}

# ---- ddx-mask -----------------------------------------------------------------------------
for k in box box:3,4,10,8 center half:left half:right half:top half:bottom strokes; do
    if "$mask" "$k" --size 28 --n 4 --seed 3 --out "$tmp/m1.png" >"$tmp/o" 2>&1 &&
        "$mask" "$k" --size 28 --n 4 --seed 3 --out "$tmp/m2.png" >/dev/null 2>&1 && cmp -s "$tmp/m1.png" "$tmp/m2.png" &&
        [ "$(grep -c '^mask [0-3]: fills' "$tmp/o")" = 4 ]; then ok; else bad "ddx-mask $k: not written or not deterministic: $(cat "$tmp/o")"; fi
done
for k in box strokes; do
    "$mask" "$k" --size 28 --n 4 --seed 3 --out "$tmp/m1.png" >/dev/null 2>&1
    "$mask" "$k" --size 28 --n 4 --seed 4 --out "$tmp/m2.png" >/dev/null 2>&1
    if cmp -s "$tmp/m1.png" "$tmp/m2.png"; then bad "ddx-mask $k: seed 4 gave seed 3's masks"; else ok; fi
done
"$mask" center --size 28 --out "$tmp/center.png" >"$tmp/o" 2>&1
grep -q "fills 0.2500" "$tmp/o" && ok || bad "center on 28x28 fills a quarter: $(cat "$tmp/o")"
"$mask" file:"$tmp/center.png" --size 28 --out "$tmp/center2.png" >/dev/null 2>&1 && cmp -s "$tmp/center.png" "$tmp/center2.png" &&
    ok || bad "a mask file read back and written again is the same file"
png 28 28 3 255 "$tmp/rgb.png"
png 28 28 1 255 "$tmp/white.png"
png 28 28 1 0 "$tmp/black.png"
png 20 20 1 0 "$tmp/small.png"
png 28 28 2 255 "$tmp/ga.png"
expect2 "unknown mask kind" "$mask" circle --size 28 --out "$tmp/x.png"
expect2 "--size" "$mask" box --size 1 --out "$tmp/x.png"
expect2 "RGB" "$mask" file:"$tmp/rgb.png" --size 28 --out "$tmp/x.png"
expect2 "grey + alpha" "$mask" file:"$tmp/ga.png" --size 28 --out "$tmp/x.png"
expect2 "keeps every pixel" "$mask" file:"$tmp/white.png" --size 28 --out "$tmp/x.png"
expect2 "fills every pixel" "$mask" file:"$tmp/black.png" --size 28 --out "$tmp/x.png"
expect2 "20x20" "$mask" file:"$tmp/small.png" --size 28 --out "$tmp/x.png"
expect2 "box:0,0,28,28" "$mask" box:0,0,28,28 --size 28 --out "$tmp/x.png"
expect2 "not a regular file" "$mask" file:"$tmp" --size 28 --out "$tmp/x.png"

# ---- a tiny checkpoint ----------------------------------------------------------------------
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "SKIP: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist); the ddx-inpaint part did not run"
    echo "inpaint-cli: $pass passed, $fail failed, 1 skipped"
    [ "$fail" = 0 ] || exit 1
    exit 0
fi
cat >"$tmp/tiny.yaml" <<YAML
run: {name: tiny, out_dir: $tmp/out, seed: 7, device: cpu}
model: {type: unet_ddpm, in_channels: 1, out_channels: 1, image_size: 28, ch: 8, ch_mult: [1, 2],
        num_res_blocks: 1, attn_resolutions: [], dropout: 0.0, groups: 4}
data: {dataset: fashion_mnist, image_size: 28, hflip: false, num_workers: 1}
diffusion: {timesteps: 20}
train: {batch_size: 2, total_steps: 2, lr: 1e-3, warmup_steps: 1, log_every: 1, sample_every: 0, checkpoint_every: 2}
sample: {sampler: ddim, steps: 4, n: 2}
YAML
"$train" "$tmp/tiny.yaml" >"$tmp/train.out" 2>&1 || { bad "tiny training failed: $(tail -3 "$tmp/train.out")"; finish; }
ck=$tmp/out/tiny/checkpoints/last.safetensors
[ -f "$ck" ] || ck=$(ls "$tmp"/out/*/checkpoints/last.safetensors 2>/dev/null | head -1)
[ -f "$ck" ] || { bad "no checkpoint after training: $(ls -R "$tmp/out" | head)"; finish; }

# ---- ddx-inpaint ----------------------------------------------------------------------------
run() { "$inpaint" --checkpoint "$ck" "$@" >"$tmp/o" 2>"$tmp/e"; }
if run --from-data 3 --mask strokes --sampler ddim --steps 4 --seed 5 --out "$tmp/a.png" --json "$tmp/a.json" --mask-out "$tmp/am.png"; then
    ok
    for f in a_000.png a_001.png a_002.png am.png a.json; do [ -s "$tmp/$f" ] && ok || bad "ddx-inpaint wrote no $f"; done
    [ "$(grep -c '^image [0-2] sample 0: PSNR .* dB, SSIM .* (whole image); PSNR .* dB, SSIM .* (filled region' "$tmp/o")" = 3 ] && ok ||
        bad "PSNR/SSIM lines: $(cat "$tmp/o")"
    grep -q "known region: all .* kept values equal the input exactly" "$tmp/o" && ok || bad "known region line: $(cat "$tmp/o")"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert len(d['results'])==3 and 'ssim_filled' in d['mean']" \
        "$tmp/a.json" && ok || bad "JSON: $(cat "$tmp/a.json")"
    run --from-data 3 --mask strokes --sampler ddim --steps 4 --seed 5 --batch 1 --out "$tmp/b.png"
    for i in 000 001 002; do cmp -s "$tmp/a_$i.png" "$tmp/b_$i.png" && ok || bad "batch 1 changed image $i"; done
    run --from-data 3 --mask strokes --sampler ddim --steps 4 --seed 6 --out "$tmp/c.png"
    cmp -s "$tmp/a_000.png" "$tmp/c_000.png" && bad "seed 6 gave seed 5's result" || ok
else
    bad "ddx-inpaint --from-data: $(cat "$tmp/e")"
fi
# --image (a mask PNG is a grey 28x28 picture), DDPM over all 20 steps, --n 2; RePaint over 8 DDIM
# steps, jump 2, resample 3: jumps from states 0, 2, 4, two each, up 1 and down 2: 8 + 3 x 2 x 3 = 26.
if run --image "$tmp/center.png" --mask half:left --sampler ddpm --out "$tmp/d.png" --n 2; then
    ok
    grep -q "image 0 sample 1:" "$tmp/o" && ok || bad "--n 2 gives two results: $(cat "$tmp/o")"
    grep -q "ddpm, 20 steps" "$tmp/o" && ok || bad "DDPM runs all 20 steps: $(head -2 "$tmp/o")"
else bad "ddx-inpaint --image: $(cat "$tmp/e")"; fi
if run --from-data 1 --mask center --sampler ddim --steps 8 --resample 3 --jump 2 --out "$tmp/r.png"; then
    grep -q "RePaint resample 3 jump 2: 26 updates" "$tmp/o" && ok || bad "RePaint updates: $(head -3 "$tmp/o")"
    grep -q "known region: all" "$tmp/o" && ok || bad "RePaint known region"
else bad "ddx-inpaint RePaint: $(cat "$tmp/e")"; fi

# ---- bad input: exit 2, one line, an existing --out untouched --------------------------------
echo keep >"$tmp/keep.png"
expect2 "20x20" "$inpaint" --checkpoint "$ck" --image "$tmp/small.png" --mask center --out "$tmp/keep.png"
expect2 "RGB" "$inpaint" --checkpoint "$ck" --image "$tmp/rgb.png" --mask center --out "$tmp/keep.png"
expect2 "20x20" "$inpaint" --checkpoint "$ck" --from-data 1 --mask file:"$tmp/small.png" --out "$tmp/keep.png"
expect2 "keeps every pixel" "$inpaint" --checkpoint "$ck" --from-data 1 --mask file:"$tmp/white.png" --out "$tmp/keep.png"
expect2 "--resample and --jump" "$inpaint" --checkpoint "$ck" --from-data 1 --mask center --resample 2 --out "$tmp/keep.png"
expect2 "--jump" "$inpaint" --checkpoint "$ck" --from-data 1 --mask center --sampler ddim --steps 4 --resample 2 --jump 4 --out "$tmp/keep.png"
expect2 "unknown mask kind" "$inpaint" --checkpoint "$ck" --from-data 1 --mask blob --out "$tmp/keep.png"
expect2 "--label" "$inpaint" --checkpoint "$ck" --from-data 1 --mask center --label 3 --out "$tmp/keep.png"
expect2 "--steps" "$inpaint" --checkpoint "$ck" --from-data 1 --mask center --sampler ddpm --steps 4 --out "$tmp/keep.png"
expect2 "--from-data" "$inpaint" --checkpoint "$ck" --from-data 0 --mask center --out "$tmp/keep.png"
expect2 "60000 images" "$inpaint" --checkpoint "$ck" --from-data 2 --data-start 59999 --mask center --out "$tmp/keep.png"
expect2 "$tmp/small.png" "$inpaint" --checkpoint "$tmp/small.png" --from-data 1 --mask center --out "$tmp/keep.png"
expect2 "--out" "$inpaint" --checkpoint "$ck" --from-data 1 --mask center --out "$tmp"
[ "$(cat "$tmp/keep.png")" = keep ] && ok || bad "a refused run changed --out"
ls "$tmp"/keep_* >/dev/null 2>&1 && bad "a refused run wrote numbered outputs" || ok
finish
