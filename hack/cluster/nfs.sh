#!/usr/bin/env bash
# The local cluster's NFS server, for the NFS storage of tests and the demo: nfs-ganesha from
# Debian exporting one directory of the cluster's folder, reachable on 127.0.0.1 only.
#   hack/cluster/nfs.sh start    start it (idempotent); up.sh does, before the real node
#   hack/cluster/nfs.sh stop     stop it and leave no process of it; down.sh does
#   hack/cluster/nfs.sh export   print, as one line of JSON, a StatefulWebApp's spec.storage.nfs
# Its state, config and logs live in .cluster/nfs, the exported files in .cluster/nfs/export
# (kept by `stop`, so a restarted server serves the same files; down.sh removes them).
# The ports are fixed (SWA_NFS_PORT, SWA_NFS_MOUNT_PORT override them), not picked at each
# start: they are part of every spec written from `export`, and the node's mounts must find
# the server again on them after it restarts. Both lie below the kernel's ephemeral range, so no
# outgoing connection ever holds them.
# SWA_NFS_CLIENTS (a comma list of IPv4 addresses; hack/kind/kind.sh gives its nodes') lets only
# those clients use the export, with root squashed; without it, any client that reaches BIND
# may, as root (the local cluster: loopback only). `start` restarts a running server whose
# clients differ.
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/env.sh"

NFS_DIR=${SWA_NFS_DIR:-$CLUSTER_DIR/nfs}
# The one address it listens on: loopback for the local cluster; the kind network's gateway,
# an address of this machine, for kind's nodes (hack/kind/kind.sh runs a second server so).
BIND=${SWA_NFS_BIND:-127.0.0.1}
EXPORT_DIR=$NFS_DIR/export
CONF=$NFS_DIR/ganesha.conf
NFS_PORT=${SWA_NFS_PORT:-20049}
MOUNT_PORT=${SWA_NFS_MOUNT_PORT:-20048}
CLIENTS=${SWA_NFS_CLIENTS:-}

pidof_() { cat "$NFS_DIR/pids/$1.pid" 2>/dev/null; }
# Ours only if the pid still runs what we started: a ganesha or rpcbind started elsewhere (a
# scratch server, the machine's own) may run beside it, and a pid may have been reused since.
ours() {
  local pid
  pid=$(pidof_ "$1") && kill -0 "$pid" 2>/dev/null || return 1
  case $1 in
    ganesha) tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-f $CONF " ;;
    rpcbind) [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = rpcbind ] \
      && [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(cd "$NFS_DIR" && pwd -P)" ] ;;
  esac
}
# Answers a TCP connection on BIND:PORT.
port_open() { (exec 3<>"/dev/tcp/$BIND/$1") 2>/dev/null; }

# Runs "$@" in the background as its own session, its pid in pids/NAME.pid, its output in
# logs/NAME.out (ganesha's own log is logs/ganesha.log).
launch() {
  local name=$1; shift
  setsid "$@" >"$NFS_DIR/logs/$name.out" 2>&1 </dev/null &
  echo $! >"$NFS_DIR/pids/$name.pid"
}

plugins_dir() {
  local d
  for d in "/usr/lib/$(uname -m)-linux-gnu/ganesha" /usr/lib64/ganesha /usr/lib/ganesha; do
    [ -f "$d/libfsalvfs.so" ] && { echo "$d"; return 0; }
  done
  die "ganesha's VFS FSAL (libfsalvfs.so) is missing: run 'make tools' (Debian's nfs-ganesha-vfs)."
}

# The VFS FSAL serves files by kernel file handles (name_to_handle_at), which overlayfs (a
# container's root, say) and most FUSE filesystems do not give.
check_filesystem() {
  local fs
  fs=$(stat -f -c %T "$EXPORT_DIR")
  case $fs in
    ext2/ext3 | xfs | tmpfs) ;;
    *) die "$EXPORT_DIR is on $fs, which ganesha's VFS FSAL cannot export (it needs ext4, xfs or tmpfs): set CLUSTER_DIR to a directory on one of those." ;;
  esac
}

