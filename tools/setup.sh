#!/usr/bin/env bash
# Fresh machine -> built ddx -> the main job: installs the Debian packages (tools/install-deps.sh),
# builds with meson into build/ (CUDA backend too when nvcc is found), then trains the default
# config (DDPM on Fashion-MNIST, about 10 minutes on 2 CPU cores) into
# outputs/fashion_mnist_ddpm_<timestamp>/, leaving sample grids in its samples/ folder.
# Extra arguments go to ddx-train (e.g. --set train.total_steps=200 for a quick look).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
export PATH="$PATH:/usr/local/cuda/bin"
[ -f build/build.ninja ] || meson setup build
ninja -C build
build/train/ddx-train configs/fashion_mnist_ddpm.yaml "$@"
