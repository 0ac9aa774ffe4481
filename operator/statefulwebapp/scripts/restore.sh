# shellcheck shell=sh
# StatefulWebApp restore job: put the content of one backup archive (made by
# backup.sh) back into an app's volume.
#
# POSIX sh, runs under busybox sh with busybox applets only. The whole file is
# passed as the -c argument of sh, so nothing here depends on $0 or on the
# location of this file. Configuration comes only from environment variables:
#
#   RESTORE_PREFIX     required; archive name prefix, e.g. "default-web"
#                      (letters, digits, ".", "_", "-"; must not start with
#                      "." or "-"), as BACKUP_PREFIX of backup.sh
#   RESTORE_ARCHIVE    "latest" (default, also when empty): the newest archive;
#                      or the file name of one archive,
#                      ${RESTORE_PREFIX}-YYYYmmddTHHMMSSZ.tar.gz
#   RESTORE_FROM       existing directory holding the archives (default /backup)
#   RESTORE_LAYOUT     "flat" (default, also when empty): archives directly in
#                      RESTORE_FROM, all made on this pod's node
#                      (RESTORE_NODE_NAME); "nodes": one subdirectory of
#                      RESTORE_FROM per node name, each holding that node's
#                      archives
#   RESTORE_NODE       "nodes" layout: only consider this node's subdirectory;
#                      empty or unset: consider every node's. "flat" layout:
#                      must be empty or equal RESTORE_NODE_NAME (else the Job
#                      runs on the wrong node, whose archives are not there)
#   RESTORE_NODE_NAME  this pod's node (downward API spec.nodeName); required
#                      with the "flat" layout, where it names the archives' node
#   RESTORE_TARGET     existing directory, the app's volume root (default /data)
#   RESTORE_ID         required; id of this restore, [a-z0-9-]+, used in the
#                      names of the work files it keeps in RESTORE_TARGET
#   RESTORE_RESULT     file the result is written to (default
#                      /dev/termination-log, which Kubernetes shows in the pod
#                      status as the termination message)
#
# Node names (RESTORE_NODE, RESTORE_NODE_NAME, subdirectories of RESTORE_FROM)
# follow the prefix's character rules; other subdirectories are ignored.
#
# A run:
#  1. Finishes any swap (step 4) that a killed run left behind, whatever its
#     RESTORE_ID, then removes the work directories of killed runs.
#  2. Lists the candidates: regular files named
#     ${RESTORE_PREFIX}-YYYYmmddTHHMMSSZ.tar.gz of the considered node(s).
#     "latest" is the newest by timestamp across them (a tie: the first node in
#     sort order), one dated over 5 minutes after the clock counting as the
#     oldest (a clock set back since, a file put there); a named archive must be among them (on several nodes: the
#     first node in sort order).
#  3. Checks the archive (tar -tzf reads it whole, so gzip's CRC is checked as
#     well) and extracts it into ${RESTORE_TARGET}/.swa-restore-${RESTORE_ID}.partial/.
#     Until the extraction is complete the volume's content is not touched.
#  4. Swaps the content, crash-safe: see "swap" below.
#  5. Writes the result to RESTORE_RESULT and prints it on stdout, as
#     key=value lines, under 4096 bytes (Kubernetes' limit):
#         result=restored | failed
#         archive=<file name>          when one was chosen
#         node=<node name>             when one was chosen
#         message=<one line for a human>
#         candidate=<node>/<file name> one per candidate, newest first, <= 20
#     Progress and errors are logged to stderr.
#
# Swap. Work entries in RESTORE_TARGET are named .swa-restore-<id>.<kind>; the
# swap never moves them. For id I:
#   - marker .swa-restore-I.swap is written (atomically, by rename) with "old";
#   - every other top-level entry of the target (hidden ones too) is moved into
#     .swa-restore-I.previous/;
#   - the marker is rewritten to "new";
#   - every top-level entry of .swa-restore-I.partial/ is moved into the target;
#   - .swa-restore-I.partial, then .swa-restore-I.previous, then the marker
#     are removed.
# Every move is a rename within one file system, so each entry is always either
# in its old or in its new place. A marker found by step 1 is rolled forward
# from the phase it names: "old" moves the remaining old entries away, then
# does the "new" phase; "new" moves the remaining new entries in, then cleans
# up. The "old" phase can be undone instead (entries moved back, marker
# removed): this run does so when a move of that phase fails, so a volume
# whose entries cannot be moved (e.g. a mount point) keeps its old content;
# and step 1 does so for an "old" marker whose .partial directory is missing,
# since then there is nothing to roll forward to.
#
# Exit status: 0 restored; 1 failure a retry may fix (I/O, a swap left to
# resume); 2 invalid configuration; 3 permanent failure a retry cannot fix (no
# archive at all, no such archive, corrupt archive, a foreign work file);
# 143 terminated by SIGTERM (also INT, HUP). On a signal the run stops at
# once; what it leaves is put right by step 1 of the next run.
#
# Concurrency: one restore at a time per volume. Two runs on one volume (e.g.
# a Job's replacement pod started while the old one still terminates) would
# each take the other's work files for a killed run's.

