"""What the cluster's admin decides, never a tenant: archives' directories, exports allowed.

Also that one export serves one app.

An operator serves many namespaces with powers no tenant has (cluster-scoped volumes, host
directories on every node). A spec therefore names no host path: each app's archives go to
``<backup root>/<namespace>/<name>`` on each node, under a root the admin chooses
(``--backup-root``). A spec may name any NFS export, but the operator mounts it only when it lies
under one the admin allowed (``--nfs-allow``; none given: every export, as a single-team cluster
wants), and only for one app at a time: two apps on one export (or one inside the other's) could
read, overwrite or restore over each other's data. The older app keeps it.

Pure, but for :class:`ExportClaims`, the registry of the exports live apps use, which the
controller keeps up to date from the apps' events.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from statefulwebapp.api.model import DEFAULT_BACKUP_ROOT, AppSpec, SpecError
from statefulwebapp.api.objects import Key
from statefulwebapp.api.parse import parse
from statefulwebapp.specs.status import Problem


@dataclass(frozen=True, order=True)
class Export:
    """An NFS export, or a tree of them: a server and an absolute path on it."""

    server: str
    """Host name or address, as written (compared without regard to case)."""
    path: str = "/"
    """Absolute path; ``/`` is every export of the server."""

    def __post_init__(self) -> None:
        # One spelling per directory: "/a//b/./c/" is "/a/b/c", so that no app holds another's
        # export under another spelling (the CRD refuses ".." segments).
        parts = [p for p in self.path.split("/") if p not in ("", ".")]
        object.__setattr__(self, "path", "/" + "/".join(parts))

    @classmethod
    def parse(cls, text: str) -> Export:
        """``SERVER`` (every export of it) or ``SERVER:/PATH``; ValueError says what is wrong."""
        server, sep, path = text.partition(":")
        if not server or (sep and not path.startswith("/")):
            raise ValueError(
                f"{text!r}: write SERVER or SERVER:/PATH, such as nfs.example.org:/exports/web"
            )
        return cls(server, path or "/")

    def contains(self, other: Export) -> bool:
        """Whether ``other`` is this export or lies inside it (on the same server)."""
        if self.server.lower() != other.server.lower():
            return False
        mine, theirs = self.path.rstrip("/"), other.path.rstrip("/")
        return theirs == mine or theirs.startswith(mine + "/")

    def overlaps(self, other: Export) -> bool:
        """Whether the two share any directory: one is, or lies inside, the other."""
        return self.contains(other) or other.contains(self)

    def __str__(self) -> str:
        return f"{self.server}:{self.path}"


def exports_of(app: AppSpec) -> tuple[tuple[str, Export], ...]:
    """(spec field, export) of every NFS export the app mounts."""
    found = [("storage.nfs", Export(app.storage.nfs.server, app.storage.nfs.path))]
    target = app.backup.target.nfs
    if app.backup.enabled and target is not None:
        found.append(("backup.target.nfs", Export(target.server, target.path)))
    return tuple(found)


@dataclass(frozen=True)
class Policy:
    """The admin's decisions (the operator's options, the chart's values)."""

    backup_root: str = DEFAULT_BACKUP_ROOT
    """Directory on each node under which every app's archives have a directory of their own."""
    nfs_allow: tuple[Export, ...] = ()
    """Exports apps may use (each with everything inside it); empty: any export."""

    def refusal(self, app: AppSpec) -> Problem | None:
        """``ExportNotAllowed`` when one of the app's exports is outside every allowed one."""
        if not self.nfs_allow:
            return None
        for field, export in exports_of(app):
            if not any(allowed.contains(export) for allowed in self.nfs_allow):
                allowed = ", ".join(str(a) for a in self.nfs_allow)
                return Problem(
                    "ExportNotAllowed",
                    f"spec.{field} {export} is not an export this cluster's admin allows "
                    f"(allowed: {allowed}); nothing was created. Use an export under one of "
                    "them, or ask the admin to allow it (--nfs-allow, the chart's nfs.allow)",
                )
        return None


@dataclass(frozen=True)
class _Claim:
    created: str
    exports: tuple[tuple[str, Export], ...]


