#!/usr/bin/env bash
# ddx-train and ddx-sample end to end on a tiny model over Fashion-MNIST:
#   - an interrupted (SIGINT) and resumed run logs the same losses, bit for bit, as an
#     uninterrupted one (and so does a run stopped at total_steps and extended);
#   - the same seed gives the same samples, whatever the batch size;
#   - bad input (configs, missing data, truncated / foreign / other-shape checkpoints, an
#     unwritable output folder) exits 2 with one line on stderr, and nothing saved changes;
#   - elapsed_s runs on over a resume; a second ddx-train on a run folder is refused (lock);
#     a batch larger than the data set leaves no run folder; stale checkpoint temp files are
#     swept on resume; a diverging run stops naming its last good (finite) checkpoint; a failed
#     log write stops the run after a checkpoint with no cut line; out of memory names the keys.
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
# The run report: refreshed at the end (and at each sample grid), with run_info.json from the start.
[ -s "$ref/report.html" ] && [ -s "$ref/loss.png" ] && grep -q '"device": "cpu"' "$ref/run_info.json" &&
    grep -q 'data-y=' "$ref/report.html" && grep -q '^report: ' "$tmp/ref.out" && ok ||
    bad "no report.html / loss.png / run_info.json after the reference run: $(ls "$ref")"

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
# elapsed_s continues over the resume instead of starting again at 0.
el=$(sed -E 's/.*"elapsed_s":([0-9.]+).*/\1/' "$run/log.jsonl" | tr '\n' ' ')
awk -v l="$el" 'BEGIN { n = split(l, v, " "); for (i = 2; i <= n; i++) if (v[i] + 0 < v[i - 1] + 0) exit 1 }' && ok ||
    bad "elapsed_s goes back after the resume: $el"

# 3. SIGINT in the middle, resume: same log.
rm -rf "$tmp/out"
"$train" "$cfg" --set train.total_steps=400 --set train.log_every=1 --set train.checkpoint_every=2 >"$tmp/c.out" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    sleep 0.1
    run=$(ls -d "$tmp"/out/tiny_* 2>/dev/null | head -1)
    [ -n "$run" ] && [ -f "$run/log.jsonl" ] && [ "$(wc -l <"$run/log.jsonl")" -ge 3 ] && break
done
# A second ddx-train on the same run folder is refused while the first holds it (by then the
# first has saved its step-2 checkpoint; checkpoints do not change the losses compared below).
expect2 "pid $pid" "$train" --resume "$run"
grep -qF "$run" "$tmp/e" && ok || bad "the lock message does not name the run folder: $(cat "$tmp/e")"
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
expect2 "diffusion.rescale_zero_terminal_snr" "$train" "$cfg" --set diffusion.rescale_zero_terminal_snr=true
expect2 "train.loss_weight" "$train" "$cfg" --set train.loss_weight=snr
expect2 "train.min_snr_gamma" "$train" "$cfg" --set train.loss_weight=min_snr --set train.min_snr_gamma=-1
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
# A value too long for the config is refused, not cut into another valid one.
expect_early "--seed" "$sample" --checkpoint "$ck" --seed "$(printf '1%.0s' $(seq 2000))"
# Without a GPU the banner says so in words, and that the run goes on on the CPU.
"$train" "$cfg" --set run.device=auto --set train.total_steps=1 --set train.warmup_steps=0 --set run.out_dir="$tmp/out3" \
    >"$tmp/o" 2>&1
if grep -q "^device: cuda" "$tmp/o"; then ok; else
    grep -q "^device: cpu (no GPU found (.*); training on the CPU)$" "$tmp/o" && ! grep -q "cudaGetDeviceCount" "$tmp/o" && ok ||
        bad "no-GPU banner: $(grep '^device' "$tmp/o")"
fi
[ "$(md5sum "$ck" | cut -d' ' -f1)" = "$sum_before" ] && ok || bad "a failed command changed the checkpoint"
# A FIFO in log.jsonl's place: the resume refuses it instead of waiting for a writer forever.
fifo_run=$(ls -d "$tmp"/out3/tiny_* | head -1)
if [ -n "$fifo_run" ] && rm -f "$fifo_run/log.jsonl" && mkfifo "$fifo_run/log.jsonl"; then
    expect2 "log.jsonl" timeout 30 "$train" --resume "$fifo_run" --set train.total_steps=2
    [ -p "$fifo_run/log.jsonl" ] && ok || bad "the resume replaced the FIFO log"
else
    bad "FIFO log case: no run folder from the banner run"
fi
# Sample grids run in the training context (no second arena): a run that draws grids every
# 2 steps logs the same losses and grad norms, bit for bit, as one that draws none.
for se in 0 2; do
    "$train" "$cfg" --set run.out_dir="$tmp/se$se" --set train.total_steps=6 --set train.log_every=1 \
        --set train.checkpoint_every=0 --set train.sample_every=$se >/dev/null 2>&1 || bad "sample_every=$se run failed"
