#!/usr/bin/env bash
# Starts the local cluster (idempotent) and prints its kubeconfig path on stdout.
# Real etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as local processes
# through `kwokctl --runtime binary`; kwok plays the kubelets of the four scenario nodes; CoreDNS
# serves cluster.local from this API server on a loopback port (see coredns/port).
# With REAL_NODE=1 a fifth node runs a real kubelet with containerd (hack/cluster/node.sh), and
# an NFS server on 127.0.0.1 serves the NFS storage of its pods (hack/cluster/nfs.sh).
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/env.sh"

for tool in kwokctl kwok etcd kube-apiserver kubectl coredns; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not built: run 'make tools' first."
done
mkdir -p "$CLUSTER_DIR" "$DNS_DIR"

healthy() { kc get --raw /readyz >/dev/null 2>&1; }

if kwokctl get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  if healthy; then
    say "cluster $CLUSTER_NAME is already running"
  else
    say "cluster $CLUSTER_NAME exists but does not answer: recreating it"
    kwokctl delete cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_PATH" >/dev/null 2>&1 || true
  fi
fi

if ! healthy; then
  say "starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok ..."
  start=$(date +%s)
  # Pod IPs and Service IPs get ranges of their own (kwok's default overlaps the Service
  # range), large enough for benchmark fleets. The controller manager and the scheduler run
  # without leader election: alone, they need none, and with it they exit when the API server
  # is down longer than their renew deadline (nobody restarts them here), which fault tests do.
  audit=()
  if [ "${CLUSTER_AUDIT:-0}" = 1 ]; then
    # Benchmarks count the operator's requests in the API server's own audit log.
    audit=(--kube-audit-policy "$repo/hack/cluster/audit-policy.yaml")
  fi
  # The API server reaches the real node's kubelet (logs, exec) with the admin certificate;
  # PodNodeSelector and PodTolerationRestriction let a namespace send all its pods there.
  # kwok plays only the nodes annotated as its own (hack/cluster/nodes.yaml), never the real one.
  # kwokctl v0.8.0 files a component's second --extra-args under the index of its first
  # flag, so each component's first flag comes first, in the order of its first appearance.
  pki=$KWOK_WORKDIR/clusters/$CLUSTER_NAME/pki
  kwokctl create cluster --name "$CLUSTER_NAME" --runtime binary "${audit[@]}" \
    --config "$repo/hack/cluster/kwokctl.yaml" \
    --kubeconfig "$KUBECONFIG_PATH" \
    --etcd-binary "$TOOLS_BIN/etcd" \
    --kube-apiserver-binary "$TOOLS_BIN/kube-apiserver" \
    --kube-controller-manager-binary "$TOOLS_BIN/kube-controller-manager" \
    --kube-scheduler-binary "$TOOLS_BIN/kube-scheduler" \
    --kwok-controller-binary "$TOOLS_BIN/kwok" \
    --disable-qps-limits \
    --extra-args "kube-apiserver=service-cluster-ip-range=10.96.0.0/16" \
    --extra-args "kube-controller-manager=leader-elect=false" \
    --extra-args "kube-scheduler=leader-elect=false" \
    --extra-args "kwok-controller=cidr=10.244.0.0/16" \
    --extra-args "kube-apiserver=kubelet-client-certificate=$pki/admin.crt" \
    --extra-args "kube-apiserver=kubelet-client-key=$pki/admin.key" \
    --extra-args "kube-apiserver=kubelet-preferred-address-types=InternalIP" \
    --extra-args "kube-apiserver=enable-admission-plugins=PodNodeSelector,PodTolerationRestriction" \
    --extra-args "kwok-controller=manage-all-nodes=false" \
    --extra-args "kwok-controller=manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake" \
    --wait 60s >"$CLUSTER_DIR/kwokctl.log" 2>&1 \
    || { tail -n 20 "$CLUSTER_DIR/kwokctl.log" >&2; die "kwokctl could not create the cluster; see $CLUSTER_DIR/kwokctl.log and $KWOK_WORKDIR/clusters/$CLUSTER_NAME/logs/."; }
  say "control plane ready in $(( $(date +%s) - start ))s"
fi

kc apply --server-side --field-manager=statefulwebapp-cluster -f "$repo/hack/cluster/nodes.yaml" >/dev/null
kc wait --for=condition=Ready node --all --timeout=60s >/dev/null \
  || die "the kwok nodes did not become Ready; see $KWOK_WORKDIR/clusters/$CLUSTER_NAME/logs/kwok-controller.log."
# Pods need the namespace's default ServiceAccount; wait for its controller once here so the
# first test does not race it. Without it no pod of any namespace is ever admitted.
sa_ready() { kc get serviceaccount default >/dev/null 2>&1; }
for _ in $(seq 60); do sa_ready && break; sleep 0.5; done
sa_ready || die "the default ServiceAccount never appeared in 30s: the controller manager's serviceaccount controller is not running; see $KWOK_WORKDIR/clusters/$CLUSTER_NAME/logs/kube-controller-manager.log."

"$repo/hack/cluster/dns.sh" start
if [ "${REAL_NODE:-0}" = 1 ]; then
  # The NFS server first: the node's pods may mount it as soon as they start.
  "$repo/hack/cluster/nfs.sh" start
  "$repo/hack/cluster/node.sh" start
fi
say "nodes: $(kc get nodes -o name | tr '\n' ' ')"
say "CoreDNS: 127.0.0.1:$(cat "$DNS_DIR/port") serves cluster.local"
echo "$KUBECONFIG_PATH"
