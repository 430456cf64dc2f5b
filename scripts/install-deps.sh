#!/usr/bin/env bash
# Install quantfs's build and test dependencies from Debian 12's packages (root or sudo).
set -euo pipefail
# clang and its runtime (libFuzzer, ASan, UBSan): the fuzz targets (tests/fuzz/run.sh).
pkgs=(meson ninja-build pkg-config gcc libfuse3-dev fuse3 libssl-dev libxxhash-dev libjansson-dev
      python3 nodejs npm systemd util-linux clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from elsewhere than Debian (e.g. a newer Node.js): accept them on PATH.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
