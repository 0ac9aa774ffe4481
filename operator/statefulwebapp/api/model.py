"""The typed StatefulWebApp spec: parsed and validated once, then passed everywhere.

What a valid spec is, is said once, by the CRD's schema and CEL rules, at admission; what
neither can express (a cron schedule) is checked by the API server when the child carrying it is
applied (see ``registry.CRONJOB.validates``). This module says the types and the defaults;
``parse.py`` reads a stored object into them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BACKUP_ROOT = "/var/backups/statefulwebapp"
"""Where the backup agents keep archives on each node unless the admin says otherwise
(``--backup-root``): each app in ``<root>/<namespace>/<name>``."""

DEFAULT_IMAGE = "nginx:1.27.5"
"""The web server's image unless ``image`` says otherwise: a pinned tag, so that every node
runs the same build and a new one arrives with a new operator, never with a node's next pull
(an untagged name means ``latest``, which the kubelet pulls at every container start)."""
DEFAULT_BUSYBOX_IMAGE = "busybox:1.37.0"
"""The backup agents', restores' and date logger's image unless the spec says otherwise,
pinned for the same reason as :data:`DEFAULT_IMAGE`."""
DEFAULT_PULL_POLICY = "IfNotPresent"
"""Every container's ``imagePullPolicy`` unless the spec says otherwise: a pinned tag never
changes, so a node that has it need not ask a registry again (nor fail when none answers)."""
DEFAULT_WRITABLE_PATHS = ("/var/cache/nginx", "/var/lib/nginx", "/run", "/tmp")
"""The web container's writable directories under a read-only root filesystem: what nginx
writes at start (its temporary files, its pid file) in the upstream image
(``/var/cache/nginx``, ``/var/run`` which links to ``/run``) and in Debian's
(``/var/lib/nginx``, ``/run``), and ``/tmp`` for whatever else an image expects to write."""
DEFAULT_STARTING_DEADLINE_SECONDS = 300
"""How late the date logger's run may start; see :attr:`DateLogger.starting_deadline_seconds`."""

GROUP = "apps.k8slab.io"
VERSION = "v1alpha1"
PLURAL = "statefulwebapps"
KIND = "StatefulWebApp"


