#!/usr/bin/env bash
# Ensures Debian's Prometheus server and promtool are installed (apt, root)
# and prints the directory holding `prometheus` and `promtool`. The
# monitoring tests (tests/tests/monitoring.rs) check the chart's alert rules
# with promtool and run a real Prometheus against the real binaries.
set -euo pipefail
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "ensure-prometheus: installing Debian's prometheus" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2
fi
dirname "$(command -v promtool)"
