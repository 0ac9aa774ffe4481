#!/usr/bin/env bash
# Stops the local cluster, CoreDNS, the real node and the NFS server, and removes their state:
# no process is left behind.
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/env.sh"
# The demo's operator runs against this cluster; it goes first, so it does not log a storm
# of connection errors while the API server stops.
if [ -f "$CLUSTER_DIR/operator.pid" ]; then
  kill "$(cat "$CLUSTER_DIR/operator.pid")" 2>/dev/null || true
fi
"$repo/hack/cluster/dns.sh" stop
"$repo/hack/cluster/node.sh" stop
# After the node: its mounts use the server until they are gone.
"$repo/hack/cluster/nfs.sh" stop
if command -v kwokctl >/dev/null 2>&1 && kwokctl get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  kwokctl delete cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_PATH" >/dev/null 2>&1
fi
# kwokctl stops what it started from its pid files; anything still holding our work dir (a
# component restarted by hand, say) goes too.
# The API server takes seconds to shut down on SIGTERM: wait, then make sure.
pkill -f -- "$KWOK_WORKDIR/" 2>/dev/null || true
for _ in $(seq 50); do pgrep -f -- "$KWOK_WORKDIR/" >/dev/null || break; sleep 0.2; done
pkill -KILL -f -- "$KWOK_WORKDIR/" 2>/dev/null || true
# Prove it: nothing may still run from the cluster's directory. Our rpcbind is known by its
# working directory alone (.cluster/nfs); a ganesha or rpcbind started elsewhere is not ours.
sleep 0.5
left=$(for pid in $(pgrep -f -- "$CLUSTER_DIR/" || true) \
  $(pgrep -x coredns || true) $(pgrep -x ganesha.nfsd || true) $(pgrep -x rpcbind || true); do
  case "$(readlink "/proc/$pid/cwd" 2>/dev/null) $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" in
    *"$CLUSTER_DIR"*) echo "$pid($(cat "/proc/$pid/comm" 2>/dev/null))" ;;
  esac
done | sort -u | paste -sd ' ')
[ -z "$left" ] || die "processes still running from $CLUSTER_DIR: $left"
rm -rf "$CLUSTER_DIR"
say "cluster $CLUSTER_NAME is down"