set -u
# No umask of our own: tar restores the archive's modes when run as root and
# applies the umask otherwise, so a strict one would lock the app out of its
# own files.
LC_ALL=C
export LC_ALL

log() {
    printf 'restore: %s\n' "$*" >&2
}

# Glob for the timestamp part of an archive name (YYYYmmddTHHMMSSZ).
# How far ahead of this node's clock another node's may run (as in backup.sh).
SKEW_SECONDS=300
TS_GLOB='[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z'
W='.swa-restore-'

# What the result reports; set as they become known.
R_ARCHIVE=''
R_NODE=''
CANDS=''
RESULT=${RESTORE_RESULT:-/dev/termination-log}
# This run's work directory (log of the last command, marker drafts); empty
# until it exists.
WORK=''
# What the run is doing, for the signal handler: config, recover, select,
# check, extract, swap, cleanup.
STAGE=config
# Pid of the background command being waited for, if any.
CHILD=''
# Why the last swap step failed.
ERR=''

# Print $1 as one line, at most $2 bytes.
one_line() {
    printf '%.*s' "$2" "$(printf '%s' "$1" | tr '\n\r' '  ')"
}

# Write the result, remove the work directory and exit with status $1.
# $2: restored or failed, $3: message.
finish() {
    # Finishing is quick; a signal now would only garble the result.
    trap '' TERM INT HUP
    _text="result=$2"
    [ -n "$R_ARCHIVE" ] && _text="$_text
archive=$R_ARCHIVE"
    [ -n "$R_NODE" ] && _text="$_text
node=$R_NODE"
    _text="$_text
message=$(one_line "$3" 1500)"
    _shown=0
    while read -r _ts _node _file; do
        [ -n "$_file" ] || continue
        [ "$_shown" -lt 20 ] || break
        _line="candidate=$_node/$_file"
        # Leave room under 4096 bytes: Kubernetes cuts a longer message.
        [ $((${#_text} + ${#_line} + 2)) -le 4000 ] || break
        _text="$_text
$_line"
        _shown=$((_shown + 1))
    done <<EOF
$CANDS
EOF
    # Only names longer than anything Kubernetes allows get here.
    [ "${#_text}" -le 4000 ] || _text=$(printf '%.4000s' "$_text")
    if ! printf '%s\n' "$_text" 2>/dev/null >"$RESULT"; then
        log "error: could not write the result to $RESULT (RESTORE_RESULT)"
    fi
    printf '%s\n' "$_text"
    [ -n "$WORK" ] && rm -rf -- "$WORK"
    [ "$2" = restored ] || log "error: $3"
    exit "$1"
}

die_config() {
    finish 2 failed "invalid configuration: $*"
}

# True if $1 is a valid archive prefix or node name.
valid_name() {
    case $1 in
        '' | [.-]* | *[!A-Za-z0-9._-]*) return 1 ;;
    esac
    return 0
}

# Last lines of the current command's error output, as one line.
err_text() {
    [ -n "$WORK" ] && [ -s "$WORK/err" ] || return 0
    one_line "$(tail -n 3 "$WORK/err")" 600
}

# Run "$@" in the background and wait for it, stderr into $WORK/err: the shell
# runs a trap only once its foreground command has ended, so a long tar or
# rm in the foreground would delay SIGTERM handling until it is done.
run_bg() {
    "$@" 2>"$WORK/err" &
    CHILD=$!
    wait "$CHILD"
    _rc=$?
    CHILD=''
    return "$_rc"
}

# shellcheck disable=SC2317 # called by the trap
on_signal() {
    trap '' TERM INT HUP
    if [ -n "$CHILD" ]; then
        kill "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    case $STAGE in
        config | select | check)
            _left='nothing was changed'
            ;;
        extract)
            # The old content is untouched; drop the half-extracted copy.
            rm -rf -- "$PART"
            _left='the volume content is unchanged'
            ;;
        recover)
            # Leave everything as it is (see below).
            _left='the recovery of an earlier run is left unfinished; the next restore run finishes it'
            ;;
        *)
            # swap, cleanup: leave everything as it is. The marker tells the
            # next run how to finish; the previous dir may be the only copy of
            # the old content.
            _left='a swap is left in progress; the next restore run finishes it'
            ;;
    esac
    finish 143 failed "terminated by a signal during $STAGE; $_left"
}
trap on_signal TERM INT HUP

