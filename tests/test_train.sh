#!/usr/bin/env bash
# ddx-train and ddx-sample end to end on a tiny model over Fashion-MNIST:
#   - an interrupted (SIGINT) and resumed run logs the same losses, bit for bit, as an
#     uninterrupted one (and so does a run stopped at total_steps and extended);
#   - the same seed gives the same samples, whatever the batch size;
#   - bad input (configs, missing data, truncated / foreign / other-shape checkpoints, an
#     unwritable output folder) exits 2 with one line on stderr, and nothing saved changes;
#   - ddx-sample refuses a device node or FIFO as --out, a file as --save-dir, --steps with
#     ddpm and bad values before sampling, naming the flag typed.
#   test_train.sh PATH/TO/ddx-train PATH/TO/ddx-sample
set -u
train=$1 sample=$2
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
    echo "train-cli: $pass passed, $fail failed"
    [ "$fail" = 0 ]
    exit $?
}

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "SKIP: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
    echo "train-cli: 0 passed, 0 failed, 1 skipped"
    exit 77
fi

cfg=$tmp/tiny.yaml
cat >"$cfg" <<YAML
run: {name: tiny, out_dir: $tmp/out, seed: 7, device: cpu}
model: {type: unet_ddpm, in_channels: 1, out_channels: 1, image_size: 28, ch: 16, ch_mult: [1, 2],
        num_res_blocks: 1, attn_resolutions: [14], dropout: 0.1, groups: 8}
data: {dataset: fashion_mnist, image_size: 28, hflip: true, num_workers: 1}
train: {batch_size: 4, total_steps: 9, lr: 1e-3, warmup_steps: 3, grad_clip: 1.0, ema_decay: 0.9,
        log_every: 2, sample_every: 0, checkpoint_every: 4}
sample: {sampler: ddim, steps: 3, n: 4}
YAML

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

# 1. Uninterrupted reference run.
"$train" "$cfg" >"$tmp/ref.out" 2>&1 || bad "reference run failed: $(tail -3 "$tmp/ref.out")"
ref=$(ls -d "$tmp"/out/tiny_* | head -1)
[ -f "$ref/checkpoints/last.safetensors" ] && [ -f "$ref/config.yaml" ] && [ -n "$(ls "$ref"/samples/*.png 2>/dev/null)" ] &&
    [ "$(wc -l <"$ref/log.jsonl")" = 5 ] && ok || bad "reference run folder incomplete: $(ls -R "$ref")"

# 2. Stop at step 5 (mid log interval), then resume to 9: same log.
mv "$tmp/out" "$tmp/ref_out"
"$train" "$cfg" --set train.total_steps=5 >"$tmp/a.out" 2>&1 || bad "short run failed: $(tail -3 "$tmp/a.out")"
run=$(ls -d "$tmp"/out/tiny_* | head -1)
"$train" --resume "$run" --set train.total_steps=9 >"$tmp/b.out" 2>&1 || bad "resume failed: $(tail -3 "$tmp/b.out")"
ref=$(ls -d "$tmp"/ref_out/tiny_* | head -1)
if [ "$(losses "$ref/log.jsonl")" = "$(losses "$run/log.jsonl")" ]; then ok; else
    bad "stopped+resumed log differs from the uninterrupted one:"; diff <(losses "$ref/log.jsonl") <(losses "$run/log.jsonl")
fi
cmp -s "$ref/samples/step_0000009.png" "$run/samples/step_0000009.png" && ok || bad "final samples differ after resume"

# 3. SIGINT in the middle, resume: same log.
rm -rf "$tmp/out"
"$train" "$cfg" --set train.total_steps=400 --set train.log_every=1 --set train.checkpoint_every=0 >"$tmp/c.out" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    sleep 0.1
    run=$(ls -d "$tmp"/out/tiny_* 2>/dev/null | head -1)
    [ -n "$run" ] && [ -f "$run/log.jsonl" ] && [ "$(wc -l <"$run/log.jsonl")" -ge 3 ] && break
done
kill -INT $pid
wait $pid
rc=$?
[ "$rc" = 130 ] && grep -q "continue with: ddx-train --resume" "$tmp/c.out" && ok || bad "SIGINT: exit $rc: $(tail -2 "$tmp/c.out")"
stopped=$(wc -l <"$run/log.jsonl")
"$train" --resume "$run" --set train.total_steps=$((stopped + 3)) >"$tmp/d.out" 2>&1 || bad "resume after SIGINT failed: $(tail -3 "$tmp/d.out")"
rm -rf "$tmp/out2"
"$train" "$cfg" --set run.out_dir="$tmp/out2" --set train.total_steps=$((stopped + 3)) --set train.log_every=1 \
    --set train.checkpoint_every=0 >"$tmp/e.out" 2>&1 || bad "uninterrupted run failed"
ref2=$(ls -d "$tmp"/out2/tiny_* | head -1)
if [ "$(losses "$ref2/log.jsonl")" = "$(losses "$run/log.jsonl")" ] && [ "$(wc -l <"$run/log.jsonl")" = $((stopped + 3)) ]; then ok; else
    bad "SIGINT+resume log differs from the uninterrupted one"; diff <(losses "$ref2/log.jsonl") <(losses "$run/log.jsonl") | head
