#!/usr/bin/env bash
# Per-kernel resource report for kernels/*.cu: registers, spill stores/loads, stack, shared
# memory, as ptxas sees them for the SASS target (sm_90a by default).
#
#   bench/ptxas_report.sh [file.cu ...]      (default: every kernels/*.cu)
#
# Uses the nvcc flags of kernels/meson.build with ptxas -v added (what -Dptxas_verbose=true
# adds to a build; the normal build leaves the report out of its log) and without -Werror, so
# that a spilling kernel is reported rather than aborting the report. Compiles in a temporary
# folder, not in a build dir. Exits 1 if any kernel spills or uses a stack frame, 2 if a file
# does not compile. Needs no GPU.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

nvcc=$(command -v nvcc || true)
[ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
if [ -z "$nvcc" ]; then
    echo "ptxas_report: nvcc not found (PATH or /usr/local/cuda/bin)" >&2
    exit 2
fi
# As in kernels/meson.build, the project root is the only include path: kernels include
# nothing but kernels/ headers.
incs=(-I.)
cfgdir=$(mktemp -d)
trap 'rm -rf "$cfgdir"' EXIT

# Keep in step with kernels/meson.build (ddx_cuda_arch default from meson_options.txt); the -v
# here is what the table is read from.
arch=${DDX_CUDA_ARCH:-"-gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_80,code=compute_80"}
# shellcheck disable=SC2054  # the commas belong to one -Xptxas argument
flags=(-O3 -std=c++17 --expt-relaxed-constexpr -lineinfo -Xptxas=-v,-warn-spills,-warn-lmem-usage
       -Xcompiler=-fPIC,-Wall,-Wextra)
# shellcheck disable=SC2206
flags+=($arch)

files=("$@")
[ ${#files[@]} -eq 0 ] && files=(kernels/*.cu)

status=0
# Compile every file at once (nvcc is single-threaded per file), then read the logs.
for f in "${files[@]}"; do
    (
        log="$cfgdir/$(basename "$f").log"
        "$nvcc" "${flags[@]}" "${incs[@]}" -c "$f" -o "$cfgdir/$(basename "$f").o" >"$log" 2>&1
        echo $? >"$log.rc"
    ) &
done
wait
printf '%-14s %-72s %5s %7s %7s %6s %7s\n' file kernel regs spill_st spill_ld stack smem
: >"$cfgdir/rows"
for f in "${files[@]}"; do
    log="$cfgdir/$(basename "$f").log"
    if [ "$(cat "$log.rc")" != 0 ]; then
        echo "ptxas_report: $f does not compile:" >&2
        cat "$log" >&2
        status=2
        continue
    fi
    # One record per "Compiling entry function 'X' for 'sm_NN'" block; only SASS targets
    # get register numbers, the PTX-only target is skipped by ptxas anyway.
    awk -v file="$(basename "$f")" '
        /Compiling entry function/ { match($0, /function .[^'"'"']*/); name = substr($0, RSTART + 10, RLENGTH - 10);
                                     stack = st = ld = regs = smem = 0 }
        /bytes stack frame/ { stack = $1; st = $5; ld = $9 }
        /Used [0-9]+ registers/ { for (i = 1; i <= NF; i++) { if ($i ~ /^registers/) regs = $(i-1);
                                                              if ($i ~ /^smem/) smem = $(i-2) }
                                  print file "\t" name "\t" regs "\t" st "\t" ld "\t" stack "\t" smem }
    ' "$log" >>"$cfgdir/rows"
done
# Demangle all names in one c++filt call (one process per kernel was most of the run time),
# then drop the anonymous-namespace prefix and argument lists: the template name is what matters.
cut -f2 "$cfgdir/rows" | { c++filt 2>/dev/null || cat; } | sed -e 's/(anonymous namespace):://g' -e 's/(.*$//' >"$cfgdir/names"
while IFS=$'\t' read -r file _ regs st ld stack smem <&3 && IFS= read -r name <&4; do
    printf '%-14s %-72.72s %5s %7s %7s %6s %7s\n' "$file" "$name" "$regs" "$st" "$ld" "$stack" "$smem"
    if [ "$st" != 0 ] || [ "$ld" != 0 ] || [ "$stack" != 0 ]; then
        echo "  ^ SPILL/STACK: $name" >&2
        [ $status -eq 0 ] && status=1
    fi
done 3<"$cfgdir/rows" 4<"$cfgdir/names"
exit $status
