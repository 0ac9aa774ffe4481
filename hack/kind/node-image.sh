#!/usr/bin/env bash
# Builds a kind node image here, with podman and no registry, the way `kind build node-image`
# would with Docker and a registry at hand: a Debian systemd root filesystem with kind's node
# files (from the pinned kind module), containerd, runc and the CNI plugins from Debian, kubeadm,
# the kubelet and kubectl of the pinned Kubernetes build, and every image kubeadm and kind start
# imported into containerd's k8s.io namespace under the name they are asked for, so nothing is
# ever pulled: the control plane and kube-proxy (the pinned build), etcd and CoreDNS (the
# versions kubeadm expects), pause, flannel as the CNI and local-path-provisioner as the default
# storage.
#   hack/kind/node-image.sh          build what is missing, print the node image's name
#   hack/kind/node-image.sh --name   print the name only (no build)
# The tag is the Kubernetes version and a hash of every input, so an unchanged input is never
# rebuilt. Binaries and archives live in the cache, the image in podman's store; nothing in git.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=/dev/null
. "$repo/hack/tools/versions.env"
# shellcheck source=/dev/null
. "$here/versions.env"
# shellcheck source=/dev/null
. "$repo/hack/images/versions.env"
say() { printf '[kind-image] %s\n' "$*" >&2; }
die() { printf '[kind-image] error: %s\n' "$*" >&2; exit 1; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/statefulwebapp-operator/kind"
tools=$("$repo/hack/tools/build.sh" --dir)

inputs=$(cd "$repo" && cat hack/tools/versions.env hack/tools/kube/go.sum hack/tools/kubeadm/go.sum \
  hack/tools/nfs-mount/*.go hack/images/versions.env hack/images/rootfs.sh hack/kind/versions.env hack/kind/node-image.sh \
  hack/kind/manifests/* | sha256sum | cut -c1-12)
PREFIX=localhost/statefulwebapp
NODE_IMAGE=$PREFIX/kind-node:${KUBE_VERSION}-${inputs}
if [ "${1:-}" = --name ]; then echo "$NODE_IMAGE"; exit 0; fi
if podman image exists "$NODE_IMAGE"; then echo "$NODE_IMAGE"; exit 0; fi

"$repo/hack/tools/build.sh" >/dev/null
for tool in podman mmdebstrap containerd ctr; do
  command -v "$tool" >/dev/null || die "$tool is missing: run 'make tools'."
done
kind_src=$(GOFLAGS= go mod download -json "sigs.k8s.io/kind@${KIND_VERSION}" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
[ -d "$kind_src/images/base/files" ] || die "cannot download sigs.k8s.io/kind@${KIND_VERSION}."
# The project's images the node images build on (busybox, pause): build.sh's NAME=IMAGE lines,
# read as data (their tags hold Debian package versions), never run as shell.
images=$("$repo/hack/images/build.sh")
img_busybox=$(sed -n 's/^busybox=//p' <<<"$images")
img_pause=$(sed -n 's/^pause=//p' <<<"$images")
[ -n "$img_busybox" ] && [ -n "$img_pause" ] || die "hack/images/build.sh printed no busybox or pause image: $images"

# What kubeadm of KUBE_VERSION will ask the container runtime for.
expected=$("$tools/kubeadm" config images list --kubernetes-version "$KUBE_VERSION")
want() { grep "/$1:" <<<"$expected" || die "kubeadm asks for no $1 image: $expected"; }
ETCD_REF=$(want etcd); COREDNS_REF=$(want coredns); PAUSE_REF=$(want pause)
ETCD_VERSION_K=v${ETCD_REF##*:}; ETCD_VERSION_K=${ETCD_VERSION_K%-*}
COREDNS_VERSION_K=${COREDNS_REF##*:}
[ "${PAUSE_REF##*:}" = "$PAUSE_VERSION" ] || die "kubeadm wants $PAUSE_REF, hack/images builds pause $PAUSE_VERSION."

mkdir -p "$cache/bin" "$cache/logs"
work=$(mktemp -d "$cache/build.XXXXXX")
ctrd_pid=
cleanup() {
  [ -z "$ctrd_pid" ] || { kill "$ctrd_pid" 2>/dev/null; wait "$ctrd_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT

# Go programs, static unless CGO=1 (flannel's udp backend is cgo), each cached under its version.
gobuild() {
  local name=$1 pkg=$2 out="$cache/bin/$1-$3" start
  [ -x "$out" ] && { echo "$out"; return; }
  start=$(date +%s)
  say "building $name $3 ..."
  mkdir -p "$work/gobin"
  (cd "$work" && GOFLAGS= GOBIN="$work/gobin" CGO_ENABLED=${CGO:-0} \
    go install -trimpath -ldflags "-s -w ${4:-}" "$pkg@$3") >"$cache/logs/$name.log" 2>&1 \
    || { tail -n 20 "$cache/logs/$name.log" >&2; die "building $name failed; see $cache/logs/$name.log."; }
  mv "$work/gobin/$(basename "${pkg%/v[0-9]*}")" "$out"
  say "built $name in $(( $(date +%s) - start ))s"
  echo "$out"
}
# etcd's server module carries relative replace directives that defeat `go install`: it is
# built through a throwaway wrapper module, as hack/tools/etcd does for the local cluster.
build_etcd() {
  local out="$cache/bin/etcd-$ETCD_VERSION_K" mod=$work/etcd start
  [ -x "$out" ] && { echo "$out"; return; }
  start=$(date +%s)
  say "building etcd $ETCD_VERSION_K ..."
  mkdir -p "$mod"
  cp "$repo/hack/tools/etcd/main.go" "$mod/"
  (cd "$mod" && export GOFLAGS=-mod=mod CGO_ENABLED=0 \
    && go mod init statefulwebapp.local/kind/etcd && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION_K" \
    && go build -trimpath -ldflags "-s -w" -o "$out" .) >"$cache/logs/etcd.log" 2>&1 \
    || { tail -n 20 "$cache/logs/etcd.log" >&2; die "building etcd failed; see $cache/logs/etcd.log."; }
  say "built etcd in $(( $(date +%s) - start ))s"
  echo "$out"
}
FLANNELD=$(CGO=1 gobuild flannel github.com/flannel-io/flannel "$FLANNEL_VERSION" \
  "-X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL_VERSION")
FLANNEL_CNI=$(gobuild flannel-cni github.com/containernetworking/plugins/plugins/meta/flannel "$FLANNEL_CNI_VERSION")
LOCAL_PATH=$(gobuild local-path-provisioner github.com/rancher/local-path-provisioner "$LOCAL_PATH_VERSION")
COREDNS=$(gobuild coredns github.com/coredns/coredns "$COREDNS_VERSION_K")
ETCD=$(build_etcd)

export SOURCE_DATE_EPOCH=0
# shellcheck source=/dev/null
. "$repo/hack/images/rootfs.sh"
# A component that runs iptables uses the node's backend (legacy or nft, whichever holds the
# node's rules), as upstream's images do with kubernetes-sigs/iptables-wrappers.
iptables_wrapper() {
  cat >"$1/usr/sbin/iptables-wrapper" <<'WRAPPER'
#!/bin/sh
# Points iptables at the backend that holds the node's rules, then runs the command asked for.
legacy=$( (iptables-legacy-save; ip6tables-legacy-save) 2>/dev/null | grep -c '^-')
nft=$( (iptables-nft-save; ip6tables-nft-save) 2>/dev/null | grep -c '^-')
mode=legacy; [ "$nft" -gt "$legacy" ] && mode=nft
update-alternatives --set iptables "/usr/sbin/iptables-$mode" >/dev/null
update-alternatives --set ip6tables "/usr/sbin/ip6tables-$mode" >/dev/null
for c in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -sf "/etc/alternatives/${c%%-*}${c#${c%%-*}}" "/usr/sbin/$c" 2>/dev/null || true
done
exec "$0" "$@"
WRAPPER
  chmod 755 "$1/usr/sbin/iptables-wrapper"
  local c
  for c in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf iptables-wrapper "$1/usr/sbin/$c"
  done
}

archives=$work/archives
mkdir -p "$archives"
# An image from a directory tree, saved as an archive to import into the node.
image() {
  local name=$1 dir=$2; shift 2
  local args=() c
  for c in "$@"; do args+=(--change "$c"); done
  tarball "$dir" "$work/layer.tar"
  podman import --quiet "${args[@]}" "$work/layer.tar" "$name" >/dev/null
  podman save --quiet --format docker-archive -o "$archives/$(basename "${name%%:*}").tar" "$name"
}

# Control plane and kube-proxy: one image of the multi-call binary, tagged four times.
say "building the control-plane image ..."
debian_rootfs "$work/kube.tar" iptables conntrack
mkdir -p "$work/kube" && tar -C "$work/kube" -xf "$work/kube.tar"
cp "$tools/kube" "$work/kube/usr/local/bin/kube"
for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  ln -s kube "$work/kube/usr/local/bin/$c"
done
iptables_wrapper "$work/kube"
KUBE_IMAGE=$PREFIX/kind-kube:$KUBE_VERSION
image "$KUBE_IMAGE" "$work/kube"

# etcd and CoreDNS on busybox (a shell for kubeadm's etcd probes is not needed, but handy).
say "building the etcd, CoreDNS, flannel and local-path images ..."
bb=$work/bb
mkdir -p "$bb" && podman export "$(podman create --quiet "$img_busybox")" | tar -C "$bb" -x
podman container prune --force >/dev/null 2>&1 || true
mkdir -p "$work/etcd" && cp -a "$bb/." "$work/etcd/" && mkdir -p "$work/etcd/usr/local/bin" \
  && cp "$ETCD" "$work/etcd/usr/local/bin/etcd"
ETCD_IMAGE=$PREFIX/kind-etcd:$ETCD_VERSION_K
image "$ETCD_IMAGE" "$work/etcd" 'ENV PATH=/usr/local/bin:/bin'
mkdir -p "$work/coredns" && cp "$COREDNS" "$work/coredns/coredns"
COREDNS_IMAGE=$PREFIX/kind-coredns:$COREDNS_VERSION_K
image "$COREDNS_IMAGE" "$work/coredns" 'ENTRYPOINT ["/coredns"]'
mkdir -p "$work/lpp" && cp -a "$bb/." "$work/lpp/" && mkdir -p "$work/lpp/usr/local/bin" \
  && cp "$LOCAL_PATH" "$work/lpp/usr/local/bin/local-path-provisioner"
LOCAL_PATH_IMAGE=$PREFIX/kind-local-path-provisioner:$LOCAL_PATH_VERSION
image "$LOCAL_PATH_IMAGE" "$work/lpp" 'ENV PATH=/usr/local/bin:/bin'
debian_rootfs "$work/flannel.tar" iptables
mkdir -p "$work/flannel" && tar -C "$work/flannel" -xf "$work/flannel.tar"
cp "$FLANNELD" "$work/flannel/usr/local/bin/flanneld"
iptables_wrapper "$work/flannel"
FLANNEL_IMAGE=$PREFIX/kind-flannel:$FLANNEL_VERSION
image "$FLANNEL_IMAGE" "$work/flannel"
podman save --quiet --format docker-archive -o "$archives/pause.tar" "$img_pause"
podman save --quiet --format docker-archive -o "$archives/busybox.tar" "$img_busybox"

# The node: kind's base image (images/base/Dockerfile) from Debian packages instead of its
# release downloads, and kind's node files copied as that Dockerfile copies them.
say "building the node root filesystem ..."
node=$work/node
mkdir -p "$node"
debian_rootfs "$work/node.tar" systemd systemd-sysv dbus conntrack iptables nftables iproute2 \
  ethtool util-linux mount kmod libseccomp2 pigz bash ca-certificates curl jq procps \
  containerd runc containernetworking-plugins fuse3
tar -C "$node" -xf "$work/node.tar"
files=$kind_src/images/base/files
install -m 0755 "$files"/usr/local/bin/* "$node/usr/local/bin/"
mkdir -p "$node/kind/bin" "$node/LICENSES" "$node/etc/containerd" "$node/etc/systemd/system/kubelet.service.d"
install -m 0644 "$files/kind/README.txt" "$node/kind/"
install -m 0755 "$files"/kind/bin/* "$node/kind/bin/"
install -m 0644 "$files"/LICENSES/* "$node/LICENSES/"
install -m 0644 "$files/etc/crictl.yaml" "$node/etc/"
install -m 0644 "$files"/etc/containerd/* "$node/etc/containerd/"
install -m 0644 "$files"/etc/default/* "$node/etc/default/"
install -m 0644 "$files"/etc/sysctl.d/* "$node/etc/sysctl.d/"
install -m 0644 "$files"/etc/systemd/system/*.service "$files"/etc/systemd/system/*.slice "$node/etc/systemd/system/"
install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$node/etc/systemd/system/kubelet.service.d/"
# Debian's containerd lives in /usr/bin, where kind's unit expects /usr/local/bin; its CNI
# plugins in /usr/lib/cni, where containerd looks in /opt/cni/bin.
ln -sf /usr/bin/containerd "$node/usr/local/bin/containerd"
mkdir -p "$node/opt/cni/bin"
for p in "$node"/usr/lib/cni/*; do ln -sf "/usr/lib/cni/$(basename "$p")" "$node/opt/cni/bin/"; done
install -m 0755 "$FLANNEL_CNI" "$node/opt/cni/bin/flannel"
rm -f "$node"/etc/systemd/system/containerd-fuse-overlayfs.service
# The Dockerfile's clean-up of services a node container must not run, then its units.
chroot "$node" sh -euc '
  find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
  rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/*
  rm -f /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev*
  rm -f /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
  echo ReadKMsg=no >>/etc/systemd/journald.conf
  ln -sf "$(command -v systemd)" /sbin/init
  systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
  systemctl mask systemd-binfmt.service >/dev/null 2>&1
  mkdir -p /etc/kubernetes/manifests'
# containerd's base runtime spec, as the Dockerfile makes it: the product_uuid hook, no rlimits.
ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
  | jq 'del(.process.rlimits)' >"$node/etc/containerd/cri-base.json"
# This machine's kernel: cgroup v1, and no CAP_SYS_RESOURCE for the sandboxes' -998 OOM score.
sed -i -e "s#sandbox_image = .*#sandbox_image = \"$PAUSE_REF\"#" \
  -e 's#restrict_oom_score_adj = false#restrict_oom_score_adj = true#' \
  -e '/\[proxy_plugins\]/,/address = .*fuse-overlayfs.sock"/d' "$node/etc/containerd/config.toml"
# NFS volumes: the kernel here has no NFS client, so the kubelet mounts them with the project's
# helper (hack/tools/nfs-mount), which also refuses any server but this machine: in a kind
# node, the podman network's gateway.
{
  printf '%s --fail-cgroupv1=false --experimental-mounter-path=/usr/local/bin/swa-nfs-mount\n' "$(cat "$node/etc/default/kubelet")"
  printf 'SWA_NFS_ALLOW_GATEWAY=1\nSWA_NFS_LOG_DIR=/var/log/swa-nfs\nSWA_NFS_GUARD_LOG=/var/log/swa-nfs/guard.log\n'
} >"$work/kubelet.env"
mv "$work/kubelet.env" "$node/etc/default/kubelet"
mkdir -p "$node/var/log/swa-nfs"
# Kubernetes: kubeadm, the kubelet and kubectl (one multi-call binary), crictl, the mount helper.
install -m 0755 "$tools/kube" "$node/usr/bin/kube"
ln -sf kube "$node/usr/bin/kubelet"; ln -sf kube "$node/usr/bin/kubectl"
install -m 0755 "$tools/kubeadm" "$node/usr/bin/kubeadm"
install -m 0755 "$tools/crictl" "$node/usr/local/bin/crictl"
install -m 0755 "$tools/swa-nfs-mount" "$node/usr/local/bin/swa-nfs-mount"
echo "$KUBE_VERSION" >"$node/kind/version"
mkdir -p "$node/kind/manifests"
sed "s#FLANNEL_IMAGE#$FLANNEL_IMAGE#g" "$here/manifests/default-cni.yaml" >"$node/kind/manifests/default-cni.yaml"
# kind's own default storage manifest, from its pinned source, with the images built here.
awk '/^const defaultStorageManifest = `/ {on=1; next} on && /^`/ {exit} on {print}' \
  "$kind_src/pkg/build/nodeimage/const_storage.go" \
  | sed -e "s#\` + storageProvisionerImage + \`#$LOCAL_PATH_IMAGE#" -e "s#\` + storageHelperImage + \`#$img_busybox#" \
  >"$node/kind/manifests/default-storage.yaml"
grep -q "$LOCAL_PATH_IMAGE" "$node/kind/manifests/default-storage.yaml" || die "kind's storage manifest changed shape."

# Images into the node's containerd, as `kind build node-image` imports them: pinned, under
# the names kubeadm and the manifests ask for. This machine's containerd does it, on the
# node's own root, with no CRI plugin and a socket of its own.
say "importing the images into the node's containerd ..."
cat >"$work/containerd.toml" <<TOML
version = 2
root = "$node/var/lib/containerd"
state = "$work/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd.sock"
TOML
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
ctrd_pid=$!
for _ in $(seq 50); do [ -S "$work/containerd.sock" ] && break; sleep 0.1; done
ctr_() { ctr --address "$work/containerd.sock" --namespace k8s.io "$@"; }
for a in "$archives"/*.tar; do
  ctr_ images import --label=io.cri-containerd.pinned=pinned --no-unpack "$a" >/dev/null
done
tag() { ctr_ images tag --force "$1" "$2" >/dev/null; }
for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  tag "$KUBE_IMAGE" "registry.k8s.io/$c:$KUBE_VERSION"
done
tag "$ETCD_IMAGE" "$ETCD_REF"
tag "$COREDNS_IMAGE" "$COREDNS_REF"
tag "$img_pause" "$PAUSE_REF"
ctr_ images ls -q | sort >"$work/images.txt"
kill "$ctrd_pid"; wait "$ctrd_pid" 2>/dev/null || true; ctrd_pid=
rm -rf "$node/var/lib/containerd/tmpmounts"

say "committing $NODE_IMAGE ..."
tarball "$node" "$work/node-final.tar"
podman import --quiet \
  --change 'ENV container=docker' --change 'STOPSIGNAL SIGRTMIN+3' \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  "$work/node-final.tar" "$NODE_IMAGE" >/dev/null
# Each input change tags a new node image; the older ones only fill the store.
podman images --format '{{.Repository}}:{{.Tag}}' | grep "^$PREFIX/kind-node:" \
  | grep -vx "$NODE_IMAGE" | xargs -r podman rmi >/dev/null 2>&1 || true
say "built $NODE_IMAGE: $(podman image inspect --format '{{.Size}}' "$NODE_IMAGE" | awk '{printf "%.0f MiB", $1/1048576}'), images: $(tr '\n' ' ' <"$work/images.txt")"
echo "$NODE_IMAGE"