# ---------------------------------------------------------------- config ----

PREFIX=${RESTORE_PREFIX:-}
WANT=${RESTORE_ARCHIVE:-latest}
FROM=${RESTORE_FROM:-/backup}
LAYOUT=${RESTORE_LAYOUT:-flat}
NODE_FILTER=${RESTORE_NODE:-}
NODE_NAME=${RESTORE_NODE_NAME:-}
TARGET=${RESTORE_TARGET:-/data}
ID=${RESTORE_ID:-}

if [ -z "$PREFIX" ]; then
    die_config "RESTORE_PREFIX is required (e.g. RESTORE_PREFIX=default-web)"
fi
valid_name "$PREFIX" ||
    die_config "RESTORE_PREFIX may only contain letters, digits, '.', '_', '-' and must not start with '.' or '-', got '$PREFIX'"

# shellcheck disable=SC2254 # $TS_GLOB is a pattern
case $WANT in
    latest | "$PREFIX"-$TS_GLOB.tar.gz) ;;
    *) die_config "RESTORE_ARCHIVE must be 'latest' or an archive name $PREFIX-YYYYmmddTHHMMSSZ.tar.gz, got '$WANT'" ;;
esac

case $ID in
    '') die_config "RESTORE_ID is required (letters a-z, digits, '-')" ;;
    *[!a-z0-9-]*) die_config "RESTORE_ID may only contain a-z, 0-9 and '-', got '$ID'" ;;
esac

if [ -n "$NODE_NAME" ] && ! valid_name "$NODE_NAME"; then
    die_config "RESTORE_NODE_NAME is not a valid node name: '$NODE_NAME'"
fi
if [ -n "$NODE_FILTER" ] && ! valid_name "$NODE_FILTER"; then
    die_config "RESTORE_NODE is not a valid node name: '$NODE_FILTER'"
fi
case $LAYOUT in
    flat)
        [ -n "$NODE_NAME" ] ||
            die_config "RESTORE_NODE_NAME is required with RESTORE_LAYOUT=flat (the node the archives were made on)"
        if [ -n "$NODE_FILTER" ] && [ "$NODE_FILTER" != "$NODE_NAME" ]; then
            die_config "RESTORE_NODE=$NODE_FILTER but this pod runs on node $NODE_NAME (RESTORE_NODE_NAME); with RESTORE_LAYOUT=flat only this node's archives are here"
        fi
        ;;
    nodes) ;;
    *) die_config "RESTORE_LAYOUT must be 'flat' or 'nodes', got '$LAYOUT'" ;;
esac

if [ ! -d "$TARGET" ]; then
    die_config "target $TARGET (RESTORE_TARGET) does not exist or is not a directory"
fi
if [ ! -d "$FROM" ] || [ ! -r "$FROM" ] || [ ! -x "$FROM" ]; then
    die_config "archive directory $FROM (RESTORE_FROM) does not exist or is not a readable directory"
