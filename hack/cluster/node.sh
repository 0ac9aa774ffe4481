#!/usr/bin/env bash
# One real node beside the kwok ones: a kubelet and kube-proxy from the pinned Kubernetes build,
# containerd and runc from Debian, the CNI bridge plugin, and the images of hack/images imported.
#   hack/cluster/node.sh start   join the node to the running control plane (idempotent)
#   hack/cluster/node.sh stop    remove its pods through the CRI, stop it, and leave no process,
#                                mount, network device, iptables chain, cgroup or sysctl change
# The node is tainted (k8slab.io/real-node=true:NoSchedule) and labelled: only pods that ask
# for it land there. Everything it owns lives in .cluster/node (the pods' network namespaces
# too), except what the kernel keeps globally: a bridge and a cgroup root named after this
# clone, the iptables chains and rules its kubelet and kube-proxy add (their names are fixed
# upstream, so `start` records what the machine had and `stop` removes only what was added),
# and sysctls (saved, then put back). Another clone's node, another Kubernetes or a foreign
# `KUBE-*` chain on the machine is never touched.
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/env.sh"

NODE_NAME=real
NODE_DIR=$CLUSTER_DIR/node
POD_CIDR=10.250.0.0/24
# The bridge's gateway address, where the node's pods ask the cluster's DNS (the kubelet's
# clusterDNS): a CoreDNS of the node's own listens there, since the cluster's listens on
# loopback only, which no pod reaches.
DNS_IP=10.250.0.1
# Named after this clone's cluster directory, so that two clones never share one.
NODE_ID=$(printf '%s' "$CLUSTER_DIR" | sha256sum | cut -c1-8)
BRIDGE=swa-$NODE_ID
CGROUP_ROOT=swa-$NODE_ID
TAINT_KEY=k8slab.io/real-node
SOCK=$NODE_DIR/run/containerd.sock
PKI=$KWOK_WORKDIR/clusters/$CLUSTER_NAME/pki
# The kubelet refuses to start unless these kernel settings have its values (it writes them,
# and fails if it cannot); `start` saves the machine's own values and `stop` puts them back.
SYSCTLS="vm.overcommit_memory=1 vm.panic_on_oom=0 kernel.panic=10 kernel.panic_on_oops=1
kernel.keys.root_maxkeys=1000000 kernel.keys.root_maxbytes=25000000"

pidof_() { cat "$NODE_DIR/pids/$1.pid" 2>/dev/null; }
alive() { local p; p=$(pidof_ "$1") && kill -0 "$p" 2>/dev/null; }
crictl_() { crictl --runtime-endpoint "unix://$SOCK" --timeout 20s "$@"; }
node_ip() { ip -4 route get 1.1.1.1 | sed -n 's/.* src \([0-9.]*\).*/\1/p'; }

# Runs "$@" in the background as its own session, its pid in pids/NAME.pid, its log in logs/.
launch() {
  local name=$1; shift
  setsid "$@" >"$NODE_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$NODE_DIR/pids/$name.pid"
}
wait_for() {
  local what=$1 log=$2 tries=$3; shift 3
  for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  tail -n 20 "$log" >&2
  die "$what did not come up; see $log."
}

write_configs() {
  local ip=$1
  mkdir -p "$NODE_DIR"/{run,pids,logs,cni/net.d,cni/ipam,containerd,kubelet,pod-logs}
  cat >"$NODE_DIR/containerd/config.toml" <<TOML
# containerd of the local cluster's real node (CRI for its kubelet); all state in .cluster/node.
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  # Imported by this script; the name the kubelet also reports, so it is never pulled.
  sandbox_image = "$PAUSE"
  # Sandboxes ask for oom_score_adj -998, which needs CAP_SYS_RESOURCE; this caps it at
  # containerd's own value instead of failing.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  # The pods' network namespaces under the state directory, not the machine's /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
TOML
  cat >"$NODE_DIR/cni/net.d/10-swa.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "swa-real-node",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
      "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": "$NODE_DIR/cni/ipam",
               "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  cat >"$NODE_DIR/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$SOCK
# This machine has only the cgroup v1 hierarchy and no systemd as PID 1.
failCgroupV1: false
cgroupDriver: cgroupfs
# The pods' cgroups under a root of this node's own (created by start_cgroups), not /kubepods.
cgroupRoot: /$CGROUP_ROOT
failSwapOn: false
# Without CAP_SYS_RESOURCE the kubelet cannot lower its own OOM score.
oomScoreAdj: 0
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# The API server reaches the kubelet (logs, exec) with the cluster's admin certificate.
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
registerWithTaints:
  - {key: $TAINT_KEY, value: "true", effect: NoSchedule}
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
podLogsDir: $NODE_DIR/pod-logs
volumePluginDir: $NODE_DIR/kubelet/volume-plugins
maxPods: 30
# The images are imported, not pulled: never collect them, and never evict for a disk that is
# merely fuller than a real node's would be.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
YAML
}

