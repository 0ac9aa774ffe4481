#!/usr/bin/env bash
# `make demo`: local cluster + CRD + the operator in the background + the sample app, then wait
# until the app is Ready and show what it made. The operator keeps running (log and pid under
# .cluster/); `make cluster-down` stops everything.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# kwok's nodes only: the demo needs no container runtime, package or root (make tools-kwok).
kubeconfig=$(REAL_NODE=0 hack/cluster/up.sh)
kc() { "$(hack/tools/build.sh --dir)/kubectl" --kubeconfig "$kubeconfig" "$@"; }
step() { printf '[demo] %s\n' "$*" >&2; }

step "installing the StatefulWebApp and StatefulWebAppRestore CRDs"
kc apply --server-side -f crds/ >/dev/null
kc wait --for=condition=Established crd/statefulwebapps.apps.k8slab.io crd/statefulwebapprestores.apps.k8slab.io --timeout=60s >/dev/null
# The operator's own namespace, where its leader-election lease lives (the README installs the
# chart there too, so a chart and `make run` share one lease and never both write).
kc create namespace swa-system >/dev/null 2>&1 || true

pidfile=.cluster/operator.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  step "the operator is already running (pid $(cat "$pidfile"))"
else
  step "starting the operator (log: .cluster/operator.log)"
  KUBECONFIG=$kubeconfig setsid sh -c 'echo $$ >"$1"; exec .venv/bin/statefulwebapp-operator --health none' \
    _ "$pidfile" >.cluster/operator.log 2>&1 </dev/null &
  for _ in $(seq 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
fi

step "applying crds/samples/web.yaml"
kc apply -f crds/samples/web.yaml >/dev/null
start=$(date +%s)
while :; do
  row=$(kc get swa web --no-headers 2>/dev/null || true)
  reason=$(kc get swa web -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}' 2>/dev/null || true)
  printf '\r[demo] waiting for Ready: %-60s' "${row:-not yet seen}" >&2
  [ "$reason" = Ready ] && break
  if [ $(( $(date +%s) - start )) -gt 120 ]; then
    printf '\n' >&2
    tail -n 30 .cluster/operator.log >&2
    echo "[demo] error: the app was not Ready within 120s; its condition says: $reason" >&2
    exit 1
  fi
  sleep 1
done
printf '\n' >&2
step "Ready after $(( $(date +%s) - start ))s"
kc get swa,pods,svc,pvc,ds,cronjob,jobs -o wide
echo
step "explore: kubectl --kubeconfig $kubeconfig get swa -w   |   stop everything: make cluster-down"
