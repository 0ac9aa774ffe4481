# shellcheck shell=sh
# StatefulWebApp backup agent readiness probe.
#
# POSIX sh, busybox applets only; the whole file is passed as the -c argument
# of sh in the agent container, which has the agent's environment:
#
#   BACKUP_STATE             state file backup.sh rewrites after every run
#                            (default /tmp/backup.state)
#   BACKUP_INTERVAL_SECONDS  seconds between runs (default 3600)
#
# Exit 0 when the last run succeeded at most two intervals ago, or was paused
# by a restore (backup.sh) for at most two intervals or an hour, whichever is
# longer: a restore longer than that has failed and left its work files, and
# archiving must not stop unseen. Otherwise print
# one line saying why and exit 1. The line holds no ages or times, so it stays
# the same while the cause does (it ends up in a Kubernetes status).

set -u
f=${BACKUP_STATE:-/tmp/backup.state}
i=${BACKUP_INTERVAL_SECONDS:-3600}
# Leading zeros would be read as octal (the agent accepts "08").
i=${i#"${i%%[!0]*}"}
case $i in '' | *[!0-9]*)
    echo "backup: BACKUP_INTERVAL_SECONDS must be a whole number >= 1"; exit 1 ;;
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
    ok:?*)
        [ "$(($(date +%s) - t))" -le "$((2 * i))" ] && exit 0
        printf 'backup: no archive made in two intervals (%s s); the newest is %s\n' "$((2 * i))" "$m"
        exit 1 ;;
    paused:?*)
        l=$((2 * i)) && [ "$l" -gt 3600 ] || l=3600
        [ "$(($(date +%s) - m))" -le "$l" ] && exit 0
        printf 'backup: paused for over %s s by restore work files (.swa-restore-*) in the volume; a restore removes them when it ends (kubectl get swar)\n' "$l"
        exit 1 ;;
esac
echo "backup: state file $f (BACKUP_STATE) is unreadable or garbled"
exit 1
