#!/usr/bin/env bash
# Stops, starts, pauses or resumes one component of the running local cluster, for fault tests.
#   hack/cluster/component.sh stop kube-apiserver    # SIGKILL, as a crash; remembers how it ran
#   hack/cluster/component.sh start kube-apiserver   # the same command line, cwd and log again
#   hack/cluster/component.sh pause etcd             # SIGSTOP: alive but silent
#   hack/cluster/component.sh resume etcd            # SIGCONT
# Components: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok-controller.
# The new pid goes to kwokctl's pid file, so `make cluster-down` stops a restarted component too.
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/env.sh"

action=${1:?usage: component.sh stop|start|pause|resume NAME}
name=${2:?usage: component.sh stop|start|pause|resume NAME}
dir=$KWOK_WORKDIR/clusters/$CLUSTER_NAME
pidfile=$dir/pids/$name.pid
saved=$dir/stopped/$name
[ -d "$dir" ] || die "no local cluster at $dir: run make cluster-up"

running_pid() {
  local pid state
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  # A killed component may linger as a zombie (nobody reaps it here): that is not running.
  state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && echo "$pid"
}

case $action in
  stop)
    pid=$(running_pid) || die "$name is not running"
    mkdir -p "$dir/stopped"
    cp "/proc/$pid/cmdline" "$saved.cmdline"
    readlink "/proc/$pid/cwd" >"$saved.cwd"
    kill -KILL "$pid"
    for _ in $(seq 50); do running_pid >/dev/null || break; sleep 0.1; done
    ;;
  start)
    [ -f "$saved.cmdline" ] || die "$name was not stopped by this script"
    if running_pid >/dev/null; then die "$name is already running"; fi
    mapfile -d '' -t argv <"$saved.cmdline"
    cd "$(cat "$saved.cwd")"
    setsid "${argv[@]}" >>"$dir/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    rm -f "$saved.cmdline" "$saved.cwd"
    ;;
  pause) kill -STOP "$(running_pid || die "$name is not running")" ;;
  resume) kill -CONT "$(running_pid || die "$name is not running")" ;;
  *) die "unknown action $action: stop, start, pause or resume" ;;
esac
say "$name: $action"