# Imports the archives written since this node's last import (all of them at its start).
import_images() {
  local tar stamp="$NODE_DIR/images.imported"
  for tar in "$IMAGES_DIR"/*.tar; do
    [ "$tar" -nt "$stamp" ] || continue
    ctr --address "$SOCK" -n k8s.io images import --no-unpack "$tar" >/dev/null
    say "imported $(cat "${tar%.tar}.name") into the node's containerd"
  done
  touch "$stamp"
}

start() {
  for tool in containerd containerd-shim-runc-v2 runc ctr iptables kubelet kube-proxy crictl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: run 'make tools'."
  done
  [ -x /usr/lib/cni/bridge ] || die "the CNI plugins are missing: run 'make tools'."
  kc get --raw /readyz >/dev/null 2>&1 || die "the control plane does not answer: run hack/cluster/up.sh."
  if alive kubelet && kc get node "$NODE_NAME" >/dev/null 2>&1; then
    # An image rebuilt since (an operator source change) must reach the running node too.
    "$repo/hack/images/build.sh" --save "$IMAGES_DIR" >/dev/null
    import_images
    say "node $NODE_NAME is already running"; return 0
  fi
  local start ip images
  start=$(date +%s)
  ip=$(node_ip)
  images=$("$repo/hack/images/build.sh" --save "$IMAGES_DIR")
  PAUSE=$(sed -n 's/^pause=//p' <<<"$images")
  write_configs "$ip"

  local route
  route=$(ip -4 route show "$POD_CIDR")
  case "$route" in
    "" | *" dev $BRIDGE "*) ;;
    *) die "the pod range $POD_CIDR is already routed ($route): is another clone's real node running? Stop it first ('make cluster-down' there)." ;;
  esac
  if [ ! -f "$NODE_DIR/sysctl.saved" ]; then
    for kv in $SYSCTLS; do echo "${kv%%=*}=$(sysctl -n "${kv%%=*}")"; done >"$NODE_DIR/sysctl.saved"
  fi
  for kv in $SYSCTLS; do sysctl -qw "$kv"; done
  [ -f "$RULES_BEFORE" ] || kube_rules >"$RULES_BEFORE"
  start_cgroups
  start_dns

  alive containerd || launch containerd containerd --config "$NODE_DIR/containerd/config.toml"
  wait_for containerd "$NODE_DIR/logs/containerd.log" 60 ctr --address "$SOCK" version
  import_images

  # nfs volumes are mounted by swa-nfs-mount (hack/tools/nfs-mount), never by /sbin/mount.nfs
  # directly: it refuses any server that is not an address of this machine (logging it for
  # the tests' guard), then uses the kernel's NFS client if there is one, else its own FUSE
  # client. The kubelet runs it for nfs (and glusterfs, ceph, cifs) mounts only.
  command -v swa-nfs-mount >/dev/null 2>&1 || die "swa-nfs-mount is missing: run 'make tools'."
  mkdir -p "$NODE_DIR/logs/nfs"
  # The admin kubeconfig: this node is part of a throw-away local cluster.
  SWA_NFS_GUARD_LOG=$NODE_DIR/nfs-guard.log SWA_NFS_LOG_DIR=$NODE_DIR/logs/nfs \
    launch kubelet kubelet --config "$NODE_DIR/kubelet/config.yaml" --kubeconfig "$KUBECONFIG_PATH" \
    --root-dir "$NODE_DIR/kubelet" --hostname-override "$NODE_NAME" --node-ip "$ip" \
    --node-labels "$TAINT_KEY=true" --experimental-mounter-path "$(command -v swa-nfs-mount)"
  launch kube-proxy kube-proxy --kubeconfig "$KUBECONFIG_PATH" --hostname-override "$NODE_NAME" \
    --proxy-mode iptables --cluster-cidr "$POD_CIDR" --conntrack-max-per-core 0 \
    --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256
  node_ready() { [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
  wait_for "node $NODE_NAME" "$NODE_DIR/logs/kubelet.log" 180 node_ready
  wait_for kube-proxy "$NODE_DIR/logs/kube-proxy.log" 60 curl -sf http://127.0.0.1:10256/healthz
  say "node $NODE_NAME ($ip, pods $POD_CIDR) Ready in $(( $(date +%s) - start ))s; NFS client: $(nfs_client)"
}

# The node's pods resolve cluster names as kind's do: the bridge is made now (the CNI plugin
# takes it as it finds it) so that a CoreDNS can listen on its gateway address before the first
# pod, serving cluster.local from the cluster's API server.
start_dns() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip -4 addr show dev "$BRIDGE" | grep -q "inet $DNS_IP/" || ip addr add "$DNS_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  mkdir -p "$NODE_DIR/dns"
  cat >"$NODE_DIR/dns/Corefile" <<COREFILE
cluster.local:53 {
    bind $DNS_IP
    errors
    kubernetes cluster.local {
        kubeconfig $KUBECONFIG_PATH
        ttl 1
    }
}
COREFILE
  alive coredns || launch coredns coredns -conf "$NODE_DIR/dns/Corefile"
  wait_for "the node's CoreDNS" "$NODE_DIR/logs/coredns.log" 60 dns_answers
}

# Whether the node's CoreDNS answers for the API server's own Service.
dns_answers() { python3 "$repo/hack/cluster/dns-answers.py" "$DNS_IP" 53; }

# Which NFS client the node's mounts use: the kernel's when it has one, else the FUSE one.
nfs_client() {
  if grep -qw nfs /proc/filesystems 2>/dev/null; then echo "the kernel's"; else echo "FUSE (swa-nfs-mount)"; fi
}

stop_process() {
  local name=$1 pid
  pid=$(pidof_ "$name") || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$NODE_DIR/pids/$name.pid"
}

stop() {
  [ -d "$NODE_DIR" ] || return 0
  # The kubelet goes first so it does not restart what is removed below.
  stop_process kubelet
  if alive containerd; then
    # Through the CRI, so the CNI plugins tear each pod's network down as on a real node.
    crictl_ rmp --all --force >/dev/null 2>&1 || true
  fi
  stop_process containerd
  stop_process kube-proxy
  stop_process coredns
  remove_added_rules
  # Whatever survived a crash: shims of this containerd, then mounts under the node's folder.
  pkill -KILL -f -- "containerd-shim-runc-v2 .*-address $SOCK" 2>/dev/null || true
  { grep -o " $NODE_DIR[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  # FUSE NFS daemons exit once unmounted; one whose mount was already gone is stopped here.
  pkill -f -- "swa-nfs-mount .*$NODE_DIR/" 2>/dev/null || true
  for _ in $(seq 25); do pgrep -f -- "swa-nfs-mount .*$NODE_DIR/" >/dev/null || break; sleep 0.2; done
  pkill -KILL -f -- "swa-nfs-mount .*$NODE_DIR/" 2>/dev/null || true
  ip link delete "$BRIDGE" 2>/dev/null || true
  # The node's cgroup root in every hierarchy (the kubelet's QoS cgroups within), deepest first.
  for hierarchy in /sys/fs/cgroup/*/; do
    [ -d "$hierarchy$CGROUP_ROOT" ] && find "$hierarchy$CGROUP_ROOT" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  if [ -f "$NODE_DIR/sysctl.saved" ]; then
    while read -r kv; do sysctl -qw "$kv" || true; done <"$NODE_DIR/sysctl.saved"
  fi
  left_behind
  rm -rf "$NODE_DIR"
  say "node $NODE_NAME stopped"
}

