#!/bin/sh
# Install the reference llama.cpp libraries (npm package @node-llama-cpp/linux-x64@3.22.1,
# llama.cpp "v0.5.0", ggml 0.25.1) into DIR (default: build/npm) unless they are already
# there, then print the directory holding libllama.v0.5.0.so.
#   usage: tests/setup-ref.sh [DIR]
set -eu

PKG='@node-llama-cpp/linux-x64'
VERSION='3.22.1'
DIR=${1:-build/npm}
LIBDIR="$DIR/node_modules/$PKG/bins/linux-x64"

installed_version() {
    pj="$DIR/node_modules/$PKG/package.json"
    [ -f "$pj" ] || return 0
    sed -n 's/^[[:space:]]*"version"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$pj" | head -n 1
}

complete() {
    [ "$(installed_version)" = "$VERSION" ] &&
        [ -f "$LIBDIR/libggml-base.so" ] &&
        [ -f "$LIBDIR/libggml.v0.5.0.so" ] &&
        [ -f "$LIBDIR/libllama.v0.5.0.so" ] &&
        ls "$LIBDIR"/libggml-cpu-*.so >/dev/null 2>&1
}

if ! complete; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "setup-ref.sh: npm not found; install Node.js/npm to fetch $PKG@$VERSION" >&2
        exit 1
    fi
    mkdir -p "$DIR"
    if ! npm install --prefix "$DIR" --ignore-scripts --no-audit --no-fund \
            --loglevel=error "$PKG@$VERSION" >&2; then
        echo "setup-ref.sh: 'npm install $PKG@$VERSION' into $DIR failed" >&2
        exit 1
    fi
    if ! complete; then
        echo "setup-ref.sh: $PKG@$VERSION installed into $DIR but $LIBDIR lacks the llama.cpp libraries" >&2
        exit 1
    fi
fi

cd "$LIBDIR" && pwd
