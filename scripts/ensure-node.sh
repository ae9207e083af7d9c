#!/usr/bin/env bash
# Installs (once) the AWS SDK for JavaScript v3 from scripts/node/package-lock.json
# into ${POD_IDENTITY_CACHE:-~/.cache/pod-identity-rs}/npm and prints that
# folder. Reinstalls when the lock file changes. Needs node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${POD_IDENTITY_CACHE:-$HOME/.cache/pod-identity-rs}"
dir="$cache/npm"
lock="scripts/node/package-lock.json"
stamp="$dir/.lock.sha256"
want="$(sha256sum "$lock" | cut -d' ' -f1)"
command -v node >/dev/null || { echo "ensure-node: node is not installed" >&2; exit 1; }
if [[ ! -d "$dir/node_modules/@aws-sdk/credential-providers" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  mkdir -p "$dir"
  cp scripts/node/package.json "$lock" "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --silent >&2)
  echo "$want" > "$stamp"
fi
echo "$dir"
