#!/usr/bin/env bash
# Builds the container image the chart installs, without any registry:
# static release binaries of both programs (x86_64-unknown-linux-gnu with
# crt-static; glibc 2.36 resolves host names without NSS modules since
# 2.34), the host's CA bundle and a passwd entry, assembled FROM scratch by
# podman with the Containerfile. Prints the image reference as its last line.
#
#   scripts/build-image.sh                    # localhost/pod-identity:<version>
#   IMAGE=registry.example/pod-identity:1 scripts/build-image.sh
#
# Installs podman, runc and ca-certificates with apt when missing (root).
set -euo pipefail
cd "$(dirname "$0")/.."

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
image="${IMAGE:-localhost/pod-identity:$version}"
target=x86_64-unknown-linux-gnu

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --target keeps crt-static away from build scripts and proc macros.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" -p pod-identity-webhook -p credential-agent >&2
bin="${CARGO_TARGET_DIR:-target}/$target/release"

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
for b in pod-identity-webhook credential-agent; do
  case "$(LC_ALL=C ldd "$bin/$b" 2>&1)" in
    *"statically linked"*|*"not a dynamic executable"*) ;;
    *) echo "$bin/$b is not statically linked" >&2; exit 1 ;;
  esac
  cp "$bin/$b" "$context/$b"
  strip "$context/$b"
done
mkdir -p "$context/etc"
echo 'nonroot:x:65532:65532:nonroot:/:/sbin/nologin' >"$context/etc/passwd"
echo 'nonroot:x:65532:' >"$context/etc/group"
cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
podman build --quiet -f Containerfile -t "$image" "$context" >&2
echo "$image"
