#!/usr/bin/env bash
# Data parallelism on CPU ranks under mpirun (Open MPI; as root it needs the allow-run-as-root
# variables, set here):
#   - test_dp at 2 and 3 ranks (3: uneven shares of a batch of 7): the N-rank step equals the
#     1-rank step of the same global batch; ranks stay bit-identical;
#   - ddx-train: a 2-rank run stopped at step 4, resumed as 1 rank, logs the losses of an
#     uninterrupted 1-rank run (to fp32 tolerance); SIGTERM on rank 1 stops both ranks at one
#     step boundary with one checkpoint; a hung rank (SIGSTOP) makes rank 0 exit non-zero
#     within run.comm_timeout_s naming rank 1; a killed rank ends the job non-zero within the
#     timeout; the last checkpoint stays loadable in both cases; bad launch variables exit 2.
#   test_dp.sh PATH/TO/test_dp PATH/TO/ddx-train
set -u
test_dp=$1 train=$2
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
    echo "dp-mpi: $pass passed, $fail failed"
    [ "$fail" = 0 ]
    exit $?
}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export DDX_NUM_THREADS=1
# Loopback only: CI machines may have no other usable interface.
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
mpi() { mpirun --oversubscribe -np "$@"; }

if ! command -v mpirun >/dev/null; then
    echo "SKIP: mpirun not found (apt-get install openmpi-bin)"
    echo "dp-mpi: 0 passed, 0 failed, 1 skipped"
    exit 77
fi

# 1. The step against the 1-rank step.
for n in 2 3; do
    if mpi "$n" "$test_dp" >"$tmp/dp$n.out" 2>&1; then ok; else bad "test_dp at $n ranks: $(grep -E 'FAIL|rror' "$tmp/dp$n.out" | head -5)"; fi
    grep -E "^world $n:" "$tmp/dp$n.out"
done

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "Fashion-MNIST not installed: the ddx-train cases are skipped"
    finish
fi
cfg=$tmp/tiny.yaml
cat >"$cfg" <<YAML
run: {name: tiny, out_dir: $tmp/out, seed: 5, device: cpu, comm_timeout_s: 4}
model: {type: unet_ddpm, in_channels: 1, out_channels: 1, image_size: 28, ch: 8, ch_mult: [1, 2],
        num_res_blocks: 1, attn_resolutions: [14], dropout: 0.1, groups: 4}
data: {dataset: fashion_mnist, image_size: 28, hflip: true, num_workers: 1}
train: {batch_size: 5, total_steps: 8, lr: 1e-3, warmup_steps: 2, grad_clip: 1.0, ema_decay: 0.9,
        log_every: 1, sample_every: 0, checkpoint_every: 4}
sample: {sampler: ddim, steps: 2, n: 2}
YAML
losses() { sed -E 's/.*"step":([0-9]+),"loss":([^,]+),.*/\1 \2/' "$1"; }
rundir() { ls -d "$1"/tiny_* 2>/dev/null | head -1; }

# 2. Reference: 1 rank, 8 steps. Then 2 ranks to step 4, resumed as 1 rank to 8.
"$train" "$cfg" --set run.out_dir="$tmp/ref" >"$tmp/ref.out" 2>&1 || bad "1-rank run: $(tail -2 "$tmp/ref.out")"
mpi 2 "$train" "$cfg" --set run.out_dir="$tmp/two" --set train.total_steps=4 >"$tmp/two.out" 2>&1 ||
    bad "2-rank run: $(grep -i error "$tmp/two.out" | head -3)"
grep -q "^world: world 2 (mpi backend, launched by Open MPI)" "$tmp/two.out" && ok || bad "2-rank run: no world line"
[ "$(grep -c '^world:' "$tmp/two.out")" = 1 ] && ok || bad "the world is printed more than once"
two=$(rundir "$tmp/two")
"$train" --resume "$two" --set train.total_steps=8 >"$tmp/res.out" 2>&1 || bad "resume as 1 rank: $(tail -2 "$tmp/res.out")"
ref=$(rundir "$tmp/ref")
if [ -n "$two" ] && [ -n "$ref" ]; then
    paste <(losses "$ref/log.jsonl") <(losses "$two/log.jsonl") >"$tmp/cmp"
    if awk 'NF != 4 || $1 != $3 { exit 1 } { d = $2 - $4; if (d < 0) d = -d; if (d > 1e-4 * $2) exit 1; n++ } END { exit n != 8 }' \
        "$tmp/cmp"; then ok; else bad "2 ranks + resume as 1 vs 1 rank: losses differ: $(cat "$tmp/cmp")"; fi
    awk '{ d = $2 - $4; if (d < 0) d = -d; if (d / $2 > m) m = d / $2 } END { printf "2 ranks to step 4, resumed as 1 rank: max relative loss difference over 8 steps %.2e\n", m }' "$tmp/cmp"
fi