fi

# 4. Sampling: same seed same images; batch size does not matter; seed does.
ck=$ref/checkpoints/last.safetensors
"$sample" --checkpoint "$ck" --n 5 --seed 3 --out "$tmp/s1.png" --save-dir "$tmp" >/dev/null 2>&1 &&
    "$sample" --checkpoint "$ck" --n 5 --seed 3 --batch 2 --out "$tmp/s2.png" >/dev/null 2>&1 &&
    "$sample" --checkpoint "$ck" --n 5 --seed 4 --out "$tmp/s3.png" >/dev/null 2>&1 || bad "ddx-sample failed"
cmp -s "$tmp/s1.png" "$tmp/s2.png" && ok || bad "same seed, batch 5 vs 2: different samples"
cmp -s "$tmp/s1.png" "$tmp/s3.png" && bad "seed 3 and 4 gave the same samples" || ok
[ -f "$tmp/000004.png" ] && ok || bad "--save-dir wrote no per-image PNGs"
"$sample" --checkpoint "$ck" --sampler ddpm --n 2 --no-ema --normalize auto --out "$tmp/s4.png" >"$tmp/o" 2>&1 &&
    grep -q "normalize auto" "$tmp/o" && [ -f "$tmp/s4.png" ] && ok || bad "ddpm / --no-ema / auto: $(tail -2 "$tmp/o")"

# 5. Bad input: exit 2, one line, nothing saved changes.
sum_before=$(md5sum "$ck" | cut -d' ' -f1)
expect2 "nope.yaml" "$train" "$tmp/nope.yaml"
expect2 "train.lr" "$train" "$cfg" --set train.lr=-1
expect2 "model.bogus" "$train" "$cfg" --set model.bogus=1
expect2 "fashion-mnist" "$train" "$cfg" --set data.path="$tmp/no_such_dir" --set run.out_dir="$tmp/never"
[ ! -e "$tmp/never" ] && ok || bad "a failed start left a run folder behind"
expect2 "run.out_dir" "$train" "$cfg" --set run.out_dir=/etc/passwd/x
head -c 1000 "$ck" >"$tmp/trunc.safetensors"
expect2 "trunc.safetensors" "$sample" --checkpoint "$tmp/trunc.safetensors"
expect2 "parity.safetensors" "$sample" --checkpoint data/parity/parity.safetensors --config "$cfg"
sed 's/ch: 16/ch: 24/' "$cfg" >"$tmp/other.yaml"
mkdir -p "$tmp/fake/checkpoints" && cp "$ck" "$tmp/fake/checkpoints/"
expect2 "last.safetensors" "$sample" --checkpoint "$ck" --config "$tmp/other.yaml"
expect2 "model.ch" "$train" "$tmp/other.yaml" --resume "$tmp/fake"
expect2 "--out" "$sample" --checkpoint "$ck" --out /etc/passwd/x/grid.png
expect2 "no_run" "$train" --resume "$tmp/no_run"
# ddx-sample refuses bad outputs and values before it loads or samples anything, naming the
# flag the user typed.
expect_early() {   # NAME CMD...: exit 2 naming NAME, and no "sampling" line (nothing was drawn)
    local name=$1
    expect2 "$@"
    grep -q "^sampling" "$tmp/o" && bad "$*: sampled before refusing" || ok
}
expect_early "--out" "$sample" --checkpoint "$ck" --out /dev/null
[ -c /dev/null ] && ok || bad "--out /dev/null replaced the device node"
mkfifo "$tmp/fifo"
expect_early "--out" "$sample" --checkpoint "$ck" --out "$tmp/fifo"
[ -p "$tmp/fifo" ] && ok || bad "--out FIFO replaced the FIFO"
expect_early "--save-dir" "$sample" --checkpoint "$ck" --save-dir "$cfg"
expect_early "--steps" "$sample" --checkpoint "$ck" --sampler ddpm --steps 10
grep -q "DDPM always runs" "$tmp/e" && ok || bad "--steps with ddpm: $(cat "$tmp/e")"
expect_early "--n" "$sample" --checkpoint "$ck" --n abc
grep -q "sample\.n" "$tmp/e" && bad "--n error names the config key: $(cat "$tmp/e")" || ok
expect_early "--steps" "$sample" --checkpoint "$ck" --steps 0
# Without a GPU the banner says so in words, and that the run goes on on the CPU.
"$train" "$cfg" --set run.device=auto --set train.total_steps=1 --set train.warmup_steps=0 --set run.out_dir="$tmp/out3" \
    >"$tmp/o" 2>&1
if grep -q "^device: cuda" "$tmp/o"; then ok; else
    grep -q "^device: cpu (no GPU found (.*); training on the CPU)$" "$tmp/o" && ! grep -q "cudaGetDeviceCount" "$tmp/o" && ok ||
        bad "no-GPU banner: $(grep '^device' "$tmp/o")"
fi
[ "$(md5sum "$ck" | cut -d' ' -f1)" = "$sum_before" ] && ok || bad "a failed command changed the checkpoint"
finish
