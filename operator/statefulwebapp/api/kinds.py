"""The kinds the operator talks to, and where each lives in the API (no discovery).

The child kinds' locations are here too; what the operator renders of each, and in which order,
is the child registry (``specs/registry.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from statefulwebapp.api.model import GROUP, KIND, PLURAL, VERSION


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the API."""

    name: str
    """The kind, such as ``StatefulSet``."""
    group: str
    """API group; empty for the core group."""
    version: str
    """API version within the group."""
    plural: str
    """Resource name in URLs."""
    namespaced: bool
    """Whether objects of the kind live in a namespace."""

    @property
    def api_base(self) -> str:
        """``/api/v1`` or ``/apis/<group>/<version>``."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


CRONJOB = Kind("CronJob", "batch", "v1", "cronjobs", namespaced=True)
PERSISTENT_VOLUME = Kind("PersistentVolume", "", "v1", "persistentvolumes", namespaced=False)
PERSISTENT_VOLUME_CLAIM = Kind(
    "PersistentVolumeClaim", "", "v1", "persistentvolumeclaims", namespaced=True
)
SERVICE = Kind("Service", "", "v1", "services", namespaced=True)
NETWORK_POLICY = Kind(
    "NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies", namespaced=True
)
STATEFULSET = Kind("StatefulSet", "apps", "v1", "statefulsets", namespaced=True)
DISRUPTION_BUDGET = Kind(
    "PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets", namespaced=True
)
DAEMONSET = Kind("DaemonSet", "apps", "v1", "daemonsets", namespaced=True)

APP = Kind(KIND, GROUP, VERSION, PLURAL, namespaced=True)
LEASE = Kind("Lease", "coordination.k8s.io", "v1", "leases", namespaced=True)
"""The leader election's lock (lease.py)."""
EVENT = Kind("Event", "", "v1", "events", namespaced=True)
"""Watched for the kubelet's FailedMount, Unhealthy and BackOff events only
(sources.MOUNT_FAILURES, PROBE_FAILURES, BACKOFFS): they say why a pod waits for its volume,
why an agent or a web pod is not ready."""

RESTORE = Kind("StatefulWebAppRestore", GROUP, VERSION, "statefulwebapprestores", namespaced=True)
"""A request to put an archive back into an app's volume (restore.py)."""
JOB = Kind("Job", "batch", "v1", "jobs", namespaced=True)
"""A restore's Job: read while the restore runs, never watched."""
POD = Kind("Pod", "", "v1", "pods", namespaced=True)
"""A restore Job's pods: listed once when the Job has finished, for their result; an app's,
listed when something is wrong with them (``specs/pods.py``), and a stuck web pod deleted."""
NODE = Kind("Node", "", "v1", "nodes", namespaced=False)
"""Watched for their Ready condition: a lost node is named with the app's pods on it."""

BY_NAME: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        CRONJOB,
        PERSISTENT_VOLUME,
        PERSISTENT_VOLUME_CLAIM,
        SERVICE,
        NETWORK_POLICY,
        STATEFULSET,
        DISRUPTION_BUDGET,
        DAEMONSET,
        APP,
        LEASE,
        EVENT,
        RESTORE,
        JOB,
        POD,
        NODE,
    )
}
"""Every kind by its name, for its API location."""
