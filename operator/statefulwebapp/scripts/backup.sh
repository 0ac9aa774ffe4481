# shellcheck shell=sh
# StatefulWebApp backup agent.
#
# POSIX sh, runs under busybox sh with busybox applets only. The whole file is
# passed as the -c argument of sh, so nothing here depends on $0 or on the
# location of this file. Configuration comes only from environment variables:
#
#   BACKUP_PREFIX            required; archive name prefix, e.g. "default-web"
#                            (letters, digits, ".", "_", "-"; must not start
#                            with "." or "-")
#   BACKUP_SOURCE            directory to archive (default /data)
#   BACKUP_DEST              existing directory archives are written to
#                            (default /backup)
#   BACKUP_CREATE_DEST       "true": create BACKUP_DEST (not its parents) when
#                            it is missing, as this agent's user (a node's own
#                            directory on a shared export); else it must exist
#   BACKUP_INTERVAL_SECONDS  seconds between runs in loop mode, >= 1
#                            (default 3600)
#   BACKUP_KEEP              number of archives with this prefix to keep, >= 1
#                            (default 24)
#   BACKUP_ONCE              "1": do a single run and exit with its status;
#                            unset, empty or "0": loop forever (run, sleep)
#   BACKUP_STATE             state file rewritten after every run (default
#                            /tmp/backup.state); its directory must exist and
#                            be writable. "$BACKUP_STATE.run" holds the start
#                            (epoch seconds) of the run under way, if any
#
# One run writes ${BACKUP_DEST}/${BACKUP_PREFIX}-YYYYmmddTHHMMSSZ.tar.gz (UTC)
# holding the contents of BACKUP_SOURCE with paths relative to it. The archive
# is written to a hidden ".partial" file first and renamed into place only on
# success. If an archive with the same name already exists, the run waits for
# the next second instead of overwriting it, so names stay unique and keep
# sorting by time. After a successful run only the newest BACKUP_KEEP archives
# named ${BACKUP_PREFIX}-<timestamp>.tar.gz are kept, the run's own always
# among them; one named after the clock (a clock set back since, a file put
# there) counts as the oldest. Nothing else is touched.
#
# A restore (restore.sh) works through entries named .swa-restore-* at the top
# of the volume, from before it touches the content until it has finished. An
# archive taken meanwhile could hold a half-swapped volume and, being the
# newest, be what the next restore of "latest" picks. So no run archives while
# such an entry exists, and a run during which one appeared keeps no archive:
# the run is "paused" (neither archive nor failure).
#
# After every run BACKUP_STATE is replaced (written to "$BACKUP_STATE.tmp",
# then renamed) by one line that backup-check.sh, the readiness probe, reads:
#   ok <unix epoch seconds> <archive file name>
#   failed <unix epoch seconds> <error of the run>
#   paused <unix epoch seconds> <unix epoch seconds the pause began>
# The error is the last one the run printed, as one line of printable ASCII
# (anything else becomes "?") of at most 300 characters. Error texts name no
# times and not the run's new archive, so the same cause gives the same text
# on every run: it ends up in a Kubernetes status, and a changing text would
# cost a status write per run.
#
# Exit status: 0 success, 1 failed run or state not written (once mode),
# 2 invalid configuration, 3 paused by a restore (once mode).
# In loop mode a failed run is logged to stderr and retried next interval.

set -u
umask 077
LC_ALL=C
export LC_ALL

log() {
    printf 'backup: %s\n' "$*"
}

# RUN_ERR keeps the last error for the state file. run_once runs in the main
# shell, so errors from inside it land here too.
RUN_ERR=''
err() {
    RUN_ERR="$*"
    printf 'backup: error: %s\n' "$*" >&2
}

die_config() {
    err "$*"
    exit 2
}

# Print the integer value of env var $1 (default $2); exit 2 unless it is a
# whole number >= 1.
positive_int() {
    _name=$1
    eval "_val=\${$_name:-}"
    [ -n "$_val" ] || _val=$2
    case $_val in
        '' | *[!0-9]*)
            die_config "$_name must be a whole number >= 1, got '$_val'"
            ;;
    esac
    # Strip leading zeros: sh arithmetic would read "08" as bad octal.
    _val=${_val#"${_val%%[!0]*}"}
    if [ -z "$_val" ]; then
        die_config "$_name must be a whole number >= 1, got 0"
    fi
    if [ "${#_val}" -gt 9 ]; then
        die_config "$_name is too large: $_val"
    fi
    printf '%s\n' "$_val"
}

# ---------------------------------------------------------------- config ----

SRC=${BACKUP_SOURCE:-/data}
DEST=${BACKUP_DEST:-/backup}
PREFIX=${BACKUP_PREFIX:-}

if [ -z "$PREFIX" ]; then
    die_config "BACKUP_PREFIX is required (e.g. BACKUP_PREFIX=default-web)"
fi
case $PREFIX in
    [.-]* | *[!A-Za-z0-9._-]*)
        die_config "BACKUP_PREFIX may only contain letters, digits, '.', '_', '-' and must not start with '.' or '-', got '$PREFIX'"
        ;;
