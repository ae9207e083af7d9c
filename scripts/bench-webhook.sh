#!/usr/bin/env bash
# The webhook's HTTPS throughput next to the limit of this machine, in one run:
# nginx (Debian's nginx-light, 2 workers) answering a fixed body of the
# webhook's response size over TLS with the same certificate, and the release
# webhook with 50,000 ServiceAccounts from a file (half annotated), both
# loaded by wrk (Debian's wrk: -t1 -c16, HTTP/1.1 keep-alive, POSTing a
# ~480-byte AdmissionReview for an annotated ServiceAccount), rounds
# interleaved. Prints req/s and p50/p99 per round, the medians and the ratio
# to nginx. A benchmark, not a test: nothing is asserted.
#
#   scripts/bench-webhook.sh                # 6 rounds of 10 s each
#   BENCH_ROUNDS=3 BENCH_SECONDS=5 scripts/bench-webhook.sh
#   BENCH_CONNECTIONS=1 scripts/bench-webhook.sh
#   BENCH_WEBHOOK_BIN=/path/to/other/pod-identity-webhook scripts/bench-webhook.sh
#
# Installs nginx-light and wrk with apt when missing (root). Everything runs on
# loopback and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${BENCH_ROUNDS:-6}"
seconds="${BENCH_SECONDS:-10}"
conns="${BENCH_CONNECTIONS:-16}"

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

if [ -n "${BENCH_WEBHOOK_BIN:-}" ]; then
  webhook="$BENCH_WEBHOOK_BIN"
else
  cargo build --release --locked -p pod-identity-webhook >&2
  webhook="${CARGO_TARGET_DIR:-target}/release/pod-identity-webhook"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null

# 50,000 ServiceAccounts, half annotated, and the review body.
python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
items = []
for i in range(50000):
    meta = {"name": f"sa-{i}", "namespace": f"ns-{i % 100}", "uid": f"uid-{i}"}
    if i % 2 == 0:
        meta["annotations"] = {"eks.amazonaws.com/role-arn": f"arn:aws:iam::111122223333:role/role-{i}"}
    items.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta})
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, open(f"{work}/sas.json", "w"))
review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
    "kind": {"group": "", "version": "v1", "kind": "Pod"},
    "resource": {"group": "", "version": "v1", "resource": "pods"},
    "operation": "CREATE", "namespace": "ns-42",
    "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app-1", "namespace": "ns-42"},
               "spec": {"serviceAccountName": "sa-42", "containers": [{"name": "app", "image": "app:1"}]}}}}
open(f"{work}/review.json", "w").write(json.dumps(review, separators=(",", ":")))
EOF

port="$(free_port)"; metrics_port="$(free_port)"; nginx_port="$(free_port)"
"$webhook" serve --bind-address=127.0.0.1 --port="$port" --metrics-port="$metrics_port" \
  --tls-cert="$work/tls.crt" --tls-key="$work/tls.key" \
  --service-accounts="$work/sas.json" --aws-default-region=us-west-2 \
  2>"$work/webhook.log" &
pids+=($!)
webhook_pid=$!
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$metrics_port/readyz" >/dev/null

# The webhook's own answer is the body nginx serves.
curl -fs --cacert "$work/tls.crt" -H 'content-type: application/json' \
  --data-binary @"$work/review.json" "https://localhost:$port/mutate" >"$work/response.json"
grep -q '"patch"' "$work/response.json" || { echo "the webhook did not patch: $(cat "$work/response.json")" >&2; exit 1; }

mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$nginx_port ssl;
    ssl_certificate $work/tls.crt;
    ssl_certificate_key $work/tls.key;
    location = /mutate {
      default_type application/json;
      return 200 '$(cat "$work/response.json")';
    }
  }
}
EOF
"$NGINX" -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
sleep 0.5

cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/review.json", "rb")
wrk.body = f:read("*a")
f:close()
EOF

run() { # name url -> "rps p50_ms p99_ms"
  wrk -t1 -c"$conns" -d"${seconds}s" --latency -s "$work/post.lua" "$2" 2>&1 | python3 -c '
import re, sys
out = sys.stdin.read()
def ms(v):
    n, u = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[u]
rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
print(rps, round(ms(p50), 3), round(ms(p99), 3), errors.group(1) if errors else 0)'
}

echo "| round | server | req/s | p50 ms | p99 ms | non-2xx |"
echo "| --- | --- | --- | --- | --- | --- |"
: >"$work/results"
for r in $(seq 1 "$rounds"); do
  for name in nginx webhook; do
    if [ "$name" = nginx ]; then url="https://localhost:$nginx_port/mutate"; else url="https://localhost:$port/mutate"; fi
    read -r rps p50 p99 errs < <(run "$name" "$url")
    echo "| $r | $name | $rps | $p50 | $p99 | $errs |"
    echo "$name $rps $p50 $p99" >>"$work/results"
  done
done
rss_kib="$(awk '/VmHWM/ {print $2}' "/proc/$webhook_pid/status")"
python3 - "$work/results" "$rss_kib" "$conns" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for name in ("nginx", "webhook"):
    r = [tuple(map(float, x[1:])) for x in rows if x[0] == name]
    med[name] = tuple(statistics.median(c) for c in zip(*r))
print()
print(f"medians over {len(rows)//2} rounds, {sys.argv[3]} connections:")
for name, (rps, p50, p99) in med.items():
    print(f"  {name}: {rps:.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms")
print(f"  webhook / nginx: {med['webhook'][0] / med['nginx'][0]:.2f}x")
print(f"  webhook peak RSS: {int(sys.argv[2]) / 1024:.1f} MiB")
EOF
