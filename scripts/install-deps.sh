#!/usr/bin/env bash
# install-deps.sh: installs every Debian package multigrain needs, and only the missing ones.
# Idempotent: when everything is present it does nothing (no apt-get update, no network).
# Usage: scripts/install-deps.sh [--all|--build|--test]   (default --all)
set -euo pipefail

build_pkgs=(
  build-essential cmake pkg-config
  libopenblas-dev liblapacke-dev libdnnl-dev
  libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev libyaml-dev libcjson-dev libzip-dev
  libopenmpi-dev openmpi-bin
  libcmocka-dev
)
test_pkgs=(
  python3-numpy python3-torch python3-torchvision python3-pil
)
demo_pkgs=(
  dataset-fashion-mnist
)

mode=${1:---all}
case "$mode" in
  --build) want=("${build_pkgs[@]}") ;;
  --test)  want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  --demo)  want=("${build_pkgs[@]}" "${demo_pkgs[@]}") ;;
  --all)   want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${demo_pkgs[@]}") ;;
  *) echo "install-deps.sh: unknown option '$mode' (expected --all, --build, --test or --demo)" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Update the package lists once, only when an install is needed.
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
