#!/usr/bin/env bash
# Build what bench/gpu/run.sh installs on a GPU machine that has JAX but no TensorFlow and no
# network: the project's wheel and the pure-Python (or small compiled) packages its engine needs
# beyond that machine's image (jax, numpy, pandas, scikit-learn, pyyaml, rich, typer, pillow,
# prometheus-client, pyarrow, jinja2, matplotlib). Run here, with network; wheels/ must stay
# under 64 MiB, as everything carried to the machine must.
#   bash bench/gpu/prepare.sh [PYTHON_VERSIONS...]   (default: 3.11 3.12, the project's range)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
wheels="$here/wheels"
versions=("${@:-3.11 3.12}")
read -r -a versions <<<"${versions[*]}"
rm -rf "$wheels" && mkdir -p "$wheels"
# from a copy of the tracked files, so no stale build/ leaks into the wheel
source="$(mktemp -d)"
trap 'rm -rf "$source"' EXIT
git -C "$repo" ls-files -z | (cd "$repo" && xargs -0 cp --parents -t "$source" 2>/dev/null || true)
"$python" -m pip wheel --quiet --no-deps -w "$wheels" "$source"
# the versions this checkout's environment runs (and tests) pin what is downloaded
pins="$wheels/pins.txt"
names="$(grep -v '^#' "$here/requirements.txt" | sed 's/[<>=!~ ].*//' | tr '_' '-' | sort -u)"
"$python" -m pip freeze | tr '_' '-' | grep -i -x -E "($(echo $names | tr ' ' '|'))==.*" >"$pins"
[[ $(wc -l <"$pins") -eq $(echo "$names" | wc -l) ]] || {
  echo "not all of requirements.txt is installed in $python's environment" >&2; exit 1; }
for version in "${versions[@]}"; do
  "$python" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --python-version "$version" \
    -d "$wheels" -r "$pins"
done
bytes=$(du -sb "$wheels" | cut -f1)
echo "wheels: $(ls "$wheels" | wc -l) files, $((bytes / 1048576)) MiB in $wheels"
if (( bytes >= 64 * 1048576 )); then
  echo "wheels/ is over 64 MiB: it cannot be carried to the GPU machine" >&2
  exit 1
fi
