#!/usr/bin/env bash
# A few training steps on the CPU and on the GPU from the same weights, data and seed agree:
# the per-step losses of the two devices match within 2e-3 relative (fp32 kernels on both, but
# sums in different orders, compounded through AdamW), and both runs' samples are images.
# Then CUDA graphs: two GPU runs with DDX_CUDA_GRAPHS=1 and =0 (a sample grid at step 4 in the
# middle, so the training graph must survive a sampling run and capture again) give identical
# losses, grad norms and sample images, bit for bit, and the graph run really used graphs (it
# says "CUDA graphs off" on stderr when a capture fails and it falls back). The same for the v /
# zero-terminal-SNR / Min-SNR objective (graphs on = off bit for bit, GPU within 2e-3 of the CPU).
#   test_train_devices.sh PATH/TO/ddx-train     (exit 77 without a usable GPU)
set -u
train=$(realpath "$1")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${DDX_FASHION_DIR:-}" ]; then
    echo "SKIP: Fashion-MNIST not installed"; echo "train-devices: 0 passed, 0 failed, 1 skipped"; exit 77
fi
common=(configs/fashion_mnist_ddpm.yaml --set train.total_steps=8 --set train.warmup_steps=2 --set train.log_every=1
        --set train.checkpoint_every=0 --set sample.n=4 --set sample.steps=5 --set data.num_workers=0)
[ -n "${DDX_FASHION_DIR:-}" ] && common+=(--set "data.path=$DDX_FASHION_DIR")
cd "$(dirname "$0")/.." || exit 1
if ! "$train" "${common[@]}" --set run.device=cuda --set run.out_dir="$tmp/gpu" >"$tmp/gpu.log" 2>&1; then
    if grep -qE "no CUDA kernel yet|built without CUDA|no CUDA device|no GPU" "$tmp/gpu.log"; then
        echo "SKIP: $(tail -1 "$tmp/gpu.log")"; echo "train-devices: 0 passed, 0 failed, 1 skipped"; exit 77
    fi
    echo "FAIL: GPU run: $(tail -3 "$tmp/gpu.log")"; echo "train-devices: 0 passed, 1 failed"; exit 1
fi
"$train" "${common[@]}" --set run.device=cpu --set run.out_dir="$tmp/cpu" >"$tmp/cpu.log" 2>&1 ||
    { echo "FAIL: CPU run: $(tail -3 "$tmp/cpu.log")"; echo "train-devices: 0 passed, 1 failed"; exit 1; }
python3 - "$tmp"/cpu/*/log.jsonl "$tmp"/gpu/*/log.jsonl <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
ok = bad = 0
if len(a) != len(b) or not a:
    print(f"FAIL: {len(a)} CPU log lines vs {len(b)} GPU"); bad += 1
for x, y in zip(a, b):
    rel = abs(x["loss"] - y["loss"]) / max(abs(x["loss"]), 1e-12)
    if rel <= 2e-3: ok += 1
    else: bad += 1; print(f"FAIL step {x['step']}: cpu loss {x['loss']:.9g} gpu {y['loss']:.9g} (rel {rel:.2e})")
    print(f"step {x['step']}: cpu {x['loss']:.9g} gpu {y['loss']:.9g} rel {rel:.2e}")
print(f"train-devices: {ok} passed, {bad} failed")
sys.exit(1 if bad else 0)
PY
[ $? -eq 0 ] || exit 1

# CUDA graphs on vs off: the same bits.
graphs=(--set run.device=cuda --set train.sample_every=4)
DDX_CUDA_GRAPHS=1 "$train" "${common[@]}" "${graphs[@]}" --set run.out_dir="$tmp/g1" >"$tmp/g1.log" 2>&1 ||
    { echo "FAIL: GPU run with graphs: $(tail -3 "$tmp/g1.log")"; echo "train-graphs: 0 passed, 1 failed"; exit 1; }
DDX_CUDA_GRAPHS=0 "$train" "${common[@]}" "${graphs[@]}" --set run.out_dir="$tmp/g0" >"$tmp/g0.log" 2>&1 ||
    { echo "FAIL: GPU run without graphs: $(tail -3 "$tmp/g0.log")"; echo "train-graphs: 0 passed, 1 failed"; exit 1; }
