#!/bin/sh
# Build llama.cpp's own llama-quantize CLI, natively, from the source that the npm package
# node-llama-cpp@3.22.1 ships (package/llama/gitRelease.bundle, a git bundle of the
# llama.cpp the reference libraries were built from), into DIR (default:
# build/llama-quantize) unless it is already there; print the binary's path.  For the
# benchmarks only: the tests use the npm libraries (tests/setup-ref.sh).
#   usage: bench/build_llama_quantize.sh [DIR]
set -eu

VERSION='3.22.1'
DIR=${1:-build/llama-quantize}
BIN="$DIR/build/bin/llama-quantize"

if [ -x "$BIN" ]; then
    echo "$BIN"
    exit 0
fi
for tool in npm git cmake c++; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "build_llama_quantize.sh: $tool not found" >&2
        exit 1
    fi
done
mkdir -p "$DIR"
if [ ! -f "$DIR/package/llama/gitRelease.bundle" ]; then
    (cd "$DIR" && npm pack --silent "node-llama-cpp@$VERSION" >/dev/null &&
        tar xzf "node-llama-cpp-$VERSION.tgz" package/llama/gitRelease.bundle) || {
        echo "build_llama_quantize.sh: could not fetch node-llama-cpp@$VERSION" >&2
        exit 1
    }
fi
if [ ! -d "$DIR/src/.git" ]; then
    rm -rf "$DIR/src"
    git clone --quiet "$DIR/package/llama/gitRelease.bundle" "$DIR/src" >&2
fi
# Native flags (the tool a user would build); no network, no server, static.
cmake -S "$DIR/src" -B "$DIR/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DGGML_OPENMP=ON >&2
cmake --build "$DIR/build" --target llama-quantize -j "$(nproc)" >&2
echo "$BIN"
