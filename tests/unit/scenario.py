"""The reference scenario the unit tests share: the app, its children's paths, a healthy cluster.

Plain data and helpers (no pytest fixture): test modules import them from here, not from each
other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from statefulwebapp.api import kinds
from statefulwebapp.api.parse import parse
from statefulwebapp.runtime import kube
from statefulwebapp.specs import registry

GOLDEN = Path(__file__).parent / "golden"

SCENARIO: dict[str, Any] = {
    "apiVersion": "apps.k8slab.io/v1alpha1",
    "kind": "StatefulWebApp",
    "metadata": {"name": "web", "namespace": "default", "uid": "0000-uid", "generation": 1},
    "spec": {
        "replicas": 3,
        "serviceName": "nginx",
        "storage": {
            "nfs": {"server": "211.183.3.100", "path": "/shared"},
            "capacity": "100Mi",
            "request": "10Mi",
        },
    },
}


ARCHIVED: dict[str, Any] = {
    **SCENARIO,
    "spec": {
        **SCENARIO["spec"],
        "backup": {
            "target": {
                "nfs": {
                    "server": "10.0.0.9",
                    "path": "/archives",
                    "mountOptions": ["port=20049", "mountport=20048"],
                }
            }
        },
    },
}
"""The scenario with its archives on an NFS export of their own (``backup.target.nfs``)."""

NS = "default"
APP_PATH = kube.path(kinds.APP, "web", NS)
PATHS = {
    "CronJob": kube.path(kinds.CRONJOB, "web-datelog", NS),
    "PersistentVolume": kube.path(kinds.PERSISTENT_VOLUME, "default.web-data"),
    "PersistentVolumeClaim": kube.path(kinds.PERSISTENT_VOLUME_CLAIM, "web-data", NS),
    "BackupVolume": kube.path(kinds.PERSISTENT_VOLUME, "default.web-backups"),
    "BackupClaim": kube.path(kinds.PERSISTENT_VOLUME_CLAIM, "web-backups", NS),
    "Service": kube.path(kinds.SERVICE, "nginx", NS),
    "NetworkPolicy": kube.path(kinds.NETWORK_POLICY, "web-ingress", NS),
    "StatefulSet": kube.path(kinds.STATEFULSET, "web", NS),
    "PodDisruptionBudget": kube.path(kinds.DISRUPTION_BUDGET, "web", NS),
    "DaemonSet": kube.path(kinds.DAEMONSET, "web-backup", NS),
}
RENDERED = [c for c in registry.CHILDREN if c.render(parse(SCENARIO)) is not None]
"""The children of the scenario (its archives stay on the nodes: no archives' volume)."""
APPLY_ORDER = [PATHS[c.key] for c in RENDERED]


def healthy() -> dict[str, Any]:
    return {
        "PersistentVolume": {"status": {"phase": "Bound"}},
        "PersistentVolumeClaim": {"status": {"phase": "Bound"}},
        "Service": {},
        "PodDisruptionBudget": {},
        "NetworkPolicy": {},
        "StatefulSet": {
            "metadata": {"generation": 2},
            "status": {
                "observedGeneration": 2,
                "replicas": 3,
                "readyReplicas": 3,
                "updatedReplicas": 3,
            },
        },
        "DaemonSet": {
            "metadata": {"generation": 1},
            "status": {
                "observedGeneration": 1,
                "desiredNumberScheduled": 4,
                "numberReady": 4,
                "updatedNumberScheduled": 4,
            },
        },
        "CronJob": {
            "status": {
                "lastScheduleTime": "2026-11-25T10:00:00Z",
                "lastSuccessfulTime": "2026-11-25T10:00:02Z",
            }
        },
    }


STS_UID, DS_UID = "uid-sts", "uid-ds"
"""The uids of the pods' StatefulSet and DaemonSet in :func:`pod_body`."""


def pod_body(
    name: str,
    *,
    revision: str = "web-aaa",
    node: str = "n1",
    ready: bool = True,
    waiting: tuple[str, str] | None = None,
    component: str = "web",
    owner: str = STS_UID,
) -> dict[str, Any]:
    """A pod as the API server lists it (the fields that matter here)."""
    container: dict[str, Any] = {"name": "nginx", "ready": ready, "state": {"running": {}}}
    if waiting:
        container["state"] = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": {
                "app.kubernetes.io/instance": "web",
                "app.kubernetes.io/component": component,
                "controller-revision-hash": revision,
            },
            "ownerReferences": [{"kind": "StatefulSet", "uid": owner, "controller": True}],
        },
        "spec": {"nodeName": node},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ],
            "containerStatuses": [container],
        },
    }


def node_body(name: str, ready: str, reason: str = "", since: str = "2026-12-07T10:00:00Z") -> Any:
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": reason,
                    "message": "Kubelet stopped posting node status.",
                    "lastTransitionTime": since,
                    "lastHeartbeatTime": "2026-12-07T09:59:00Z",
                },
            ]
        },
    }