fi
# The swap empties the target: archives inside it would be deleted with the
# old content.
_t_real=$(realpath "$TARGET" 2>/dev/null) || _t_real=''
_f_real=$(realpath "$FROM" 2>/dev/null) || _f_real=''
if [ -n "$_t_real" ] && [ -n "$_f_real" ]; then
    case $_f_real/ in
        "${_t_real%/}"/*)
            die_config "RESTORE_FROM ($FROM) must not be RESTORE_TARGET ($TARGET) or inside it"
            ;;
    esac
fi

PART=$TARGET/$W$ID.partial

# ------------------------------------------------------------------ swap ----

# Set the work paths of swap id $1: S_PART, S_PREV, S_MARK.
swap_paths() {
    S_PART=$TARGET/$W$1.partial
    S_PREV=$TARGET/$W$1.previous
    S_MARK=$TARGET/$W$1.swap
}

# Push written data and renames to the disk: not needed if only the pod is
# killed, but a node crash must not reorder a marker and the moves it covers.
flush() {
    sync -f "$TARGET" 2>/dev/null || sync
}

# Move every top-level entry of directory $1, hidden ones too, except work
# entries, into directory $2. Sets ERR on failure.
move_entries() {
    for _e in "$1"/* "$1"/.[!.]* "$1"/..?*; do
        [ -e "$_e" ] || [ -L "$_e" ] || continue
        case ${_e##*/} in
            "$W"*) continue ;;
        esac
        if ! _out=$(mv -f -- "$_e" "$2/" 2>&1); then
            ERR="could not move $_e into $2: $(one_line "$_out" 300)"
            return 1
        fi
    done
    return 0
}

# Write $2 (old or new) to the marker $S_MARK: a draft in the work directory
# is renamed over it, so the marker always holds one whole word.
set_marker() {
    if ! printf '%s\n' "$2" >"$WORK/marker" || ! mv -f -- "$WORK/marker" "$S_MARK"; then
        ERR="could not write the swap marker $S_MARK"
        return 1
    fi
    flush
    log "swap $1: phase $2"
}

# Undo the "old" phase of swap $1 (marker still "old"): move the old entries
# back, then drop the marker and the extracted copy.
rollback() {
    swap_paths "$1"
    if [ -d "$S_PREV" ]; then
        move_entries "$S_PREV" "$TARGET" || return 1
        rmdir -- "$S_PREV" || {
            ERR="could not remove $S_PREV"
            return 1
        }
    fi
    flush
    rm -f -- "$S_MARK" || {
        ERR="could not remove $S_MARK"
        return 1
    }
    run_bg rm -rf -- "$S_PART"
    log "swap $1: rolled back, old content in place"
}

# Do swap $1 from phase $2 (old or new) on; the extraction into its .partial
# directory is complete. Returns 1 with ERR set if the swap stays unfinished
# (the marker tells the next run where to go on), 4 if it was rolled back.
swap_from() {
    swap_paths "$1"
    if [ "$2" = old ]; then
        if [ ! -d "$S_PART" ]; then
            # Nothing to roll forward to; keep the old content.
            ERR="swap $1 has no extracted copy $S_PART"
            log "$ERR: rolling it back"
            rollback "$1" || return 1
            return 4
        fi
        if ! { [ -d "$S_PREV" ] || mkdir -m 700 -- "$S_PREV"; } ||
            ! move_entries "$TARGET" "$S_PREV"; then
            [ -d "$S_PREV" ] || ERR="could not create $S_PREV"
            _why=$ERR
            log "swap $1: $_why; rolling back"
            if rollback "$1"; then
                ERR=$_why
                return 4
            fi
            ERR="$_why; rollback failed too: $ERR"
            return 1
        fi
        flush
        set_marker "$1" new || return 1
    fi
    swap_paths "$1"
    if [ -d "$S_PART" ]; then
        move_entries "$S_PART" "$TARGET" || return 1
    fi
    flush
    return 0
}

