#!/usr/bin/env bash
# Class-conditional training and sampling end to end on a tiny model over Fashion-MNIST:
#   - a run with label dropout, stopped and resumed, logs the same losses bit for bit and draws
#     the same final grid (one row per class, guided) as the uninterrupted run;
#   - the checkpoint stores the class names; ddx-sample --class NAME|K|all and --guidance sample
#     from it with no data set;
#   - an image folder's classes are its sorted sub-folders (names stored, sampled by name);
#   - bad input exits 2 with one line: an unknown class name or id, --class or --guidance on an
#     unconditional checkpoint, a negative guidance scale, a data set whose labels are not the
#     model's classes (too many classes, or none), label dropout on an unconditional model.
#   test_cond.sh PATH/TO/ddx-train PATH/TO/ddx-sample
set -u
train=$1 sample=$2
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
    echo "cond-cli: $pass passed, $fail failed"
    [ "$fail" = 0 ]
    exit $?
}
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "SKIP: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
    echo "cond-cli: 0 passed, 0 failed, 1 skipped"
    exit 77
fi
# expect2 NAME CMD...: exit 2, exactly one stderr line naming NAME.
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
losses() { sed -E 's/.*"step":([0-9]+),"loss":([^,]+),"last_loss":([^,]+),"grad_norm":([^,]+).*/\1 \2 \3 \4/' "$1"; }

cfg=$tmp/cond.yaml
cat >"$cfg" <<YAML
run: {name: cond, out_dir: $tmp/out, seed: 5, device: cpu}
model: {type: unet_ddpm, in_channels: 1, out_channels: 1, image_size: 28, ch: 8, ch_mult: [1, 2],
        num_res_blocks: 1, attn_resolutions: [], dropout: 0.0, groups: 4, num_classes: 10}
diffusion: {timesteps: 100}
data: {dataset: fashion_mnist, image_size: 28, hflip: false, num_workers: 1}
train: {batch_size: 8, total_steps: 6, lr: 1e-3, warmup_steps: 0, ema_decay: 0.9, label_dropout: 0.5,
        log_every: 1, sample_every: 0, checkpoint_every: 3}
sample: {sampler: ddim, steps: 3, n: 20, guidance: 2.0}
YAML