class SpecError(ValueError):
    """A spec the operator refuses to act on; ``field`` names the offending path."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"spec.{field_path}: {message}")
        self.field = f"spec.{field_path}"
        self.message = message


@dataclass(frozen=True)
class Resources:
    """Container resource requests and limits, as Kubernetes quantity strings."""

    requests: Mapping[str, str] = field(default_factory=dict)
    """Guaranteed amounts, for example ``{"cpu": "50m"}``."""
    limits: Mapping[str, str] = field(default_factory=dict)
    """Upper bounds, for example ``{"memory": "200Mi"}``."""

    def to_k8s(self) -> dict[str, dict[str, str]]:
        """Render as a container ``resources`` block, leaving out empty halves."""
        out: dict[str, dict[str, str]] = {}
        if self.requests:
            out["requests"] = dict(self.requests)
        if self.limits:
            out["limits"] = dict(self.limits)
        return out


def web_resources() -> Resources:
    """The web container's default resources.

    A request that schedules it and gives it its share of CPU, no CPU limit (throttling an
    nginx only adds latency to its answers), and memory and ephemeral-storage limits that
    bound a leak or a runaway writer (the writable directories of a read-only root count
    against the latter).
    """
    return Resources(
        requests={"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "64Mi"},
        limits={"memory": "256Mi", "ephemeral-storage": "256Mi"},
    )


def backup_resources() -> Resources:
    """A backup agent's (and a restore's) default resources.

    A small request, and the CPU limit of 100m that keeps archiving from competing with the
    web pods on a node. The ephemeral-storage limit of 1Gi also bounds the archives an agent
    keeps in its pod with ``podSecurity: restricted`` (an ``emptyDir``, which counts against
    it).
    """
    return Resources(
        requests={"cpu": "10m", "memory": "32Mi", "ephemeral-storage": "16Mi"},
        limits={"cpu": "100m", "memory": "200Mi", "ephemeral-storage": "1Gi"},
    )


def date_logger_resources() -> Resources:
    """A date-logger Job's default resources.

    ``date`` needs almost nothing, and a Job on a busy node is still scheduled by its request.
    """
    return Resources(
        requests={"cpu": "10m", "memory": "16Mi", "ephemeral-storage": "8Mi"},
        limits={"cpu": "100m", "memory": "32Mi", "ephemeral-storage": "16Mi"},
    )


@dataclass(frozen=True)
class NfsSource:
    """Where the shared content lives (server and path immutable once the app exists)."""

    server: str
    """Host name or IPv4 address of the NFS server."""
    path: str
    """Absolute exported path on the NFS server."""
    mount_options: tuple[str, ...] = ()
    """Options of every mount of the export (the PersistentVolume's ``mountOptions``), such as
    ``nfsvers=4.1``; empty: the node's NFS client chooses. A change reaches a pod only when
    its volume is mounted again (a new pod, or a pod on a node that had not mounted it)."""


@dataclass(frozen=True)
class Probe:
    """A health check of the web container on its port."""

    enabled: bool
    """Run the check at all."""
    http_path: str = ""
    """Path of an HTTP GET that must answer 2xx or 3xx; empty: a TCP connection to the port."""
    period_seconds: int = 10
    """Seconds between two checks."""
    timeout_seconds: int = 1
    """Seconds one check may take."""
    failure_threshold: int = 3
    """Failures in a row before the check counts as failed."""
    initial_delay_seconds: int = 0
    """Seconds after the container started before the first check."""

    def to_k8s(self, port: str) -> dict[str, Any]:
        """Render as a container probe on the named ``port``, so that it follows the port."""
        action: dict[str, Any] = (
            {"httpGet": {"path": self.http_path, "port": port}}
            if self.http_path
            else {"tcpSocket": {"port": port}}
        )
        probe = action | {
            "periodSeconds": self.period_seconds,
            "timeoutSeconds": self.timeout_seconds,
            "failureThreshold": self.failure_threshold,
        }
        # The API server stores no zero delay (it is its default and omitted when empty):
        # rendered, the live object would never show it, and every new operator process would
        # apply the StatefulSet once more on its first pass.
        if self.initial_delay_seconds:
            probe["initialDelaySeconds"] = self.initial_delay_seconds
        return probe


@dataclass(frozen=True)
class Probes:
    """The web container's readiness and liveness checks."""

    readiness: Probe = field(default_factory=lambda: Probe(enabled=True))
    """Whether a pod gets traffic and counts as ready: on by default, a TCP check (nginx on an
    empty export answers / with 403, which an HTTP check would count as a failure)."""
    liveness: Probe = field(default_factory=lambda: Probe(enabled=False))
    """Whether the kubelet restarts the container: off by default, so that an NFS server that
    hangs does not put every web pod in a restart loop."""


@dataclass(frozen=True)
class DisruptionBudget:
    """The PodDisruptionBudget of the web pods (a node drain takes at most this many)."""

    enabled: bool = True
    """Render the budget at all (it is rendered only with more than one replica)."""
    max_unavailable: int | str = 1
    """Web pods a voluntary disruption may take at once: a number or a percentage ("25%")."""


@dataclass(frozen=True)
class Rollout:
    """How a change of the web pods' template reaches them (the StatefulSet's rolling update)."""

    replace_stuck_pods: bool = True
    """Delete a web pod that a rollout left failing once the spec has moved on from its
    revision: the StatefulSet waits for such a pod for ever (Kubernetes' "forced rollback",
    otherwise a user's ``kubectl delete pod``), and recreates it at the new revision."""


@dataclass(frozen=True)
class TopologySpread:
    """How the web pods spread over nodes (``kubernetes.io/hostname``)."""

    enabled: bool = True
    """Ask the scheduler to spread them at all."""
    max_skew: int = 1
    """Most pods one node may have beyond the node with the fewest."""
    when_unsatisfiable: str = "ScheduleAnyway"
    """``ScheduleAnyway`` (a preference: a pod still runs when the nodes do not allow the
    spread) or ``DoNotSchedule`` (a rule: it waits)."""


@dataclass(frozen=True)
class NetworkPolicy:
    """The NetworkPolicy over the app's pods: ingress to the web port only."""

    enabled: bool = True
    """Render the policy at all; off, the operator deletes it."""


@dataclass(frozen=True)
class Toleration:
    """A pod toleration, as the core type has it."""

    key: str = ""
    """Taint key; empty with ``Exists`` tolerates every taint."""
    operator: str = "Equal"
    """``Equal`` (key and value match) or ``Exists`` (the key alone matches)."""
    value: str = ""
    """Taint value for ``Equal``."""
    effect: str = ""
    """``NoSchedule``, ``PreferNoSchedule`` or ``NoExecute``; empty: every effect."""
    toleration_seconds: int | None = None
    """With ``NoExecute``: how long the pod stays once the taint appears; None: for ever."""

    def to_k8s(self) -> dict[str, Any]:
        """Render as a pod spec's toleration, leaving out empty fields."""
        out: dict[str, Any] = {"key": self.key} if self.key else {}
        out["operator"] = self.operator
        if self.value:
            out["value"] = self.value
        if self.effect:
            out["effect"] = self.effect
        if self.toleration_seconds is not None:
            out["tolerationSeconds"] = self.toleration_seconds
        return out


@dataclass(frozen=True)
class Storage:
    """The NFS-backed PersistentVolume and the claim every web pod mounts."""

    nfs: NfsSource
    """The NFS export backing the PersistentVolume."""
    capacity: str = "100Mi"
    """Capacity of the PersistentVolume."""
    request: str = "100Mi"
    """Storage requested by the claim; at most ``capacity``."""
    mount_path: str = "/usr/share/nginx/html"
    """Where the web container mounts the claim."""


@dataclass(frozen=True)
class BackupTarget:
    """Where the backup agents write their archives."""

    nfs: NfsSource | None = None
    """An NFS export receiving every node's archives, each node's in a directory of its own
    (``<export>/<node>/``), so that a lost node loses none; None: each node's own
    ``Backup.host_path``."""


@dataclass(frozen=True)
class Backup:
    """The per-node backup agent (a DaemonSet) archiving the claim's content."""

    enabled: bool = True
    """Run the backup DaemonSet at all."""
    image: str = DEFAULT_BUSYBOX_IMAGE
    """Image providing ``sh``, ``tar`` and ``gzip`` (the restores' too)."""
    image_pull_policy: str = DEFAULT_PULL_POLICY
    """``imagePullPolicy`` of the agents and restores: Always, IfNotPresent or Never."""
    interval_seconds: int = 3600
    """Seconds between two archives."""
    keep: int = 24
    """How many archives each node keeps."""
    host_path: str = f"{DEFAULT_BACKUP_ROOT}/default/web"
    """This app's directory on each node receiving its archives, unless ``target.nfs`` is
    set: ``<backup root>/<namespace>/<name>``, the root being the admin's (``--backup-root``),
    never a tenant's choice. No other app's archives are in it."""
    target: BackupTarget = BackupTarget()
    """Where archives go: the node's ``host_path`` (the default) or an NFS export."""
    tolerate_control_plane: bool = True
    """Also run on control-plane nodes (tolerates the master and control-plane taints)."""
    tolerations: tuple[Toleration, ...] = ()
    """More taints the agents tolerate, so that nodes tainted for other reasons get one too."""
    resources: Resources = field(default_factory=backup_resources)
    """Resources of the backup container and of a restore's; empty: none."""


@dataclass(frozen=True)
class DateLogger:
    """The CronJob that logs the date on a schedule."""

    enabled: bool = True
    """Create the CronJob at all."""
    schedule: str = "*/1 * * * *"
    """Standard five-field cron schedule."""
    image: str = DEFAULT_BUSYBOX_IMAGE
    """Image providing ``date``."""
    image_pull_policy: str = DEFAULT_PULL_POLICY
    """``imagePullPolicy`` of the Jobs' container: Always, IfNotPresent or Never."""
    resources: Resources = field(default_factory=date_logger_resources)
    """Resources of the Jobs' container; empty: none."""
    read_only_root_filesystem: bool = True
    """Run the Jobs' container with a read-only root filesystem (``date`` writes nothing)."""
    starting_deadline_seconds: int = DEFAULT_STARTING_DEADLINE_SECONDS
    """Seconds after its scheduled time a run may still start; a run later than that (the
    controller manager was down, the CronJob suspended) is skipped and counted as missed.
    0: no deadline, the CronJob's own default (a late run starts whenever it can)."""
    suspend: bool = False
    """Pause scheduling without deleting the CronJob."""
    successful_jobs_history_limit: int = 3
    """Finished Jobs kept after success."""
    failed_jobs_history_limit: int = 1
    """Finished Jobs kept after failure."""


@dataclass(frozen=True)
class AppSpec:
    """Everything the operator needs to render one StatefulWebApp's children."""

    name: str
    """``metadata.name`` of the app; prefix of every child's name."""
    namespace: str
    """Namespace of the app and of its namespaced children."""
    uid: str
    """UID of the app, for owner references."""
    storage: Storage
    """The shared NFS volume."""
    replicas: int = 1
    """Number of web pods."""
    image: str = DEFAULT_IMAGE
    """Web server image."""
    image_pull_policy: str = DEFAULT_PULL_POLICY
    """``imagePullPolicy`` of the web container: Always, IfNotPresent or Never."""
    service_name: str = ""
    """Name of the headless Service (defaults to the app's name)."""
    port: int = 80
    """Container and Service port."""
    resources: Resources = field(default_factory=web_resources)
    """Resources of the web container; empty: none."""
    read_only_root_filesystem: bool = True
    """Run the web container with a read-only root filesystem, ``writable_paths`` excepted."""
    writable_paths: tuple[str, ...] = DEFAULT_WRITABLE_PATHS
    """Directories of the web container that get an empty writable volume (an ``emptyDir``
    each) while its root filesystem is read-only; unused otherwise."""
    probes: Probes = field(default_factory=Probes)
    """Readiness and liveness checks of the web container."""
    restricted: bool = False
    """Write every pod for the Pod Security "restricted" profile (``podSecurity``)."""
    run_as_user: int = 101
    """UID of the web container when restricted."""
    disruption_budget: DisruptionBudget = field(default_factory=DisruptionBudget)
    """The web pods' PodDisruptionBudget."""
    topology_spread: TopologySpread = field(default_factory=TopologySpread)
    """How the web pods spread over nodes."""
    rollout: Rollout = field(default_factory=Rollout)
    """How a new template reaches the web pods, and what the operator does for a stuck one."""
    network_policy: NetworkPolicy = field(default_factory=NetworkPolicy)
    """Which connections the app's pods accept."""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    """Node labels a web pod's node must carry; empty: any node."""
    tolerations: tuple[Toleration, ...] = ()
    """Taints the web pods tolerate."""
    backup: Backup = field(default_factory=Backup)
    """The per-node backup agent."""
    date_logger: DateLogger = field(default_factory=DateLogger)
    """The date-logging CronJob."""
    restoring: str = ""
    """The StatefulWebAppRestore now putting an archive back (not a spec field: the operator
    sets it from the restores it serves); the web pods are stopped while it runs."""


@dataclass(frozen=True)
class RestoreSpec:
    """A StatefulWebAppRestore: which archive goes back into which app's volume."""

    name: str
    """``metadata.name`` of the restore; also its Job's name."""
    namespace: str
    """Namespace of the restore, of its app and of its Job."""
    uid: str
    """UID of the restore, for its Job's owner reference and its work directories."""
    app_name: str
    """The StatefulWebApp whose volume is restored (same namespace)."""
    archive: str = "latest"
    """``latest`` (the newest archive considered) or an archive's file name."""
    node_name: str = ""
    """Restore from this node's archives; empty: the node the restore's pod runs on."""
    timeout_seconds: int = 600
    """Seconds the restore may take from its start; past them it fails and the app comes back."""
