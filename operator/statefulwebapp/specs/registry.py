"""The child registry: what the operator renders for each app, and the order it applies them in.

For each child it also says which spec field the API server's complaints point back to.

Everything that iterates over the children (the watches in ``controllers/sources.py``, the
reconcile's apply order, the resync) reads :data:`CHILDREN`, so adding a child kind is one
entry here plus its renderer (and its location in ``api/kinds.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from statefulwebapp.api import kinds
from statefulwebapp.api.kinds import Kind
from statefulwebapp.api.model import AppSpec
from statefulwebapp.api.objects import Manifest
from statefulwebapp.specs import names, render, render_backup


@dataclass(frozen=True)
class Child(Kind):
    """A kind the operator renders and owns for each app."""

    render: Callable[[AppSpec], Manifest | None]
    """The pure renderer; None when the spec disables the child."""
    spec_fields: tuple[tuple[str, str], ...] = ()
    """(prefix of a field of the child, spec field it comes from): an invalid child is reported
    against what the user wrote, not against the child's internals. First match wins."""
    validates: bool = False
    """Applied before the others because only the API server can check what it carries: when it
    is refused as invalid, the spec is invalid and nothing else is written."""
    role: str = ""
    """The child's name among an app's children when two children share a kind (the data's
    volume and the archives'); empty: the kind's name. See :attr:`key`."""
    labels: str = ""
    """What tells this child's objects from another role's of the same kind: a label selector
    added to the operator's own (``names.MANAGED_SELECTOR``) by the watches and the resync."""

    @property
    def key(self) -> str:
        """The child's key in every map of an app's children (rendered, observed, stored)."""
        return self.role or self.name

    @property
    def selector(self) -> str:
        """The label selector of this child's objects, every app's (watches, resync)."""
        return ",".join(filter(None, (names.MANAGED_SELECTOR, self.labels)))


_POD = "spec.template.spec"
_DATA = f"{names.LABEL_COMPONENT}!={names.BACKUP_TARGET}"
_ARCHIVES = f"{names.LABEL_COMPONENT}={names.BACKUP_TARGET}"
_JOB_POD = "spec.jobTemplate.spec.template.spec"


def _kind(kind: Kind) -> tuple[str, str, str, str, bool]:
    return kind.name, kind.group, kind.version, kind.plural, kind.namespaced


