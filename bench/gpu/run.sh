#!/usr/bin/env bash
# The GPU benchmark: seconds to 94% held-out accuracy and training images/s of the `fast` net
# (jobs/configs/fast_gpu.yaml) on KERAS_BACKEND=jax with the device data path, on a machine with
# JAX and no TensorFlow. Needs bench/gpu/wheels/ (bash bench/gpu/prepare.sh, run beforehand
# where there is network) and the CIFAR-10 training JPEGs (shared/data/cifar10-train-jpeg.tar.gz
# beside or inside the checkout; 10% held out as the test split).
#   bash bench/gpu/run.sh [EXTRA time_to_accuracy.py ARGS...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${WORK:-${TMPDIR:-/tmp}/cifar-ops-gpu-bench}"
python="${PYTHON:-python3}"
archive="${ARCHIVE:-}"
for candidate in "$repo/shared/data/cifar10-train-jpeg.tar.gz" \
  "$repo/../shared/data/cifar10-train-jpeg.tar.gz"; do
  [[ -z "$archive" && -f "$candidate" ]] && archive="$candidate"
done
[[ -n "$archive" ]] || { echo "no cifar10-train-jpeg.tar.gz: set ARCHIVE=" >&2; exit 2; }
[[ -d "$here/wheels" ]] || { echo "no $here/wheels: run bench/gpu/prepare.sh first" >&2; exit 2; }

# Into a folder on PYTHONPATH, not a venv: the machine's python3 is itself a venv
# (/opt/torch/.venv), and a venv made from it with --system-site-packages sees the base
# interpreter's packages, not that venv's jax.
mkdir -p "$work"
site="$work/site"
rm -rf "$site"
"$python" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" \
  --find-links "$here/wheels" -r "$here/wheels/pins.txt" "$here"/wheels/cifar_ops-*.whl
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
if [[ ! -f "$work/data/.complete" ]]; then
  mkdir -p "$work/data" && tar -xzf "$archive" -C "$work/data" && touch "$work/data/.complete"
fi
data_dir="$(dirname "$(find "$work/data" -mindepth 2 -name '*.jpg' -print -quit)")/.."

export KERAS_BACKEND=jax CIFAR_OPS_DATA_CACHE="$work/cache"
"$python" -c "import jax; print('devices:', jax.devices())"
"$python" "$repo/bench/time_to_accuracy.py" \
  --config "$repo/jobs/configs/fast_gpu.yaml" --target 0.94 \
  --set data.source=folder --set "data.dir=$data_dir" --set data.pipeline=device "$@" \
  | tee "$work/result.log"
"$python" - "$work/result.log" <<'PY'
import json, sys
result = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][-1]
print(f"backend {result['backend']}, {result['pipeline']} path, {result['train_images']} images")
print(f"seconds to {result['target']:.0%} held-out: {result['seconds_to_target']} "
      f"(warm: {result['warm_seconds_to_target']}; reached at epoch {result['reached_at_epoch']}, "
      f"final {result['final_accuracy']:.4f})")
print(f"training images/s (median epoch): {result['images_per_second']:.0f}")
PY
