#!/usr/bin/env bash
# Builds the container images of the local cluster's real node with podman, from Debian
# packages and the pinned Kubernetes module: no registry is needed or asked.
#   hack/images/build.sh           build the missing images, print their names
#   hack/images/build.sh --names   print the names only (no build)
#   hack/images/build.sh --save D  also write each image pods run as D/<short name>.tar
#                                  (docker-archive; not the Python base, only built upon)
# Tags are the versions of what the image holds (Debian package versions, the pause version,
# a content hash of the operator's sources), so an unchanged input is never rebuilt and a
# changed one gets a new tag. Built layers stay in podman's store; nothing lands in git.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=/dev/null
. "$repo/hack/tools/versions.env"
# shellcheck source=/dev/null
. "$here/versions.env"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/statefulwebapp-operator/images"
say() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

# Debian package version -> a valid image tag (no epoch; + and ~ become -).
debver() {
  local v
  v=$(apt-cache show --no-all-versions "$1" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
  [ -n "$v" ] || die "apt knows no package $1: run 'apt-get update'."
  v=${v#*:}; v=${v//+/-}; echo "${v//\~/-}"
}
# The operator's tag changes with anything that goes into its image.
srchash() {
  (cd "$repo" && git ls-files -z pyproject.toml README.md deploy/Dockerfile operator \
    | xargs -0 sha256sum | sha256sum | cut -c1-12)
}

PREFIX=localhost/statefulwebapp
PAUSE_IMAGE=$PREFIX/pause:${PAUSE_VERSION}
BUSYBOX_IMAGE=$PREFIX/busybox:$(debver busybox-static)
NGINX_IMAGE=$PREFIX/nginx:$(debver nginx-light)
PYTHON_IMAGE=$PREFIX/python:$(debver python3)
KUBECTL_IMAGE=$PREFIX/kubectl:${KUBE_VERSION}
OPERATOR_IMAGE=$PREFIX/operator:$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml")-$(srchash)
names() {
  printf 'pause=%s\nbusybox=%s\nnginx=%s\npython=%s\nkubectl=%s\noperator=%s\n' \
    "$PAUSE_IMAGE" "$BUSYBOX_IMAGE" "$NGINX_IMAGE" "$PYTHON_IMAGE" "$KUBECTL_IMAGE" "$OPERATOR_IMAGE"
}
if [ "${1:-}" = --names ]; then names; exit 0; fi
save=
if [ "${1:-}" = --save ]; then save=${2:?usage: build.sh --save DIR}; mkdir -p "$save"; fi

for tool in podman mmdebstrap gcc; do
  command -v "$tool" >/dev/null || die "$tool is missing: run 'make tools'."
done
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=0
# shellcheck source=/dev/null
. "$here/rootfs.sh"
exists() { podman image exists "$1"; }
timed() {
  local name=$1 start; shift
  exists "$name" && return 0
  start=$(date +%s)
  say "building $name ..."
  "$@"
  say "built $name in $(( $(date +%s) - start ))s, $(podman image inspect --format '{{.Size}}' "$name" | awk '{printf "%.1f MiB", $1/1048576}')"
}

# pause: the sandbox process, compiled from the pinned Kubernetes module's own source.
build_pause() {
  local src
  src=$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  mkdir -p "$work/pause"
  gcc -Os -static -Wall -Werror -DVERSION="v${PAUSE_VERSION}" \
    -o "$work/pause/pause" "$src/build/pause/linux/pause.c"
  strip "$work/pause/pause"
  tarball "$work/pause" "$work/pause.tar"
  podman import --quiet --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535' \
    "$work/pause.tar" "$PAUSE_IMAGE" >/dev/null
}

# busybox: Debian's static busybox and a link per applet, nothing else.
build_busybox() {
  local root=$work/busybox applet
  (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root busybox-static >/dev/null)
  dpkg-deb -x "$work"/busybox-static_*.deb "$work/bb"
  mkdir -p "$root/bin" "$root/tmp" "$root/etc"
  cp "$work/bb/bin/busybox" "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  tarball "$root" "$work/busybox.tar"
  podman import --quiet --change 'CMD ["sh"]' --change 'ENV PATH=/bin' \
    "$work/busybox.tar" "$BUSYBOX_IMAGE" >/dev/null
}

# nginx: Debian's nginx-light, logging to the container's output like the official image.
build_nginx() {
  debian_rootfs "$work/nginx.tar" nginx-light
  cat >"$work/Containerfile" <<CONTAINERFILE
FROM scratch
ADD nginx.tar /
RUN mkdir -p /var/log/nginx && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log \
 && mkdir -p /usr/share/nginx/html && cp /var/www/html/index.nginx-debian.html /usr/share/nginx/html/index.html \
 && sed -i 's#root /var/www/html;#root /usr/share/nginx/html;#' /etc/nginx/sites-available/default
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
CONTAINERFILE
  podman build --quiet --timestamp 0 -t "$NGINX_IMAGE" "$work" >/dev/null
}

# python: Debian's Python 3 with venv and pip, the base the operator image builds on here.
build_python() {
  debian_rootfs "$work/python.tar" python3 python3-venv python3-pip ca-certificates
  podman import --quiet --change 'CMD ["python3"]' "$work/python.tar" "$PYTHON_IMAGE" >/dev/null
}

# kubectl: the chart's `helm test` image here; the pinned kubectl on the Debian base (it needs
# glibc, a shell and grep).
build_kubectl() {
  local bin
  bin=$("$repo/hack/tools/build.sh" --dir)
  [ -x "$bin/kube" ] || die "kubectl is not built: run 'make tools'."
  cp "$bin/kube" "$work/kubectl"
  printf 'FROM %s\nCOPY kubectl /usr/local/bin/kubectl\nENTRYPOINT ["kubectl"]\n' "$PYTHON_IMAGE" \
    >"$work/Containerfile"
  podman build --quiet --timestamp 0 -t "$KUBECTL_IMAGE" "$work" >/dev/null
}

# operator: deploy/Dockerfile on the Debian base. Its dependencies are wheels downloaded by
# this machine's pip (the build container has no package index of its own) and mounted in.
build_operator() {
  mkdir -p "$work/wheels"
  pip download --quiet --dest "$work/wheels" --only-binary=:all: --python-version 3.11 \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform linux_x86_64 "$repo" "setuptools>=69" >/dev/null
  rm -f "$work"/wheels/statefulwebapp_operator-*
  podman build --quiet --timestamp 0 -f "$repo/deploy/Dockerfile" \
    --build-arg BASE="$PYTHON_IMAGE" --build-arg PIP_ARGS="--no-index --find-links /wheels" \
    -v "$work/wheels:/wheels:ro" -t "$OPERATOR_IMAGE" "$repo" >/dev/null
}

timed "$PAUSE_IMAGE" build_pause
timed "$BUSYBOX_IMAGE" build_busybox
timed "$NGINX_IMAGE" build_nginx
timed "$PYTHON_IMAGE" build_python
timed "$KUBECTL_IMAGE" build_kubectl
timed "$OPERATOR_IMAGE" build_operator
# Each source change tags a new operator image; the older ones only fill the store.
podman images --format '{{.Repository}}:{{.Tag}}' | grep "^$PREFIX/operator:" \
  | grep -vx "$OPERATOR_IMAGE" | xargs -r podman rmi >/dev/null 2>&1 || true
if [ -n "$save" ]; then
  # Each archive sits beside a note of the image it holds; an unchanged image is not saved again.
  while IFS='=' read -r short name; do
    [ "$(cat "$save/$short.name" 2>/dev/null)" = "$name" ] && [ -s "$save/$short.tar" ] && continue
    rm -f "$save/$short.tar"
    podman save --quiet --format docker-archive -o "$save/$short.tar" "$name"
    echo "$name" >"$save/$short.name"
  done < <(names | grep -v '^python=')
fi
names
