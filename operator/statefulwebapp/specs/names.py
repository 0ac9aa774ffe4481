"""Names and labels of every child, derived deterministically from the app.

Length limits come from the children: a CronJob name may have at most 52 characters (its Jobs
append an 11-character suffix and must stay within 63), so the app name may have at most
52 - len("-datelog") = 44.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from statefulwebapp.api.model import GROUP, KIND

if TYPE_CHECKING:
    from statefulwebapp.api.model import AppSpec, RestoreSpec

MANAGER = "statefulwebapp-operator"
"""Field manager for server-side apply and value of ``app.kubernetes.io/managed-by``."""
USER_AGENT = f"{MANAGER}/{version('statefulwebapp-operator')}"
"""Sent with every request, so the API server's audit log tells our requests apart."""

CRONJOB_SUFFIX = "-datelog"
MAX_CRONJOB_NAME = 52
MAX_APP_NAME = MAX_CRONJOB_NAME - len(CRONJOB_SUFFIX)

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_APP_NAMESPACE = "apps.k8slab.io/app-namespace"
"""On the cluster-scoped PV only: which namespace's app owns it (it cannot carry an owner)."""

MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGER}"

ANNOTATION_PREFIX = "apps.k8slab.io"
"""Prefix of the operator's own annotations on children."""

WEB, STORAGE, BACKUP, DATELOG, RESTORE = "web", "storage", "backup", "datelog", "restore"
POD_COMPONENTS = (BACKUP, DATELOG, RESTORE, WEB)
"""Every component whose pods the operator makes: the web pods, the backup agents, the date
logger's Job pods, the restore Jobs' pods."""
NETWORK = "network"
"""Component of the NetworkPolicy over the app's pods (all of them, so none of theirs)."""
BACKUP_TARGET = "backup-target"
"""Component of the volume and claim of the archives' NFS export (``backup.target.nfs``)."""
LABEL_RESTORE = "apps.k8slab.io/restore"
"""On a restore's Job and pod: the StatefulWebAppRestore it runs for."""


def restore_job(restore: RestoreSpec) -> str:
    """The Job of a restore: the restore's own name (the CRD keeps it within 63 characters)."""
    return restore.name


def backup_prefix(app: AppSpec) -> str:
    """The archive name prefix of an app: ``<namespace>-<name>-<timestamp>.tar.gz``."""
    return f"{app.namespace}-{app.name}"


def statefulset(app: AppSpec) -> str:
    """StatefulSet name; its pods are ``<name>-0``, ``<name>-1``, ..."""
    return app.name


def service(app: AppSpec) -> str:
    """Headless Service name."""
    return app.service_name


def claim(app: AppSpec) -> str:
    """PersistentVolumeClaim name."""
    return claim_of(app.name)


def claim_of(name: str) -> str:
    """The claim name from the app's name alone (a volume's owner is checked without a spec)."""
    return f"{name}-data"


def volume(app: AppSpec) -> str:
    """Cluster-scoped PersistentVolume name, unique across namespaces.

    ``<namespace>.<name>-data``: neither a namespace nor an app name has a dot, so no other app
    has it. With a dash, namespace ``a-b``'s app ``c`` and namespace ``a``'s app ``b-c`` had
    the same volume name, and either could hold the other's up (NameConflict).
    """
    return volume_of(app.namespace, app.name)


def volume_of(namespace: str, name: str) -> str:
    """The volume name from the app's identity alone (cleanup may face an invalid spec)."""
    return f"{namespace}.{name}-data"


def backup_claim(app: AppSpec) -> str:
    """The claim of the archives' NFS export, which the backup agents and restores mount."""
    return backup_claim_of(app.name)


def backup_claim_of(name: str) -> str:
    """The archives' claim name from the app's name alone, as :func:`claim_of`."""
    return f"{name}-backups"


def backup_volume(app: AppSpec) -> str:
    """The cluster-scoped PersistentVolume of the archives' NFS export."""
    return backup_volume_of(app.namespace, app.name)


def backup_volume_of(namespace: str, name: str) -> str:
    """The archives' volume name from the app's identity alone, as :func:`volume_of`."""
    return f"{namespace}.{name}-backups"


