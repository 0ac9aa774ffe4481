#!/usr/bin/env bash
# Exercises swa-nfs-mount as the kubelet uses it, against a running NFSv3 server on this machine
# (hack/cluster/nfs.sh start gives one). Needs root, FUSE, busybox, setpriv and ss.
#   hack/tools/nfs-mount/test.sh BINARY SERVER:/PATH NFS_PORT MOUNT_PORT EXPORT_DIR
# EXPORT_DIR is the exported directory itself, read to check what reached the server. All files
# go to a scratch directory in the export, removed at the end. Prints "N passed, N failed".
set -uo pipefail
[ $# -eq 5 ] || { sed -n 2,6p "$0" >&2; exit 2; }
bin=$1 src=$2 port=$3 mport=$4 exp=$5
opts="nfsvers=3,port=$port,mountport=$mport,hard,nolock"
tmp=$(mktemp -d /tmp/swa-nfs-test.XXXXXX) && chmod 755 "$tmp"
a=$tmp/a b=$tmp/b c=$tmp/c
mkdir -p "$a" "$b" "$c"
export SWA_NFS_LOG_DIR=$tmp SWA_NFS_GUARD_LOG=$tmp/guard.log
pass=0 failed=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }
check() { local name=$1; shift; if "$@" >>"$tmp/out" 2>&1; then ok "$name"; else bad "$name"; fi; }
daemon() { pgrep -f "serve [^ ]+ [^ ]+ $1 "; }
# refused NAME RC OUTPUT PATTERN: the command failed with mount's exit 32 and said PATTERN.
refused() { if [ "$2" -eq 32 ] && grep -qF -- "$4" <<<"$3"; then ok "$1"; else bad "$1 (rc=$2: $3)"; fi; }
gone() { for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
cleanup() {
  rm -rf "${a:?}/$w" 2>/dev/null
  for m in "$a" "$b" "$c"; do umount "$m" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
w=swa-nfs-test-$$

# The command must return at once with the daemon detached, even when its output is captured.
start=$(date +%s)
out=$(timeout 30 "$bin" mount -t nfs -o "$opts" "$src" "$a" 2>&1)
rc=$?
check "mount returns 0 within seconds under \$(...) (rc=$rc, '$out')" test $rc -eq 0 -a $(($(date +%s) - start)) -lt 10
check "/proc/mounts shows $src $a fuse.nfs" grep -q "^$src $a fuse.nfs " /proc/mounts
check "second mount (-o before -t)" "$bin" mount -o "$opts" -t nfs "$src" "$b"
mkdir -p "$a/$w"
A=$a/$w B=$b/$w

check "write via one mount is read via the other" sh -c "echo one >'$A/f' && [ \"\$(cat '$B/f')\" = one ]"
check "append via the other is seen at once" sh -c "echo two >>'$B/f' && [ \"\$(cat '$A/f')\" = 'one
two' ]"
check "delete via one is gone from the other" sh -c "rm '$A/f' && ! [ -e '$B/f' ]"
check "mkdir -p, cp, mv, ls, rm" sh -c "mkdir -p '$A/d/e/f' && cp /etc/passwd '$A/d/e/f/p' && mv '$B/d/e' '$B/d/g' \
  && ls '$A/d/g/f' | grep -qx p && cmp /etc/passwd '$A/d/g/f/p' && rm -r '$B/d' && ! [ -e '$A/d' ]"
mkdir -p "$tmp/tree/x/y" && cp /etc/services /etc/hostname "$tmp/tree/x/" && ln -s ../services "$tmp/tree/x/y/l"
dd if=/dev/urandom of="$tmp/tree/x/y/big" bs=1M count=3 status=none
(cd "$tmp/tree" && busybox tar cf "$tmp/tree.tar" .)
check "busybox tar extract into the mount" sh -c "mkdir '$A/t' && busybox tar xf '$tmp/tree.tar' -C '$A/t' && diff -r '$tmp/tree' '$B/t'"
check "busybox tar create from the mount" sh -c "cd '$B/t' && busybox tar cf '$tmp/back.tar' . && mkdir '$tmp/back' \
  && busybox tar xf '$tmp/back.tar' -C '$tmp/back' && diff -r '$tmp/tree' '$tmp/back'"
check "symlink and readlink" sh -c "ln -s t/x/services '$A/sl' && [ \"\$(readlink '$B/sl')\" = t/x/services ] && cmp '$B/sl' /etc/services"
check "truncate shrink and grow" sh -c "cp /etc/services '$A/tr' && truncate -s 10 '$A/tr' && [ \$(stat -c %s '$B/tr') = 10 ] \
  && truncate -s 5000 '$B/tr' && [ \$(stat -c %s '$A/tr') = 5000 ]"
check "chmod, chown, touch -d" sh -c "chmod 640 '$A/tr' && chown 65534:65534 '$A/tr' && touch -d 2001-02-03T04:05:06Z '$A/tr' \
  && [ \"\$(stat -c '%a %u %g %Y' '$B/tr')\" = '640 65534 65534 981173106' ]"
chmod 755 "$A" && echo public >"$A/pub" && chmod 644 "$A/pub" && echo secret >"$A/priv" && chmod 600 "$A/priv"
check "a non-root user reads a 0644 file" sh -c "[ \"\$(setpriv --reuid 65534 --regid 65534 --clear-groups cat '$B/pub')\" = public ]"
check "a non-root user is refused a 0600 file" sh -c "! setpriv --reuid 65534 --regid 65534 --clear-groups cat '$B/priv'"
check "df shows the export" sh -c "df '$A' | grep -q '$src'"

# What a server restart does to a mount, without restarting a server others use: the daemon's
# own NFS connection is reset (ss -K) in the middle of a write; it must redial and send again.
reset_conn() {
  local lp
  for lp in $(ss -tnpH state established "( dport = :$port )" | grep "pid=$1," | awk '{n = split($3, x, ":"); print x[n]}'); do
    ss -K state established "( sport = :$lp and dport = :$port )" >/dev/null 2>&1
  done
}
dd if=/dev/urandom of="$tmp/r8" bs=1M count=8 status=none
pa=$(daemon "$a")
(for i in $(seq 0 7); do dd if="$tmp/r8" bs=1M skip=$i count=1 status=none; sleep 0.1; done) >"$A/rst" &
sleep 0.35 && reset_conn "$pa" && wait $!
check "a connection reset mid-write is redialled: the bytes arrive whole" cmp "$tmp/r8" "$B/rst"
check "... and the daemon logged it" grep -q "reconnected" "$tmp"/nfs-mount-a-*.log

dd if=/dev/urandom of="$tmp/r50" bs=1M count=50 status=none
t0=$(date +%s%N) && cp "$tmp/r50" "$A/r50" && t1=$(date +%s%N)
dd if="$B/r50" of=/dev/null bs=1M status=none && t2=$(date +%s%N)
echo "     50 MiB: cp in $((52428800000 / (t1 - t0))) MB/s, dd out $((52428800000 / (t2 - t1))) MB/s"
cp "$tmp/r50" "$A/r50b"
pa=$(daemon "$a")
check "umount of the writer" umount "$a"
check "its daemon exits after the unmount" gone "$pa"
check "bytes on the server match (sha256)" sh -c "[ \"\$(sha256sum <'$tmp/r50')\" = \"\$(sha256sum <'$exp/$w/r50b')\" ]"

"$bin" mount -t nfs -o "$opts" "$src" "$c"
pc=$(daemon "$c")
kill -9 "$pc"
check "a killed daemon leaves ENOTCONN" sh -c "stat '$c' 2>&1 | grep -q 'not connected'"
check "umount clears the dead mount" sh -c "umount '$c' && ! grep -q ' $c ' /proc/mounts"
pb=$(daemon "$b")
kill -TERM "$pb"
check "SIGTERM unmounts and ends the daemon" sh -c "while kill -0 $pb 2>/dev/null; do sleep 0.1; done; ! grep -q ' $b ' /proc/mounts"

out=$(timeout 20 "$bin" mount -t nfs -o nfsvers=3,port=1,mountport=1 "$src" "$c" 2>&1)
refused "no server: exit 32, clear message" $? "$out" "connection refused (is the NFS server running?)"
out=$(timeout 20 "$bin" mount -t nfs -o "$opts" 203.0.113.1:/exports/x "$c" 2>&1)
refused "guard: 203.0.113.1 refused" $? "$out" "swa-nfs-mount: refusing to mount 203.0.113.1:/exports/x: 203.0.113.1 is not an address of this machine (only local test exports may be mounted here)"
check "guard: refusal logged to SWA_NFS_GUARD_LOG" grep -q " 203.0.113.1:/exports/x $c\$" "$tmp/guard.log"
out=$(timeout 20 "$bin" mount -t nfs -o "nfsvers=4,port=$port,mountport=$mport" "$src" "$c" 2>&1)
refused "nfsvers=4 refused" $? "$out" "this client speaks NFSv3 only"
out=$(timeout 20 "$bin" mount -t nfs -o "$opts" "$src/$w/no/such" "$c" 2>&1)
refused "a missing subdirectory is named" $? "$out" "$w/no: no such file or directory"

"$bin" mount -t nfs -o "$opts" "$src" "$a" && rm -rf "${a:?}/$w"
echo "$pass passed, $failed failed"
[ "$failed" -eq 0 ]
