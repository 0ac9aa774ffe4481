"""The typed StatefulWebApp spec: parsed and validated once, then passed everywhere.

What a valid spec is, is said once, by the CRD's schema and CEL rules, at admission; what
neither can express (a cron schedule) is checked by the API server when the child carrying it is
applied (see ``registry.CRONJOB.validates``). This module only reads: it checks types, so a
malformed stored object gives a clear error instead of a crash, and it supplies every default,
so renderers never see a raw dict or a missing field.
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


def parse(body: Mapping[str, Any], *, backup_root: str = DEFAULT_BACKUP_ROOT) -> AppSpec:
    """Turn a StatefulWebApp object into an :class:`AppSpec`, or raise :class:`SpecError`.

    ``backup_root``: the admin's directory on the nodes under which each app's archives go.
    """
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    name = str(meta.get("name", ""))
    namespace = str(meta.get("namespace", ""))
    return AppSpec(
        name=name,
        namespace=namespace,
        uid=str(meta.get("uid", "")),
        storage=_parse_storage(_obj(spec, "storage")),
        replicas=_int(spec, "replicas", AppSpec.replicas),
        image=_str(spec, "image", AppSpec.image),
        image_pull_policy=_str(spec, "imagePullPolicy", AppSpec.image_pull_policy),
        service_name=_str(spec, "serviceName", name),
        port=_int(spec, "port", AppSpec.port),
        resources=_resources(spec, "resources", web_resources()),
        read_only_root_filesystem=_bool(
            spec, "readOnlyRootFilesystem", AppSpec.read_only_root_filesystem
        ),
        writable_paths=_strs(spec, "writablePaths", default=AppSpec.writable_paths),
        probes=_probes(_obj(spec, "probes")),
        restricted=_str(spec, "podSecurity", "default") == "restricted",
        run_as_user=_int(spec, "runAsUser", AppSpec.run_as_user),
        disruption_budget=_disruption_budget(_obj(spec, "disruptionBudget")),
        topology_spread=_topology_spread(_obj(spec, "topologySpread")),
        network_policy=_network_policy(_obj(spec, "networkPolicy")),
        node_selector=_str_map(spec, "nodeSelector"),
        tolerations=_tolerations(spec, "tolerations"),
        backup=_parse_backup(_obj(spec, "backup"), f"{backup_root.rstrip('/')}/{namespace}/{name}"),
        date_logger=_parse_date_logger(_obj(spec, "dateLogger")),
    )


def _parse_nfs(raw: Mapping[str, Any], prefix: str) -> NfsSource:
    return NfsSource(
        server=_str(raw, "server", "", prefix),
        path=_str(raw, "path", "", prefix),
        mount_options=_strs(raw, "mountOptions", prefix),
    )


def _parse_storage(raw: Mapping[str, Any]) -> Storage:
    p = "storage."
    capacity = _str(raw, "capacity", Storage.capacity, p)
    return Storage(
        nfs=_parse_nfs(_obj(raw, "nfs", p), "storage.nfs."),
        capacity=capacity,
        request=_str(raw, "request", capacity, p),
        mount_path=_str(raw, "mountPath", Storage.mount_path, p),
    )


def _disruption_budget(raw: Mapping[str, Any]) -> DisruptionBudget:
    p = "disruptionBudget."
    value = raw.get("maxUnavailable", DisruptionBudget.max_unavailable)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpecError(p + "maxUnavailable", f"{value!r} must be a number or a percentage")
    return DisruptionBudget(
        enabled=_bool(raw, "enabled", DisruptionBudget.enabled, p), max_unavailable=value
    )


def _topology_spread(raw: Mapping[str, Any]) -> TopologySpread:
    p = "topologySpread."
    return TopologySpread(
        enabled=_bool(raw, "enabled", TopologySpread.enabled, p),
        max_skew=_int(raw, "maxSkew", TopologySpread.max_skew, p),
        when_unsatisfiable=_str(raw, "whenUnsatisfiable", TopologySpread.when_unsatisfiable, p),
    )


def _network_policy(raw: Mapping[str, Any]) -> NetworkPolicy:
    return NetworkPolicy(
        enabled=_bool(raw, "enabled", NetworkPolicy.enabled, "networkPolicy."),
    )


def _probes(raw: Mapping[str, Any]) -> Probes:
    return Probes(
        readiness=_probe(_obj(raw, "readiness", "probes."), True, "readiness"),
        liveness=_probe(_obj(raw, "liveness", "probes."), False, "liveness"),
    )


def _probe(raw: Mapping[str, Any], enabled: bool, which: str) -> Probe:
    p = f"probes.{which}."
    default = Probe(enabled=enabled)
    return Probe(
        enabled=_bool(raw, "enabled", enabled, p),
        http_path=_str(_obj(raw, "httpGet", p), "path", "", f"{p}httpGet."),
        period_seconds=_int(raw, "periodSeconds", default.period_seconds, p),
        timeout_seconds=_int(raw, "timeoutSeconds", default.timeout_seconds, p),
        failure_threshold=_int(raw, "failureThreshold", default.failure_threshold, p),
        initial_delay_seconds=_int(raw, "initialDelaySeconds", default.initial_delay_seconds, p),
    )


def _parse_backup(raw: Mapping[str, Any], host_path: str) -> Backup:
    p = "backup."
    return Backup(
        enabled=_bool(raw, "enabled", Backup.enabled, p),
        image=_str(raw, "image", Backup.image, p),
        image_pull_policy=_str(raw, "imagePullPolicy", Backup.image_pull_policy, p),
        interval_seconds=_int(raw, "intervalSeconds", Backup.interval_seconds, p),
        keep=_int(raw, "keep", Backup.keep, p),
        # The spec's hostPath (refused at admission since the admin chooses the root) is
        # ignored where an older object still carries it.
        host_path=host_path,
        target=_parse_backup_target(_obj(raw, "target", p)),
        tolerate_control_plane=_bool(raw, "tolerateControlPlane", Backup.tolerate_control_plane, p),
        tolerations=_tolerations(raw, "tolerations", p),
        resources=_resources(raw, "resources", backup_resources(), p),
    )


def _parse_backup_target(raw: Mapping[str, Any]) -> BackupTarget:
    p = "backup.target."
    nfs = _obj(raw, "nfs", p)
    return BackupTarget(nfs=_parse_nfs(nfs, f"{p}nfs.") if nfs else None)


def _parse_date_logger(raw: Mapping[str, Any]) -> DateLogger:
    p = "dateLogger."
    return DateLogger(
        enabled=_bool(raw, "enabled", DateLogger.enabled, p),
        schedule=_str(raw, "schedule", DateLogger.schedule, p),
        image=_str(raw, "image", DateLogger.image, p),
        image_pull_policy=_str(raw, "imagePullPolicy", DateLogger.image_pull_policy, p),
        resources=_resources(raw, "resources", date_logger_resources(), p),
        read_only_root_filesystem=_bool(
            raw, "readOnlyRootFilesystem", DateLogger.read_only_root_filesystem, p
        ),
        starting_deadline_seconds=_int(
            raw, "startingDeadlineSeconds", DateLogger.starting_deadline_seconds, p
        ),
        suspend=_bool(raw, "suspend", DateLogger.suspend, p),
        successful_jobs_history_limit=_int(
            raw, "successfulJobsHistoryLimit", DateLogger.successful_jobs_history_limit, p
        ),
        failed_jobs_history_limit=_int(
            raw, "failedJobsHistoryLimit", DateLogger.failed_jobs_history_limit, p
        ),
    )


# -- small typed readers: the schema has checked values; these only check types ----------------


def _obj(raw: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(prefix + key, f"{value!r} must be an object")
    return value


def _int(raw: Mapping[str, Any], key: str, default: int, prefix: str = "") -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(prefix + key, f"{value!r} must be an integer")
    return value


def _bool(raw: Mapping[str, Any], key: str, default: bool, prefix: str = "") -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(prefix + key, f"{value!r} must be true or false")
    return value


def _str(raw: Mapping[str, Any], key: str, default: str, prefix: str = "") -> str:
    value = raw.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise SpecError(prefix + key, f"{value!r} must be a string")
    return value


def _list(raw: Mapping[str, Any], key: str, prefix: str = "") -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(prefix + key, f"{value!r} must be a list")
    return value


def _strs(
    raw: Mapping[str, Any], key: str, prefix: str = "", *, default: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """A list of strings; ``default`` when the key is absent, an empty tuple when it is []."""
    if raw.get(key) is None:
        return default
    items = _list(raw, key, prefix)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise SpecError(f"{prefix}{key}[{i}]", f"{item!r} must be a string")
    return tuple(items)


def _str_map(raw: Mapping[str, Any], key: str, prefix: str = "") -> dict[str, str]:
    block = _obj(raw, key, prefix)
    for name, value in block.items():
        if not isinstance(value, str):
            raise SpecError(f"{prefix}{key}.{name}", f"{value!r} must be a string")
    return dict(block)


def _tolerations(raw: Mapping[str, Any], key: str, prefix: str = "") -> tuple[Toleration, ...]:
    out = []
    for i, item in enumerate(_list(raw, key, prefix)):
        p = f"{prefix}{key}[{i}]"
        if not isinstance(item, Mapping):
            raise SpecError(p, f"{item!r} must be an object")
        seconds = item.get("tolerationSeconds")
        out.append(
            Toleration(
                key=_str(item, "key", "", p + "."),
                operator=_str(item, "operator", "Equal", p + "."),
                value=_str(item, "value", "", p + "."),
                effect=_str(item, "effect", "", p + "."),
                toleration_seconds=None
                if seconds is None
                else _int(item, "tolerationSeconds", 0, p + "."),
            )
        )
    return tuple(out)


def _resources(raw: Mapping[str, Any], key: str, default: Resources, prefix: str = "") -> Resources:
    """``default`` when the key is absent; an explicit ``{}`` means no resources at all."""
    if raw.get(key) is None:
        return default
    block = _obj(raw, key, prefix)
    halves: dict[str, dict[str, str]] = {}
    for half in ("requests", "limits"):
        values = _obj(block, half, f"{prefix}{key}.")
        # Quantities are int-or-string in the schema; the API server reads both the same way.
        halves[half] = {res: str(value) for res, value in values.items()}
    return Resources(requests=halves["requests"], limits=halves["limits"])


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


def parse_restore(body: Mapping[str, Any]) -> RestoreSpec:
    """Turn a StatefulWebAppRestore object into a :class:`RestoreSpec`, or raise SpecError."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    return RestoreSpec(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        uid=str(meta.get("uid", "")),
        app_name=_str(spec, "appName", ""),
        archive=_str(spec, "archive", "latest"),
        node_name=_str(spec, "nodeName", ""),
        timeout_seconds=_int(spec, "timeoutSeconds", RestoreSpec.timeout_seconds),
    )
