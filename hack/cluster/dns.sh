#!/usr/bin/env bash
# CoreDNS for the local cluster: serves cluster.local from the kwok API server on a free
# loopback port, written to coredns/port.   dns.sh start | stop
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/env.sh"
pidfile=$DNS_DIR/coredns.pid

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
start)
  running && exit 0
  mkdir -p "$DNS_DIR"
  # CoreDNS serves UDP and TCP on one port. A port the kernel hands out for bind(0) is an
  # ephemeral one, which any client's connection (the components' to the API server) may take
  # before CoreDNS binds it: that made one start in a bench's dozens fail with "address
  # already in use". So: a port below the ephemeral range, free for both protocols.
  port=$(python3 - <<'PY'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    port = random.randrange(20000 if low > 21000 else 1024, min(low, 32768))
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port)
    break
else:
    raise SystemExit("no free loopback port for CoreDNS in 20000-32767")
PY
)
  cat >"$DNS_DIR/Corefile" <<COREFILE
cluster.local:$port {
    bind 127.0.0.1
    errors
    kubernetes cluster.local {
        kubeconfig $KUBECONFIG_PATH
        ttl 1
    }
}
COREFILE
  # The shell records its own PID and then becomes CoreDNS, so the pid file is exact; setsid
  # keeps a Ctrl-C in the caller's terminal from reaching it.
  # Every descriptor is redirected for the whole background job, so nothing holds the
  # caller's stdout open (a `$(up.sh)` would otherwise wait for CoreDNS to exit).
  (cd "$DNS_DIR" && exec setsid sh -c 'echo $$ >"$1"; exec coredns -conf Corefile' _ "$pidfile") \
    >"$DNS_DIR/coredns.log" 2>&1 </dev/null &
  for _ in $(seq 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
  echo "$port" >"$DNS_DIR/port"
  # Ready once it answers a name that always exists: the API server's own Service.
  for _ in $(seq 100); do
    if python3 "$repo/hack/cluster/dns-answers.py" 127.0.0.1 "$port" 2>/dev/null; then exit 0; fi
    running || { cat "$DNS_DIR/coredns.log" >&2; die "CoreDNS exited; see $DNS_DIR/coredns.log."; }
    sleep 0.2
  done
  die "CoreDNS did not answer for kubernetes.default within 20s; see $DNS_DIR/coredns.log."
  ;;
stop)
  if running; then kill "$(cat "$pidfile")"; fi
  rm -f "$pidfile"
  # Belt and braces: any CoreDNS still serving from this directory (a pid file lost to a
  # crash, say) goes too.
  for pid in $(pgrep -x coredns || true); do
    case "$(readlink "/proc/$pid/cwd" 2>/dev/null)" in
      "$DNS_DIR"|"$DNS_DIR (deleted)") kill "$pid" 2>/dev/null || true ;;
    esac
  done
  ;;
*) die "usage: dns.sh start|stop" ;;
esac