ok=0; bad=0
if grep -q "CUDA graphs off" "$tmp/g1.log"; then
    echo "FAIL: the graph run fell back to eager: $(grep "CUDA graphs off" "$tmp/g1.log")"; bad=$((bad + 1))
else ok=$((ok + 1)); fi
python3 - "$tmp"/g0/*/log.jsonl "$tmp"/g1/*/log.jsonl <<'PY' && ok=$((ok + 1)) || bad=$((bad + 1))
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
bad = len(a) != len(b) or not a
for x, y in zip(a, b):
    for k in ("loss", "last_loss", "grad_norm"):
        if k in x and x[k] != y.get(k):
            bad = True
            print(f"FAIL step {x['step']}: {k} eager {x[k]!r} graphs {y.get(k)!r}")
print(f"{len(a)} log lines, eager vs graphs {'differ' if bad else 'identical'}")
sys.exit(1 if bad else 0)
PY
n_png=0
for f in "$tmp"/g0/*/samples/*.png; do
    [ -f "$f" ] || continue
    other=$(ls "$tmp"/g1/*/samples/"$(basename "$f")" 2>/dev/null | head -1)
    n_png=$((n_png + 1))
    if [ -n "$other" ] && cmp -s "$f" "$other"; then ok=$((ok + 1))
    else bad=$((bad + 1)); echo "FAIL: sample $(basename "$f") differs with graphs (or is missing)"; fi
done
[ "$n_png" -ge 2 ] || { bad=$((bad + 1)); echo "FAIL: expected sample grids at steps 4 and 8, found $n_png"; }

# The v-prediction / zero-terminal-SNR / Min-SNR objective: its per-sample weights are staged
# with the graph step's other inputs, so graphs on and off must again agree bit for bit, and the
# GPU must follow the CPU's losses.
vobj=(--set diffusion.parameterization=v --set diffusion.beta_schedule=cosine --set diffusion.rescale_zero_terminal_snr=true
      --set train.loss_weight=min_snr --set train.sample_every=0)
for g in 0 1; do
    DDX_CUDA_GRAPHS=$g "$train" "${common[@]}" "${vobj[@]}" --set run.device=cuda --set run.out_dir="$tmp/v$g" >"$tmp/v$g.log" 2>&1 ||
        { echo "FAIL: v/min-SNR GPU run (graphs $g): $(tail -3 "$tmp/v$g.log")"; bad=$((bad + 1)); }
done
"$train" "${common[@]}" "${vobj[@]}" --set run.device=cpu --set run.out_dir="$tmp/vc" >"$tmp/vc.log" 2>&1 ||
    { echo "FAIL: v/min-SNR CPU run: $(tail -3 "$tmp/vc.log")"; bad=$((bad + 1)); }
python3 - "$tmp"/v0/*/log.jsonl "$tmp"/v1/*/log.jsonl "$tmp"/vc/*/log.jsonl <<'PY' && ok=$((ok + 1)) || bad=$((bad + 1))
import json, sys
e, g, c = ([json.loads(l) for l in open(p)] for p in sys.argv[1:4])
bad = len(e) != len(g) or len(e) != len(c) or not e
for x, y, z in zip(e, g, c):
    if x["loss"] != y["loss"] or x["grad_norm"] != y["grad_norm"]:
        bad = True
        print(f"FAIL v/min-SNR step {x['step']}: eager {x['loss']!r} {x['grad_norm']!r} graphs {y['loss']!r} {y['grad_norm']!r}")
    rel = abs(x["loss"] - z["loss"]) / max(abs(z["loss"]), 1e-12)
    if not rel <= 2e-3:
        bad = True
        print(f"FAIL v/min-SNR step {x['step']}: gpu loss {x['loss']:.9g} cpu {z['loss']:.9g} (rel {rel:.2e})")
print(f"v/min-SNR: {len(e)} log lines, " + ("FAILED" if bad else "eager == graphs bit for bit, GPU within 2e-3 of the CPU"))
sys.exit(1 if bad else 0)
PY
echo "train-graphs: $ok passed, $bad failed"
[ "$bad" -eq 0 ]
