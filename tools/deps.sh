#!/usr/bin/env bash
# Installs the Debian 12 packages FaceVerLoss needs (as root, or through sudo when available).
# Quick when everything is already there: apt runs only for missing packages.
set -euo pipefail
PKGS=(build-essential cmake pkg-config lua5.4 liblua5.4-dev libopenblas-openmp-dev check libcairo2-dev
      libsqlite3-dev libpq-dev postgresql libreadline-dev zlib1g-dev dataset-fashion-mnist tmux)
PKGS+=(libturbojpeg0-dev libpng-dev)   # face images: JPEG (libjpeg-turbo) and PNG
PKGS+=(libopenmpi-dev openmpi-bin)   # several processes: MPI (fvl.dist)
PKGS+=(lua-argparse)   # option parsing in scripts/ (DEVELOPERS.md)
PKGS+=(libgif-dev)   # animated GIFs (fvl.plot.animation)
PKGS+=(clang libclang-rt-14-dev libomp-dev)   # the libFuzzer targets of .ci/run (tests/fuzz/run.sh)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO=sudo
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