esac

# Command substitution runs in a subshell, so check its status explicitly.
INTERVAL=$(positive_int BACKUP_INTERVAL_SECONDS 3600) || exit 2
KEEP=$(positive_int BACKUP_KEEP 24) || exit 2

case ${BACKUP_ONCE:-} in
    1) ONCE=1 ;;
    '' | 0) ONCE=0 ;;
    *) die_config "BACKUP_ONCE must be 1, 0 or unset, got '$BACKUP_ONCE'" ;;
esac

STATE=${BACKUP_STATE:-/tmp/backup.state}
# Checked up front: a state that can never be written would leave the agent
# unready forever with no hint why.
_state_dir=$(dirname -- "$STATE")
if [ ! -d "$_state_dir" ]; then
    die_config "directory $_state_dir of BACKUP_STATE ($STATE) does not exist"
fi
if [ ! -w "$_state_dir" ]; then
    die_config "directory $_state_dir of BACKUP_STATE ($STATE) is not writable"
fi
if [ -d "$STATE" ]; then
    die_config "BACKUP_STATE ($STATE) is a directory, expected a file path"
fi

# How far ahead of this node's clock another clock may run: an archive named
# later than that is dated in the future (see ranked).
SKEW_SECONDS=300

# Glob for the timestamp part of an archive name (YYYYmmddTHHMMSSZ).
TS_GLOB='[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z'

# Partial file of the run in progress, removed if we are terminated.
PARTIAL=''
SLEEP_PID=''

