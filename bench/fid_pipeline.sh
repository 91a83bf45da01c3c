#!/usr/bin/env bash
# The whole `ddx-eval fid --checkpoint` pipeline (DDIM sampling, PNG quantisation, Inception
# features, statistics, FID) against the same pipeline in PyTorch (diffusers DDIM + pytorch-fid,
# bench/reference/torch_fid_pipeline.py) on the same checkpoint, weights, reference, image count
# and thread count, in one run; prints both JSON lines and the time ratio ddx / PyTorch.
#   bench/fid_pipeline.sh BUILD CHECKPOINT CONFIG.yaml INCEPTION.safetensors REF.npz [N] [STEPS] [THREADS] [BATCH]
# On a GPU machine both sides take the GPU (ddx: run.device auto; PyTorch: --device cuda when
# torch sees one). Needs torch, diffusers, pytorch-fid, safetensors.
set -euo pipefail
build=$1 ckpt=$2 config=$3 incep=$4 ref=$5 n=${6:-256} steps=${7:-50} threads=${8:-2} batch=${9:-64}
dir=$(cd "$(dirname "$0")" && pwd)
export DDX_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
device=$(python3 -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
echo "fid pipeline: n $n, DDIM-$steps eta 0, batch $batch, $threads threads, device $device; $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs visible$(nvidia-smi -L 2>/dev/null | head -1 | sed 's/^/, /')"
# CPU seconds (user + system) of a command next to its wall time: on a shared machine the wall
# time depends on the neighbours, the CPU time much less.
cputime() { python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stdout.write(r.stdout.decode().rstrip("\n")[:-1] + ", \"cpu_s\": %.2f}\n" % (u.ru_utime + u.ru_stime))
sys.exit(r.returncode)' "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ddx=$(cputime "$build/eval/ddx-eval" fid --checkpoint "$ckpt" --ref "$ref" --n "$n" --allow-small --steps "$steps" --eta 0 \
      --batch "$batch" --inception "$incep" --work "$work/shards" --no-log 2>"$work/ddx.err") || { cat "$work/ddx.err"; exit 1; }
echo "ddx:     $ddx"
pt=$(cputime python3 "$dir/reference/torch_fid_pipeline.py" "$config" --checkpoint "$ckpt" --inception "$incep" --ref "$ref" \
     --n "$n" --steps "$steps" --batch "$batch" --threads "$threads" --device "$device" 2>"$work/pt.err") ||
    { cat "$work/pt.err"; exit 1; }
echo "pytorch: $pt"
python3 - "$ddx" "$pt" <<'PY'
import json, sys
d, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("| part | ddx s | PyTorch s | ddx / PyTorch |")
print("|---|---|---|---|")
for k, name in (("sample_s", "sampling"), ("features_s", "Inception features"), ("seconds", "whole pipeline"),
                ("cpu_s", "whole pipeline, CPU seconds (user + system)")):
    print(f"| {name} | {d[k]:.1f} | {p[k]:.1f} | {d[k] / p[k]:.2f} |")
print(f"FID: ddx {d['fid']:.3f}, PyTorch {p['fid']:.3f} (the same model, different noise draws)")
PY
