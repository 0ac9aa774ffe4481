# shellcheck shell=sh
# StatefulWebApp backup agent readiness probe.
#
# POSIX sh, busybox applets only; the whole file is passed as the -c argument
# of sh in the agent container, which has the agent's environment:
#
#   BACKUP_SOURCE            the volume archived (default /data)
#   BACKUP_DEST              where the archives go (default /backup)
#   BACKUP_STATE             state file backup.sh rewrites after every run
#                            (default /tmp/backup.state); "$BACKUP_STATE.run"
#                            holds the start of a run in progress
#   BACKUP_INTERVAL_SECONDS  seconds between runs (default 3600)
#
# Not ready, in this order, while:
# - a restore's work files (.swa-restore-*) are in the volume: a restore is
#   swapping its content, or was stopped half-way; nothing is archived then
#   (backup.sh), and the operator names an interrupted restore on the app;
# - the last run failed, or made an archive that is gone since;
# - no run ended for two intervals (a pause by a restore whose work files are
#   gone since counts as a run), unless one is under way and began at most two
#   intervals or an hour ago, whichever is longer: a slow run is alive, a
#   longer one is hung.
# Otherwise exit 0. A failure prints one line saying why; it holds no ages or
# times, so it stays the same while the cause does (it ends up in a status).

set -u
f=${BACKUP_STATE:-/tmp/backup.state}
i=${BACKUP_INTERVAL_SECONDS:-3600}
# Leading zeros would be read as octal (the agent accepts "08").
i=${i#"${i%%[!0]*}"}
case $i in '' | *[!0-9]*)
    echo "backup: BACKUP_INTERVAL_SECONDS must be a whole number >= 1"; exit 1 ;;
esac
for e in "${BACKUP_SOURCE:-/data}"/.swa-restore-*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    echo "backup: paused: a restore's work files (.swa-restore-*) are in the volume"; exit 1
done
l=$((2 * i)) && [ "$l" -gt 3600 ] || l=3600
r='' && read -r r 2>/dev/null <"$f.run"
case $r in '' | 0* | *[!0-9]*) r='' ;; *) [ "$(($(date +%s) - r))" -le "$l" ] || {
    printf 'backup: an archive run has gone on for over %s s: is the volume or %s hung?\n' "$l" "${BACKUP_DEST:-/backup}"; exit 1; } ;;
esac
if [ ! -e "$f" ]; then
    echo "backup: no archive run has finished yet"; exit 1
fi
s='' t='' m=''
read -r s t m 2>/dev/null <"$f"
# The epoch must be digits without a leading zero (sh would read it as octal).
case $t in '' | 0* | *[!0-9]*) s='' ;; esac
# So must a pause's start (backup.sh: "paused <epoch> <epoch it began>").
case $s:$m in paused:0* | paused:*[!0-9]*) s='' ;; esac
case $s:$m in
    failed:*) printf 'backup: last archive run failed: %s\n' "$m"; exit 1 ;;
    ok:?*) [ -f "${BACKUP_DEST:-/backup}/$m" ] || {
        printf 'backup: the newest archive is gone from %s (deleted by hand?); the next run makes one\n' "${BACKUP_DEST:-/backup}"; exit 1; } ;;
esac
case $s:$m in ok:?* | paused:?*)
    [ "$(($(date +%s) - t))" -le "$((2 * i))" ] || [ -n "$r" ] && exit 0
    printf 'backup: no archive made in two intervals (%s s)%s\n' "$((2 * i))" "$([ "$s" = ok ] && printf '; the newest is %s' "$m")"
    exit 1 ;;
esac
echo "backup: state file $f (BACKUP_STATE) is unreadable or garbled"
exit 1
