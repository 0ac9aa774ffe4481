#!/usr/bin/env bash
# Builds every pinned tool of the local cluster that is missing from the cache, then prints the
# cache's bin directory. Versions live in versions.env; the cache directory is named after a hash
# of this folder, so a version bump builds afresh and an unchanged pin is never rebuilt.
#   hack/tools/build.sh          build what is missing, print the bin directory
#   hack/tools/build.sh TOOL...  only those (kube etcd swa-nfs-mount kubeadm kwok kwokctl coredns
#                                crictl helm kube-score): `make tools-kwok` builds what the
#                                kwok-only cluster of `make demo` runs, nothing for the real node
#                                or kind; `make lint-k8s` builds helm and kube-score
#   hack/tools/build.sh --dir    print the bin directory only (no build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
. "$here/versions.env"
# shellcheck source=/dev/null
. "$here/lint.env"

hash=$(cd "$here" && cat versions.env kube/go.mod kube/go.sum kube/main.go \
  etcd/go.mod etcd/go.sum etcd/main.go | sha256sum | cut -c1-12)
root="${XDG_CACHE_HOME:-$HOME/.cache}/statefulwebapp-operator/tools/$hash"
bin="$root/bin"
if [ "${1:-}" = "--dir" ]; then echo "$bin"; exit 0; fi
TOOLS="kube etcd swa-nfs-mount kubeadm kwok kwokctl coredns crictl helm kube-score"
only=" $* "
for tool in "$@"; do
  case " $TOOLS " in *" $tool "*) ;; *) printf '[tools] error: no tool %s: choose among %s\n' "$tool" "$TOOLS" >&2; exit 2 ;; esac
done
# Whether TOOL is to be built: every tool when none is named.
want() { [ "$only" = "  " ] || [[ $only == *" $1 "* ]]; }

say() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "the Go toolchain is missing: install Go 1.26 or newer and put 'go' on PATH."
mkdir -p "$bin" "$root/logs"

# One cheap request up front turns an unreachable module proxy into one clear sentence instead
# of a wall of per-module errors twenty minutes into a build.
proxy_check() {
  if ! go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION}" >/dev/null 2>"$root/logs/proxy-check.log"; then
    die "cannot download Go modules (GOPROXY=$(go env GOPROXY)): the Go module proxy is unreachable; see $root/logs/proxy-check.log."
  fi
}

# Runs one build, showing a live count of compiled packages, and records its wall time and peak
# memory (from GNU time) in logs/build-times.tsv.
#   build NAME DIR COMMAND...
# The build runs in DIR in a process group of its own, stopped whole when this script is
# interrupted or terminated (a script's background job ignores Ctrl-C, so it would go on).
build() {
  local name=$1 dir=$2; shift 2
  local start end n=0 log="$root/logs/$name.log"
  start=$(date +%s)
  say "building $name ..."
  (cd "$dir" && exec setsid /usr/bin/time -f '%M' -o "$root/logs/$name.maxrss" "$@") >"$log" 2>&1 </dev/null &
  local pid=$!
  # shellcheck disable=SC2064 # the pid and name are those of this build
  trap "kill -TERM -- -$pid 2>/dev/null; wait $pid || true; printf '\\n' >&2; die 'interrupted: stopped the build of $name'" INT TERM HUP
  while kill -0 "$pid" 2>/dev/null; do
    n=$(grep -vc '^go: downloading' "$log" 2>/dev/null || true)
    printf '\r[tools]   %s: %s packages compiled, %ss' "$name" "$n" "$(( $(date +%s) - start ))" >&2
    sleep 5
  done
  printf '\n' >&2
  trap - INT TERM HUP
  if ! wait "$pid"; then
    tail -n 30 "$log" >&2
    die "building $name failed; the full log is $log."
  fi
  end=$(date +%s)
  printf '%s\t%s\t%s\n' "$name" "$(( end - start ))" "$(tail -n1 "$root/logs/$name.maxrss")" >>"$root/logs/build-times.tsv"
  say "built $name in $(( end - start ))s (peak RSS $(( $(tail -n1 "$root/logs/$name.maxrss") / 1024 )) MiB)"
}

need() { want "$1" || return 1; for f in "$@"; do [ -x "$bin/$f" ] || return 0; done; return 1; }
checked=
ensure_proxy() { [ -n "$checked" ] || { proxy_check; checked=1; }; }