# The kubelet's cgroup root must exist in every hierarchy before it starts; a new cpuset cgroup
# has no CPUs or memory nodes until given its parent's.
start_cgroups() {
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    [ -d "$hierarchy$CGROUP_ROOT" ] || mkdir "$hierarchy$CGROUP_ROOT" 2>/dev/null || true
  done
  local cpuset=/sys/fs/cgroup/cpuset
  if [ -f "$cpuset/cpuset.cpus" ] && [ -z "$(cat "$cpuset/$CGROUP_ROOT/cpuset.cpus")" ]; then
    cat "$cpuset/cpuset.cpus" >"$cpuset/$CGROUP_ROOT/cpuset.cpus"
    cat "$cpuset/cpuset.mems" >"$cpuset/$CGROUP_ROOT/cpuset.mems"
  fi
}

# The machine's KUBE-* iptables chains and the rules in them or jumping to them, one per line
# ("iptables nat -A KUBE-SERVICES ...", "iptables filter :KUBE-FIREWALL").
kube_rules() {
  local ipt table
  for ipt in iptables ip6tables; do
    command -v "$ipt-save" >/dev/null || continue
    for table in filter nat mangle; do
      "$ipt-save" -t "$table" 2>/dev/null \
        | sed -n -e 's/^\(:KUBE-[^ ]*\).*/\1/p' -e t -e '/^-A KUBE-/{p;d}' -e '/^-A .* -[jg] KUBE-/p' \
        | sed "s/^/$ipt $table /"
    done
  done
}