# Runs ddx-train on 2 ranks in the background; sets mpid, run and rank1 (pid).
start2() {
    # mpirun itself in the background (not a function: $! must be mpirun's pid).
    mpirun --oversubscribe -np 2 "$train" "$cfg" --set run.out_dir="$tmp/$1" --set train.total_steps=100000 --set train.checkpoint_every=2 \
        --set train.log_every=1 >"$tmp/$1.out" 2>"$tmp/$1.err" &
    mpid=$!
    run= rank1=
    for _ in $(seq 1 300); do
        run=$(rundir "$tmp/$1")
        if [ -n "$run" ] && [ -f "$run/checkpoints/last.safetensors" ]; then break; fi
        sleep 0.1
    done
    local r0
    r0=$(cat "$run/.lock" 2>/dev/null)
    for p in $(ps --ppid "$mpid" -o pid=); do
        [ "$p" != "$r0" ] && [ "$(ps -o comm= -p "$p")" = ddx-train ] && rank1=$p
    done
}
ckpt_ok() {   # the newest checkpoint resumes on 1 rank for one more step
    local f n
    f=$(ls "$run"/checkpoints/step_*.safetensors 2>/dev/null | sort | tail -1)
    n=$(basename "$f" .safetensors)
    n=$((10#${n#step_}))
    [ -n "$f" ] && "$train" --resume "$run" --set train.total_steps=$((n + 1)) >"$tmp/ck.out" 2>&1 &&
        grep -q "resuming at step $n " "$tmp/ck.out"
}

# 3. SIGTERM on rank 1: both ranks stop at one step boundary, one checkpoint, exit 143.
start2 term
if [ -n "$rank1" ]; then
    kill -TERM "$rank1"
    wait $mpid
    rc=$?
    [ $rc = 143 ] && ok || bad "SIGTERM on rank 1: mpirun exit $rc, want 143: $(tail -3 "$tmp/term.err")"
    grep -q "interrupted by SIGTERM at step" "$tmp/term.out" && ok || bad "SIGTERM: rank 0 did not stop with a checkpoint"
    last=$(grep -o 'checkpoint: [^ ]* (step [0-9]*)' "$tmp/term.out" | tail -1)
    [ -n "$last" ] && ok || bad "SIGTERM: no final checkpoint line"
else
    bad "SIGTERM: the 2-rank run did not start: $(tail -3 "$tmp/term.err")"
    kill "$mpid" 2>/dev/null
fi

# 4. A hung rank (SIGSTOP): rank 0 stops within the timeout (4 s) + the probe window (2 s),
#    naming rank 1; the checkpoint is intact.
start2 hang
if [ -n "$rank1" ]; then
    t0=$(date +%s.%N)
    kill -STOP "$rank1"
    wait $mpid
    rc=$?
    dt=$(echo "$(date +%s.%N) - $t0" | bc)
    kill -KILL "$rank1" 2>/dev/null
    [ $rc != 0 ] && ok || bad "hung rank: mpirun exit 0"
    grep -q "rank 0 of 2: .*did not complete within run.comm_timeout_s = 4 s; rank(s) not responding: 1;" "$tmp/hang.err" && ok ||
        bad "hung rank: no message naming rank 1: $(grep -v '^ ' "$tmp/hang.err" | head -3)"
    # The bound proves the job stops instead of hanging; it is loose because the time includes
    # mpirun's teardown, which took 12.7 s on a 2-core machine with three other builds running
    # (6-7 s when quiet); the message check above shows the 4 s timeout is what fired.
    awk -v t="$dt" 'BEGIN { exit !(t < 40) }' && ok || bad "hung rank: the job took $dt s to stop (timeout 4 s)"
    echo "hung rank 1 (SIGSTOP): mpirun exit $rc after $dt s; $(grep -o 'rank 0 of 2: .*' "$tmp/hang.err" | head -1)"
    ckpt_ok && ok || bad "hung rank: the last checkpoint does not resume"
else
    bad "hang: the 2-rank run did not start: $(tail -3 "$tmp/hang.err")"
    kill "$mpid" 2>/dev/null
fi

# 5. A killed rank: the job ends non-zero within the timeout; the checkpoint is intact.
start2 kill
if [ -n "$rank1" ]; then
    t0=$(date +%s.%N)
    kill -KILL "$rank1"
    wait $mpid
    rc=$?
    dt=$(echo "$(date +%s.%N) - $t0" | bc)
    [ $rc != 0 ] && ok || bad "killed rank: mpirun exit 0"
    awk -v t="$dt" 'BEGIN { exit !(t < 12) }' && ok || bad "killed rank: the job took $dt s to stop (timeout 4 s)"
    echo "killed rank 1 (SIGKILL): mpirun exit $rc after $dt s; $(grep -E 'rank 0 of 2|exited on signal' "$tmp/kill.err" | head -2 | tr '\n' ' ')"
    ckpt_ok && ok || bad "killed rank: the last checkpoint does not resume"
else
    bad "kill: the 2-rank run did not start: $(tail -3 "$tmp/kill.err")"
    kill "$mpid" 2>/dev/null
fi

# 6. Bad launch variables: exit 2, one line naming the variable; nothing created.
for env in "RANK=x WORLD_SIZE=2" "RANK=2 WORLD_SIZE=2" "RANK=0 WORLD_SIZE=2 LOCAL_RANK=5" "SLURM_PROCID=0 SLURM_NTASKS=0"; do
    env $env "$train" "$cfg" --set run.out_dir="$tmp/badl" >"$tmp/o" 2>"$tmp/e"
    rc=$?
    name=${env%%=*}
    [ $rc = 2 ] && [ "$(wc -l <"$tmp/e")" = 1 ] && [ ! -e "$tmp/badl" ] && ok || bad "$env: want exit 2 and one line; got $rc: $(cat "$tmp/e")"
done
# A world the environment claims but MPI does not have (no mpirun): exit 2 naming both.
env RANK=0 WORLD_SIZE=2 "$train" "$cfg" --set run.out_dir="$tmp/badw" >"$tmp/o" 2>"$tmp/e"
rc=$?
[ $rc = 2 ] && grep -q "world size 2 but MPI has 1" "$tmp/e" && [ ! -e "$tmp/badw" ] && ok || bad "world mismatch: want exit 2; got $rc: $(cat "$tmp/e")"
finish
