"""The typed StatefulWebApp spec: parsed and validated once, then passed everywhere.

The CRD schema and its CEL rules reject most bad input at admission; this module repeats the
checks the schema cannot express (a cron schedule, quantity comparisons written by hand) and
supplies every default, so renderers never see a raw dict or a missing field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from statefulwebapp import names
from statefulwebapp.quantity import parse_quantity

GROUP = "apps.k8slab.io"
VERSION = "v1alpha1"
PLURAL = "statefulwebapps"
KIND = "StatefulWebApp"

MAX_REPLICAS = 100

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")


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


@dataclass(frozen=True)
class NfsSource:
    """Where the shared content lives; immutable once the app exists."""

    server: str
    """Host name or IPv4 address of the NFS server."""
    path: str
    """Absolute exported path on the NFS server."""


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
class Backup:
    """The per-node backup agent (a DaemonSet) archiving the claim's content."""

    enabled: bool = True
    """Run the backup DaemonSet at all."""
    image: str = "busybox"
    """Image providing ``sh``, ``tar`` and ``gzip``."""
    interval_seconds: int = 3600
    """Seconds between two archives."""
    keep: int = 24
    """How many archives each node keeps."""
    host_path: str = "/var/backups/statefulwebapp"
    """Node-local directory receiving the archives."""
    tolerate_control_plane: bool = True
    """Also run on control-plane nodes (tolerates the master and control-plane taints)."""
    resources: Resources = field(
        default_factory=lambda: Resources(limits={"cpu": "100m", "memory": "200Mi"})
    )
    """Resources of the backup container."""


@dataclass(frozen=True)
class DateLogger:
    """The CronJob that logs the date on a schedule."""

    enabled: bool = True
    """Create the CronJob at all."""
    schedule: str = "*/1 * * * *"
    """Standard five-field cron schedule."""
    image: str = "busybox"
    """Image providing ``date``."""
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
    image: str = "nginx"
    """Web server image."""
    service_name: str = ""
    """Name of the headless Service (defaults to the app's name)."""
    port: int = 80
    """Container and Service port."""
    resources: Resources = field(default_factory=Resources)
    """Resources of the web container."""
    restricted: bool = False
    """Write every pod for the Pod Security "restricted" profile (``podSecurity``)."""
    run_as_user: int = 101
    """UID of the web container when restricted."""
    backup: Backup = field(default_factory=Backup)
    """The per-node backup agent."""
    date_logger: DateLogger = field(default_factory=DateLogger)
    """The date-logging CronJob."""


