#!/usr/bin/env bash
# Newcomer's command: install dependencies, build, and mount.
#   ./quickstart.sh [MODELS_DIR]
# Without MODELS_DIR, generates a small demo Llama model with the project's own generator
# (./demo-models/demo-llama) and mounts it. The mount point is ./mnt.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-deps.sh
[ -d build ] || meson setup build --buildtype=release
ninja -C build
src="${1:-}"
if [ -z "$src" ]; then
  src=demo-models
  if [ ! -d demo-models/demo-llama ]; then
    mkdir -p demo-models
    ./build/tools/qfs-genmodel --out demo-models/demo-llama --hidden 256 --layers 4 --heads 8 \
      --kv-heads 4 --ff 768 --vocab 512 --seed 1
  fi
fi
mkdir -p mnt
if mountpoint -q mnt; then fusermount3 -u mnt; fi
./build/fs/quantfs "$src" mnt
cat <<MSG
quantfs is serving $src at $(pwd)/mnt
  ls mnt/*/                         # original files plus <model>.<TYPE>.gguf, <model>.awq.safetensors
                                    # and <model>.awq/ (an AWQ model directory; -o noawq: none)
  llama-cli -m mnt/<model>/<model>.Q4_K_M.gguf -p "Once upon a time"   # any llama.cpp tool
  # transformers/vLLM (with autoawq): load mnt/<model>/<model>.awq as a 4-bit AWQ model
  # or, with llama.cpp's libraries from npm (bash tests/setup-ref.sh build/npm):
  #   QFS_LLAMA_LIB_DIR=build/npm/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64 \
  #     build/tests/ref/qfs-llama-ref generate mnt/<model>/<model>.Q4_K_M.gguf 32 "Once upon a time"
  quantfs status mnt                # what has been quantized and served (./build/fs/quantfs)
  fusermount3 -u mnt                # unmount
MSG