# 1. Uninterrupted reference, then the same run stopped at step 3 and resumed.
"$train" "$cfg" >"$tmp/ref.out" 2>&1 || bad "reference run failed: $(tail -3 "$tmp/ref.out")"
ref=$(ls -d "$tmp"/out/cond_* | head -1)
mv "$tmp/out" "$tmp/ref_out"
ref=${ref/\/out\//\/ref_out\/}
"$train" "$cfg" --set train.total_steps=3 >"$tmp/a.out" 2>&1 || bad "short run failed: $(tail -3 "$tmp/a.out")"
run=$(ls -d "$tmp"/out/cond_* | head -1)
"$train" --resume "$run" --set train.total_steps=6 >"$tmp/b.out" 2>&1 || bad "resume failed: $(tail -3 "$tmp/b.out")"
[ "$(losses "$ref/log.jsonl")" = "$(losses "$run/log.jsonl")" ] && [ "$(wc -l <"$run/log.jsonl")" = 6 ] && ok ||
    bad "stopped+resumed conditional log differs: $(diff <(losses "$ref/log.jsonl") <(losses "$run/log.jsonl") | head -4)"
cmp -s "$ref/samples/step_0000006.png" "$run/samples/step_0000006.png" && ok || bad "final guided grid differs after resume"
ck=$run/checkpoints/last.safetensors
head -c 100000 "$ck" | grep -aq 'T-shirt/top\\nTrouser\\nPullover' && ok || bad "the checkpoint stores no class names"

# 2. Sampling by name, number and all, with guidance.
"$sample" --checkpoint "$ck" --class sneaker --guidance 3 --n 3 --out "$tmp/s1.png" >"$tmp/s.out" 2>&1 &&
    grep -q "class 7 (Sneaker), guidance 3" "$tmp/s.out" && [ -s "$tmp/s1.png" ] && ok || bad "--class sneaker: $(tail -2 "$tmp/s.out")"
"$sample" --checkpoint "$ck" --class 1 --n 2 --batch 1 --out "$tmp/s2.png" >"$tmp/s.out" 2>&1 &&
    grep -q "class 1 (Trouser), guidance 2" "$tmp/s.out" && ok || bad "--class 1: $(tail -2 "$tmp/s.out")"
"$sample" --checkpoint "$ck" --class all --guidance 0 --n 10 --out "$tmp/s3.png" >"$tmp/s.out" 2>&1 &&
    grep -q "classes: all 10, one grid row each (1 images per row)" "$tmp/s.out" && ok || bad "--class all: $(tail -2 "$tmp/s.out")"
# The same seed and class give the same images whatever the batch (guided: doubled forwards).
"$sample" --checkpoint "$ck" --class 4 --n 3 --batch 3 --save-dir "$tmp" --out "$tmp/b3.png" >/dev/null 2>&1 && mv "$tmp/000002.png" "$tmp/b3_2.png"
"$sample" --checkpoint "$ck" --class 4 --n 3 --batch 2 --save-dir "$tmp" --out "$tmp/b2.png" >/dev/null 2>&1 && mv "$tmp/000002.png" "$tmp/b2_2.png"
[ -s "$tmp/b3_2.png" ] && cmp -s "$tmp/b3_2.png" "$tmp/b2_2.png" && ok || bad "guided image 2 differs between batch 3 and batch 2"

# 3. Bad input: exit 2, one line.
touch "$tmp/keep.png"
expect2 "--class 'Foo'" "$sample" --checkpoint "$ck" --class Foo --out "$tmp/keep.png"
expect2 "--class 10" "$sample" --checkpoint "$ck" --class 10 --out "$tmp/keep.png"
expect2 "--class -3" "$sample" --checkpoint "$ck" --class -3 --out "$tmp/keep.png"
expect2 "--guidance" "$sample" --checkpoint "$ck" --guidance -1 --out "$tmp/keep.png"
expect2 "--guidance" "$sample" --checkpoint "$ck" --guidance nan --out "$tmp/keep.png"
[ ! -s "$tmp/keep.png" ] && ok || bad "a refused run wrote the grid"
sed -e 's/num_classes: 10/num_classes: 0/' -e 's/label_dropout: 0.5/label_dropout: 0.0/' -e 's/, guidance: 2.0//' \
    -e 's/total_steps: 6/total_steps: 1/' "$cfg" >"$tmp/uncond.yaml"
"$train" "$tmp/uncond.yaml" --set run.out_dir="$tmp/unc" >"$tmp/u.out" 2>&1 || bad "unconditional run failed: $(tail -3 "$tmp/u.out")"
uck=$(ls -d "$tmp"/unc/cond_*/checkpoints/last.safetensors | head -1)
expect2 "--class" "$sample" --checkpoint "$uck" --class 1 --out "$tmp/keep.png"
expect2 "--guidance" "$sample" --checkpoint "$uck" --guidance 2 --out "$tmp/keep.png"
expect2 "train.label_dropout" "$train" "$tmp/uncond.yaml" --set train.label_dropout=0.1 --set run.out_dir="$tmp/unc2"
[ ! -e "$tmp/unc2" ] || [ -z "$(ls "$tmp/unc2")" ] && ok || bad "a refused start left a run folder"

# 4. Image folders: classes are the sorted sub-folders. Images made by the sampler itself.
mkdir -p "$tmp/imgs/zebra" "$tmp/imgs/ant" "$tmp/imgs/moth"
for d in zebra ant moth; do
    "$sample" --checkpoint "$uck" --n 3 --seed $RANDOM --save-dir "$tmp/imgs/$d" --out "$tmp/g.png" >/dev/null 2>&1 ||
        bad "making images for $d"
done
fcfg=$tmp/folder.yaml
sed -e 's/dataset: fashion_mnist/dataset: image_folder, path: IMGS/' -e 's/num_classes: 10/num_classes: 3/' \
    -e 's/total_steps: 6/total_steps: 1/' -e 's/batch_size: 8/batch_size: 4/' -e 's/n: 20/n: 3/' "$cfg" >"$fcfg"
sed -i "s#IMGS#$tmp/imgs#" "$fcfg"
"$train" "$fcfg" --set run.out_dir="$tmp/fo" >"$tmp/f.out" 2>&1 || bad "image-folder run failed: $(tail -3 "$tmp/f.out")"
fck=$(ls -d "$tmp"/fo/cond_*/checkpoints/last.safetensors 2>/dev/null | head -1)
[ -n "$fck" ] && head -c 100000 "$fck" | grep -aq 'ant\\nmoth\\nzebra\\n' && ok || bad "folder classes not stored sorted"
"$sample" --checkpoint "$fck" --class zebra --n 1 --out "$tmp/z.png" >"$tmp/s.out" 2>&1 && grep -q "class 2 (zebra)" "$tmp/s.out" &&
    ok || bad "--class zebra: $(tail -2 "$tmp/s.out")"
expect2 "has 3 classes" "$train" "$fcfg" --set model.num_classes=2 --set run.out_dir="$tmp/fo2"
cp "$tmp/imgs/ant/000000.png" "$tmp/imgs/top.png"
expect2 "no labels" "$train" "$fcfg" --set run.out_dir="$tmp/fo3"
[ ! -e "$tmp/fo2" ] && [ ! -e "$tmp/fo3" ] || [ -z "$(ls "$tmp/fo2" "$tmp/fo3" 2>/dev/null)" ] && ok || bad "refused starts left run folders"
finish
