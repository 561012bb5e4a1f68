#!/usr/bin/env bash
# install-deps.sh: installs every Debian package multigrain needs, and only the missing ones.
# Idempotent: when everything is present it does nothing (no apt-get update, no network).
# Usage: scripts/install-deps.sh [--all|--build|--test|--demo|--bench] [--print]   (default --all)
#   --bench   what bench/run.sh (make bench) needs: the build and test packages, GNU time, and
#             node + npm for ONNX Runtime (Debian's nodejs and npm; a node already on PATH, from
#             any source, counts)
#   --print   print the missing packages, one per line, and install nothing
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
bench_pkgs=(
  time
)

mode=--all
print=0
for a in "$@"; do
  case "$a" in
    --all|--build|--test|--demo|--bench) mode=$a ;;
    --print) print=1 ;;
    *) echo "install-deps.sh: unknown option '$a' (expected --all, --build, --test, --demo, --bench or --print)" >&2; exit 2 ;;
  esac
done
case "$mode" in
  --build) want=("${build_pkgs[@]}") ;;
  --test)  want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  --demo)  want=("${build_pkgs[@]}" "${demo_pkgs[@]}") ;;
  --bench) want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  --all)   want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${demo_pkgs[@]}") ;;
esac

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
# node and npm by command, not by package: NodeSource's nodejs package carries its own npm and
# conflicts with Debian's npm package.
if [ "$mode" = --bench ]; then
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
if [ "$print" = 1 ]; then
  [ ${#missing[@]} -eq 0 ] || printf '%s\n' "${missing[@]}"
  exit 0
fi
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