CRONJOB = Child(
    *_kind(kinds.CRONJOB),
    render=render.render_cronjob,
    spec_fields=(
        ("spec.schedule", "spec.dateLogger.schedule"),
        ("spec.startingDeadlineSeconds", "spec.dateLogger.startingDeadlineSeconds"),
        (f"{_JOB_POD}.containers[0].imagePullPolicy", "spec.dateLogger.imagePullPolicy"),
        (f"{_JOB_POD}.containers[0].image", "spec.dateLogger.image"),
        (f"{_JOB_POD}.containers[0].resources", "spec.dateLogger.resources"),
        ("spec.successfulJobsHistoryLimit", "spec.dateLogger.successfulJobsHistoryLimit"),
        ("spec.failedJobsHistoryLimit", "spec.dateLogger.failedJobsHistoryLimit"),
        ("", "spec.dateLogger"),
    ),
    validates=True,
)
PERSISTENT_VOLUME = Child(
    *_kind(kinds.PERSISTENT_VOLUME),
    render=render.render_volume,
    spec_fields=(
        ("spec.capacity", "spec.storage.capacity"),
        ("spec.nfs", "spec.storage.nfs"),
        ("spec.mountOptions", "spec.storage.nfs.mountOptions"),
        ("", "spec.storage"),
    ),
    labels=_DATA,
)
PERSISTENT_VOLUME_CLAIM = Child(
    *_kind(kinds.PERSISTENT_VOLUME_CLAIM),
    render=render.render_claim,
    spec_fields=(("spec.resources", "spec.storage.request"), ("", "spec.storage")),
    labels=_DATA,
)
BACKUP_VOLUME = Child(
    *_kind(kinds.PERSISTENT_VOLUME),
    render=render.render_backup_volume,
    spec_fields=(
        ("spec.nfs", "spec.backup.target.nfs"),
        ("spec.mountOptions", "spec.backup.target.nfs.mountOptions"),
        ("", "spec.backup.target"),
    ),
    role="BackupVolume",
    labels=_ARCHIVES,
)
BACKUP_CLAIM = Child(
    *_kind(kinds.PERSISTENT_VOLUME_CLAIM),
    render=render.render_backup_claim,
    spec_fields=(("", "spec.backup.target"),),
    role="BackupClaim",
    labels=_ARCHIVES,
)
SERVICE = Child(
    *_kind(kinds.SERVICE),
    render=render.render_service,
    spec_fields=(
        ("metadata.name", "spec.serviceName"),
        ("spec.ports", "spec.port"),
        ("", "spec.serviceName"),
    ),
)
NETWORK_POLICY = Child(
    *_kind(kinds.NETWORK_POLICY),
    render=render.render_network_policy,
    spec_fields=(("", "spec.networkPolicy"),),
)
STATEFULSET = Child(
    *_kind(kinds.STATEFULSET),
    render=render.render_statefulset,
    spec_fields=(
        ("spec.replicas", "spec.replicas"),
        (f"{_POD}.containers[0].resources", "spec.resources"),
        (f"{_POD}.containers[0].imagePullPolicy", "spec.imagePullPolicy"),
        (f"{_POD}.containers[0].image", "spec.image"),
        (f"{_POD}.containers[0].ports", "spec.port"),
        (f"{_POD}.containers[0].readinessProbe", "spec.probes.readiness"),
        (f"{_POD}.containers[0].livenessProbe", "spec.probes.liveness"),
        (f"{_POD}.containers[0].volumeMounts[0]", "spec.storage.mountPath"),
        (f"{_POD}.containers[0].volumeMounts", "spec.writablePaths"),
        (f"{_POD}.containers[0].securityContext", "spec.readOnlyRootFilesystem"),
        (f"{_POD}.volumes[0]", "spec.storage"),
        (f"{_POD}.volumes", "spec.writablePaths"),
        (f"{_POD}.securityContext", "spec.runAsUser"),
        (f"{_POD}.topologySpreadConstraints", "spec.topologySpread"),
        (f"{_POD}.nodeSelector", "spec.nodeSelector"),
        (f"{_POD}.tolerations", "spec.tolerations"),
        ("", "spec"),
    ),
)
DISRUPTION_BUDGET = Child(
    *_kind(kinds.DISRUPTION_BUDGET),
    render=render.render_disruption_budget,
    spec_fields=(("", "spec.disruptionBudget"),),
)
DAEMONSET = Child(
    *_kind(kinds.DAEMONSET),
    render=render_backup.render_daemonset,
    spec_fields=(
        (f"{_POD}.containers[0].resources", "spec.backup.resources"),
        (f"{_POD}.containers[0].imagePullPolicy", "spec.backup.imagePullPolicy"),
        (f"{_POD}.containers[0].image", "spec.backup.image"),
        (f"{_POD}.volumes[1].hostPath", "spec.backup.hostPath"),
        (f"{_POD}.volumes[1].persistentVolumeClaim", "spec.backup.target"),
        (f"{_POD}.tolerations", "spec.backup.tolerations"),
        ("", "spec.backup"),
    ),
)

CHILDREN: tuple[Child, ...] = (
    CRONJOB,
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    BACKUP_VOLUME,
    BACKUP_CLAIM,
    SERVICE,
    NETWORK_POLICY,
    STATEFULSET,
    DISRUPTION_BUDGET,
    DAEMONSET,
)
"""Every child, in the order a pass applies them: the one the API server validates first, then
storage before the workloads that mount it, and the NetworkPolicy before the pods it covers
(the CronJob's come at its first schedule, later)."""

BY_KEY: dict[str, Child] = {child.key: child for child in CHILDREN}
"""Every child by :attr:`Child.key`."""


def spec_field(kind: Kind, child_field: str) -> str:
    """The spec field behind ``child_field`` of a child (a path the API server named)."""
    prefixes = kind.spec_fields if isinstance(kind, Child) else ()
    matches = (spec for prefix, spec in prefixes if child_field.startswith(prefix))
    return next(matches, "spec")


def render_all(app: AppSpec) -> dict[str, Manifest | None]:
    """Every child by :attr:`Child.key`, in apply order; None marks a child the spec disables."""
    return {child.key: child.render(app) for child in CHILDREN}
