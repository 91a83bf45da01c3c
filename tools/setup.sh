#!/usr/bin/env bash
# Fresh machine -> built ddx -> the main job: installs the Debian packages (tools/install-deps.sh),
# builds with meson into build/, then trains the default config (DDPM on Fashion-MNIST, about 10
# minutes on 2 CPU cores) into outputs/fashion_mnist_ddpm_<timestamp>/, leaving sample grids in
# its samples/ folder. With a GPU (and nvcc found) build/ has the CUDA backend too; without one
# it is configured CPU-only, which builds in a fraction of the time (the CUDA kernels are most
# of the build) and trains the same.
# Extra arguments go to ddx-train (e.g. --set train.total_steps=200 for a quick look).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
export PATH="$PATH:/usr/local/cuda/bin"
if [ ! -f build/build.ninja ]; then
    if { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; } || [ -e /dev/nvidia0 ]; then
        meson setup build
    else
        echo "no GPU found: building the CPU backend only (seconds); \`meson setup build-cuda && ninja -C build-cuda\` builds the CUDA backend too (about 2 minutes on 2 idle cores)"
        meson setup build -Dcuda=disabled
    fi
fi
ninja -C build
build/train/ddx-train configs/fashion_mnist_ddpm.yaml "$@"
