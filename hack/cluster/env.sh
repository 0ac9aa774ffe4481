# Shared settings of the local cluster scripts; sourced, never run.
# CLUSTER_DIR holds everything a running cluster owns (kwok work dir, kubeconfig, CoreDNS files),
# inside the clone and ignored by git, so two clones never share a cluster.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER_NAME=${CLUSTER_NAME:-swa}
CLUSTER_DIR=${CLUSTER_DIR:-$repo/.cluster}
KUBECONFIG_PATH=$CLUSTER_DIR/kubeconfig
DNS_DIR=$CLUSTER_DIR/coredns
export KWOK_WORKDIR=$CLUSTER_DIR/kwok
TOOLS_BIN=$("$repo/hack/tools/build.sh" --dir)
export PATH="$TOOLS_BIN:$PATH"
export KWOK_KUBECTL_BINARY=$TOOLS_BIN/kubectl
say() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }
kc() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }
