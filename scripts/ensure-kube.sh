#!/usr/bin/env bash
# Ensures a real Kubernetes control plane and node exist: kube-apiserver,
# kube-controller-manager, kubelet and kubectl (v1.20.2, built once from
# Debian's source package), etcd, and for the node Debian's containerd, runc,
# CNI plugins and busybox-static. Prints the directory holding kube-apiserver,
# kube-controller-manager, kubelet, kubectl and etcd.
#
# If KUBE_ASSETS (or KUBEBUILDER_ASSETS) names a directory that already holds
# all of them, it is used as is. Otherwise the build is cached in
# ${POD_IDENTITY_CACHE:-$HOME/.cache/pod-identity-rs}/kube (outside the repo).
set -euo pipefail

log() { echo "ensure-kube: $*" >&2; }
bins=(kube-apiserver kube-controller-manager kubelet kubectl)
complete() {
  for b in "${bins[@]}" etcd; do [ -x "$1/$b" ] || return 1; done
}

# The node's runtime, from Debian (checked every run: cheap, and a cached
# kube folder does not carry packages to a new machine).
need=()
for p in containerd runc containernetworking-plugins busybox-static; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

for d in "${KUBE_ASSETS:-}" "${KUBEBUILDER_ASSETS:-}"; do
  if [ -n "$d" ] && complete "$d"; then
    echo "$d"; exit 0
  fi
done

cache="${POD_IDENTITY_CACHE:-$HOME/.cache/pod-identity-rs}/kube"
out="$cache/bin"
if complete "$out"; then
  echo "$out"; exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if complete "$out"; then
  echo "$out"; exit 0
fi

need=()
command -v go >/dev/null || need+=(golang-go)
[ -x /usr/bin/etcd ] || need+=(etcd-server)
command -v rsync >/dev/null || need+=(rsync)
[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need+=(golang-github-modern-go-reflect2-dev)
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

src="$cache/src"
mkdir -p "$src/lists/partial" "$src/cache/archives/partial"
echo "deb-src http://deb.debian.org/debian bookworm main" >"$src/src.list"
aptopts=(-o Dir::Etc::SourceList="$src/src.list" -o Dir::Etc::SourceParts=/dev/null
         -o Dir::State::Lists="$src/lists" -o Dir::Cache="$src/cache")
tree="$src/kubernetes-1.20.2"
if [ ! -d "$tree" ]; then
  log "downloading Debian's kubernetes source package"
  apt-get "${aptopts[@]}" update -qq >&2
  (cd "$src" && apt-get "${aptopts[@]}" source -d kubernetes=1.20.5+really1.20.2-1.1+deb12u1 >&2)
  orig=$(ls "$src"/kubernetes_*.orig.tar.gz | head -1)
  tar -C "$src" -xzf "$orig"
  # Go >= 1.18 crashes in the vendored reflect2 1.0.1; use Debian's 1.0.2.
  r2="$tree/vendor/github.com/modern-go/reflect2"
  rm -f "$r2"/*.go "$r2"/*.s
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$r2"/
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$r2"/ 2>/dev/null || true
fi
log "building ${bins[*]} (several minutes, once)"
# Go's build cache inside the cache folder, removed with the source tree below.
started=$SECONDS
(cd "$tree" && GOCACHE="$src/gocache" make WHAT="${bins[*]/#/cmd/}" >&2)
log "built in $((SECONDS - started)) s"
mkdir -p "$out.tmp"
for b in "${bins[@]}"; do cp "$tree/_output/bin/$b" "$out.tmp/"; done
ln -sf /usr/bin/etcd "$out.tmp/etcd"
rm -rf "$out"; mv "$out.tmp" "$out"
rm -rf "$tree" "$src/cache" "$src/gocache"
echo "$out"
