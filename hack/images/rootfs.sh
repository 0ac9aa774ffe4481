# Root filesystems and layers for the images built here (hack/images/build.sh, the kind node
# image's hack/kind/node-image.sh); sourced, never run. The caller defines die and $work.

# Fixed timestamps, owners and ordering: the same files give the same layer bytes.
tarball() { tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$1" -cf "$2" .; }

# The apt sources of this machine, so the images come from the same archive as its packages.
sources() {
  local f
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    [ -s "$f" ] && { echo "$f"; return; }
  done
  die "no Debian apt sources found in /etc/apt."
}

# A Debian root filesystem (a tarball at $1) of the "essential" set plus the given packages,
# without docs.
debian_rootfs() {
  local out=$1; shift
  local include; include=$(IFS=,; echo "$*")
  mmdebstrap --quiet --variant=essential --include="$include" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/* "$1"/var/log/*' \
    bookworm "$out" "$(sources)" >"$work/mmdebstrap.log" 2>&1 \
    || { tail -n 20 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed for $*."; }
}
