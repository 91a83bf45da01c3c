#!/usr/bin/env bash
# Bad input reaches the user as one line on stderr naming the file, and exit code 2; good
# input exits 0. Exercises ddx-inspect over every config fixture and broken safetensors files.
#   test_cli.sh PATH/TO/ddx-inspect   (run from tests/)
set -u
exe=$1
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# expect CODE FILE_IN_MESSAGE ARGS...: exit code CODE; for 2, stderr is exactly one line that
# starts with "ddx-inspect: " and names FILE_IN_MESSAGE.
expect() {
    local want=$1 name=$2
    shift 2
    timeout 20 "$exe" "$@" >"$tmp/out" 2>"$tmp/err"   # a hang (e.g. on a FIFO) fails as exit 124
    local rc=$?
    if [ "$rc" != "$want" ]; then
        bad "ddx-inspect $*: exit $rc, want $want; stderr: $(head -c 300 "$tmp/err")"
        return
    fi
    if [ "$want" = 2 ]; then
        local lines
        lines=$(wc -l <"$tmp/err")
        if [ "$lines" != 1 ] || ! grep -q "^ddx-inspect: " "$tmp/err" || ! grep -qF -- "$name" "$tmp/err"; then
            bad "ddx-inspect $*: want one line naming '$name', got $lines line(s): $(head -c 300 "$tmp/err")"
            return
        fi
    fi
    ok
}

good_configs="comments_only crlf_bom dotted_keys empty empty_sections"
for f in ../configs/*.yaml; do
    expect 0 "" "$f"
    # The resolved config reads back to the same config.
    "$exe" "$f" >"$tmp/a.yaml" 2>/dev/null && "$exe" "$tmp/a.yaml" >"$tmp/b.yaml" 2>/dev/null &&
        diff -q <(grep -v '^#' "$tmp/a.yaml") <(grep -v '^#' "$tmp/b.yaml") >/dev/null && ok || bad "$f: emit -> load round trip differs"
done
for f in data/config/*.yaml; do
    base=$(basename "$f" .yaml)
    sum_before=$(md5sum "$f")
    if [[ " $good_configs " == *" $base "* ]]; then
        expect 0 "" "$f"
    else
        expect 2 "$f" "$f"
    fi
    [ "$(md5sum "$f")" = "$sum_before" ] && ok || bad "$f was modified"
done

cfg=../configs/cifar10_ddpm.yaml
expect 0 "" "$cfg" --set train.lr=1e-3 --set model.ch_mult=[1,2,2]
"$exe" "$cfg" --set train.lr=1e-3 2>/dev/null | grep -q "lr: 0.001" && ok || bad "--set train.lr=1e-3 not applied"
many=()
for i in $(seq 1 70); do many+=(--set "run.seed=$i"); done
"$exe" "$cfg" "${many[@]}" 2>"$tmp/err" | grep -qE "^  seed: 70( |$)" && ok || bad "70 --set options: the last one not applied: $(head -c 300 "$tmp/err")"
expect 2 "train.lr" "$cfg" --set train.lr=abc
expect 2 "train.lrr" "$cfg" --set train.lrr=1
expect 2 "model.attn_resolutions" "$cfg" --set model.attn_resolutions=[20]
expect 2 "nope.yaml" "$tmp/nope.yaml"
expect 2 "--set" "$cfg" --set
expect 2 "" "$cfg" extra-arg

# safetensors: a good file, then broken ones.
st=data/safetensors/ref_small.safetensors
expect 0 "" "$st"
"$exe" "$st" | grep -q "conv.weight *F32 *\[2, 1, 2, 3\]" && ok || bad "ref_small: conv.weight not listed"
size=$(stat -c %s "$st")
for n in 0 1 7 8 9 16 64 $((size / 2)) $((size - 1)); do
    head -c "$n" "$st" >"$tmp/trunc_$n.safetensors"
    expect 2 "trunc_$n.safetensors" "$tmp/trunc_$n.safetensors"
done
printf '\x00\x00\x00\x00\x00\x00\x00\x80{}' >"$tmp/huge_header.safetensors"   # header length 2^63
expect 2 "huge_header.safetensors" "$tmp/huge_header.safetensors"
head -c 4096 /dev/urandom >"$tmp/noise.safetensors"
expect 2 "noise.safetensors" "$tmp/noise.safetensors"
hdr='{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}'
{ printf "$(printf '\\x%02x' ${#hdr} 0 0 0 0 0 0 0)"; printf '%s' "$hdr"; head -c 12 /dev/zero; } >"$tmp/overlap.safetensors"
expect 2 "overlap.safetensors" "$tmp/overlap.safetensors"
mkdir "$tmp/dir.safetensors"
expect 2 "dir.safetensors" "$tmp/dir.safetensors"
expect 2 "missing.safetensors" "$tmp/missing.safetensors"
expect 2 "--set" "$st" --set a=b

# Inputs that are not regular files are refused at once: opening a FIFO must not wait for a writer.
mkfifo "$tmp/fifo.safetensors" "$tmp/fifo.yaml"
expect 2 "fifo.safetensors" "$tmp/fifo.safetensors"
expect 2 "fifo.yaml" "$tmp/fifo.yaml"
mkdir "$tmp/dir.yaml"
expect 2 "dir.yaml" "$tmp/dir.yaml"

# Columns line up whatever the name lengths, and a stored config (a multi-line metadata value)
# is printed whole, one YAML line per output line.
long=down.0.resnets.1.attentions.0.transformer_blocks.0.attn1.to_out.0.projection_weight_with_a_long_name
cfgval='run:\n  name: inspect_me\n  seed: 7\nmodel:\n  ch: 4\n  ch_mult: [1, 2]\n'
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do cfgval+="  # padding line $i that makes the stored config longer than any fixed buffer\n"; done
cfgval+='train:\n  lr: 0.0001\n'
hdr='{"__metadata__":{"config":"'$cfgval'","format":"x"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
hdr+='"'$long'":{"dtype":"F32","shape":[3,4],"data_offsets":[8,56]},"b":{"dtype":"F32","shape":[1],"data_offsets":[56,60]}}'
n=${#hdr}
{ printf "$(printf '\\x%02x' $((n & 255)) $((n >> 8)) 0 0 0 0 0 0)"; printf '%s' "$hdr"; head -c 60 /dev/zero; } >"$tmp/long.safetensors"
expect 0 "" "$tmp/long.safetensors"
"$exe" "$tmp/long.safetensors" >"$tmp/long.out" 2>&1
cols=$(grep ' F32 ' "$tmp/long.out" | awk '{ print index($0, " F32 ") " " index($0, "[") " " index($0, " bytes") - length($(NF-1)) }' | sort -u)
[ "$(grep -c ' F32 ' "$tmp/long.out")" = 3 ] && [ "$(printf '%s\n' "$cols" | wc -l)" = 1 ] && ok ||
    bad "long names: columns not aligned:$(printf '\n'; cat "$tmp/long.out")"
grep -qx '  __metadata__ config =' "$tmp/long.out" && grep -qx '    run:' "$tmp/long.out" &&
    grep -qx '      seed: 7' "$tmp/long.out" && grep -qx '    train:' "$tmp/long.out" &&
    grep -qx '      lr: 0.0001' "$tmp/long.out" && ! grep -q '?' "$tmp/long.out" && ok ||
    bad "stored config not printed whole, line by line:$(printf '\n'; cat "$tmp/long.out")"
expect 2 "notes.txt" notes.txt
expect 2 "" 

echo "cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
