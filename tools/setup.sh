#!/usr/bin/env bash
# Fresh machine -> built ddx -> the main job. Installs the Debian packages (tools/install-deps.sh),
# builds with meson into build/ (CUDA backend too when nvcc is found), then runs the main job.
# Until ddx-train lands (issue "Train and sample end to end"), the main job is the CPU op benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
export PATH="$PATH:/usr/local/cuda/bin"
[ -f build/build.ninja ] || meson setup build
ninja -C build
build/bench/ddx-bench ops
