#!/usr/bin/env bash
# Installs the Debian packages the project runs but does not build: busybox for the backup
# script's unit tests, the real node's container stack (podman builds the images,
# mmdebstrap their Debian root filesystems; containerd, runc, the CNI plugins and iptables run
# the node), and the NFS storage of its pods (nfs-ganesha with its VFS backend and rpcbind
# serve it, hack/cluster/nfs.sh; fuse3 for the FUSE NFS client that mounts it), and for kind
# (hack/kind): podman's dnsname plugin, through which kind's workers find the control plane,
# and jq for the node image's runtime spec; prometheus for its promtool, with which the unit
# tests check and test the chart's alerts and the dashboard's queries, and for the server the
# e2e suite runs against a live operator (tests/e2e/test_prometheus.py). Only what is
# missing is installed; nothing is installed over a different build. With arguments, only
# those packages (`make unit` needs busybox, iptables for test-rule-removal.sh, and
# prometheus).
set -euo pipefail
say() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] error: %s\n' "$*" >&2; exit 1; }

# Debian's `busybox` (not busybox-static: that build runs its own applets before PATH, which
# the image build does not need on the host either; hack/images extracts it into the image).
packages=(busybox podman runc containerd containernetworking-plugins mmdebstrap iptables
  iproute2 curl gcc libc6-dev nfs-ganesha nfs-ganesha-vfs rpcbind fuse3
  golang-github-containernetworking-plugin-dnsname jq prometheus)
[ $# -gt 0 ] && packages=("$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null || die "apt-get is missing: install ${missing[*]} with your package manager."
[ "$(id -u)" = 0 ] || die "installing ${missing[*]} needs root: run 'sudo make tools' once."
say "installing ${missing[*]} ..."
apt-get update -qq
# Debian starts a package's services on install (nfs-ganesha on 0.0.0.0:2049, rpcbind on
# port 111, prometheus on :9090, where systemd runs): the project runs its own NFS server and
# rpcbind, on loopback, when a cluster starts, and runs prometheus itself only where a test
# starts it (on a free loopback port).
# A policy-rc.d answering 101 ("not allowed") keeps the services of this install from starting
# now (systemd still has them enabled for the next boot: disable them if that matters).
policy=/usr/sbin/policy-rc.d
if [ -e "$policy" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  trap 'rm -f "$policy"' EXIT
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
