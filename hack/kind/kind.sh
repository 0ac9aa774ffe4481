#!/usr/bin/env bash
# The kind cluster of the e2e suite (tests/e2e/kind.yaml: one tainted control-plane node and
# three workers, the reference scenario's lab), on podman, with the node image built here.
#   hack/kind/kind.sh up          create it if missing, then `ready`; prints the kubeconfig path last
#   hack/kind/kind.sh ready       load the project's images into every node, start its NFS
#                                 server (for the nodes' addresses only), wait until every node
#                                 is Ready (pytest-kind creates, then the e2e fixture runs this)
#   hack/kind/kind.sh down        delete it and its NFS server; fails naming anything left
#   hack/kind/kind.sh nfs-export  print its test export as spec.storage.nfs JSON (nfs.sh export)
#   hack/kind/kind.sh env         print KEY=VALUE lines: the kind binary, the node image, the
#                                 cluster's name and kubeconfig, and the provider's settings
# KIND_NODE_IMAGE picks another node image (e.g. the public kindest/node of the same minor where
# a registry is at hand); KIND_PROVIDER=docker uses Docker where there is one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
say() { printf '[kind] %s\n' "$*" >&2; }
die() { printf '[kind] error: %s\n' "$*" >&2; exit 1; }

NAME=${KIND_CLUSTER:-statefulwebapp-e2e}
# Its own directory beside the local cluster's .cluster (which down.sh removes whole): the two
# clusters start and stop independently.
DIR=$repo/.kind
KUBECONFIG_PATH=$DIR/kubeconfig
# shellcheck source=/dev/null
. "$here/versions.env"
KIND=${XDG_CACHE_HOME:-$HOME/.cache}/statefulwebapp-operator/kind/bin/kind-$KIND_VERSION
TOOLS_BIN=$("$repo/hack/tools/build.sh" --dir)
export KIND_EXPERIMENTAL_PROVIDER=${KIND_PROVIDER:-podman}
export CONTAINERS_CONF=$here/containers.conf
NFS_DIR=$DIR/nfs
# kind from its pinned module, built once per version into the cache.
ensure_kind() {
  [ -x "$KIND" ] && return 0
  local gobin
  gobin=$(mktemp -d)
  say "building kind $KIND_VERSION ..."
  (cd "$gobin" && GOFLAGS= GOBIN="$gobin" CGO_ENABLED=0 \
    go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION") >&2 \
    || { rm -rf "$gobin"; die "building sigs.k8s.io/kind@$KIND_VERSION failed."; }
  mkdir -p "$(dirname "$KIND")" && mv "$gobin/kind" "$KIND" && rm -rf "$gobin"
}
node_image() { [ -n "${KIND_NODE_IMAGE:-}" ] && echo "$KIND_NODE_IMAGE" || "$here/node-image.sh" "$@"; }
kc() { "$TOOLS_BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
exists() { "$KIND" get clusters 2>/dev/null | grep -qx "$NAME"; }

# What kind's podman provider needs of the machine: it mounts /lib/modules into every node
# (this machine has none: an empty one is made), and workers join through the control plane's
# name, which only a podman network with the dnsname plugin resolves.
host_setup() {
  command -v podman >/dev/null || die "podman is missing: run 'make tools'."
  [ -x /usr/lib/cni/dnsname ] || die "podman's dnsname CNI plugin is missing: run 'make tools'."
  [ -d /lib/modules ] || mkdir -p /lib/modules
  # A kind network made before dnsname was installed has no DNS: workers would never join.
  if podman network exists kind && ! exists \
    && [ "$(podman network inspect kind --format '{{.DNSEnabled}}')" != true ]; then
    podman network rm kind >/dev/null
  fi
}

gateway() {
  podman network inspect kind --format '{{range .Subnets}}{{.Gateway}} {{end}}' \
    | tr ' ' '\n' | grep -E '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$' | head -n1
}
# The cluster's nodes' addresses on the kind network, as a comma list: the only clients its NFS
# export serves (nfs.sh's SWA_NFS_CLIENTS). Read from the running node containers, so only once
# they exist; a cluster made again gets new ones, and `ready` restarts the server with them.
node_addresses() {
  local nodes addrs
  mapfile -t nodes < <(podman ps --filter "label=io.x-k8s.kind.cluster=$NAME" --format '{{.Names}}')
  [ ${#nodes[@]} -gt 0 ] || die "no running node container of $NAME (podman ps --filter label=io.x-k8s.kind.cluster=$NAME)."
  addrs=$(podman inspect --format '{{with index .NetworkSettings.Networks "kind"}}{{.IPAddress}}{{end}}' "${nodes[@]}")
  [ "$(grep -c . <<<"$addrs")" = ${#nodes[@]} ] \
    || die "not every node of $NAME (${nodes[*]}) has an address on the kind network: '$(tr '\n' ' ' <<<"$addrs")'."
  paste -sd, <<<"$addrs"
}
nfs() { SWA_NFS_DIR=$NFS_DIR SWA_NFS_BIND=$(gateway) "$repo/hack/cluster/nfs.sh" "$@"; }

# The project's images (app, operator, chart test), loaded into every node's containerd under
# the names pods ask for; an archive already loaded into a running node is not loaded again.
load_images() {
  local archives=$DIR/images short name
  mkdir -p "$archives"
  "$repo/hack/images/build.sh" --save "$archives" >/dev/null
  for f in "$archives"/*.tar; do
    short=$(basename "$f" .tar); name=$(cat "$archives/$short.name")
    [ "$(cat "$DIR/loaded.$short" 2>/dev/null)" = "$name $(cluster_id)" ] && continue
    "$KIND" load image-archive --name "$NAME" "$f" >/dev/null
    echo "$name $(cluster_id)" >"$DIR/loaded.$short"
  done
}
cluster_id() { podman inspect --format '{{.Id}}' "$NAME-control-plane" 2>/dev/null | cut -c1-12; }

ready() {
  exists || die "no kind cluster $NAME: run 'make kind-up'."
  mkdir -p "$DIR"
  "$KIND" export kubeconfig --name "$NAME" --kubeconfig "$KUBECONFIG_PATH" >/dev/null 2>&1
  load_images
  mkdir -p "$NFS_DIR"
  local clients
  clients=$(node_addresses)
  SWA_NFS_CLIENTS=$clients nfs start
  kc wait --for=condition=Ready nodes --all --timeout=180s >/dev/null \
    || die "not every node of $NAME became Ready: $(kc get nodes --no-headers 2>&1 | tr '\n' ';')"
  kc -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null \
    || die "CoreDNS of $NAME did not become ready."
}

up() {
  local image start
  host_setup
  ensure_kind
  image=$(node_image)
  if ! exists; then
    start=$(date +%s)
    say "creating $NAME (1 control plane, 3 workers) from $image ..."
    mkdir -p "$DIR"
    "$KIND" create cluster --name "$NAME" --image "$image" --config "$repo/tests/e2e/kind.yaml" \
      --kubeconfig "$KUBECONFIG_PATH" --wait 0s >"$DIR/create.log" 2>&1 \
      || { tail -n 30 "$DIR/create.log" >&2; die "kind create cluster failed; see $DIR/create.log."; }
    say "created $NAME in $(( $(date +%s) - start ))s"
  fi
  ready
  echo "$KUBECONFIG_PATH"
}

down() {
  local left=()
  if [ -x "$KIND" ] && exists; then
    "$KIND" delete cluster --name "$NAME" >/dev/null 2>&1 || die "kind delete cluster --name $NAME failed."
  fi
  if [ -d "$NFS_DIR" ]; then
    SWA_NFS_DIR=$NFS_DIR SWA_NFS_BIND=${SWA_NFS_BIND:-127.0.0.1} "$repo/hack/cluster/nfs.sh" stop
  fi
  # The kind network is kind's to keep between clusters, but it is ours when no cluster uses it.
  unused_network() { podman network exists kind && [ -z "$(podman ps -aq --filter network=kind)" ]; }
  local bridge=""
  if unused_network; then
    bridge=$(podman network inspect kind --format '{{.NetworkInterface}}')
    podman network rm kind >/dev/null
    # podman's dnsname plugin opens DNS on the network's bridge (an INPUT rule) and leaves the
    # rule behind when the network goes.
    while iptables -D INPUT -i "$bridge" -p udp -m udp --dport 53 -j ACCEPT 2>/dev/null; do :; done
  fi
  mapfile -t c < <(podman ps -a --filter "label=io.x-k8s.kind.cluster=$NAME" --format '{{.Names}}')
  # kind labels each node's /var volume with the node's name.
  mapfile -t v < <(podman volume ls --format '{{.Name}} {{.Labels}}' | awk -v n="map[$NAME-" 'index($2, n) == 1 {print $1}')
  [ ${#c[@]} -eq 0 ] || left+=("containers: ${c[*]}")
  [ ${#v[@]} -eq 0 ] || left+=("volumes: ${v[*]}")
  # Another kind cluster's containers keep the network: it is theirs then, not left behind.
  unused_network && left+=("network: kind")
  if [ -n "$bridge" ] && iptables-save 2>/dev/null | grep -q -- "-i $bridge "; then
    left+=("iptables rules on $bridge")
  fi
  [ ${#left[@]} -eq 0 ] || die "the kind cluster $NAME left behind ${left[*]}"
  rm -rf "$DIR"
  say "kind cluster $NAME deleted"
}

case "${1:-}" in
  up) up ;;
  ready) ready; echo "$KUBECONFIG_PATH" ;;
  down) down ;;
  nfs-export) nfs export ;;
  env)
    host_setup
    ensure_kind
    printf 'KIND=%s\nKIND_NODE_IMAGE=%s\nKIND_CLUSTER=%s\nKIND_KUBECONFIG=%s\n' \
      "$KIND" "$(node_image)" "$NAME" "$KUBECONFIG_PATH"
    printf 'KIND_EXPERIMENTAL_PROVIDER=%s\nCONTAINERS_CONF=%s\n' "$KIND_EXPERIMENTAL_PROVIDER" "$CONTAINERS_CONF"
    ;;
  *) die "usage: kind.sh up|ready|down|nfs-export|env" ;;
esac