class ExportClaims:
    """Which live app uses which export; the oldest of overlapping claims holds its export.

    Filled from the apps' cache before the first pass, then kept up to date by every
    app event; read by passes in the work queue's threads. Indexed by directory, so that the
    claims touching an export are found in as many steps as its path has directories, however
    many apps there are: every pass asks.
    """

    def __init__(self) -> None:
        """Empty until :meth:`update` is told of the apps."""
        self._lock = threading.Lock()
        self._claims: dict[Key, _Claim] = {}
        self._at: dict[tuple[str, str], set[Key]] = {}
        """(server, path) -> the apps with an export there."""
        self._below: dict[tuple[str, str], set[Key]] = {}
        """(server, path) -> the apps with an export inside it."""

    def update(self, key: Key, body: Mapping[str, Any]) -> set[Key]:
        """The app ``key`` is now ``body``; returns the other apps whose claims it touches."""
        try:
            exports = exports_of(parse(body))
        except SpecError:
            exports = ()  # An invalid spec mounts nothing.
        created = str((body.get("metadata") or {}).get("creationTimestamp") or "")
        claim = _Claim(created, exports)
        with self._lock:
            if self._claims.get(key) == claim:
                # Most app events are status writes: the claim is the same, and nobody else's
                # pass is owed for it.
                return set()
            before = self._drop(key)
            self._claims[key] = claim
            for _, export in exports:
                self._at.setdefault(_spot(export), set()).add(key)
                for above in _above(export):
                    self._below.setdefault(above, set()).add(key)
            return self._touching(key, before + exports)

    def remove(self, key: Key) -> set[Key]:
        """The app ``key`` is gone; returns the apps that may now have its export."""
        with self._lock:
            return self._touching(key, self._drop(key))

    def holder(self, key: Key, exports: tuple[tuple[str, Export], ...]) -> Problem | None:
        """``ExportInUse`` when an older live app uses one of ``exports`` (the app's own)."""
        with self._lock:
            mine = self._claims.get(key)
            order = (mine.created if mine else "~", key)
            for field, export in exports:
                older = sorted(
                    (self._claims[other].created, other)
                    for other in self._overlapping(export)
                    if other != key and (self._claims[other].created, other) < order
                )
                if not older:
                    continue
                other = older[0][1]
                theirs = next(e for _, e in self._claims[other].exports if e.overlaps(export))
                return Problem(
                    "ExportInUse",
                    f"spec.{field} {export} is, or shares a directory with, the export "
                    f"{theirs} of StatefulWebApp {other[0]}/{other[1]}, which came first; "
                    "nothing was created. One export serves one app: choose another export "
                    "(or a directory beside, not inside, that one)",
                )
        return None

    def _drop(self, key: Key) -> tuple[tuple[str, Export], ...]:
        """Forget the app's claim; returns its exports."""
        before = self._claims.pop(key, None)
        if before is None:
            return ()
        for _, export in before.exports:
            for index, spot in [(self._at, _spot(export))] + [
                (self._below, above) for above in _above(export)
            ]:
                keys = index.get(spot)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[spot]
        return before.exports

    def _overlapping(self, export: Export) -> set[Key]:
        """The apps with an export at, inside or around ``export``."""
        found = set(self._at.get(_spot(export), ())) | self._below.get(_spot(export), set())
        for above in _above(export):
            found |= self._at.get(above, set())
        return found

    def _touching(self, key: Key, exports: tuple[tuple[str, Export], ...]) -> set[Key]:
        return {other for _, e in exports for other in self._overlapping(e) if other != key}


def _spot(export: Export) -> tuple[str, str]:
    return export.server.lower(), export.path


def _above(export: Export) -> list[tuple[str, str]]:
    """Every directory that holds the export, ``/`` first (none for ``/`` itself)."""
    parts = export.path.strip("/").split("/") if export.path != "/" else []
    server = export.server.lower()
    return [(server, "/" + "/".join(parts[:i])) for i in range(len(parts))]


NO_POLICY = Policy()
"""An operator started without the admin's options: the default root, every export allowed."""
