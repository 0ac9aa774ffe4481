"""What an app's pass reads, returns and keeps.

The app as it stands (:class:`Seen`), what the pass did (:class:`Outcome`), and what is kept
between passes (:class:`Memory`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from statefulwebapp.api.model import AppSpec
from statefulwebapp.api.objects import Key, Obj
from statefulwebapp.specs import drift, registry, status


@dataclass
class Outcome:
    """What one reconcile did, for logs and tests."""

    applied: list[str] = field(default_factory=list)
    """Children written (kind/name)."""
    deleted: list[str] = field(default_factory=list)
    """Children removed because the spec disabled them."""
    problems: list[status.Problem] = field(default_factory=list)
    """Why the app, or some of its children, are not reconciled; empty when all are."""
    status_written: bool = False
    """Whether the status subresource was patched."""
    written_version: str | None = None
    """The app's resourceVersion after that status write, if the API server returned one."""
    written_status: dict[str, Any] | None = None
    """The status as written; newer than what the watch has shown until it shows that version."""
    status_held: bool = False
    """Whether a progress-only status change was held back (``progress_due`` was False)."""
    rollouts_held: list[str] = field(default_factory=list)
    """Workloads whose new rendering (same spec, a new operator version) waits for the fleet's
    rollout budget; the pass should come back."""
    app_gone: bool = False
    """The app the pass was given no longer exists (its index entry outlived a watch gap):
    nothing was written, and it should get no more passes."""
    ready_reason: str | None = None
    """The reason of the Ready condition the pass computed (written or held back); None when
    it computed no status (the app gone, its namespace going away)."""
    recheck_after: float | None = None
    """The status the pass computed is not Ready and quotes the kubelet's reports: seconds
    until the first of them ages out, when the status must be computed again."""

    @property
    def label(self) -> str:
        """How the pass ended, for ``statefulwebapp_reconcile_passes_total``.

        ``gone``; ``retry`` (server trouble, RBAC: retried with backoff); ``problem`` (waits
        for the user: InvalidSpec, Refused, NameConflict); ``changed`` (applied, deleted or
        wrote the status); ``in_sync`` (nothing to write).
        """
        if self.app_gone:
            return "gone"
        if self.retry:
            return "retry"
        if self.problems:
            return "problem"
        if self.applied or self.deleted or self.status_written:
            return "changed"
        return "in_sync"

    @property
    def retry(self) -> bool:
        """Whether a pass should come again without waiting for an event (server trouble)."""
        return any(problem.retry for problem in self.problems)

    @property
    def retry_after(self) -> float | None:
        """The longest wait the API server asked for, if it asked."""
        return max((p.retry_after for p in self.problems if p.retry_after), default=None)


@dataclass
class Memory:
    """What passes remember of an app's children between passes, in this process only.

    Per app and child kind: the form the API server stored our last rendering in, when it
    differs from the rendering (see ``drift.stored_form``), and a refusal of a rendering, so
    that it is not sent again until the spec changes. A restart loses both, which costs at most
    one no-op apply of such a child and one more try of a refused one.
    """

    stored: dict[Key, dict[str, tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    """App -> kind -> (digest, stored form)."""
    refused: dict[Key, dict[str, tuple[str, status.Problem]]] = field(default_factory=dict)
    """App -> kind -> (digest, why it was refused)."""
    synced: dict[Key, dict[str, tuple[str, str]]] = field(default_factory=dict)
    """App -> kind -> (digest, resourceVersion) of the child last found up to date. Most passes
    come from one child's event: the others are the very objects checked last time, and
    comparing them again field by field would spend CPU on every pass to learn nothing. Any
    write to a child (its status included) changes its resourceVersion."""
    digests: dict[Key, tuple[AppSpec, dict[str, str]]] = field(default_factory=dict)
    """App -> (the spec last rendered, the digest of each child's rendering). Most passes come
    from a child's event and find the spec unchanged: rendering it again is cheap, digesting
    it is not (a sorted JSON dump and a hash of each child), and keeping the stamped
    renderings instead would hold every app's children in memory (CHANGELOG.md has the
    figures)."""

    def rendering(self, app: AppSpec) -> dict[str, Obj | None]:
        """The stamped children of ``app`` by kind (None: disabled), digested once per spec."""
        key = (app.namespace, app.name)
        rendered = registry.render_all(app)
        last = self.digests.get(key)
        if last is None or last[0] != app:
            digests = {kind: drift.digest(m) for kind, m in rendered.items() if m is not None}
            self.digests[key] = (app, digests)
        else:
            digests = last[1]
        return {
            kind: None if manifest is None else drift.stamp(manifest, digests[kind])
            for kind, manifest in rendered.items()
        }

    def forget(self, key: Key) -> None:
        """The app is gone."""
        self.stored.pop(key, None)
        self.refused.pop(key, None)
        self.synced.pop(key, None)
        self.digests.pop(key, None)


@dataclass(frozen=True)
class Seen:
    """The app's object as the pass found it, read once (its spec is parsed into an AppSpec).

    Which generation of the spec it is at, and what its status, last written by this operator,
    says: the pass compares with these, never with the raw object again.
    """

    namespace: str
    """The app's namespace."""
    name: str
    """The app's name."""
    generation: int
    """``metadata.generation``: the version of its spec."""
    status: Obj
    """The status as last written (empty for a new app)."""

    @classmethod
    def of(cls, body: Obj) -> Seen:
        """Read ``body`` (an app's object) once."""
        meta = body.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            generation=int(meta.get("generation", 0)),
            status=body.get("status") or {},
        )

    @property
    def acknowledged(self) -> bool:
        """Whether the status already answers this generation of the spec."""
        return self.status.get("observedGeneration") == self.generation

    @property
    def ready(self) -> Obj:
        """The Ready condition last written; empty if none."""
        return status.ready_condition(self.status)
