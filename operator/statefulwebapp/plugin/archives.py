"""An app's archives as a backup agent sees them: the command run in its pod, and its output read.

Where they are is ``scripts/backup.sh``'s: the agent's ``BACKUP_DEST`` (``/backup``) holds
``<namespace>-<name>-<YYYYmmddTHHMMSSZ>.tar.gz`` (UTC), on the node's own directory of the app
(flat) or, with ``backup.target.nfs``, on the export in one directory per node
(``/backup/<node>/...``). Hidden ``.partial`` files are runs under way, never listed. The
agent's state file (``BACKUP_STATE``) says how its last run went: ``ok <epoch> <archive>``,
``failed <epoch> <error>`` or ``paused <epoch> <since>``.

Pure: the command is a list of arguments, the output a string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from statefulwebapp.specs.render import BACKUP_DEST, BACKUP_STATE

CONTAINER = "backup"
"""The agent's container (``render_backup.render_daemonset``)."""
_STAMP = "%Y%m%dT%H%M%SZ"


def listing_command(prefix: str, dest: str = BACKUP_DEST, state: str = BACKUP_STATE) -> list[str]:
    """The command that prints the agent's state line and every archive of ``prefix``.

    One line each: ``state <the state file's line>``, ``archive <bytes> <mtime epoch>
    <path under dest>``. busybox ``sh`` and ``stat`` only (the agents' image). Exit 2 when
    ``dest`` is not there.
    """
    script = (
        f'cd "{dest}" || exit 2; '
        f'if [ -f "{state}" ]; then printf "state %s\\n" "$(head -n 1 "{state}")"; fi; '
        f'for f in "{prefix}"-*.tar.gz */"{prefix}"-*.tar.gz; do '
        '[ -f "$f" ] && stat -c "archive %s %Y %n" -- "$f"; '
        "done; exit 0"
    )
    return ["sh", "-c", script]


@dataclass(frozen=True)
class Archive:
    """One archive: the node that keeps it, its file name, size and time."""

    node: str
    file: str
    size: int
    """Bytes."""
    modified: int
    """The file's modification time, epoch seconds."""

    @property
    def made(self) -> datetime | None:
        """When it was made, from its name (what restores rank it by); None if unreadable."""
        stamp = self.file.removesuffix(".tar.gz").rsplit("-", 1)[-1]
        try:
            return datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
        except ValueError:
            return None


@dataclass(frozen=True)
class AgentState:
    """The agent's last run, from its state file."""

    outcome: str
    """``ok``, ``failed`` or ``paused``."""
    at: int
    """When the run ended, epoch seconds."""
    detail: str
    """The archive made (ok), the error (failed), when the pause began (paused)."""


@dataclass(frozen=True)
class Listing:
    """What one agent showed."""

    state: AgentState | None
    archives: tuple[Archive, ...]
    """Newest first, by the time in their names."""


def parse_listing(output: str, prefix: str, node: str) -> Listing:
    """Read :func:`listing_command`'s ``output`` of the agent on ``node``.

    An archive at the top of the directory is ``node``'s; one in a subdirectory (an NFS
    target) is the node the directory is named after. Lines that are neither a state nor one
    of ``prefix``'s archives are ignored.
    """
    name = re.compile(rf"^{re.escape(prefix)}-[0-9]{{8}}T[0-9]{{6}}Z\.tar\.gz$")
    state: AgentState | None = None
    found: list[Archive] = []
    for line in output.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "state":
            outcome, _, tail = rest.partition(" ")
            at, _, detail = tail.partition(" ")
            if outcome and at.isdigit():
                state = AgentState(outcome, int(at), detail)
        elif kind == "archive":
            fields = rest.split(" ", 2)
            if len(fields) != 3 or not (fields[0].isdigit() and fields[1].isdigit()):
                continue
            where, _, file = fields[2].rpartition("/")
            if name.match(file):
                found.append(Archive(where or node, file, int(fields[0]), int(fields[1])))
    found.sort(key=lambda a: (a.file, a.node), reverse=True)
    return Listing(state, tuple(found))


def merge(listings: list[Listing]) -> tuple[Archive, ...]:
    """Every archive the agents showed, once, by node, newest first.

    Agents on one NFS target all see every node's directory.
    """
    seen = {(a.node, a.file): a for listing in listings for a in listing.archives}
    newest_first = sorted(seen.values(), key=lambda a: a.file, reverse=True)
    return tuple(sorted(newest_first, key=lambda a: a.node))
