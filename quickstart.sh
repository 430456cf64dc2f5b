#!/usr/bin/env bash
# Newcomer's command: install dependencies, build, mount, and generate text from a mounted
# GGUF file with llama.cpp's libraries.
#   ./quickstart.sh [MODELS_DIR]
# Without MODELS_DIR, generates a small demo Llama model with the project's own generator
# (./demo-models/demo-llama, random weights: the text is gibberish) and mounts it. The mount
# point is ./mnt. llama.cpp's libraries come from npm (@node-llama-cpp/linux-x64, the ones
# the tests compare with) into build/npm; without npm the last step is skipped.
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
bash scripts/install-deps.sh
[ -d build ] || meson setup build --buildtype=release
# Only what this script runs; `bash tests/run-all.sh` builds and runs everything.
ninja -C build fs/quantfs tools/qfs-genmodel tests/ref/qfs-llama-ref
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
quantfs is serving $src at $here/mnt
  ls mnt/*/                         # original files plus <model>.<TYPE>.gguf, <model>.awq.safetensors
                                    # and <model>.awq/ (an AWQ model directory; -o noawq: none)
  llama-cli -m mnt/<model>/<model>.Q4_K_M.gguf -p "Once upon a time"   # any llama.cpp tool
  # transformers/vLLM (with autoawq): load mnt/<model>/<model>.awq as a 4-bit AWQ model
  ./build/fs/quantfs status mnt     # what has been quantized and served
  cat mnt/.quantfs/metrics          # the same counters for Prometheus
  fusermount3 -u mnt                # unmount
MSG

# Text from a mounted file, with llama.cpp's own libraries.
gguf=$(find mnt -maxdepth 2 -name '*.Q4_K_M.gguf' 2>/dev/null | sort | head -n 1)
lib=""
if [ -n "$gguf" ]; then
  lib=$(sh tests/setup-ref.sh build/npm) || lib=""
fi
if [ -n "$gguf" ] && [ -n "$lib" ]; then
  ref="$here/build/tests/ref/qfs-llama-ref"
  file="$here/$gguf"
  echo
  echo "llama.cpp (its npm libraries, loaded by qfs-llama-ref) generating 32 tokens from $gguf:"
  printf '  QFS_LLAMA_LIB_DIR=%q %q generate %q 32 "Once upon a time"\n' "$lib" "$ref" "$file"
  QFS_LLAMA_LIB_DIR="$lib" "$ref" generate "$file" 32 "Once upon a time" | sed 's/^/  | /'
elif [ -z "$gguf" ]; then
  echo "(no <model>.Q4_K_M.gguf in mnt: see the log lines above for why)"
else
  echo "(llama.cpp's libraries could not be installed from npm: see above;"
  echo " afterwards: QFS_LLAMA_LIB_DIR=\$(sh tests/setup-ref.sh build/npm) \\"
  echo "   build/tests/ref/qfs-llama-ref generate mnt/<model>/<model>.Q4_K_M.gguf 32 \"Once upon a time\")"
fi
