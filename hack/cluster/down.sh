#!/usr/bin/env bash
# Stops the local cluster and CoreDNS, and removes their state: no process is left behind.
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/env.sh"
"$repo/hack/cluster/dns.sh" stop
if command -v kwokctl >/dev/null 2>&1 && kwokctl get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  kwokctl delete cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_PATH" >/dev/null 2>&1
fi
# kwokctl stops what it started from its pid files; anything still holding our work dir (a
# component restarted by hand, say) goes too.
pkill -f -- "$KWOK_WORKDIR/" 2>/dev/null || true
rm -rf "$CLUSTER_DIR"
say "cluster $CLUSTER_NAME is down"