# Remove the work directories of finished swap $1, then its marker.
swap_cleanup() {
    swap_paths "$1"
    if ! run_bg rm -rf -- "$S_PART" "$S_PREV"; then
        ERR="could not remove $S_PART or $S_PREV: $(err_text)"
        return 1
    fi
    if ! rm -f -- "$S_MARK"; then
        ERR="could not remove $S_MARK"
        return 1
    fi
    flush
    log "swap $1: done"
}

# --------------------------------------------------------------- recover ----

STAGE=recover
# Work directories hold nothing a later run needs.
for _d in "$TARGET/$W"*.work; do
    [ -e "$_d" ] || continue
    rm -rf -- "$_d" || finish 1 failed "could not remove the stale work directory $_d"
done
WORK=$TARGET/$W$ID.work
if ! _out=$(mkdir -m 700 -- "$WORK" 2>&1); then
    WORK=''
    finish 1 failed "could not create $TARGET/$W$ID.work in RESTORE_TARGET: $(one_line "$_out" 300)"
fi

for _m in "$TARGET/$W"*.swap; do
    [ -e "$_m" ] || [ -L "$_m" ] || continue
    _mid=${_m##*/"$W"}
    _mid=${_mid%.swap}
    _state=''
    [ -f "$_m" ] && _state=$(cat -- "$_m" 2>/dev/null)
    case $_mid in
        '' | *[!a-z0-9-]*) _state=bad ;;
    esac
    case $_state in
        old | new) ;;
        *) finish 3 failed "unexpected swap marker $_m (content '$(one_line "$_state" 20)'): check the volume and remove it by hand" ;;
    esac
    log "found swap $_mid interrupted in phase $_state: resuming it"
    ERR=''
    swap_from "$_mid" "$_state"
    case $? in
        0) swap_cleanup "$_mid" || log "warning: $ERR" ;;
        4) ;;
        *) finish 1 failed "could not finish the interrupted swap $_mid: $ERR" ;;
    esac
done

