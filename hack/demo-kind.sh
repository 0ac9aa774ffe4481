#!/usr/bin/env bash
# `make demo-kind`: the sample app on real pods. The kind cluster of the e2e suite (one tainted
# control plane, three workers, on podman, the node image built here), the chart's operator
# (the image built here), crds/samples/web.yaml on the cluster's test NFS export (the sample's
# public export is never mounted) with the images built here, then the page every replica
# serves, fetched by its stable DNS name from a backup agent. Leaves everything running:
# `make kind-down` deletes it all.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
step() { printf '[demo-kind] %s\n' "$*" >&2; }
die() { printf '[demo-kind] error: %s\n' "$*" >&2; exit 1; }
started=$(date +%s)

kubeconfig=$(hack/kind/kind.sh up | tail -n 1)
tools=$(hack/tools/build.sh --dir)
kc() { "$tools/kubectl" --kubeconfig "$kubeconfig" "$@"; }
helm() { "$tools/helm" --kubeconfig "$kubeconfig" "$@"; }
# name=image lines of what hack/images/build.sh built (kind.sh up loaded them into every node).
images=$(hack/images/build.sh 2>/dev/null)
image() { sed -n "s/^$1=//p" <<<"$images"; }
export_json=$(hack/kind/kind.sh nfs-export)
server=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["server"])' "$export_json")

step "installing the chart (operator image $(image operator)) in swa-system"
operator=$(image operator)
helm upgrade --install swa deploy/statefulwebapp-operator -n swa-system --create-namespace \
  --set image.repository="${operator%:*}" --set image.tag="${operator##*:}" \
  --set image.pullPolicy=Never --set test.image="$(image kubectl)" \
  --set "nfs.allow={$server}" --wait --timeout 180s >/dev/null

# The app's own directory of the export, and a page in it written on the server's side: every
# replica serves this one file from its NFS mount.
served=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["path"])' "$export_json")/default-web
mkdir -p "$served" && chmod 0777 "$served"
page="Hello from the NFS export, written at $(date -u +%H:%M:%S)"
printf '%s\n' "$page" >"$served/index.html"
chmod 0666 "$served/index.html"

step "applying crds/samples/web.yaml on the test export $server, with the images built here"
.venv/bin/python - "$export_json" "$(image nginx)" "$(image busybox)" <<'EOF' | kc apply -f - >/dev/null
import json, sys
import yaml
export, nginx, busybox = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
app = yaml.safe_load(open("crds/samples/web.yaml"))
spec = app["spec"]
spec["storage"]["nfs"] = {**export, "path": f"{export['path']}/default-web"}
spec["image"] = nginx
spec["backup"]["image"] = busybox
spec["dateLogger"]["image"] = busybox
print(yaml.safe_dump(app))
EOF
kc wait --for=condition=Ready swa/web --timeout=300s >/dev/null || {
  kc get swa web -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}' >&2; echo >&2
  die "the app was not Ready within 300 s"
}
step "Ready"
kc get swa web
kc get pods -o wide

agent=$(kc get pods -l app.kubernetes.io/component=backup -o jsonpath='{.items[0].metadata.name}')
[ -n "$agent" ] || die "no backup agent pod to fetch the pages from"
replicas=$(kc get swa web -o jsonpath='{.spec.replicas}')
container=$(kc get pod "$agent" -o jsonpath='{.spec.containers[0].name}')
for ((i = 0; i < replicas; i++)); do
  url="http://web-$i.nginx.default.svc.cluster.local/"
  # A pod's DNS name can follow its readiness by a moment: asked again for up to 30 s. (Not
  # busybox wget's -T: this build's crashes with it.)
  for _ in $(seq 30); do
    got=$(kc exec "$agent" -c "$container" -- wget -qO- "$url" 2>&1) && [ "$got" = "$page" ] && break
    sleep 1
  done
  [ "$got" = "$page" ] || die "$url served '$got', not the page on the export"
  step "$url serves: $got"
done
step "done in $(( $(date +%s) - started ))s; kubectl --kubeconfig $kubeconfig get swa -w   |   delete it all: make kind-down"