done
lossof() { sed -E 's/.*"step":([0-9]+),"loss":([^,]+),.*"grad_norm":([^,]+),.*/\1 \2 \3/' "$1"/tiny_*/log.jsonl; }
[ -n "$(lossof "$tmp/se2")" ] && [ "$(lossof "$tmp/se0")" = "$(lossof "$tmp/se2")" ] && [ "$(ls "$tmp"/se2/tiny_*/samples | wc -l)" = 3 ] &&
    ok || bad "sample grids changed the training run: $(lossof "$tmp/se0" | head -2) vs $(lossof "$tmp/se2" | head -2)"
# 6. A batch larger than the data set: exit 2 before any run folder exists.
expect2 "train.batch_size" "$train" "$cfg" --set train.batch_size=100000 --set run.out_dir="$tmp/never2"
[ ! -e "$tmp/never2" ] && ok || bad "a start with an oversized batch left $(ls -R "$tmp/never2")"

# 7. Stale temp files of a killed checkpoint save are swept on resume (only the writer's temp
#    names, only regular files); the checkpoints themselves stay.
ck_dir=$ref/checkpoints
head -c 100000 /dev/zero >"$ck_dir/last.safetensors.tmp.Ab12Cd"
echo keep >"$ck_dir/notes.tmp.txt"
ln -s "$ck_dir/notes.tmp.txt" "$ck_dir/link.safetensors.tmp.Zz99Yy"
sum8=$(md5sum "$ck_dir/step_0000008.safetensors" | cut -d' ' -f1)
"$train" --resume "$ref" --set train.total_steps=10 --set train.keep_checkpoints=3 >"$tmp/sw.out" 2>&1 || bad "resume with a stale temp file failed: $(tail -3 "$tmp/sw.out")"
[ ! -e "$ck_dir/last.safetensors.tmp.Ab12Cd" ] && grep -q "removed 1 stale temp file" "$tmp/sw.out" && ok ||
    bad "stale temp file not swept: $(ls "$ck_dir"); $(grep checkpoints: "$tmp/sw.out")"
[ -f "$ck_dir/notes.tmp.txt" ] && [ -L "$ck_dir/link.safetensors.tmp.Zz99Yy" ] && ok || bad "the sweep removed a file it does not own"
[ "$(md5sum "$ck_dir/step_0000008.safetensors" | cut -d' ' -f1)" = "$sum8" ] && [ -f "$ck_dir/step_0000010.safetensors" ] &&
    [ ! -e "$ck_dir/step_0000004.safetensors" ] && ok || bad "keep_checkpoints 3: $(ls "$ck_dir")"

# 8. Divergence (lr 10 without clipping): exit 2 with one line naming the step, the loss and the
#    last good checkpoint, which holds only finite numbers.
"$train" "$cfg" --set run.out_dir="$tmp/div" --set train.lr=10 --set train.warmup_steps=20 --set train.total_steps=40 \
    --set train.log_every=1 --set train.checkpoint_every=2 --set train.grad_clip=0 >"$tmp/o" 2>"$tmp/e"
rc=$?
good=$(sed -nE 's/.*last good checkpoint: ([^ ]+) .*/\1/p' "$tmp/e")
if [ "$rc" = 2 ] && [ "$(wc -l <"$tmp/e")" = 1 ] && grep -qE "diverged at step [0-9]+: loss" "$tmp/e" && [ -f "$good" ]; then ok; else
    bad "divergence: exit $rc: $(cat "$tmp/e")"
fi
# Every f32 of the data section finite (exponent bits not all ones).
finite() {
    local n
    n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
    tail -c +$((9 + n)) "$1" | od -An -tu4 -v | awk '{ for (i = 1; i <= NF; i++) if ($i % 2147483648 >= 2139095040) bad++ } END { exit bad > 0 }'
}
[ -f "$good" ] && finite "$good" && ok || bad "the last good checkpoint $good holds non-finite numbers"

# 9. Out of memory for a huge model or batch: exit 2 naming the config keys. An address-space limit
#    makes the allocation fail cleanly (AddressSanitizer needs the address space: skipped there).
if grep -q __asan_init "$train" 2>/dev/null; then
    echo "SKIP out-of-memory case under AddressSanitizer"
else
    (ulimit -v 2000000; exec "$train" "$cfg" --set model.ch=1024 --set model.groups=32 --set model.attn_resolutions=[] \
        --set run.out_dir="$tmp/oom") >"$tmp/o" 2>"$tmp/e"
    rc=$?
    [ "$rc" = 2 ] && [ "$(wc -l <"$tmp/e")" = 1 ] && grep -q "model.ch" "$tmp/e" && [ ! -e "$tmp/oom" ] && ok ||
        bad "out of memory: exit $rc: $(head -c 400 "$tmp/e")"
    # Parameters fit, step 1's activations do not: the keys are named, the new run folder goes.
    (ulimit -v 2000000; exec "$train" "$cfg" --set train.batch_size=4096 --set run.out_dir="$tmp/oom2") >"$tmp/o" 2>"$tmp/e"
    rc=$?
    [ "$rc" = 2 ] && [ "$(wc -l <"$tmp/e")" = 1 ] && grep -q "train.batch_size" "$tmp/e" && [ -z "$(ls -A "$tmp/oom2")" ] && ok ||
        bad "activations out of memory: exit $rc: $(head -c 400 "$tmp/e"); left: $(ls -A "$tmp/oom2")"
