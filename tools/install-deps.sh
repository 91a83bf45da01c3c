#!/usr/bin/env bash
# Installs what ddx needs on Debian/Ubuntu (run as root or with sudo). Idempotent.
# The CUDA toolkit is not installed here: when nvcc is on PATH (or in /usr/local/cuda) the
# build adds the CUDA backend, otherwise it builds CPU-only and says so.
set -euo pipefail
pkgs=(meson ninja-build pkg-config gcc python3 python3-pip libyaml-dev libstb-dev libopenblas-dev zlib1g-dev
      libopenmpi-dev openmpi-bin dataset-fashion-mnist
      chromium fonts-dejavu-core)   # the run report's headless-browser test (tests/test_report_browser.sh)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