on_signal() {
    [ -n "$PARTIAL" ] && rm -f -- "$PARTIAL"
    [ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null
    log "terminated"
    exit 143
}
trap on_signal TERM INT HUP

# ---------------------------------------------------------------- one run ---

# Remove partial files left by an earlier run that was killed mid-way.
sweep_partials() {
    for _f in "$DEST"/."$PREFIX"-*.tar.gz.partial; do
        case ${_f##*/} in
            ."$PREFIX"-$TS_GLOB.tar.gz.partial) rm -f -- "$_f" ;;
        esac
    done
}

# The archives of this prefix in $DEST, newest first by the time in their
# names; a name dated over SKEW_SECONDS after the clock comes last, as the
# oldest: it was made under a clock since set back, or put there by hand, and
# must not outrank (and so prune) every archive made from now on.
ranked() {
    _cut=$(date -u -d "@$(($(date +%s) + SKEW_SECONDS))" +%Y%m%dT%H%M%SZ) || return 1
    for _f in "$DEST"/"$PREFIX"-*.tar.gz; do
        [ -f "$_f" ] || continue
        _n=${_f##*/}
        case $_n in
            "$PREFIX"-$TS_GLOB.tar.gz) _t=${_n#"$PREFIX"-} && printf '%s %s\n' "${_t%.tar.gz}" "$_n" ;;
        esac
    done | awk -v cut="$_cut" '{ print ($1 > cut ? 0 : 1), $0 }' | sort -k1,1r -k2,2r | cut -d' ' -f3
}

# Delete all but the newest $KEEP archives of this prefix; the run's own is
# kept whatever the others' names say.
prune() {
    if ! _list=$(ranked); then
        err "could not read the clock"
        return 1
    fi
    _kept=1
    _rc=0
    for _n in $_list; do
        [ "$_n" = "$RUN_ARCHIVE" ] && continue
        if [ "$_kept" -lt "$KEEP" ]; then
            _kept=$((_kept + 1))
            continue
        fi
        if rm -f -- "$DEST/$_n"; then
            log "pruned $DEST/$_n"
        else
            err "could not delete old archive $DEST/$_n"
            # The run's error is the oldest undeletable archive (the last
            # one here): it stays the same from run to run, while the newest
            # moves with every run.
            _prune_err=$RUN_ERR
            _rc=1
        fi
    done
    [ "$_rc" = 0 ] || RUN_ERR=$_prune_err
    return "$_rc"
}

# Archive name made by the last successful run, for the state file.
RUN_ARCHIVE=''

# Whether a restore is writing the source: any .swa-restore-* entry there.
restoring() {
    for _e in "$SRC"/.swa-restore-*; do
        if [ -e "$_e" ] || [ -L "$_e" ]; then
            return 0
        fi
    done
    return 1
}

# Drop the run's partial archive, if any: a restore made the run moot.
discard() {
    [ -n "$PARTIAL" ] && rm -f -- "$PARTIAL"
    PARTIAL=''
    log "paused: a restore is writing $SRC (.swa-restore-* entries there); no archive this run"
}

run_once() {
    RUN_ERR=''
    RUN_ARCHIVE=''
    # The check (backup-check.sh) takes a run under way for a sign of life.
    date +%s >"$STATE.run" 2>/dev/null || rm -f -- "$STATE.run"
    if [ ! -d "$SRC" ]; then
        err "source directory $SRC (BACKUP_SOURCE) does not exist or is not a directory"
        return 1
    fi
    if [ ! -r "$SRC" ] || [ ! -x "$SRC" ]; then
        err "source directory $SRC (BACKUP_SOURCE) is not readable"
        return 1
    fi
    if [ ! -e "$DEST" ] && [ "${BACKUP_CREATE_DEST:-}" = true ]; then
        if ! _out=$(mkdir -- "$DEST" 2>&1); then
            err "could not create destination $DEST (BACKUP_DEST): $_out"
            return 1
        fi
        log "created $DEST"
    fi
    if [ ! -d "$DEST" ]; then
        err "destination $DEST (BACKUP_DEST) does not exist or is not a directory"
        return 1
    fi
    if restoring; then
        discard
        return 3
    fi

    sweep_partials

    # Never overwrite an archive from the same second: wait for the next one.
    _tries=0
    while :; do
        if ! _ts=$(date -u +%Y%m%dT%H%M%SZ); then
            err "could not read the clock"
            return 1
        fi
        _name="$PREFIX-$_ts.tar.gz"
        [ -e "$DEST/$_name" ] || [ -e "$DEST/.$_name.partial" ] || break
        _tries=$((_tries + 1))
        if [ "$_tries" -gt 5 ]; then
            # No name in the message: it would change on every run.
            err "could not find a free archive name in $DEST after $_tries tries"
            return 1
        fi
        sleep 1
    done

    _final="$DEST/$_name"
    PARTIAL="$DEST/.$_name.partial"
    # A destination that takes no file (read-only, immutable, not ours) is said
    # plainly: tar and its compressor would race to report it, in words that
    # differ from run to run.
    if ! touch -- "$PARTIAL" 2>/dev/null; then
        PARTIAL=''
        err "cannot create a file in $DEST (BACKUP_DEST): check that it is writable"
        return 1
    fi
    # tar writes the archive itself, so its stdout is empty; capture stderr and
    # report its first line, the cause (later lines are the pipe's aftermath,
    # which vary). tar may name the partial file; its timestamp is masked so the
    # same cause gives the same text on every run.
    if ! _out=$(tar -czf "$PARTIAL" -C "$SRC" . 2>&1); then
        # Entries a restore moved away under tar fail it: the restore's doing.
        if restoring; then
            discard
            return 3
        fi
        rm -f -- "$PARTIAL"
        PARTIAL=''
        err "archiving $SRC into $DEST failed: $(printf '%s\n' "$_out" | sed -n "1{s/$_ts/YYYYmmddTHHMMSSZ/g;p;}")"
        return 1
    fi
    if restoring; then
        discard
        return 3
    fi
    if [ -n "$_out" ]; then
        err "tar reported (archive kept): $(printf '%s' "$_out" | tr '\n' ' ')"
    fi
    if ! mv -f -- "$PARTIAL" "$_final"; then
        rm -f -- "$PARTIAL"
        PARTIAL=''
        err "could not move the new archive into place in $DEST"
        return 1
    fi
    PARTIAL=''

    RUN_ARCHIVE=$_name

    _size=$(wc -c <"$_final")
    log "created $_final ($((_size)) bytes)"

    prune
}

# Replace the state file with the outcome of the run whose status is $1.
write_state() {
    if [ "$1" = 0 ]; then
        _line="ok $(date +%s) $RUN_ARCHIVE"
    elif [ "$1" = 3 ]; then
        # A pause goes on from the one the state already tells, if any.
        _now=$(date +%s)
        _s='' _t='' _since=''
        read -r _s _t _since 2>/dev/null <"$STATE"
        case $_s:$_since in
            paused:[1-9]*) case $_since in *[!0-9]*) _since=$_now ;; esac ;;
            *) _since=$_now ;;
        esac
        _line="paused $_now $_since"
    else
        # Printable ASCII only, so the state stays one line and valid text.
        _line="failed $(date +%s) $(printf '%s' "${RUN_ERR:-run failed}" | tr -c ' -~' '?' | cut -c 1-300)"
    fi
    # Write then rename, so the probe never reads a half-written file.
    if printf '%s\n' "$_line" >"$STATE.tmp" && mv -f -- "$STATE.tmp" "$STATE"; then
        rm -f -- "$STATE.run"
        return 0
    fi
    rm -f -- "$STATE.run"
    rm -f -- "$STATE.tmp"
    err "could not write the state file $STATE (BACKUP_STATE)"
    return 1
}

# ------------------------------------------------------------------- main ---

if [ "$ONCE" = 1 ]; then
    run_once
    _rc=$?
    write_state "$_rc" || exit 1
    exit "$_rc"
fi

# A run killed with its container is not under way.
rm -f -- "$STATE.run"
log "starting: source=$SRC dest=$DEST prefix=$PREFIX interval=${INTERVAL}s keep=$KEEP"
while :; do
    # The state is written before "run failed" is printed: that line is not
    # the run's error.
    run_once
    _rc=$?
    write_state "$_rc"
    [ "$_rc" = 1 ] && err "run failed; retrying in ${INTERVAL}s"
    # Sleep in the background and wait, so SIGTERM is handled promptly.
    sleep "$INTERVAL" &
    SLEEP_PID=$!
    wait "$SLEEP_PID"
    SLEEP_PID=''
done