def controller_of(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """An object's controller ownerReference if it names a StatefulWebApp; else None."""
    for ref in meta.get("ownerReferences") or ():
        if (
            ref.get("controller")
            and ref.get("kind") == KIND
            and str(ref.get("apiVersion", "")).split("/")[0] == GROUP
        ):
            return ref  # type: ignore[no-any-return]
    return None


def owned(obj: Mapping[str, Any], namespace: str, name: str, uid: str) -> bool:
    """Whether ``obj`` is a child of the app ``namespace/name`` whose uid is ``uid``.

    A namespaced child: its controller ownerReference carries the app's uid (an owner
    reference cannot leave its namespace, and a label is anyone's to write). A volume, which
    no namespaced object can own: its labels name the app and its claimRef one of the app's
    claims, both in the app's namespace. Nothing else is counted, patched or deleted.
    """
    meta = obj.get("metadata") or {}
    if meta.get("namespace"):
        ref = controller_of(meta)
        return meta["namespace"] == namespace and ref is not None and ref.get("uid") == uid
    return volume_owned(obj, namespace, name)


def volume_owned(volume: Mapping[str, Any], namespace: str, name: str) -> bool:
    """Whether a PersistentVolume is the app ``namespace/name``'s (labels and claimRef)."""
    labels = (volume.get("metadata") or {}).get("labels") or {}
    claim_ref = (volume.get("spec") or {}).get("claimRef") or {}
    return (
        labels.get(LABEL_INSTANCE) == name
        and labels.get(LABEL_APP_NAMESPACE) == namespace
        and claim_ref.get("namespace") == namespace
        and claim_ref.get("name") in (claim_of(name), backup_claim_of(name))
    )


def disruption_budget(app: AppSpec) -> str:
    """PodDisruptionBudget name (of the web pods)."""
    return app.name


def network_policy(app: AppSpec) -> str:
    """NetworkPolicy name (over every pod of the app).

    Suffixed: a namespace's own policies are often named after the app they guard, and one
    named ``<app>`` would stop the app with NameConflict where the operator is upgraded.
    """
    return f"{app.name}-ingress"


def daemonset(app: AppSpec) -> str:
    """Backup DaemonSet name."""
    return f"{app.name}-backup"


def cronjob(app: AppSpec) -> str:
    """Date-logger CronJob name."""
    return f"{app.name}{CRONJOB_SUFFIX}"


_WEB_POD = re.compile(r"^(?P<app>.+)-(?P<ordinal>[0-9]{1,2})$")
"""``<statefulset>-<ordinal>``: at most 100 replicas, so at most two digits."""
_AGENT_POD = re.compile(r"^(?P<app>.+)-backup-[bcdfghjklmnpqrstvwxz2456789]{5}$")
"""``<daemonset>-<suffix>``: the five characters Kubernetes draws a generated name's suffix from,
never two digits alone, so no pod name matches both patterns."""


def pod_owner(pod: str) -> tuple[str, str] | None:
    """(app name, component) of a web pod or backup agent named ``pod``; None for any other.

    An event names its pod, not the pod's labels: the name is all there is to go on.
    """
    agent = _AGENT_POD.match(pod)
    if agent:
        return agent["app"], BACKUP
    web = _WEB_POD.match(pod)
    return (web["app"], WEB) if web else None


def ordinal(pod: str) -> int:
    """The ordinal of a web pod named ``<statefulset>-<ordinal>``."""
    return int(pod.rsplit("-", 1)[1])


def serving_web_pod(app: AppSpec, pod: str) -> bool:
    """Whether ``pod`` is one of the app's web pods within its replicas (not one scaled away)."""
    return pod_owner(pod) == (app.name, WEB) and ordinal(pod) < app.replicas


def labels(app: AppSpec, component: str) -> dict[str, str]:
    """The full label set of a child of ``component``."""
    return {
        LABEL_NAME: "statefulwebapp",
        LABEL_INSTANCE: app.name,
        LABEL_COMPONENT: component,
        LABEL_MANAGED_BY: MANAGER,
    }


def selector(app: AppSpec, component: str) -> dict[str, str]:
    """The immutable pod selector of a workload: labels that never change for an app."""
    return {LABEL_INSTANCE: app.name, LABEL_COMPONENT: component}