# What kube_rules shows now and did not at start (as multisets): the node's kubelet and
# kube-proxy made it. Nothing without the record of the start.
added_rules() {
  [ -f "$RULES_BEFORE" ] || return 0
  comm -13 <(sort "$RULES_BEFORE") <(kube_rules | sort)
}

# Rules first, then the chains, which nothing jumps to any more. A rule's text is iptables-save's
# line (its comment anything on the machine may have written): it never reaches a shell, but goes
# back to iptables-restore, which reads iptables-save's own quoting, as "-D <chain> <rule>". Each
# table's deletions go in one batch; a batch with a rule that is gone already fails whole and
# changes nothing (a table is committed at once), so its rules are then deleted one at a time.
# Errors are ignored: what is left shows in left_behind.
remove_added_rules() {
  local added ipt table rule chain step key
  local -A batch=()
  added=$(added_rules)
  while read -r ipt table rule; do
    batch["$ipt $table"]+="-D ${rule#-A }"$'\n'
  done < <(grep -E '^(iptables|ip6tables) (filter|nat|mangle) -A ' <<<"$added" || true)
  for key in "${!batch[@]}"; do
    read -r ipt table <<<"$key"
    restore_rules "$ipt" "$table" "${batch[$key]}" && continue
    while IFS= read -r rule; do
      [ -z "$rule" ] || restore_rules "$ipt" "$table" "$rule"$'\n' || true
    done <<<"${batch[$key]}"
  done
  for step in -F -X; do
    while read -r ipt table chain; do
      "$ipt" -t "$table" "$step" "${chain#:}" 2>/dev/null || true
    done < <(grep -E '^(iptables|ip6tables) (filter|nat|mangle) :' <<<"$added" || true)
  done
}

# Applies LINES (rule commands, each ending in a newline) to TABLE through IPT-restore, adding to
# the table as it is (--noflush); all or nothing.
restore_rules() {
  local ipt=$1 table=$2 lines=$3
  printf '*%s\n%sCOMMIT\n' "$table" "$lines" | "$ipt-restore" --noflush 2>/dev/null
}

# Proves the stop: dies naming anything of the node still running, mounted or configured.
left_behind() {
  local left=()
  pgrep -f -- "$NODE_DIR/" >/dev/null && left+=("processes: $(pgrep -f -- "$NODE_DIR/" | tr '\n' ' ')")
  grep -q " $NODE_DIR" /proc/mounts && left+=("mounts: $(grep -c " $NODE_DIR" /proc/mounts)")
  ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("network device $BRIDGE")
  local chains
  chains=$(added_rules | sed -n 's/^[a-z0-9]* \([a-z]*\) :\(.*\)/\1:\2/p' | paste -sd ' ')
  [ -z "$chains" ] || left+=("iptables chains $chains")
  compgen -G "/sys/fs/cgroup/*/$CGROUP_ROOT" >/dev/null && left+=("cgroups $CGROUP_ROOT")
  [ ${#left[@]} -eq 0 ] || die "the real node left behind: ${left[*]}"
}

IMAGES_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/statefulwebapp-operator/images/archives"
RULES_BEFORE=$NODE_DIR/iptables.before
# Sourced (hack/cluster/test-rule-removal.sh): the functions and settings only.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0
case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: node.sh start|stop" ;;
esac
