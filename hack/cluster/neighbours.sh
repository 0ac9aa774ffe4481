#!/usr/bin/env bash
# Stand-ins for what another Kubernetes (or another clone's real node) keeps on this machine:
# the iptables chain KUBE-SWA-FOREIGN with a rule jumping to it, a kubepods cgroup, an unused
# cni-* network namespace and a bridge named like a real node's. `make test` plants them before
# the local cluster starts and checks after `cluster-down` that every one survived: the real
# node removes only what it made (hack/cluster/node.sh).
#   hack/cluster/neighbours.sh plant    create them (recorded in .neighbours, ignored by git)
#   hack/cluster/neighbours.sh check    fail naming any that is gone, then remove them all
#   hack/cluster/neighbours.sh remove   remove what plant created (idempotent)
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/env.sh"

STATE=$repo/.neighbours
CHAIN=KUBE-SWA-FOREIGN
NETNS=cni-swa-foreign
BRIDGE=swa-foreign
CGROUP=kubepods/swa-foreign
HIERARCHIES="cpu memory pids"

planted() { grep -qx "$1" "$STATE" 2>/dev/null; }
record() { echo "$1" >>"$STATE"; }

plant() {
  remove
  : >"$STATE"
  iptables -N "$CHAIN"
  record chain
  iptables -A "$CHAIN" -j RETURN
  iptables -A INPUT -j "$CHAIN"
  # A kubepods that existed before is another Kubernetes' own: only the leaf is ours.
  for h in $HIERARCHIES; do
    if [ ! -d "/sys/fs/cgroup/$h/kubepods" ]; then
      mkdir "/sys/fs/cgroup/$h/kubepods"
      record "cgroup-parent $h"
    fi
    mkdir "/sys/fs/cgroup/$h/$CGROUP"
    record "cgroup $h"
  done
  ip netns add "$NETNS"
  record netns
  ip link add "$BRIDGE" type bridge
  record bridge
  say "planted a foreign iptables chain $CHAIN, cgroup $CGROUP ($HIERARCHIES), network namespace $NETNS and bridge $BRIDGE"
}

check() {
  local gone=()
  planted chain && ! iptables -S "$CHAIN" >/dev/null 2>&1 && gone+=("iptables chain $CHAIN")
  planted chain && ! iptables -C INPUT -j "$CHAIN" 2>/dev/null && gone+=("the INPUT rule jumping to $CHAIN")
  for h in $HIERARCHIES; do
    planted "cgroup $h" && [ ! -d "/sys/fs/cgroup/$h/$CGROUP" ] && gone+=("cgroup $h/$CGROUP")
  done
  planted netns && [ ! -e "/run/netns/$NETNS" ] && gone+=("network namespace $NETNS")
  planted bridge && ! ip link show "$BRIDGE" >/dev/null 2>&1 && gone+=("bridge $BRIDGE")
  [ -s "$STATE" ] || gone+=("everything: nothing was planted (run '$0 plant' before the cluster starts)")
  remove
  [ ${#gone[@]} -eq 0 ] || die "the local cluster's teardown removed what was not its own: ${gone[*]}"
  say "every foreign chain, cgroup, network namespace and bridge survived the teardown"
}

remove() {
  [ -f "$STATE" ] || return 0
  if planted chain; then
    iptables -D INPUT -j "$CHAIN" 2>/dev/null || true
    iptables -F "$CHAIN" 2>/dev/null && iptables -X "$CHAIN" 2>/dev/null || true
  fi
  for h in $HIERARCHIES; do
    planted "cgroup $h" && { rmdir "/sys/fs/cgroup/$h/$CGROUP" 2>/dev/null || true; }
    planted "cgroup-parent $h" && { rmdir "/sys/fs/cgroup/$h/kubepods" 2>/dev/null || true; }
  done
  planted netns && { ip netns delete "$NETNS" 2>/dev/null || true; }
  planted bridge && { ip link delete "$BRIDGE" 2>/dev/null || true; }
  rm -f "$STATE"
}

case "${1:-}" in
  plant) plant ;;
  check) check ;;
  remove) remove ;;
  *) die "usage: neighbours.sh plant|check|remove" ;;
esac
