#!/usr/bin/env bash
# Runs the main job on the embedded default (local executor, SQLite warehouse ./cifar-ops.db).
# Data: the CIFAR-10 JPEG training set in ../shared/data when it is there (unpacked once into
# .cache/data), else the official archive, which `cifar-ops run` downloads and checksums.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$1
CONFIG=$2
shift 2
args=(--config "$CONFIG")
archive=../shared/data/cifar10-train-jpeg.tar.gz
if [ -f "$archive" ]; then
  if [ ! -d .cache/data/train ]; then
    mkdir -p .cache/data
    tar xzf "$archive" -C .cache/data
  fi
  args+=(--set data.source=folder --set data.dir=.cache/data)
fi
exec "$PY" -m cifar_ops run "${args[@]}" "$@"