fi

# 10. The log's file system fills up: the run stops with exit 2 after a checkpoint, the log
#     holds only whole lines. The run folder sits on a tiny tmpfs, its checkpoints on a roomy
#     one (a private mount namespace: as root, or in a user namespace where allowed).
mkdir -p "$tmp/full"
"$train" "$cfg" --set run.out_dir="$tmp/fsrc" --set train.total_steps=2 --set train.warmup_steps=1 --set train.log_every=1 >/dev/null 2>&1 ||
    bad "log-full setup run failed"
src=$(ls -d "$tmp"/fsrc/tiny_* | head -1)
userns=-r
[ "$(id -u)" = 0 ] && userns=
unshare $userns -m bash -c '
    set -e
    m=$1 src=$2 train=$3 out=$4
    # Room for the resume to rewrite config.yaml and log.jsonl beside their old copies, the
    # lock and a few log pages: sized from the files, so a config that grows keys still fits.
    pages=$(( ($(stat -c %s "$src/config.yaml") + 4095) / 4096 * 2 + 5 ))
    mount -t tmpfs -o size=$((pages * 4))k tmpfs "$m"
    cp "$src/config.yaml" "$src/log.jsonl" "$m/"
    mkdir "$m/checkpoints" "$m/samples"
    mount -t tmpfs -o size=64m tmpfs "$m/checkpoints"
    cp "$src"/checkpoints/* "$m/checkpoints/"
    set +e
    timeout 300 "$train" --resume "$m" --set train.total_steps=100000 --set train.log_every=1 >"$out/o" 2>"$out/e"
    echo $? >"$out/rc"
    cp "$m/log.jsonl" "$out/log.jsonl"
    ls "$m/checkpoints" >"$out/ckpts"
' _ "$tmp/full" "$src" "$train" "$tmp" 2>"$tmp/unshare.err"
if [ ! -f "$tmp/rc" ]; then
    echo "SKIP log-full case: cannot mount a tmpfs here ($(head -c 200 "$tmp/unshare.err"))"
else
    rc=$(cat "$tmp/rc")
    last=$(tail -1 "$tmp/log.jsonl" | sed -E 's/^\{"step":([0-9]+),.*\}$/\1/')
    saved=$(sed -nE 's/^step_0*([0-9]+)\.safetensors$/\1/p' "$tmp/ckpts" | sort -n | tail -1)
    if [ "$rc" = 2 ] && [ "$(wc -l <"$tmp/e")" = 1 ] && grep -q "log.jsonl: writing the log failed" "$tmp/e" &&
        grep -q "stopped after saving checkpoint" "$tmp/e"; then ok; else bad "log full: exit $rc: $(cat "$tmp/e")"; fi
    grep -vqE '^\{"step":[0-9]+,.*"elapsed_s":[0-9.]+\}$' "$tmp/log.jsonl" && bad "log full: a cut line in the log" || ok
    grep -qE '^log line not written: \{"step":'"$saved"',' "$tmp/o" && ok || bad "log full: the unwritten line is not on stdout"
    [ -n "$saved" ] && [ -n "$last" ] && [ "$saved" -ge "$last" ] && [ "$saved" -gt 2 ] && ok ||
        bad "log full: checkpoint step '$saved' vs last log line '$last'"
fi
# 11. A full disk while writing config.yaml: exit 2 naming it, and the half-made run folder is
#     removed (out_dir on a full tmpfs, as in 10).
mkdir -p "$tmp/fullstart"
unshare $userns -m bash -c '
    m=$1 cfg=$2 train=$3 out=$4
    mount -t tmpfs -o size=12k tmpfs "$m" || exit 1
    head -c 8192 /dev/zero >"$m/filler" 2>/dev/null
    "$train" "$cfg" --set run.out_dir="$m" >"$out/fs.o" 2>"$out/fs.e"
    echo $? >"$out/fs.rc"
    ls -A "$m" >"$out/fs.ls"
' _ "$tmp/fullstart" "$cfg" "$train" "$tmp" 2>/dev/null
if [ ! -f "$tmp/fs.rc" ]; then
    echo "SKIP full-disk start case: cannot mount a tmpfs here"
else
    [ "$(cat "$tmp/fs.rc")" = 2 ] && [ "$(wc -l <"$tmp/fs.e")" = 1 ] && grep -q "config.yaml" "$tmp/fs.e" && ok ||
        bad "full-disk start: exit $(cat "$tmp/fs.rc"): $(cat "$tmp/fs.e")"
    [ "$(cat "$tmp/fs.ls")" = filler ] && ok || bad "full-disk start left: $(cat "$tmp/fs.ls")"
fi
finish
