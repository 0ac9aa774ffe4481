"""Reading a stored object into its typed spec (:mod:`statefulwebapp.api.model`).

It checks types, so a malformed stored object gives a clear :class:`SpecError` instead of a
crash, and it supplies every default, so renderers never see a raw dict or a missing field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statefulwebapp.api.model import (
    DEFAULT_BACKUP_ROOT,
    AppSpec,
    Backup,
    BackupTarget,
    DateLogger,
    DisruptionBudget,
    NetworkPolicy,
    NfsSource,
    Probe,
    Probes,
    Resources,
    RestoreSpec,
    Rollout,
    SpecError,
    Storage,
    Toleration,
    TopologySpread,
    backup_resources,
    date_logger_resources,
    web_resources,
)


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
        rollout=Rollout(
            replace_stuck_pods=_bool(
                _obj(spec, "rollout"), "replaceStuckPods", Rollout.replace_stuck_pods, "rollout."
            )
        ),
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