# The version a Kubernetes binary reports, stamped as upstream's build does.
kube_ldflags() {
  local p minor=${KUBE_VERSION#v1.} ld="-s -w"
  minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=${KUBE_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor}"
    ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$ld"
}

export GOFLAGS=-mod=mod
if need kube; then
  ensure_proxy
  build kube "$here/kube" go build -v -trimpath -ldflags "$(kube_ldflags)" -o "$bin/kube" .
fi
if [ -x "$bin/kube" ]; then
  for n in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do ln -sf kube "$bin/$n"; done
fi

if need etcd; then
  ensure_proxy
  build etcd "$here/etcd" go build -v -trimpath -ldflags "-s -w" -o "$bin/etcd" .
fi

# The real node's mount helper (--experimental-mounter-path): the guard against foreign
# servers, and an NFSv3 client over FUSE where the kernel has none; see nfs-mount/main.go.
# Rebuilt whenever its own sources change (a stamp of their hash), without touching the
# cache of the Kubernetes build above, which takes many times longer.
nfs_hash=$(cd "$here/nfs-mount" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-12)
if need swa-nfs-mount || { want swa-nfs-mount && [ "$(cat "$root/swa-nfs-mount.hash" 2>/dev/null)" != "$nfs_hash" ]; }; then
  ensure_proxy
  build swa-nfs-mount "$here/nfs-mount" go build -v -trimpath -ldflags "-s -w" -o "$bin/swa-nfs-mount" .
  echo "$nfs_hash" >"$root/swa-nfs-mount.hash"
fi

# kubeadm, for the kind node image (hack/kind/node-image.sh): its own binary with its own stamp,
# like the mount helper, so that the multi-call build above stays cached; the Go build cache
# already holds every package the two share. Same version stamps as the multi-call build.
kubeadm_hash=$(cd "$here" && cat versions.env kubeadm/go.mod kubeadm/go.sum kubeadm/main.go | sha256sum | cut -c1-12)
if need kubeadm || { want kubeadm && [ "$(cat "$root/kubeadm.hash" 2>/dev/null)" != "$kubeadm_hash" ]; }; then
  ensure_proxy
  build kubeadm "$here/kubeadm" go build -v -trimpath -ldflags "$(kube_ldflags)" -o "$bin/kubeadm" .
  echo "$kubeadm_hash" >"$root/kubeadm.hash"
fi

# These three modules carry no replace directives, so `go install pkg@version` builds them as
# their authors pinned them; running it outside any module keeps our go.mod files out of it.
install() {
  local name=$1 pkg=$2 ld=${3:-}
  if need "$name"; then
    ensure_proxy
    GOFLAGS='' GOBIN=$bin build "$name" "$root" go install -v -trimpath -ldflags "-s -w $ld" "$pkg"
  fi
}
install kwok "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBE_VERSION}"
install kwokctl "sigs.k8s.io/kwok/cmd/kwokctl@${KWOK_VERSION}" "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBE_VERSION}"
install coredns "github.com/coredns/coredns@${COREDNS_VERSION}"
# crictl stops and removes the real node's pod sandboxes through the CRI, so their networks are
# torn down by the CNI plugins as on a real node (hack/cluster/node.sh stop).
install crictl "sigs.k8s.io/cri-tools/cmd/crictl@${CRICTL_VERSION}" "-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION}"
# Helm's default Kubernetes version (for `helm template` and lint) comes from the client-go
# minor it was built with; upstream's Makefile sets it the same way.
helm_kube_minor() {
  local gomod
  gomod=$(go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod"
}
if need helm; then
  minor=$(helm_kube_minor)
  hl="-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    hl="$hl -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=${minor}"
  done
  install helm "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" "$hl"
fi

# The Kubernetes best-practice linter of `make lint-k8s`. Its pin is in lint.env, outside this
# cache's hash, so a stamp of the version built says when to build again.
if need kube-score || { want kube-score && [ "$(cat "$root/kube-score.version" 2>/dev/null)" != "$KUBE_SCORE_VERSION" ]; }; then
  rm -f "$bin/kube-score"
  install kube-score "github.com/zegl/kube-score/cmd/kube-score@${KUBE_SCORE_VERSION}" "-X main.version=${KUBE_SCORE_VERSION#v}"
  echo "$KUBE_SCORE_VERSION" >"$root/kube-score.version"
fi

echo "$bin"