def parse(body: Mapping[str, Any]) -> AppSpec:
    """Turn a StatefulWebApp object into an :class:`AppSpec`, or raise :class:`SpecError`."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    name = str(meta.get("name", ""))
    if not _DNS1035.match(name) or len(name) > names.MAX_APP_NAME:
        # The CRD refuses these too; repeated for objects created before the rule existed.
        raise SpecError(
            "metadata.name",
            f"{name!r} must be a lowercase DNS label of at most {names.MAX_APP_NAME} characters",
        )
    storage = _parse_storage(_obj(spec, "storage"))
    replicas = _int(spec, "replicas", 1, 0, MAX_REPLICAS)
    service_name = str(spec.get("serviceName") or name)
    if not _DNS1035.match(service_name) or len(service_name) > 63:
        raise SpecError(
            "serviceName",
            f"{service_name!r} must be a lowercase DNS label (a letter first) of at most 63 chars",
        )
    return AppSpec(
        name=name,
        namespace=str(meta.get("namespace", "")),
        uid=str(meta.get("uid", "")),
        storage=storage,
        replicas=replicas,
        image=_image(spec, "image", "nginx"),
        service_name=service_name,
        port=_int(spec, "port", 80, 1, 65535),
        resources=_resources(spec, "resources", Resources()),
        restricted=_pod_security(spec),
        run_as_user=_int(spec, "runAsUser", 101, 1, 2**31 - 1),
        backup=_parse_backup(_obj(spec, "backup")),
        date_logger=_parse_date_logger(_obj(spec, "dateLogger")),
    )


def _parse_storage(raw: Mapping[str, Any]) -> Storage:
    nfs = _obj(raw, "nfs", "storage.")
    server = str(nfs.get("server") or "")
    path = str(nfs.get("path") or "")
    if not server:
        raise SpecError("storage.nfs.server", "is required: the NFS server's host name or IP")
    if not _valid_host(server):
        raise SpecError("storage.nfs.server", f"{server!r} is not a host name or IPv4 address")
    if not path.startswith("/") or ".." in path.split("/"):
        raise SpecError(
            "storage.nfs.path", f"{path!r} must be an absolute path without '..' segments"
        )
    capacity = _quantity(raw, "capacity", "100Mi", "storage.")
    request = _quantity(raw, "request", capacity, "storage.")
    if parse_quantity(request) > parse_quantity(capacity):
        raise SpecError("storage.request", f"{request} is larger than storage.capacity {capacity}")
    mount_path = str(raw.get("mountPath") or "/usr/share/nginx/html")
    if not mount_path.startswith("/"):
        raise SpecError("storage.mountPath", f"{mount_path!r} must be an absolute path")
    return Storage(
        nfs=NfsSource(server=server, path=path),
        capacity=capacity,
        request=request,
        mount_path=mount_path,
    )


def _parse_backup(raw: Mapping[str, Any]) -> Backup:
    p = "backup."
    host_path = str(raw.get("hostPath") or Backup.host_path)
    if not host_path.startswith("/") or ".." in host_path.split("/") or not host_path.strip("/"):
        raise SpecError(
            "backup.hostPath",
            f"{host_path!r} must be an absolute directory other than / without '..' segments",
        )
    return Backup(
        enabled=_bool(raw, "enabled", True),
        image=_image(raw, "image", "busybox", p),
        interval_seconds=_int(raw, "intervalSeconds", 3600, 10, 7 * 24 * 3600, p),
        keep=_int(raw, "keep", 24, 1, 1000, p),
        host_path=host_path,
        tolerate_control_plane=_bool(raw, "tolerateControlPlane", True),
        resources=_resources(raw, "resources", Backup().resources, p),
    )


def _parse_date_logger(raw: Mapping[str, Any]) -> DateLogger:
    p = "dateLogger."
    schedule = str(raw.get("schedule") or DateLogger.schedule)
    problem = cron_problem(schedule)
    if problem:
        raise SpecError("dateLogger.schedule", f"{schedule!r} is not a cron schedule: {problem}")
    return DateLogger(
        enabled=_bool(raw, "enabled", True),
        schedule=schedule,
        image=_image(raw, "image", "busybox", p),
        suspend=_bool(raw, "suspend", False),
        successful_jobs_history_limit=_int(raw, "successfulJobsHistoryLimit", 3, 0, 100, p),
        failed_jobs_history_limit=_int(raw, "failedJobsHistoryLimit", 1, 0, 100, p),
    )


# -- cron ---------------------------------------------------------------------------------

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS: tuple[tuple[str, int, int, Mapping[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {m: i + 1 for i, m in enumerate(_MONTHS)},
    ),
    ("day of week", 0, 7, {d: i for i, d in enumerate(_WEEKDAYS)}),
)
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def cron_problem(schedule: str) -> str | None:
    """Return why ``schedule`` is not a schedule the CronJob controller accepts, or None."""
    text = schedule.strip()
    if text.startswith("TZ=") or text.startswith("CRON_TZ="):
        return "time zones go in a CronJob's timeZone field, not in the schedule"
    if text.lower() in _CRON_MACROS:
        return None
    parts = text.split()
    if len(parts) != 5:
        return f"expected 5 fields (minute hour day month weekday), got {len(parts)}"
    for value, (label, low, high, aliases) in zip(parts, _CRON_FIELDS, strict=True):
        for item in value.split(","):
            problem = _cron_item(item.lower(), low, high, aliases)
            if problem:
                return f"{label} field {value!r}: {problem}"
    return None


def _cron_item(item: str, low: int, high: int, aliases: Mapping[str, int]) -> str | None:
    base, _, step = item.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        return f"step {step!r} must be a positive number"
    if base in ("*", "?"):
        return None
    start, _, end = base.partition("-")
    for token in (start, end) if end else (start,):
        number = aliases.get(token, int(token) if token.isdigit() else None)
        if number is None:
            return f"{token!r} is not a number"
        if not low <= number <= high:
            return f"{number} is outside {low}-{high}"
    return None


# -- small typed readers --------------------------------------------------------------------


def _obj(raw: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(prefix + key, "must be an object")
    return value


def _int(  # noqa: PLR0917  (reads like the range it checks: key, default, low, high)
    raw: Mapping[str, Any], key: str, default: int, low: int, high: int, prefix: str = ""
) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(prefix + key, f"{value!r} must be an integer")
    if not low <= value <= high:
        raise SpecError(prefix + key, f"{value} must be between {low} and {high}")
    return value


def _bool(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    return bool(value)


def _image(raw: Mapping[str, Any], key: str, default: str, prefix: str = "") -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise SpecError(prefix + key, "must be a non-empty image reference without spaces")
    return value


def _quantity(raw: Mapping[str, Any], key: str, default: str, prefix: str = "") -> str:
    value = str(raw.get(key, default))
    try:
        parse_quantity(value)
    except ValueError as err:
        raise SpecError(prefix + key, str(err)) from None
    return value


def _resources(raw: Mapping[str, Any], key: str, default: Resources, prefix: str = "") -> Resources:
    block = raw.get(key)
    if block is None:
        return default
    out: dict[str, dict[str, str]] = {}
    for half in ("requests", "limits"):
        values = _obj(_obj(raw, key, prefix), half, f"{prefix}{key}.")
        out[half] = {res: _quantity(values, res, "0", f"{prefix}{key}.{half}.") for res in values}
    return Resources(requests=out["requests"], limits=out["limits"])


def _pod_security(spec: Mapping[str, Any]) -> bool:
    level = spec.get("podSecurity", "default")
    if level not in {"default", "restricted"}:
        raise SpecError("podSecurity", f"{level!r} must be 'default' or 'restricted'")
    return bool(level == "restricted")


def _valid_host(server: str) -> bool:
    ip = _IPV4.match(server)
    if ip:
        return all(int(octet) <= 255 for octet in ip.groups())
    return len(server) <= 253 and bool(_DNS1123_SUBDOMAIN.match(server))