# The EXPORT block's access: anyone who reaches BIND, or only CLIENTS.
export_access() {
  if [ -z "$CLIENTS" ]; then
    cat <<'ACCESS'
  Access_Type = RW;
  # Pods write as root; their files must stay theirs.
  Squash = No_Root_Squash;
ACCESS
    return 0
  fi
  cat <<ACCESS
  # Only the clients listed below (kind's nodes) may use it: any other address matches no
  # CLIENT block and gets the export's own access, none.
  Access_Type = None;
  # Root squashed to the anonymous user (uid and gid 4294967294): no test on kind needs root on
  # the export. Pods write there only as backup agents, into directories the tests make with
  # mode 0777 (tests/e2e/realnode.py, export_dir); every agent, squashed alike, reads back
  # what the others wrote (0700 and 0600). Restores, which set owners as root, run on the local
  # cluster only. Files only root can read (an export left by an unsquashed server) are left
  # out of archives silently (busybox tar skips them): 'make kind-down' removes the export.
  Squash = Root_Squash;
  CLIENT {
    Clients = ${CLIENTS//,/, };
    Access_Type = RW;
  }
ACCESS
}

# SWA_NFS_CLIENTS, checked: IPv4 addresses only (they go into ganesha's config), no spaces.
check_clients() {
  local addr list
  [ -n "$CLIENTS" ] || return 0
  CLIENTS=${CLIENTS//[[:space:]]/}
  IFS=, read -ra list <<<"$CLIENTS"
  for addr in "${list[@]}"; do
    # Four numbers 0-255 without leading zeros (which some parsers read as octal).
    [[ $addr =~ ^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$ ]] \
      && (( BASH_REMATCH[1] < 256 && BASH_REMATCH[2] < 256 && BASH_REMATCH[3] < 256 && BASH_REMATCH[4] < 256 )) \
      || die "SWA_NFS_CLIENTS holds '$addr', which is not an IPv4 address: give a comma list of addresses."
  done
  [[ $CLIENTS != *,,* && $CLIENTS != ,* && $CLIENTS != *, ]] \
    || die "SWA_NFS_CLIENTS ($SWA_NFS_CLIENTS) has an empty entry: give a comma list of addresses."
}

write_config() {
  local export_path=$1 plugins=$2
  cat >"$CONF" <<CONF
# nfs-ganesha of the local cluster (hack/cluster/nfs.sh); all its state in $NFS_DIR.
NFS_CORE_PARAM {
  Bind_addr = $BIND;
  NFS_Port = $NFS_PORT;
  MNT_Port = $MOUNT_PORT;
  Protocols = 3, 4;
  # Clients use the ports given in their mount options, over TCP, without locks (nolock):
  # no NLM, RQUOTA or UDP listeners, which would take ports of their own.
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
  Plugins_Dir = "$plugins";
}
NFSV4 {
  # Without it, NFSv4 OPENs are refused for the 90 s grace period after every start.
  Graceless = true;
  # NFSv4 owner names from the password database, not through nfsidmap, whose
  # /etc/idmapd.conf (nfs-common's) a machine may lack.
  UseGetpwnam = true;
  RecoveryRoot = "$NFS_DIR/recovery";
}
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
  Export_Id = 1;
  Path = "$export_path";
  Pseudo = "$export_path";
  Protocols = 3, 4;
$(export_access)
  SecType = sys;
  # Tests and the demo also read and change the files directly on disk: never serve cached
  # attributes of a file changed behind ganesha's back.
  Attr_Expiration_Time = 0;
  FSAL { Name = VFS; }
}
CONF
}

# rpcbind's own test for another one: it holds an exclusive lock on its lock file while it runs.
rpcbind_running() { [ -e /run/rpcbind.lock ] && ! flock -n /run/rpcbind.lock true; }

# ganesha registers NFSv3 and MOUNT with rpcbind, and exits if there is none. A running one
# (the machine's, say) serves; else ours runs with only the local transports (in a mount
# namespace of its own that sees an /etc/netconfig listing nothing else): ganesha registers
# through /run/rpcbind.sock, and no portmapper listens on port 111 of any address. `-s` runs it
# as `daemon`, which every Debian has (its default user, _rpc, some images lack).
ensure_rpcbind() {
  local pid
  ours rpcbind && return 0
  if rpcbind_running; then
    pid=$(pgrep -x rpcbind | tr '\n' ' ')
    rpcinfo >/dev/null 2>&1 || die "rpcbind (pid ${pid% }) runs but does not answer rpcinfo."
    say "using the running rpcbind (pid ${pid% }; not ours, so left running)"
    return 0
  fi
  unshare -m true 2>/dev/null || die "cannot create a mount namespace for rpcbind: run as root."
  printf '%s\n' 'local tpi_cots_ord - loopback - - -' 'unix tpi_cots_ord - loopback - - -' \
    >"$NFS_DIR/netconfig"
  launch rpcbind unshare -m --propagation private \
    sh -c 'mount --bind "$1" /etc/netconfig && exec rpcbind -f -s' sh "$NFS_DIR/netconfig"
  for _ in $(seq 40); do ours rpcbind && rpcinfo >/dev/null 2>&1 && return 0; sleep 0.25; done
  cat "$NFS_DIR/logs/rpcbind.out" >&2
  die "rpcbind did not come up; see $NFS_DIR/logs/rpcbind.out."
}

start() {
  local tool export_path port
  for tool in ganesha.nfsd rpcbind rpcinfo unshare flock ss; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: run 'make tools'."
  done
  mkdir -p "$NFS_DIR"/{pids,logs,run,recovery} "$EXPORT_DIR"
  # Processes started here run from here: down.sh recognises what is left of them by that.
  cd "$NFS_DIR"
  check_filesystem
  # The physical path: ganesha compares the paths clients mount with it character by character.
  export_path=$(cd "$EXPORT_DIR" && pwd -P)
  case $export_path in
    *[\"\\]* | *[[:cntrl:]]*) die "the export path $export_path has a quote, backslash or control character: ganesha's config and the JSON of 'export' need it plain." ;;
  esac
  check_clients
  if ours ganesha; then
    [ "$(cat ports)" = "$NFS_PORT $MOUNT_PORT" ] \
      || die "the NFS server runs on ports $(cat ports) (NFS, MOUNT), not $NFS_PORT $MOUNT_PORT: run 'hack/cluster/nfs.sh stop' first."
    local serving; serving=$(cat clients 2>/dev/null || true)
    if [ "$serving" = "$CLIENTS" ]; then
      port_open "$NFS_PORT" && port_open "$MOUNT_PORT" \
        || die "the NFS server (pid $(pidof_ ganesha)) runs but does not answer on $BIND:$NFS_PORT and :$MOUNT_PORT; see $NFS_DIR/logs/ganesha.log."
      say "nfs server $BIND:$NFS_PORT exporting $export_path (pid $(pidof_ ganesha)) is already running"
      return 0
    fi
    # New nodes (a cluster made again): the export's clients are part of its config, read at start.
    say "the export's clients change (${serving:-any} -> ${CLIENTS:-any}): restarting the NFS server"
    stop_process ganesha
  fi
  for port in "$NFS_PORT" "$MOUNT_PORT"; do
    [ -z "$(ss -Hltn "src $BIND and sport = :$port")" ] && [ -z "$(ss -Hltn "src 0.0.0.0 and sport = :$port")" ] \
      || die "port $port is taken ($(ss -Hltnp "sport = :$port" | awk '{print $4, $6}' | head -n 1)): set SWA_NFS_PORT and SWA_NFS_MOUNT_PORT to free ones."
  done
  write_config "$export_path" "$(plugins_dir)"
  echo "$NFS_PORT $MOUNT_PORT" >ports
  echo "$CLIENTS" >clients
  ensure_rpcbind
  local start; start=$(date +%s%N)
  launch ganesha ganesha.nfsd -F -f "$CONF" -L "$NFS_DIR/logs/ganesha.log" -p "$NFS_DIR/run/ganesha.pid"
  for _ in $(seq 100); do
    ours ganesha || break
    port_open "$NFS_PORT" && port_open "$MOUNT_PORT" && break
    sleep 0.1
  done
  if ! { ours ganesha && port_open "$NFS_PORT" && port_open "$MOUNT_PORT"; }; then
    tail -n 20 "$NFS_DIR/logs/ganesha.out" "$NFS_DIR/logs/ganesha.log" >&2 2>/dev/null || true
    die "the NFS server did not come up; see $NFS_DIR/logs/ganesha.log."
  fi
  # An export ganesha cannot serve does not stop it: it listens, and refuses every MOUNT.
  if grep -q ':EXPORT :CRIT :' "$NFS_DIR/logs/ganesha.log"; then
    grep -E ':(FSAL|EXPORT) :CRIT :' "$NFS_DIR/logs/ganesha.log" | sed 's/^.*\] //' >&2
    stop_process ganesha
    die "ganesha cannot export $export_path; see $NFS_DIR/logs/ganesha.log."
  fi
  say "nfs server $BIND:$NFS_PORT exporting $export_path${CLIENTS:+ to $CLIENTS only} (pid $(pidof_ ganesha)) up in $(( ($(date +%s%N) - start) / 1000000 )) ms"
}

stop_process() {
  local name=$1 pid
  ours "$name" || { rm -f "$NFS_DIR/pids/$name.pid"; return 0; }
  pid=$(pidof_ "$name")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 10); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$NFS_DIR/pids/$name.pid"
}

stop() {
  [ -d "$NFS_DIR" ] || return 0
  local had_rpcbind=0
  ours rpcbind && had_rpcbind=1
  # ganesha first: it unregisters from rpcbind as it exits.
  stop_process ganesha
  stop_process rpcbind
  # rpcbind leaves its socket, lock file and warm-start state (the registrations it knew,
  # which Debian's own rpcbind -w would load) behind; ours made them, unless another rpcbind
  # has started since and uses them.
  if [ "$had_rpcbind" = 1 ] && ! rpcbind_running; then
    rm -f /run/rpcbind.sock /run/rpcbind.lock /run/rpcbind/rpcbind.xdr /run/rpcbind/portmap.xdr
  fi
  left_behind
  # The exported files stay for the next start (down.sh removes them with the cluster).
  find "$NFS_DIR" -mindepth 1 -maxdepth 1 ! -name export -exec rm -rf {} +
  say "nfs server stopped"
}

# Proves the stop: dies naming any ganesha or rpcbind of ours still running.
left_behind() {
  local pid left=() dir
  dir=$(cd "$NFS_DIR" && pwd -P)
  for pid in $(pgrep -x ganesha.nfsd || true) $(pgrep -x rpcbind || true); do
    case "$(readlink "/proc/$pid/cwd" 2>/dev/null) $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" in
      *"$NFS_DIR"* | *"$dir"*) left+=("$(cat "/proc/$pid/comm" 2>/dev/null) pid $pid") ;;
    esac
  done
  [ ${#left[@]} -eq 0 ] || die "the NFS server left behind: ${left[*]}"
}

export_json() {
  local nfs_port mount_port
  ours ganesha && read -r nfs_port mount_port <"$NFS_DIR/ports" \
    || die "the NFS server is not running: run make cluster-up REAL_NODE=1"
  port_open "$nfs_port" && port_open "$mount_port" \
    || die "the NFS server (pid $(pidof_ ganesha)) does not answer on $BIND:$nfs_port and :$mount_port; see $NFS_DIR/logs/ganesha.log."
  # nolock: the server has no NLM (Enable_NLM = false), so a client must not ask for locks.
  printf '{"server": "%s", "path": "%s", "mountOptions": ["nfsvers=3", "port=%s", "mountport=%s", "nolock"]}\n' \
    "$BIND" "$(cd "$EXPORT_DIR" && pwd -P)" "$nfs_port" "$mount_port"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  export) export_json ;;
  *) die "usage: nfs.sh start|stop|export" ;;
esac
