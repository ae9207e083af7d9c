#!/usr/bin/env bash
# Creates (once) a Python venv with scripts/requirements-test.txt under
# ${POD_IDENTITY_CACHE:-~/.cache/pod-identity-rs}/venv and prints its path.
# Reinstalls when the requirements file changes.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${POD_IDENTITY_CACHE:-$HOME/.cache/pod-identity-rs}"
venv="$cache/venv"
req="scripts/requirements-test.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  mkdir -p "$cache"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  echo "$want" > "$stamp"
fi
for tool in moto_server aws python; do
  [[ -x "$venv/bin/$tool" ]] || { echo "ensure-python: $venv/bin/$tool missing" >&2; exit 1; }
done
echo "$venv"