# Extracted copies and previous dirs without a marker are leftovers of killed
# runs (a previous dir is removed before its marker, so it is empty or junk).
for _d in "$TARGET/$W"*.partial "$TARGET/$W"*.previous; do
    [ -e "$_d" ] || [ -L "$_d" ] || continue
    _mid=${_d##*/"$W"}
    _mid=${_mid%.*}
    [ -e "$TARGET/$W$_mid.swap" ] && continue
    log "removing $_d left by a killed run"
    run_bg rm -rf -- "$_d" || finish 1 failed "could not remove $_d left by a killed run: $(err_text)"
done

# ---------------------------------------------------------------- select ----

STAGE=select

# Print "<timestamp> <node> <file>" for each archive of node $1 in dir $2.
list_node() {
    for _f in "$2"/"$PREFIX"-$TS_GLOB.tar.gz; do
        [ -f "$_f" ] || continue
        _n=${_f##*/}
        _ts=${_n#"$PREFIX"-}
        printf '%s %s %s\n' "${_ts%.tar.gz}" "$1" "$_n"
    done
}

# The considered nodes, with their directories: "<node> <dir>" lines.
NODES=''
NODE_COUNT=0
if [ "$LAYOUT" = flat ]; then
    NODES="$NODE_NAME $FROM"
    NODE_COUNT=1
    WHERE="on node $NODE_NAME (in $FROM)"
elif [ -n "$NODE_FILTER" ]; then
    if [ -d "$FROM/$NODE_FILTER" ]; then
        NODES="$NODE_FILTER $FROM/$NODE_FILTER"
        NODE_COUNT=1
        WHERE="on node $NODE_FILTER (in $FROM/$NODE_FILTER)"
    else
        WHERE="on node $NODE_FILTER ($FROM/$NODE_FILTER does not exist)"
    fi
else
    for _d in "$FROM"/*; do
        [ -d "$_d" ] || continue
        valid_name "${_d##*/}" || continue
        NODES="$NODES${NODES:+
}${_d##*/} $_d"
        NODE_COUNT=$((NODE_COUNT + 1))
    done
    WHERE="on any of $NODE_COUNT node directories in $FROM"
fi

# Newest first; for one timestamp on several nodes, the first node first. An
# archive named over SKEW_SECONDS after the clock comes last: a clock set back
# since, or a file put there by hand, says nothing of what is newest.
if ! CUT=$(date -u -d "@$(($(date +%s) + SKEW_SECONDS))" +%Y%m%dT%H%M%SZ); then
    finish 1 failed "could not read the clock"
fi
CANDS=$(
    printf '%s\n' "$NODES" | while read -r _node _dir; do
        [ -n "$_node" ] && list_node "$_node" "$_dir"
    done | awk -v cut="$CUT" '{ print ($1 > cut ? 0 : 1), $0 }' | sort -k1,1r -k2,2r -k3,3 \
        | cut -d' ' -f2-
)

COUNT=0
NEWEST=''
CHOSEN=''
while read -r _ts _node _file; do
    [ -n "$_file" ] || continue
    COUNT=$((COUNT + 1))
    [ -n "$NEWEST" ] || NEWEST="$_file on node $_node"
    if [ -z "$CHOSEN" ] && { [ "$WANT" = latest ] || [ "$WANT" = "$_file" ]; }; then
        CHOSEN=$_file
        R_NODE=$_node
    fi
done <<EOF
$CANDS
EOF

if [ "$COUNT" -eq 0 ]; then
    finish 3 failed "no archives $PREFIX-<timestamp>.tar.gz $WHERE"
fi
if [ -z "$CHOSEN" ]; then
    finish 3 failed "no archive $WANT $WHERE; $COUNT archives there, newest $NEWEST"
fi
R_ARCHIVE=$CHOSEN
if [ "$LAYOUT" = flat ]; then
    ARCHIVE=$FROM/$CHOSEN
else
    ARCHIVE=$FROM/$R_NODE/$CHOSEN
fi
log "restoring $ARCHIVE (node $R_NODE) into $TARGET"

# ----------------------------------------------------------------- check ----

STAGE=check
if ! run_bg tar -tzf "$ARCHIVE" >/dev/null; then
    # The backup agent may have pruned it since it was listed: list again.
    [ -f "$ARCHIVE" ] || finish 1 failed "archive $ARCHIVE disappeared while being read (pruned?): $(err_text)"
    finish 3 failed "archive $CHOSEN from node $R_NODE is corrupt: $(err_text)"
fi

# --------------------------------------------------------------- extract ----

STAGE=extract
if ! _out=$(mkdir -m 700 -- "$PART" 2>&1); then
    finish 1 failed "could not create $PART: $(one_line "$_out" 300)"
fi
# Numeric owners: the volume's owners are uids, whatever names this image's
# /etc/passwd gives them.
if ! run_bg tar -xzf "$ARCHIVE" -C "$PART" --numeric-owner; then
    _why=$(err_text)
    rm -rf -- "$PART"
    finish 1 failed "extracting $CHOSEN from node $R_NODE into $TARGET failed, content unchanged: $_why"
fi
# A backup taken during a restore holds that restore's work entries; restoring
# them would make the next run resume a swap that is not there.
rm -rf -- "${PART:?}/$W"*

# shellcheck disable=SC2317 # called by run_bg
count_files() {
    find "$PART" -type f | wc -l
}
run_bg count_files >"$WORK/count"
FILES=$(cat "$WORK/count" 2>/dev/null)
case $FILES in
    '' | *[!0-9\ ]*) FILES='?' ;;
    *) FILES=$((FILES)) ;;
esac
flush

# ------------------------------------------------------------------ swap ----

STAGE=swap
swap_paths "$ID"
if ! set_marker "$ID" old; then
    rm -f -- "$S_MARK"
    rm -rf -- "$PART"
    finish 1 failed "$ERR; content unchanged"
fi
ERR=''
swap_from "$ID" old
case $? in
    0) ;;
    4) finish 1 failed "$ERR; content unchanged" ;;
    *) finish 1 failed "swap interrupted, the next restore run finishes it: $ERR" ;;
esac

STAGE=cleanup
case $FILES in
    1) _msg="restored $CHOSEN from node $R_NODE (1 file)" ;;
    *) _msg="restored $CHOSEN from node $R_NODE ($FILES files)" ;;
esac
swap_cleanup "$ID" || _msg="$_msg; warning: $ERR"
STAGE=finished
finish 0 restored "$_msg"
