#!/usr/bin/env bash
# Builds every Lambda function for arm64 (provided.al2023) into the zips infra/template.yaml
# points at, target/lambda/<bin>/bootstrap.zip, then prints their sizes (make package).
# cargo-lambda and the zig it links with come from infra/tools.sh.
#
# librdkafka (rdkafka-sys) is built by its own ./configure and make, which take the C compiler
# from CC, CXX, AR and RANLIB rather than from the per-target variables cargo-lambda sets; they
# point at zig for aarch64 here, and the host's own compiler is named per host triple so that
# anything built for the host keeps it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CACHE=${SAGAFLOW_CACHE:-$HOME/.cache/sagaflow}
TOOLS=$CACHE/infra-venv/bin
TARGET=aarch64-unknown-linux-gnu
ZIG_TARGET=aarch64-linux-gnu.2.17
infra/tools.sh
export PATH="$TOOLS:$PATH" # cargo-lambda, and the python whose ziglang it runs

# The functions the template deploys, one binary each of sagaflow-lambdas, from the topology.
BINARIES=$(cargo run --quiet -p sagaflow-records --bin topology -- --binaries)

if ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "package: adding the Rust target $TARGET (rustup downloads it)"
  rustup target add "$TARGET" || {
    echo "package: rustup could not add $TARGET (it downloads the target's standard library)" >&2
    exit 1
  }
fi

# zig wrappers for librdkafka's configure/make (see the top of this file).
ZIG_BIN=$ROOT/target/infra/zig-$TARGET
mkdir -p "$ZIG_BIN"
for tool in cc c++ ar ranlib; do
  case $tool in
    cc | c++) args="$tool -target $ZIG_TARGET" ;;
    *) args=$tool ;;
  esac
  printf '#!/bin/sh\nexec "%s" -m ziglang %s "$@"\n' "$TOOLS/python" "$args" > "$ZIG_BIN/$tool"
  chmod +x "$ZIG_BIN/$tool"
done
HOST=$(rustc -vV | sed -n 's/^host: //p' | tr - _)
export "CC_$HOST=${CC:-cc}" "CXX_$HOST=${CXX:-c++}" "AR_$HOST=${AR:-ar}"
export CC=$ZIG_BIN/cc CXX=$ZIG_BIN/c++ AR=$ZIG_BIN/ar RANLIB=$ZIG_BIN/ranlib
# zig's lld rejects librdkafka.so's version script naming a symbol the build leaves out.
export LDFLAGS="${LDFLAGS:+$LDFLAGS }-Wl,--undefined-version"

echo "package: cargo lambda build --release --arm64 --output-format zip -p sagaflow-lambdas"
cargo lambda build --release --arm64 --output-format zip -p sagaflow-lambdas

echo
printf '%-14s %10s  %s\n' function KiB zip
for bin in $BINARIES; do
  zip=target/lambda/$bin/bootstrap.zip
  if [ -f "$zip" ]; then
    printf '%-14s %10d  %s\n' "$bin" $((($(wc -c < "$zip") + 1023) / 1024)) "$zip"
  else
    printf '%-14s %10s  %s\n' "$bin" missing "$zip"
    status=1
  fi
done
exit "${status:-0}"
